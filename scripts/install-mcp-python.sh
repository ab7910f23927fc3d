#!/usr/bin/env bash
# Install the official MCP Python SDK, pinned, into a virtual environment inside this
# checkout's cache, unless it is already there, and print that environment's python.
# The protocol-task tests drive the server with it. Never installs globally.
#
#   MCP_PYTHON_VERSION  SDK version to pin   (default 1.30.0: its client speaks 2025-11-25 tasks)
#   CLAUDE_POOL_CACHE   cache directory      (default <checkout>/.cache)
# Progress goes to stderr; stdout is only the path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${MCP_PYTHON_VERSION:-1.30.0}"
venv="${CLAUDE_POOL_CACHE:-$here/.cache}/mcp-python-$version"
python="$venv/bin/python"

if [ -x "$python" ] && "$python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$version')" 2>/dev/null; then
  echo "$python"
  exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "install-mcp-python.sh: python3 is not installed" >&2; exit 1; }
echo "installing the MCP Python SDK $version into $venv" >&2
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==$version" >&2
echo "$python"
