#!/usr/bin/env bash
# Install the pinned Claude Code CLI (the self-contained linux-x64 binary from npm) into a
# cache inside this checkout, unless it is already there, and print the binary's path.
# Never installs globally.
#
#   CLAUDE_CLI_VERSION  version to pin        (default 2.1.329)
#   CLAUDE_POOL_CACHE   cache directory       (default <checkout>/.cache)
# Progress goes to stderr; stdout is only the path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${CLAUDE_CLI_VERSION:-2.1.329}"
pkg="@anthropic-ai/claude-code-linux-x64"
prefix="${CLAUDE_POOL_CACHE:-$here/.cache}/claude-cli-$version"
bin="$prefix/node_modules/$pkg/claude"
manifest="$prefix/node_modules/$pkg/package.json"

installed_version() {
  [ -f "$manifest" ] || return 1
  sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$manifest" | head -n1
}

if [ -x "$bin" ] && [ "$(installed_version || true)" = "$version" ]; then
  echo "$bin"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-claude.sh: only linux x86_64 is supported (got $(uname -s)-$(uname -m))" >&2; exit 1 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "install-claude.sh: npm is not installed" >&2; exit 1; }
mkdir -p "$prefix"
[ -f "$prefix/package.json" ] ||
  printf '{"name":"claude-pool-cli-cache","version":"1.0.0","private":true}\n' >"$prefix/package.json"
echo "install-claude.sh: npm install $pkg@$version into $prefix" >&2
(cd "$prefix" && npm install --no-audit --no-fund --loglevel=error "$pkg@$version" >&2)
if [ ! -x "$bin" ] || [ "$(installed_version || true)" != "$version" ]; then
  echo "install-claude.sh: $bin missing or not $version after npm install" >&2
  exit 1
fi
echo "$bin"
