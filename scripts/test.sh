#!/usr/bin/env bash
# Runs the whole test suite: build, unit and integration tests, detector
# fixtures, and a check of every shipped data file. Servers that tests need
# are installed and started by scripts/servers.sh on ephemeral loopback
# ports and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/threatpilot-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# shellcheck source=scripts/servers.sh
source scripts/servers.sh
trap servers_stop EXIT
servers_start

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked --release --all-targets -- -D warnings
fi
cargo build --locked --release --bin threatpilot
tp="$CARGO_TARGET_DIR/release/threatpilot"
"$tp" validate
"$tp" test
# the NATS path end to end against the suite's server (a smoke run of the benchmark)
"$tp" bench --nats --nats-url "$THREATPILOT_NATS_URL" --events 20000 --runs 1
# Loki push from a second process into a running pipeline (a smoke run)
"$tp" bench --loki --events 20000 --runs 1
# rows/s into the suite's ClickHouse (a smoke run)
"$tp" bench --clickhouse-url "$THREATPILOT_CLICKHOUSE_URL" --events 20000 --runs 1
# response: event-to-action latency, and detection with a stuck connector (a smoke run)
"$tp" bench --respond --events 200000 --runs 1
cargo test --locked --release
