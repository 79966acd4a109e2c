#!/usr/bin/env bash
# make bench-fhir-search: fhir-svc on PostgreSQL (+ Kafka: tansu, in memory) in a database of
# its own, loaded with the Synthea set and then with copies of it under new ids until
# SCALE_RESOURCES resources are stored; then typical searches at concurrency 1 and 8, the
# EXPLAIN of each and PASS/FAIL per bar (fhir-search-bench, crates/hds-bench/src/fhir_search.rs).
#   SCALE_RESOURCES (default 1000000; 100000 for a quick run)  SYNTHEA=dir (default
#   ../shared/data/synthea)  PG=server URL (default postgres://postgres@127.0.0.1:5432)
#   BENCH_DB=database (default hds_bench_search; dropped and created afresh, dropped at the
#   end unless KEEP_DB=1)  SEARCH_BENCH_ARGS (more flags: --requests, --warmup, --parallel)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}/release"
synthea="${SYNTHEA:-$repo/../shared/data/synthea}"
export SCALE_RESOURCES="${SCALE_RESOURCES:-1000000}"
pg="${PG:-postgres://postgres@127.0.0.1:5432}"
bench_db="${BENCH_DB:-hds_bench_search}"
# Loopback without TLS, as in bench/fhir.sh.
db="$pg/$bench_db?sslmode=disable"
scratch="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP_DB:-0}" = 1 ] || psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" || true
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

cargo build --release -p fhir-svc -p operations-svc -p hds-bench \
  --bin fhir-svc --bin operations-svc --bin fhir-search-bench

psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)"
psql "$pg/postgres" -qc "CREATE DATABASE $bench_db"

# Events go to a broker that keeps them in memory: nothing consumes them here (bench/fhir.sh).
kafka_port=$(free_port)
(cd "$scratch" && exec tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/) > "$scratch/tansu.log" 2>&1 &
pids+=($!)
common=(HDS_BUS__KIND=kafka "HDS_BUS__KAFKA__BROKERS=127.0.0.1:$kafka_port" "HDS_DATABASE__URL=$db")
sleep 1

ops_port=$(free_port); fhir_port=$(free_port)
env "${common[@]}" HDS_DATABASE__SCHEMA=ops HDS_BOOTSTRAP__WORKSPACE=bench \
  HDS_BOOTSTRAP__DICOM_SERVICE= HDS_BOOTSTRAP__MEDTECH_SERVICE= RUST_LOG=warn \
  "$target/operations-svc" --bind "127.0.0.1:$ops_port" > "$scratch/ops.log" 2>&1 &
pids+=($!)
env "${common[@]}" HDS_DATABASE__SCHEMA=fhir HDS_FHIR__MAX_BUNDLE_ENTRIES=10000 RUST_LOG=warn \
  "$target/fhir-svc" --bind "127.0.0.1:$fhir_port" > "$scratch/fhir.log" 2>&1 &
fhir_pid=$!
pids+=($fhir_pid)
wait_http "http://127.0.0.1:$fhir_port/health/ready"
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$fhir_port/instances" | grep -q bench-fhir && break; sleep 0.2; done

# shellcheck disable=SC2086
"$target/fhir-search-bench" --base "http://127.0.0.1:$fhir_port/bench-fhir" --synthea "$synthea" \
  --database-url "$db" --schema fhir --instance bench-fhir --pid "$fhir_pid" ${SEARCH_BENCH_ARGS:-} \
  || { echo "fhir-svc log:" >&2; tail -20 "$scratch/fhir.log" >&2; exit 1; }
