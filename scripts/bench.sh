#!/usr/bin/env bash
# Latency, memory, throughput and durability measurements (benches/latency.rs,
# benches/toolkit.rs, benches/durability.rs, benches/http.rs, benches/tasks.rs, benches/idle.rs, benches/soak.rs,
# benches/approvals.rs, benches/limits.rs, benches/cluster.rs) on release builds, each beside its baseline. BENCH_ITERS sets the sample count (default 40; 20 for approvals).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CLAUDE_POOL_REAL_CLI="${CLAUDE_POOL_REAL_CLI:-$(scripts/install-claude.sh)}"
cargo build --release --workspace --bins
cargo bench --bench latency
cargo bench --bench toolkit
cargo bench --bench durability
cargo bench --bench http
CLAUDE_POOL_MCP_PYTHON="${CLAUDE_POOL_MCP_PYTHON:-$(scripts/install-mcp-python.sh)}" cargo bench --bench tasks
cargo bench --bench idle
cargo bench --bench soak
cargo bench --bench approvals
cargo bench --bench limits
# Slots on other machines (the cluster feature) beside a local slot.
cargo build --release -p claude-pool-server --features cluster
cargo bench --features cluster --bench cluster
