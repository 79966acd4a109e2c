#!/usr/bin/env bash
# make bench-medtech: medtech-svc and fhir-svc as separate processes on PostgreSQL + Kafka
# (tansu), started here on loopback with fresh state (operations-svc bootstraps the instances
# bench-fhir and bench-medtech). medtech-bench produces device messages straight to the
# instance's topic, measures the pipeline's throughput on a backlog and the end-to-end latency
# at a fixed rate, and prints a table with CPU seconds and whether the bars of issue 5 hold.
#   MEDTECH_BENCH_MESSAGES   messages of the throughput phase (default 1000000)
#   MEDTECH_BENCH_LATENCY_SECS  seconds of the 1,000 messages/s latency phase (default 30)
#   MEDTECH_FLUSH_MESSAGES   medtech-svc window size, HDS_MEDTECH__FLUSH_MESSAGES (default 50000)
#   MEDTECH_CONCURRENT_WRITES  FHIR requests of a window in flight at once, HDS_MEDTECH__CONCURRENT_WRITES
#                            (default: the service's, 8)
#   MEDTECH_BENCH_ARGS       extra medtech-bench options, e.g. "--sample-every 10 --poll-ms 50"
#   HDS_TEST_DATABASE_URL    (default local PostgreSQL)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}/release"
# Loopback without TLS, as a database on the same host is normally reached.
db="${HDS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
scratch="$(mktemp -d)"
logs="${TMPDIR:-/tmp}/hds-bench-medtech-logs"
run_id="bench_$(date +%s)_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$db" -qc "DROP SCHEMA IF EXISTS ${run_id}_ops CASCADE; DROP SCHEMA IF EXISTS ${run_id}_fhir CASCADE; DROP SCHEMA IF EXISTS ${run_id}_medtech CASCADE" >/dev/null 2>&1 || true
  # The services' logs of the last run stay for a look afterwards.
  rm -rf "$logs"; mkdir -p "$logs"; cp "$scratch"/*.log "$logs/" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
trap "exit 1" INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }
wait_instance() {
  for _ in $(seq 1 300); do curl -sf "$1/instances" | grep -q "$2" && return 0; sleep 0.2; done
  echo "$1 never got instance $2" >&2; cat "$scratch"/*.log >&2; exit 1
}

cargo build --release -p medtech-svc -p fhir-svc -p operations-svc -p hds-bench --bins

# Kafka-compatible broker, on SQLite. Not tansu's memory:// engine, as bench/fhir.sh uses:
# here the topic is read back, and that engine acknowledged 200,000 produced messages of which
# the topic then held 190,908.
kafka_port=$(free_port)
(cd "$scratch" && exec tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine sqlite://tansu.db) > "$scratch/tansu.log" 2>&1 &
tansu_pid=$!
pids+=($tansu_pid)
# tansu 0.6's SQLite engine runs every storage operation on one task, the group coordinator's
# included, and fetches a record's headers with one query per record from a table `header`
# it gives no index: each device message read scanned every header row of the broker, and
# fhir-svc's events (one per resource written, two or three headers each) add rows all the
# time. Draining 200,000 messages that task ran at 100% of a core, the pipeline slowed to
# about 1,300 messages/s, no heartbeat or commit was answered for 6 s and then 20 s
# (SESSTMOUT/REQTMOUT in every service's log), librdkafka dropped its connections, and with
# a reply's receiver gone the storage task ended: tansu answered nothing more (and panicked at
# tansu-storage service.rs:337 in update_group). So the broker's database gets the index that
# lookup needs, before any client connects (tansu is not changed; a real Kafka needs none).
python3 - "$scratch/tansu.db" <<'PY'
import sqlite3, sys, time
for _ in range(100):
    try:
        db = sqlite3.connect(sys.argv[1], timeout=10)
        if db.execute("select 1 from sqlite_master where type = 'table' and name = 'header'").fetchone():
            db.execute("create index if not exists header_record on header (topition, offset_id)")
            db.commit()
            sys.exit(0)
    except sqlite3.Error:
        pass
    time.sleep(0.1)
sys.exit("tansu.db: no table header to index")
PY
# Besides, tansu serves up to 5 MB of one partition (about 30,000 device messages) in one
# storage operation, during which nothing else is answered: medtech-svc asks for 1 MB at a
# time (the least librdkafka allows with the default message.max.bytes), and the sessions
# outlast a slow answer. Delivery is unchanged: commits still follow the writes.
common=(HDS_BUS__KIND=kafka "HDS_BUS__KAFKA__BROKERS=127.0.0.1:$kafka_port" "HDS_DATABASE__URL=$db" RUST_LOG=warn
  HDS_BUS__KAFKA__SESSION_TIMEOUT_MS=20000)
sleep 1

ops_port=$(free_port); fhir_port=$(free_port); medtech_port=$(free_port)
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_ops" HDS_BOOTSTRAP__WORKSPACE=bench \
  HDS_BOOTSTRAP__DICOM_SERVICE= \
  "$target/operations-svc" --bind "127.0.0.1:$ops_port" > "$scratch/ops.log" 2>&1 &
pids+=($!)
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_fhir" \
  "$target/fhir-svc" --bind "127.0.0.1:$fhir_port" > "$scratch/fhir.log" 2>&1 &
fhir_pid=$!
pids+=($fhir_pid)
flush_messages="${MEDTECH_FLUSH_MESSAGES:-50000}"
# fetch.wait.max.ms 50: tansu seems to hold a fetch for all of it even when messages arrive
# meanwhile; with librdkafka's 500 ms the latency phase's p50 was half a second longer.
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_medtech" \
  HDS_BUS__KAFKA__PROPERTIES__FETCH_MAX_BYTES=1048576 HDS_BUS__KAFKA__PROPERTIES__FETCH_WAIT_MAX_MS=50 \
  "HDS_MEDTECH__FHIR_BASE_URL=http://127.0.0.1:$fhir_port" \
  "HDS_MEDTECH__FLUSH_MESSAGES=$flush_messages" \
  ${MEDTECH_CONCURRENT_WRITES:+"HDS_MEDTECH__CONCURRENT_WRITES=$MEDTECH_CONCURRENT_WRITES"} \
  "$target/medtech-svc" --bind "127.0.0.1:$medtech_port" > "$scratch/medtech.log" 2>&1 &
medtech_pid=$!
pids+=($medtech_pid)
wait_http "http://127.0.0.1:$fhir_port/health/ready"
wait_http "http://127.0.0.1:$medtech_port/health/ready"
wait_instance "http://127.0.0.1:$fhir_port" bench-fhir
wait_instance "http://127.0.0.1:$medtech_port" bench-medtech

pg_port=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlparse(sys.argv[1]).port or 5432)' "$db")
# shellcheck disable=SC2086
HDS_MEDTECH__FLUSH_MESSAGES="$flush_messages" "$target/medtech-bench" ${MEDTECH_BENCH_ARGS:-} \
  --brokers "127.0.0.1:$kafka_port" \
  --medtech "http://127.0.0.1:$medtech_port" --instance bench-medtech \
  --fhir "http://127.0.0.1:$fhir_port" --fhir-instance bench-fhir \
  --pid "medtech-svc=$medtech_pid" --pid "fhir-svc=$fhir_pid" --pid "tansu=$tansu_pid" \
  --pg-port "$pg_port"

for log in medtech fhir ops; do
  if grep -qiE '(^|[^a-z])(error|panic)' "$scratch/$log.log"; then
    # grep -m, not | head: under pipefail head's early exit (SIGPIPE) failed the script.
    echo; echo "errors in the $log log (first 10):"; grep -m 10 -iE '(^|[^a-z])(error|panic)' "$scratch/$log.log"
  fi
done
# tansu logs an ERROR for every "topic already exists"; a panic is what matters there.
if grep -q 'panicked' "$scratch/tansu.log"; then
  echo; echo "tansu panicked:"; grep -m 5 -A1 'panicked' "$scratch/tansu.log"
fi
