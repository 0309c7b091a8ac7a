#!/usr/bin/env bash
# Starts the real servers integration tests talk to, each on an ephemeral
# loopback port in a temporary directory, and exports where they listen.
# The core pipeline's tests need none yet; sourcing this keeps one place
# where servers are installed, started, waited for and stopped.

SERVERS_DIR=""

servers_start() {
  SERVERS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/threatpilot-servers.XXXXXX")"
  export THREATPILOT_SERVERS_DIR="$SERVERS_DIR"
}

servers_stop() {
  if [ -n "$SERVERS_DIR" ] && [ -d "$SERVERS_DIR" ]; then
    for pidfile in "$SERVERS_DIR"/*.pid; do
      [ -e "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$SERVERS_DIR"
  fi
}
