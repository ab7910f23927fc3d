#!/usr/bin/env bash
# Run every server scenario of the official MCP conformance suite (@modelcontextprotocol/conformance,
# pinned by scripts/install-conformance.sh) against claude-pool-server over Streamable HTTP, and
# hold the result to tests/conformance-expected-failures.txt (`<scenario>  <reason>` lines, `#`
# comments). Exits non-zero when a scenario not listed there fails, when a listed one passes (so
# the file stays true) or names no scenario of the suite, or when the run itself breaks.
#
#   scripts/conformance.sh [SERVER_BIN [FAKE_CLAUDE_BIN]]
#     SERVER_BIN       default target/debug/claude-pool-server
#     FAKE_CLAUDE_BIN  default target/debug/fake-claude (the stand-in Claude CLI the slots run)
#   CONFORMANCE_KEEP=1 keeps the scratch directory (server log, the suite's output and checks.json).
#
# The server runs with its default flags (its store under a fresh HOME), one slot of the fake CLI,
# on a free loopback port, behind a random
# bearer token. The suite has no option to send a header (conformance issue #453), so the token is
# added to each of its HTTP requests by a preload (NODE_OPTIONS=--import) that installs an undici
# dispatcher; both the suite's fetch and its raw undici requests go through it. Needs npm and
# python3; everything else is installed into the checkout's cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
checkout="$(pwd)"

absolute() { case "$1" in /*) echo "$1" ;; *) echo "$checkout/$1" ;; esac; }
server_bin="$(absolute "${1:-target/debug/claude-pool-server}")"
fake_bin="$(absolute "${2:-target/debug/fake-claude}")"
expected="$checkout/tests/conformance-expected-failures.txt"
for f in "$server_bin" "$fake_bin"; do
  [ -x "$f" ] || { echo "conformance.sh: $f is not an executable (build it first)" >&2; exit 2; }
done
[ -f "$expected" ] || { echo "conformance.sh: $expected is missing" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || { echo "conformance.sh: python3 is not installed" >&2; exit 2; }

conformance="$(scripts/install-conformance.sh)"
suite_pkg="$(dirname "$conformance")/node_modules/@modelcontextprotocol/conformance"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/claude-pool-conformance.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${CONFORMANCE_KEEP:-}" = 1 ]; then
    echo "conformance.sh: kept $scratch" >&2
  else
    rm -rf "$scratch"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$scratch/home" "$scratch/work" "$scratch/results"
token="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"

# The server: its own HOME and XDG directories, so nothing of the user's is read or written.
(
  cd "$scratch/work"
  export HOME="$scratch/home" XDG_STATE_HOME="$scratch/home/.local/state"
  export XDG_CONFIG_HOME="$scratch/home/.config" XDG_RUNTIME_DIR="$scratch/home/run"
  unset CLAUDE_MCP_DB_PATH CLAUDE_MCP_PORT CLAUDE_MCP_MAX_DEPTH CLAUDE_BIN CLAUDE_POOL_LOG
  export CLAUDE_POOL_HTTP_TOKEN="$token"
  exec "$server_bin" --http --bind 127.0.0.1 --port 0 --slots 1 \
    --claude-bin "$fake_bin" --log-file "$scratch/server.log"
) </dev/null >"$scratch/server.out" 2>&1 &
server_pid=$!

# Wait for it to say its port (--port 0 picks a free one) and to answer GET /health.
if ! url="$(python3 - "$scratch/server.log" "$server_pid" <<'EOF'
import os, re, sys, time, urllib.request
log, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
port = None
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the server exited")
    if port is None:
        try:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/mcp", open(log).read())
            port = m and m.group(1)
        except OSError:
            pass
    if port:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    print(f"http://127.0.0.1:{port}/mcp")
                    sys.exit(0)
        except OSError:
            pass
    time.sleep(0.2)
sys.exit("the server did not answer /health within 60 s")
EOF
)"; then
  echo "conformance.sh: the server did not come up; its output:" >&2
  tail -n 40 "$scratch/server.out" "$scratch/server.log" >&2 2>/dev/null || true
  exit 1
fi
echo "conformance.sh: claude-pool-server at $url (bearer token, fake CLI $fake_bin)" >&2

# Adds the bearer token to every HTTP request the suite makes (fetch and undici alike).
cat >"$scratch/bearer.mjs" <<EOF
import { createRequire } from 'node:module';
const { Agent, setGlobalDispatcher } = createRequire('$suite_pkg/package.json')('undici');
const auth = 'Bearer ' + process.env.CLAUDE_POOL_CONFORMANCE_TOKEN;
setGlobalDispatcher(new Agent().compose((dispatch) => (opts, handler) => {
  let h = opts.headers;
  if (h == null) h = { authorization: auth };
  else if (Array.isArray(h)) h = [...h, 'authorization', auth];
  else if (typeof h[Symbol.iterator] === 'function') h = [...h, ['authorization', auth]];
  else h = { ...h, authorization: auth };
  return dispatch({ ...opts, headers: h }, handler);
}));
EOF

"$conformance" list --server >"$scratch/scenarios.txt"
limit=()
command -v timeout >/dev/null 2>&1 && limit=(timeout -k 10 240)
echo "conformance.sh: running every server scenario of $("$conformance" --version)" >&2
suite_rc=0
(
  cd "$scratch"
  export CLAUDE_POOL_CONFORMANCE_TOKEN="$token"
  export NODE_OPTIONS="--import=$scratch/bearer.mjs${NODE_OPTIONS:+ $NODE_OPTIONS}"
  exec ${limit[@]+"${limit[@]}"} "$conformance" server --url "$url" --suite all -o "$scratch/results"
) >"$scratch/suite.out" 2>&1 || suite_rc=$?

python3 - "$scratch" "$expected" "$suite_rc" <<'EOF'
import glob, json, os, re, sys
scratch, expected_path, suite_rc = sys.argv[1], sys.argv[2], int(sys.argv[3])

scenarios = re.findall(r"^\s*-\s+(\S+)", open(f"{scratch}/scenarios.txt").read(), re.M)
if not scenarios:
    sys.exit("conformance.sh: the suite listed no server scenarios")

expected = {}
for line in open(expected_path):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, reason = line.partition(" ")
        expected[name] = reason.strip()

# The suite's summary: one line a scenario, "✓ name: N passed, M failed" (✗ when M > 0).
out = open(f"{scratch}/suite.out", encoding="utf-8", errors="replace").read()
summary = out.split("=== SUMMARY ===", 1)[1] if "=== SUMMARY ===" in out else ""
result = {}
for name, failed in re.findall(r"^[✓✗] (\S+): \d+ passed, (\d+) failed$", summary, re.M):
    result[name] = int(failed) == 0

def failures(name):  # the failing checks of a scenario, from its checks.json
    lines = []
    for f in glob.glob(f"{scratch}/results/server-{name}-[0-9][0-9][0-9][0-9]-*/checks.json"):
        for c in json.load(open(f)):
            if c.get("status") == "FAILURE":
                lines.append(f"      {c.get('id')}: {c.get('errorMessage') or c.get('description')}")
    return lines or ["      (no checks.json: the scenario did not finish; see the suite's output)"]

passed, expected_failed, unexpected, stale = [], [], [], []
for name in scenarios:
    ok = result.get(name, False)
    if ok and name in expected:
        stale.append(name)
    elif ok:
        passed.append(name)
    elif name in expected:
        expected_failed.append(name)
    else:
        unexpected.append(name)
    mark = "pass" if ok else "fail (expected)" if name in expected else "FAIL"
    if name not in result:
        mark += " (no result)"
    print(f"  {mark:28} {name}")
unknown = sorted(set(expected) - set(scenarios))

print(f"\nconformance: {len(scenarios)} scenarios: {len(passed)} passed, "
      f"{len(expected_failed)} expected failures, {len(unexpected)} unexpected failures, "
      f"{len(stale)} listed as expected failures but passed, {len(unknown)} listed but unknown")
for name in unexpected:
    print(f"  unexpected failure: {name}")
    print("\n".join(failures(name)))
for name in stale:
    print(f"  passes now, delete its line from {os.path.basename(expected_path)}: {name}")
for name in unknown:
    print(f"  no such scenario in this suite version: {name} (in {os.path.basename(expected_path)})")
if not summary:
    print(f"the suite printed no summary (exit status {suite_rc}); its output ends:")
    print("\n".join(out.splitlines()[-40:]))
sys.exit(1 if unexpected or stale or unknown or not summary else 0)
EOF
