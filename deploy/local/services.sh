#!/usr/bin/env bash
# Local servers for development and the test suite, without Docker:
#   Kafka (KRaft, one broker+controller) on 127.0.0.1:$MLPLANE_KAFKA_PORT (9092), controller on :9093
#   FerretDB v1 (MongoDB wire protocol) on 127.0.0.1:$MLPLANE_MONGO_PORT (27017), on
#     PostgreSQL 15 on 127.0.0.1:$MLPLANE_POSTGRES_PORT (5433), as FerretDB is run in production;
#     MLPLANE_FERRETDB_BACKEND=sqlite runs it on its SQLite backend instead, without PostgreSQL
#   gofakes3 (S3-compatible, in memory) on 127.0.0.1:$MLPLANE_S3_PORT (9000)
#
# Usage: deploy/local/services.sh up [kafka|mongo|postgres|s3] | down [kafka|mongo|postgres|s3]
#        | status | restart-kafka          (`up mongo` starts PostgreSQL first, `down mongo` stops it)
#
# Binaries are fetched once into .mlplane/cache (Kafka jars from Maven Central via mvn, FerretDB
# built with the Go toolchain, PostgreSQL from apt-get when /usr/lib/postgresql/15 is missing);
# data, logs and pid files live under $MLPLANE_STATE_DIR (.mlplane/), so a second set of servers
# on other ports needs a state folder of its own.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE="${MLPLANE_STATE_DIR:-$ROOT/.mlplane}"
CACHE="${MLPLANE_CACHE_DIR:-$ROOT/.mlplane/cache}"
LOGS="$STATE/logs"
RUN="$STATE/run"

KAFKA_PORT="${MLPLANE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${MLPLANE_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${MLPLANE_KAFKA_HEAP:-512m}"
KAFKA_LIBS="$CACHE/kafka/libs"
KAFKA_DATA="$STATE/kafka"

MONGO_PORT="${MLPLANE_MONGO_PORT:-27017}"
FERRETDB_VERSION="${MLPLANE_FERRETDB_VERSION:-v1.24.2}"
FERRETDB_BIN="$CACHE/ferretdb/$FERRETDB_VERSION/ferretdb"
FERRETDB_DATA="$STATE/ferretdb"
FERRETDB_BACKEND="${MLPLANE_FERRETDB_BACKEND:-postgresql}"

POSTGRES_PORT="${MLPLANE_POSTGRES_PORT:-5433}"
POSTGRES_BIN="${MLPLANE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
POSTGRES_OS_USER="${MLPLANE_POSTGRES_OS_USER:-postgres}" # who runs the server when we are root
POSTGRES_DATA="$STATE/postgres"
POSTGRES_DB=ferretdb # database and role FerretDB uses
# FerretDB v1.24 keeps one pooled PostgreSQL connection per statement of an `update` command until
# the command ends, and its pool (50 by default) is shared by every client: a bulk write of 50
# updates or more waits forever for a 51st connection and stalls the whole server. A pool (and
# a max_connections) larger than any bulk write the platform sends keeps clear of it; idle
# connections are closed after a minute.
FERRETDB_PG_POOL="${MLPLANE_FERRETDB_PG_POOL:-1000}"

S3_PORT="${MLPLANE_S3_PORT:-9000}"
GOFAKES3_VERSION="${MLPLANE_GOFAKES3_VERSION:-v1.2.0}"
GOFAKES3_BIN="$CACHE/gofakes3/$GOFAKES3_VERSION/gofakes3"

TIMEOUT="${MLPLANE_SERVICES_TIMEOUT:-180}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

say() { echo "services: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_of() { # prints the pid of a running server started by this script
  local f="$RUN/$1.pid"
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

fail_with_log() { # name, reason
  say "ERROR: $1 $2; last lines of $LOGS/$1.log:"
  tail -n 40 "$LOGS/$1.log" >&2 || true
  exit 1
}

# Polls a readiness command until it succeeds; a server that exits or is not ready in time fails the run.
wait_ready() { # name, command...
  local name=$1 deadline=$((SECONDS + TIMEOUT)) pid
  shift
  until "$@"; do
    if ! pid=$(pid_of "$name"); then
      rm -f "$RUN/$name.pid"
      fail_with_log "$name" "exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      kill -9 "$pid"
      rm -f "$RUN/$name.pid"
      fail_with_log "$name" "was not ready after ${TIMEOUT}s and was killed"
    fi
    sleep 0.5
  done
}

launch() { # name, command... ; runs detached, output appended to the log
  local name=$1
  shift
  mkdir -p "$LOGS" "$RUN"
  echo "=== $(date -u +%FT%TZ) starting $name" >>"$LOGS/$name.log"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/$name.pid"
}

stop() { # name, port[, signal: TERM unless the server shuts down fast on another]
  local name=$1 port=$2 signal=${3:-TERM} pid
  if ! pid=$(pid_of "$name"); then
    rm -f "$RUN/$name.pid"
    say "$name is not running"
    return 0
  fi
  say "stopping $name (pid $pid)"
  kill -s "$signal" "$pid"
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not exit in 60s, killing it"
    kill -9 "$pid"
  fi
  rm -f "$RUN/$name.pid"
  for _ in $(seq 60); do port_open "$port" || return 0; sleep 0.5; done
  die "port $port is still in use after stopping $name"
}

# Refuses to start on a port held by a process this script does not manage.
check_port_free() { # name, port, env var
  port_open "$2" && die "port $2 is in use by a process not started by this script; stop it or set $3"
  return 0
}

# ---------------------------------------------------------------- Kafka

kafka_fetch() {
  local stamp
  stamp="$(sha256sum "$HERE/kafka/pom.xml" | cut -d' ' -f1)"
  [[ -f $KAFKA_LIBS/.stamp && $(cat "$KAFKA_LIBS/.stamp") == "$stamp" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
  say "fetching Kafka jars with Maven into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS.tmp"
  mkdir -p "$LOGS"
  mvn -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" >"$LOGS/kafka-fetch.log" 2>&1 ||
    fail_with_log kafka-fetch "Maven could not fetch the Kafka jars"
  echo "$stamp" >"$KAFKA_LIBS.tmp/.stamp"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
}

KAFKA_JAVA=(java -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" -cp "$KAFKA_LIBS/*")
KAFKA_TOOL=(java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
  -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" -cp "$KAFKA_LIBS/*")

# Ready once the broker answers a metadata + ApiVersions round trip, not merely once the port is open.
kafka_answers_metadata() {
  port_open "$KAFKA_PORT" || return 1
  local out
  out="$(timeout 30 "${KAFKA_TOOL[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" 2>/dev/null)" || return 1
  [[ $out == *"(id: 1 "* ]]
}

# A new cluster id: 16 random bytes in URL-safe base64 without padding, the form `kafka-storage
# random-uuid` prints, drawn again when it starts with '-' as Kafka's own ids never do (a tool
# would read such an id as an option; it is passed as --cluster-id=ID all the same).
kafka_cluster_id() {
  local id
  while id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; [[ $id == -* ]]; do :; done
  echo "$id"
}

kafka_up() {
  if pid_of kafka >/dev/null; then say "kafka already running on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  check_port_free kafka "$KAFKA_PORT" MLPLANE_KAFKA_PORT
  check_port_free kafka "$KAFKA_CONTROLLER_PORT" MLPLANE_KAFKA_CONTROLLER_PORT
  kafka_fetch
  mkdir -p "$RUN" "$LOGS" "$KAFKA_DATA"
  local props="$RUN/kafka.properties"
  sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$KAFKA_DATA|g" "$HERE/kafka/server.properties" >"$props"
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    say "formatting Kafka storage in $KAFKA_DATA"
    "${KAFKA_TOOL[@]}" kafka.tools.StorageTool format --ignore-formatted -c "$props" \
      --cluster-id="$(kafka_cluster_id)" >>"$LOGS/kafka.log" 2>&1 ||
      fail_with_log kafka "storage format failed"
  fi
  say "starting kafka on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT)"
  launch kafka "${KAFKA_JAVA[@]}" kafka.Kafka "$props"
  wait_ready kafka kafka_answers_metadata
  say "kafka ready"
}

# ---------------------------------------------------------------- FerretDB

# The module zip of FerretDB lacks the generated build/version/version.txt, without which the
# binary refuses to start, so it is built from a copy of the module source with that file added.
ferretdb_build() {
  [[ -x $FERRETDB_BIN ]] && return 0
  [[ -x $GO ]] || die "go not found (needed once to build FerretDB); set GO=/path/to/go"
  say "building FerretDB $FERRETDB_VERSION into $FERRETDB_BIN"
  local src dir
  src="$(mktemp -d)"
  dir="$(cd "$src" && GO111MODULE=on "$GO" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [[ -d $dir ]] || die "could not download the FerretDB $FERRETDB_VERSION module"
  cp -r "$dir/." "$src/" && chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  mkdir -p "$(dirname "$FERRETDB_BIN")"
  (cd "$src" && "$GO" build -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb)
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
  rm -rf "$src"
}

# PostgreSQL refuses to run as root: as root, its commands run as $POSTGRES_OS_USER (the user the
# Debian package creates); otherwise as the caller.
if ((EUID == 0)); then
  AS_POSTGRES=(setpriv --reuid="$POSTGRES_OS_USER" --regid="$POSTGRES_OS_USER" --init-groups --reset-env)
else
  AS_POSTGRES=()
fi
as_postgres() { "${AS_POSTGRES[@]}" "$@"; }

postgres_install() {
  [[ -x $POSTGRES_BIN/postgres ]] && return 0
  ((EUID == 0)) && command -v apt-get >/dev/null ||
    die "PostgreSQL 15 not found in $POSTGRES_BIN; install it (apt-get install postgresql-15) or set MLPLANE_POSTGRES_BIN"
  say "installing PostgreSQL 15 with apt-get"
  mkdir -p "$LOGS"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 ||
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; }
  } >"$LOGS/postgres-install.log" 2>&1 || fail_with_log postgres-install "apt-get could not install postgresql-15"
  [[ -x $POSTGRES_BIN/postgres ]] || die "apt-get installed postgresql-15, but $POSTGRES_BIN/postgres is missing"
}

postgres_answers() { "$POSTGRES_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -t 5; }

postgres_sql() { # sql; run as the superuser over TCP (trust: the server listens on 127.0.0.1 only)
  "$POSTGRES_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -tAc "$1"
}

# A cluster of its own in $POSTGRES_DATA, reachable on 127.0.0.1 only, as exposed as FerretDB itself
# (which has no authentication here either); no Unix socket, so nothing is written outside it.
postgres_up() {
  if pid_of postgres >/dev/null; then say "postgres already running on 127.0.0.1:$POSTGRES_PORT"; return 0; fi
  check_port_free postgres "$POSTGRES_PORT" MLPLANE_POSTGRES_PORT
  postgres_install
  if ((EUID == 0)) && ! id -u "$POSTGRES_OS_USER" >/dev/null 2>&1; then
    say "creating the system user $POSTGRES_OS_USER to run PostgreSQL (root may not)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$POSTGRES_OS_USER" ||
      die "could not create the user $POSTGRES_OS_USER; set MLPLANE_POSTGRES_OS_USER to an existing one"
  fi
  mkdir -p "$POSTGRES_DATA" "$LOGS" "$RUN"
  ((EUID == 0)) && chown "$POSTGRES_OS_USER:" "$POSTGRES_DATA"
  chmod 700 "$POSTGRES_DATA"
  as_postgres test -w "$POSTGRES_DATA" ||
    die "user $POSTGRES_OS_USER cannot write $POSTGRES_DATA (a parent folder closed to it?); set MLPLANE_STATE_DIR"
  if [[ ! -f $POSTGRES_DATA/PG_VERSION ]]; then
    say "creating a PostgreSQL cluster in $POSTGRES_DATA"
    as_postgres "$POSTGRES_BIN/initdb" -D "$POSTGRES_DATA" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >>"$LOGS/postgres.log" 2>&1 || fail_with_log postgres "initdb failed"
  fi
  say "starting postgres on 127.0.0.1:$POSTGRES_PORT"
  launch postgres "${AS_POSTGRES[@]}" "$POSTGRES_BIN/postgres" -D "$POSTGRES_DATA" \
    -c listen_addresses=127.0.0.1 -c port="$POSTGRES_PORT" -c unix_socket_directories= \
    -c logging_collector=off -c log_min_messages=warning -c max_connections=$((FERRETDB_PG_POOL + 50))
  wait_ready postgres postgres_answers
  if [[ -z $(postgres_sql "SELECT 1 FROM pg_roles WHERE rolname = '$POSTGRES_DB'") ]]; then
    postgres_sql "CREATE ROLE $POSTGRES_DB LOGIN" || die "could not create the role $POSTGRES_DB"
  fi
  if [[ -z $(postgres_sql "SELECT 1 FROM pg_database WHERE datname = '$POSTGRES_DB'") ]]; then
    say "creating the database $POSTGRES_DB"
    postgres_sql "CREATE DATABASE $POSTGRES_DB OWNER $POSTGRES_DB" || die "could not create the database $POSTGRES_DB"
  fi
  say "postgres ready"
}

# Ready once FerretDB answers a MongoDB `ping` (an OP_MSG, written by hand: no client is needed),
# which on PostgreSQL also reaches the database, not merely once the port is open.
mongo_ping() {
  timeout 10 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x33\0\0\0\x01\0\0\0\0\0\0\0\xdd\x07\0\0\0\0\0\0\0\x1e\0\0\0\x10ping\0\x01\0\0\0\x02\$db\0\x06\0\0\0admin\0\0" >&3
    size=$(head -c 4 <&3 | od -An -tu4 | tr -d " ")
    ((size > 20 && size < 65536)) || exit 1
    head -c $((size - 4)) <&3 | od -An -tx1 | tr -d " \n" | grep -q "016f6b00000000000000f03f"
  ' bash "$MONGO_PORT" 2>/dev/null
}

ferretdb_backend_of() { # pid; the --handler it was started with
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | sed -n 's/^--handler=//p'
}

mongo_up() {
  local pid running
  if pid=$(pid_of ferretdb); then
    running="$(ferretdb_backend_of "$pid")"
    say "ferretdb already running on 127.0.0.1:$MONGO_PORT (${running:-unknown} backend), kept"
    [[ $running == "$FERRETDB_BACKEND" ]] ||
      say "  MLPLANE_FERRETDB_BACKEND=$FERRETDB_BACKEND applies after \`$0 down mongo\` and \`$0 up mongo\`"
    [[ $running != postgresql ]] || postgres_up
    return 0
  fi
  check_port_free ferretdb "$MONGO_PORT" MLPLANE_MONGO_PORT
  local -a backend
  case "$FERRETDB_BACKEND" in
    postgresql)
      postgres_up
      backend=(--handler=postgresql
        --postgresql-url="postgres://$POSTGRES_DB@127.0.0.1:$POSTGRES_PORT/$POSTGRES_DB?pool_max_conns=$FERRETDB_PG_POOL&pool_max_conn_idle_time=1m") ;;
    sqlite)
      mkdir -p "$FERRETDB_DATA/data"
      backend=(--handler=sqlite --sqlite-url="file:$FERRETDB_DATA/data/") ;;
    *) die "MLPLANE_FERRETDB_BACKEND must be postgresql or sqlite, not '$FERRETDB_BACKEND'" ;;
  esac
  ferretdb_build
  mkdir -p "$FERRETDB_DATA/state"
  say "starting ferretdb ($FERRETDB_BACKEND backend) on 127.0.0.1:$MONGO_PORT"
  launch ferretdb "$FERRETDB_BIN" "${backend[@]}" \
    --state-dir="$FERRETDB_DATA/state" --listen-addr="127.0.0.1:$MONGO_PORT" \
    --debug-addr=- --telemetry=disable --log-level=warn
  wait_ready ferretdb mongo_ping
  say "ferretdb ready"
}

mongo_down() { stop ferretdb "$MONGO_PORT"; postgres_down; }

postgres_down() { stop postgres "$POSTGRES_PORT" INT; } # SIGINT: PostgreSQL's fast shutdown

# ---------------------------------------------------------------- S3 (gofakes3)

# The S3-compatible server the connector and artifact-store tests talk to; buckets live in memory,
# so every start is empty and each test creates its own bucket.
s3_build() {
  [[ -x $GOFAKES3_BIN ]] && return 0
  [[ -x $GO ]] || die "go not found (needed once to build gofakes3); set GO=/path/to/go"
  say "building gofakes3 $GOFAKES3_VERSION into $GOFAKES3_BIN"
  mkdir -p "$(dirname "$GOFAKES3_BIN")" "$LOGS"
  GOBIN="$(dirname "$GOFAKES3_BIN")" GO111MODULE=on "$GO" install \
    "github.com/johannesboyne/gofakes3/cmd/gofakes3@$GOFAKES3_VERSION" >"$LOGS/gofakes3-build.log" 2>&1 ||
    fail_with_log gofakes3-build "the Go toolchain could not build gofakes3"
}

s3_up() {
  if pid_of gofakes3 >/dev/null; then say "gofakes3 already running on 127.0.0.1:$S3_PORT"; return 0; fi
  check_port_free gofakes3 "$S3_PORT" MLPLANE_S3_PORT
  s3_build
  say "starting gofakes3 on 127.0.0.1:$S3_PORT"
  launch gofakes3 "$GOFAKES3_BIN" -backend memory -host "127.0.0.1:$S3_PORT" -quiet
  wait_ready gofakes3 port_open "$S3_PORT"
  say "gofakes3 ready"
}

# ---------------------------------------------------------------- commands

status_of() { # name, port
  local pid
  if pid=$(pid_of "$1"); then
    if [[ $1 == ferretdb ]]; then
      echo "$1: running (pid $pid) on 127.0.0.1:$2, $(ferretdb_backend_of "$pid") backend"
    else
      echo "$1: running (pid $pid) on 127.0.0.1:$2"
    fi
  elif port_open "$2"; then
    echo "$1: not started by this script, but port $2 is in use"
  else
    echo "$1: stopped"
  fi
}

# Sourced (by the tests), the script only defines its functions.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

# One invocation at a time, so that concurrent `up`s neither build twice nor start two servers.
mkdir -p "$RUN"
exec 9>"$RUN/services.lock"
[[ ${1:-} == status ]] || flock 9

which="${2:-all}"
case "${1:-} $which" in
  "up all") kafka_up; mongo_up; s3_up ;;
  "up s3") s3_up ;;
  "up kafka") kafka_up ;;
  "up mongo") mongo_up ;;
  "up postgres") postgres_up ;;
  "down all") stop kafka "$KAFKA_PORT"; mongo_down; stop gofakes3 "$S3_PORT" ;;
  "down s3") stop gofakes3 "$S3_PORT" ;;
  "down kafka") stop kafka "$KAFKA_PORT" ;;
  "down mongo") mongo_down ;;
  "down postgres") postgres_down ;;
  "status all")
    status_of kafka "$KAFKA_PORT"; status_of ferretdb "$MONGO_PORT"
    status_of postgres "$POSTGRES_PORT"; status_of gofakes3 "$S3_PORT" ;;
  "restart-kafka all") stop kafka "$KAFKA_PORT"; kafka_up ;;
  *)
    echo "usage: $0 up [kafka|mongo|postgres|s3] | down [kafka|mongo|postgres|s3] | status | restart-kafka" >&2
    exit 2 ;;
esac
