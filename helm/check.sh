#!/usr/bin/env bash
# Offline checks of the hds Helm chart: helm lint, helm template of several value sets (and
# of value sets that must be refused), Kubernetes schema validation of what is rendered, and
# the rendered service configuration against the crates' settings. See helm/check.py.
#
# Needs Python >= 3.11 and PyPI (once); installs into a virtualenv outside the repository
# (HDS_CHECK_VENV, default ~/.cache/hds-deploy-check). Helm itself comes as Helm's Go SDK
# inside the helm-python-sdk wheel: no helm binary, no Go, no cluster.
#
#   helm/check.sh            # all checks; last line "N passed, N failed"
#   helm/check.sh --print    # also print the chart rendered with its default values
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${HDS_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hds-deploy-check}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "helm/check.sh: needs Python >= 3.11 (set PYTHON=...)" >&2; exit 2; }
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "helm-python-sdk==0.2.2" "kubernetes-validate==1.37.0" "PyYAML==6.0.4"
exec "$venv/bin/python" "$here/check.py" "$@"
