#!/usr/bin/env bash
# make bench-dicom: dicom-svc on PostgreSQL + S3 (s3s-fs) + Kafka (tansu) and the Orthanc peer
# (Debian orthanc + orthanc-dicomweb), started here on loopback with fresh state, given the same
# DICOMweb load by dicom-bench (STOW, QIDO, WADO, metadata), one after the other. Prints a
# table with the ratios hds/Orthanc and whether the bars of issue 4 hold.
#   HDS_TEST_DATABASE_URL (default local PostgreSQL)
#   DICOM_BENCH_ARGS: extra dicom-bench options, e.g. "--small 200 --large 40 --queries 50 --reads 100"
#     or "--rows QIDO,study" (only the rows whose labels start so)
#   DICOM_BENCH_BUILD=0: skip the cargo build and use the release binaries as they are
#   DICOM_BENCH_STATE: a folder that keeps the stored set between runs (blobs, Orthanc's
#     folders, the broker, the PostgreSQL schemas, the UID seed). The first run with it stores
#     and measures everything; later runs (same --small/--large) restart the services on the
#     kept state (new migrations apply to it) and skip the STOW rows (--reads-only). Remove the
#     folder and drop its schemas (named in DIR/run_id) to start over.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}/release"
# Loopback without TLS, as a database on the same host is normally reached (a Unix socket has
# none either); with sslmode=prefer both sides also spend CPU on encryption.
db="${HDS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
state="${DICOM_BENCH_STATE:-}"
bench_args=()
if [ -n "$state" ]; then
  mkdir -p "$state"
  scratch="$(cd "$state" && pwd)"
  [ -f "$scratch/run_id" ] || echo "bench_$(date +%s)_$$" > "$scratch/run_id"
  [ -f "$scratch/seed" ] || od -An -N7 -tu8 /dev/urandom | tr -d ' ' > "$scratch/seed"
  run_id="$(cat "$scratch/run_id")"
  bench_args+=(--seed "$(cat "$scratch/seed")")
  if [ -f "$scratch/loaded" ]; then
    bench_args+=(--reads-only)
    echo "bench-dicom: reusing the set stored in $scratch (reads only)"
  fi
else
  scratch="$(mktemp -d)"
  run_id="bench_$(date +%s)_$$"
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -z "$state" ]; then
    psql "$db" -qc "DROP SCHEMA IF EXISTS ${run_id}_ops CASCADE; DROP SCHEMA IF EXISTS ${run_id}_dicom CASCADE" >/dev/null 2>&1 || true
    rm -rf "$scratch"
  fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

# The peer, from Debian, once.
orthanc_plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
if ! command -v Orthanc >/dev/null 2>&1 || [ ! -f "$orthanc_plugin" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "bench-dicom: installing the peer from Debian: apt-get install -y orthanc orthanc-dicomweb"
  $sudo apt-get install -y orthanc orthanc-dicomweb || { $sudo apt-get update && $sudo apt-get install -y orthanc orthanc-dicomweb; }
fi

# DICOM_BENCH_BUILD=0: use the release binaries as they are (built already, e.g. while
# another build holds cargo's lock).
if [ "${DICOM_BENCH_BUILD:-1}" != 0 ]; then
  cargo build --release -p dicom-svc -p operations-svc -p hds-bench --bins
fi

# Kafka-compatible broker and S3-compatible store
kafka_port=$(free_port)
(cd "$scratch" && exec tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine sqlite://tansu.db) > "$scratch/tansu.log" 2>&1 &
tansu_pid=$!
pids+=($tansu_pid)
s3_port=$(free_port)
mkdir -p "$scratch/s3"
s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key test --secret-key test "$scratch/s3" > "$scratch/s3s.log" 2>&1 &
s3_pid=$!
pids+=($s3_pid)
common=(HDS_BUS__KIND=kafka "HDS_BUS__KAFKA__BROKERS=127.0.0.1:$kafka_port" "HDS_DATABASE__URL=$db")
sleep 1

ops_port=$(free_port); dicom_port=$(free_port)
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_ops" HDS_BOOTSTRAP__WORKSPACE=bench \
  HDS_BOOTSTRAP__FHIR_SERVICE= HDS_BOOTSTRAP__MEDTECH_SERVICE= RUST_LOG=warn \
  "$target/operations-svc" --bind "127.0.0.1:$ops_port" > "$scratch/ops.log" 2>&1 &
pids+=($!)
env "${common[@]}" HDS_DATABASE__SCHEMA="${run_id}_dicom" HDS_BLOBS__KIND=s3 \
  HDS_BLOBS__S3__BUCKET=bench-dicom "HDS_BLOBS__S3__ENDPOINT=http://127.0.0.1:$s3_port" \
  HDS_BLOBS__S3__ACCESS_KEY_ID=test HDS_BLOBS__S3__SECRET_ACCESS_KEY=test RUST_LOG=warn \
  "$target/dicom-svc" --bind "127.0.0.1:$dicom_port" > "$scratch/dicom.log" 2>&1 &
dicom_pid=$!
pids+=($dicom_pid)
wait_http "http://127.0.0.1:$dicom_port/health/ready"
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$dicom_port/instances" | grep -q bench-dicom && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$dicom_port/instances" | grep -q bench-dicom || { echo "dicom-svc never got instance bench-dicom" >&2; cat "$scratch/ops.log" "$scratch/dicom.log" >&2; exit 1; }

# The peer: its own storage and index folders, HTTP on a free port, no DICOM port, no auth.
orthanc_port=$(free_port)
mkdir -p "$scratch/orthanc"
cat > "$scratch/orthanc.json" <<EOF
{
  "Name": "bench",
  "StorageDirectory": "$scratch/orthanc/storage",
  "IndexDirectory": "$scratch/orthanc/index",
  "HttpPort": $orthanc_port,
  "DicomServerEnabled": false,
  "DicomPort": $(free_port),
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": ["$orthanc_plugin"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": false }
}
EOF
Orthanc "$scratch/orthanc.json" > "$scratch/orthanc.log" 2>&1 &
orthanc_pid=$!
pids+=($orthanc_pid)
wait_http "http://127.0.0.1:$orthanc_port/system"

pg_port=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlparse(sys.argv[1]).port or 5432)' "$db")
# shellcheck disable=SC2086
"$target/dicom-bench" ${DICOM_BENCH_ARGS:-} ${bench_args[@]+"${bench_args[@]}"} \
  --target "hds=http://127.0.0.1:$dicom_port/bench-dicom/v2,pid=$dicom_pid,pid=$s3_pid,pid=$tansu_pid,pg=$pg_port" \
  --target "orthanc=http://127.0.0.1:$orthanc_port/dicom-web,pid=$orthanc_pid"
[ -z "$state" ] || touch "$scratch/loaded"

for log in dicom ops orthanc; do
  if grep -qiE '(^|[^a-z])(error|panic)' "$scratch/$log.log"; then
    echo; echo "errors in the $log log (first 10):"; grep -iE '(^|[^a-z])(error|panic)' "$scratch/$log.log" | head -10
  fi
done
