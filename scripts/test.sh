#!/usr/bin/env bash
# The project's test command (README.md): installs the pinned Claude CLI into the checkout's
# cache, builds every binary the tests drive, and runs the whole test suite. With CI=true the
# end-to-end tests against the real CLI must run: a missing CLI fails them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

claude="$(scripts/install-claude.sh)"
echo "real Claude CLI: $claude ($("$claude" --version 2>/dev/null || echo 'version unknown'))" >&2
export CLAUDE_POOL_REAL_CLI="$claude"

cargo build --workspace --bins --tests --examples
cargo test --workspace --no-fail-fast
