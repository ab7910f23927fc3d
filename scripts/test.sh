#!/usr/bin/env bash
# The project's test command (README.md): installs the pinned Claude CLI into the checkout's
# cache, builds every binary the tests drive, and runs the whole test suite. With CI=true the
# end-to-end tests against the real CLI must run: a missing CLI fails them. Debian's
# Chromium is installed when missing, for the status page's browser test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

claude="$(scripts/install-claude.sh)"
echo "real Claude CLI: $claude ($("$claude" --version 2>/dev/null || echo 'version unknown'))" >&2
export CLAUDE_POOL_REAL_CLI="$claude"
# The official MCP Python SDK, pinned, for the protocol-task tests.
CLAUDE_POOL_MCP_PYTHON="$(scripts/install-mcp-python.sh)"
export CLAUDE_POOL_MCP_PYTHON

if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the status page's browser test" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi

# iproute2, for the test that cuts a slot host's link (a network namespace of its own).
if ! command -v ip >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's iproute2 for the cut-link test" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q iproute2 >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q iproute2 >/dev/null; }
fi

cargo build --workspace --bins --tests --examples --benches
# The official MCP conformance suite (pinned) against the HTTP server, held to
# tests/conformance-expected-failures.txt.
scripts/conformance.sh target/debug/claude-pool-server target/debug/fake-claude
cargo test --workspace --no-fail-fast

# Every MCP behaviour again over Streamable HTTP: the harness (tests/support/server.rs)
# speaks both transports, so the same tests run against each. The modules skipped here
# do not go through that harness (embedding, supervision, chaos, the document checks),
# are HTTP's own, or choose their transports themselves (the Python SDK's).
CLAUDE_POOL_TEST_TRANSPORT=http cargo test --test it --no-fail-fast -- \
    --skip chaos:: --skip chaos_cli:: --skip embedding:: --skip fake_cli:: --skip faults:: \
    --skip http:: --skip http_quick:: --skip outputs:: --skip protocol_tasks_py:: --skip stdio_fuzz:: \
    --skip supervision:: \
    --skip tree_doc::

# Slots on other machines (the `cluster` crate feature): the server and library build with
# it, and its own tests run. Last, so every test above ran against the default build.
cargo build -p claude-pool-server --features cluster
cargo test -p claude-pool --features cluster --lib cluster::
cargo test --features cluster --test it -- cluster:: cluster_use::
