# hds: the two commands are `make run` and `make test`.
CARGO ?= cargo
DATA_DIR ?= ./data

.PHONY: run test tools check fmt clippy build check-deploy test-synthea bench-fhir bench-fhir-search bench-dicom bench-medtech

## Start all four services in one process on embedded defaults (SQLite, local folder, embedded bus).
run:
	$(CARGO) run --release -p hds -- up --data-dir $(DATA_DIR)

## The whole suite: installs tansu and s3s-fs once, then runs every test against them and PostgreSQL.
test: tools
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

tools:
	./scripts/test-tools.sh

build:
	$(CARGO) build --workspace --release

check: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Offline checks of deploy/ and helm/ (no Docker engine or cluster needed; installs its
## Python tools into ~/.cache/hds-deploy-check once).
check-deploy:
	./helm/check.sh
	./deploy/check.sh

## Load all 122 Synthea bundles into fhir-svc on SQLite and on PostgreSQL + Kafka, and check
## counts and references (release build; ../shared/data/synthea or HDS_SYNTHEA_DIR).
test-synthea: tools
	HDS_SYNTHEA_LIMIT=all $(CARGO) test --release -p fhir-svc --test synthea -- --nocapture

## FHIR benchmark: fhir-svc on PostgreSQL (+ tansu) against the Medplum FHIR router peer, same
## Synthea load and reads, one run (see bench/fhir.sh).
bench-fhir: tools
	./bench/fhir.sh

## FHIR search benchmark: fhir-svc on PostgreSQL (+ tansu); Synthea plus copies with new ids
## up to SCALE_RESOURCES (default 1000000), typical searches at concurrency 1 and 8 with
## p50/p99, EXPLAIN of each, and the bars of the FHIR search issue (see bench/fhir-search.sh).
bench-fhir-search: tools
	./bench/fhir-search.sh

## DICOM benchmark: dicom-svc on PostgreSQL + S3 (s3s-fs, + tansu) against Orthanc (installed
## from Debian if missing), same synthetic STOW/QIDO/WADO load, one run (see bench/dicom.sh).
bench-dicom: tools
	./bench/dicom.sh

## MedTech benchmark: medtech-svc and fhir-svc on PostgreSQL + tansu; 1M device messages
## (MEDTECH_BENCH_MESSAGES for fewer) for pipeline throughput, then end-to-end latency at
## 1,000 messages/s, with CPU seconds (see bench/medtech.sh).
bench-medtech: tools
	./bench/medtech.sh
