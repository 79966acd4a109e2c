#!/usr/bin/env bash
# Installs the real servers the test suite starts on loopback, once; later runs reuse them.
#   tansu   - a Kafka-compatible broker (needs the sqlite storage engine: --features dynostore,libsql)
#   s3s-fs  - an S3-compatible server over a folder (0.14.1: later versions need a newer rustc)
#   hl7.fhir.r4.examples - the official R4 examples (npm, CC0), read by fhir-svc's tests
#   fhirpy, fhirclient   - real FHIR clients (PyPI), in a virtualenv at ~/.cache/hds-py
#   fhirpathpy           - a FHIRPath evaluator (PyPI) to check crates/fhirpath against, same venv
#   dicomweb-client, pydicom-data - a real DICOMweb client and real DICOM files (PyPI), same venv
# PostgreSQL is not installed here: the suite uses HDS_TEST_DATABASE_URL (default: the local server).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/$1" ]; }

if ! have s3s-fs; then
  echo "installing s3s-fs (about 2 minutes, once)"
  cargo install s3s-fs@0.14.1 --features binary --locked
fi
if ! have tansu; then
  echo "installing tansu (about 10-15 minutes on 2 cores, once)"
  cargo install tansu@0.6.0 --features dynostore,libsql --locked
fi
python3 "$(dirname "$0")/fhir-definitions.py" --fetch-only >/dev/null
venv="${HDS_PY_VENV:-$HOME/.cache/hds-py/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check fhirpy==2.3.1 fhirclient==4.4.0
# fhirpathpy - the reference FHIRPath evaluator of crates/fhirpath's differential test
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check fhirpathpy==2.2.4
# dicomweb-client and pydicom-data (80-odd real DICOM files) for dicom-svc's client scenario
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check dicomweb-client==0.61.2 pydicom-data==1.0.0
# azure-mgmt-healthcareapis - the real Azure management SDK, for operations-svc's SDK scenario
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check azure-mgmt-healthcareapis==2.1.0
