#!/usr/bin/env python3
"""Offline checks of the hds Helm chart (helm/hds). Run it through helm/check.sh, which
installs what it needs into a virtualenv; no cluster and no network beyond PyPI are used.

What it does:
  1. `helm lint --strict` of the chart, with Helm's own Go SDK (Helm v4, bundled in the
     helm-python-sdk wheel as libhelm_c.so; the same code as `helm lint`).
  2. Renders the chart like `helm template` for several value sets, and validates every
     rendered manifest against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
     unknown fields are errors) of the oldest and newest Kubernetes versions it supports.
  3. Renders value sets that must be refused, and checks the message (auth disabled, no
     key, no brokers, no database, ...).
  4. Parses every rendered config.toml and checks its keys against the services' settings
     (the `deny_unknown_fields` structs, read from crates/*/src at run time), and the HDS_*
     environment variables of every Deployment likewise; checks that what a service needs
     at start is there (bind, brokers, auth issuer/audience/key, S3 bucket and keys), that
     the files it reads are mounted, and ports, probes, securityContext, resources.
  5. Checks that every `.Values...` path a template reads exists in values.yaml (a typo there
     renders silently as empty).

Exit status 0 when everything passed; the last line is "N passed, N failed".
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE / "hds"
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]

# The settings each service accepts, read from the Rust sources: the `Settings` struct of
# each service crate and the structs its fields name (all `deny_unknown_fields`), so a key
# renamed in the crates makes this check fail instead of drifting. A nested dict is a
# table, None a scalar, "*" a map of any keys (bus.kafka.properties).
REPO = HERE.parent
STRUCT = re.compile(r"pub struct (\w+)\s*\{(.*?)\n\}", re.S)
FIELD = re.compile(r"^\s*pub (\w+):\s*(.+?),?\s*$", re.M)


def rust_structs() -> dict[str, dict[str, dict[str, str]]]:
    """crate name -> struct name -> field -> type, for every brace struct in crates/*/src."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for rs in sorted((REPO / "crates").glob("*/src/**/*.rs")):
        crate = rs.relative_to(REPO / "crates").parts[0]
        for m in STRUCT.finditer(rs.read_text()):
            fields = {f.group(1): f.group(2).strip() for f in FIELD.finditer(m.group(2))}
            out.setdefault(crate, {})[m.group(1)] = fields
    return out


def settings_tree(structs: dict, crate: str) -> dict:
    def lookup(name: str) -> dict[str, str] | None:
        if name in structs.get(crate, {}):
            return structs[crate][name]
        return structs.get("hds-core", {}).get(name)

    def tree(fields: dict[str, str]) -> dict:
        node: dict = {}
        for field, ty in fields.items():
            inner = re.sub(r"^Option<(.*)>$", r"\1", ty)
            if inner.startswith(("BTreeMap<", "HashMap<")):
                node[field] = "*"
                continue
            sub = lookup(inner)
            node[field] = tree(sub) if sub else None
        return node

    top = structs.get(crate, {}).get("Settings")
    if top is None:
        raise SystemExit(f"check.py: no `pub struct Settings` in crates/{crate}/src")
    return tree(top)


SETTINGS = {c: settings_tree(rust_structs(), c)
            for c in ("operations-svc", "fhir-svc", "dicom-svc", "medtech-svc")}
PORTS = {"operations-svc": 8080, "fhir-svc": 8081, "dicom-svc": 8082, "medtech-svc": 8083}

PEM = """-----BEGIN PUBLIC KEY-----
bm90IGEgcmVhbCBrZXk6IHRoZSBjaGFydCBvbmx5IGNvcGllcyBpdCBpbnRvIGEg
bm90IGEgcmVhbCBrZXk6IHRoZSBjaGFydCBvbmx5IGNvcGllcyBpdCBpbnRvIGEg
bm90IGEgcmVhbCBrZXk6IHRoZSBjaGFydCBvbmx5IGNvcGllcyBpdCBpbnRvIGEg
-----END PUBLIC KEY-----
"""  # placeholder: the chart only copies it

# Value sets that must render, each checked in full.
GOOD = {
    "defaults": {},
    "inline-secrets-pem-local-blobs": {
        "image": {"registry": "registry.example.test/hds/", "tag": "1.2.3"},
        "imagePullSecrets": [{"name": "pull"}],
        "database": {"url": "postgres://hds:p%40ss@db.example.test:5432/hds"},
        "kafka": {"brokers": "k1:9092,k2:9092", "replicationFactor": 3,
                  "properties": {"client.rack": "zone-a", "socket.keepalive.enable": True}},
        "s3": {"accessKeyId": "AKIA", "secretAccessKey": 'se"cr\\et'},
        "auth": {"issuer": "https://login.example.test/tenant/v2.0", "audience": "api://hds",
                 "publicKeyPem": PEM},
        "telemetry": {"logFormat": "text", "logFilter": "info,fhir_svc=debug",
                      "otlpEndpoint": "http://otel-collector:4318"},
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
        "podLabels": {"team": "health"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "hds", "effect": "NoSchedule"}],
        "services": {
            "operations": {"bootstrap": {"enabled": False}, "publicBaseUrl": "https://ops.example.test"},
            "fhir": {"replicas": 3, "maxBodyBytes": 1048576,
                     "database": {"existingSecret": "fhir-db", "existingSecretKey": "url"},
                     "service": {"type": "LoadBalancer", "port": 443},
                     "nodeSelector": {"kubernetes.io/os": "linux"},
                     "exports": {"kind": "local", "local": {"existingClaim": "fhir-exports"}}},
            "dicom": {"blobs": {"kind": "local", "local": {"existingClaim": "dicom-blobs"}}},
            "medtech": {"enabled": False},
        },
    },
    "jwks-s3-endpoint": {
        "auth": {"jwksUrl": "https://login.example.test/keys", "existingPublicKeySecret": ""},
        "s3": {"endpoint": "http://minio.storage:9000", "partSizeBytes": 16777216},
        "metrics": {"podAnnotations": False},
        "services": {"operations": {"bootstrap": {"workspace": "contoso", "location": "westeurope"}}},
    },
    "no-exports-local-dicom": {
        "services": {"fhir": {"exports": {"kind": "none"}},
                     "dicom": {"blobs": {"kind": "local"}}},
    },
}

# Value sets that must be refused, with a piece of the expected message.
BAD = {
    "auth-disabled": ({"auth": {"enabled": False}}, "auth.enabled must be true"),
    "no-issuer": ({"auth": {"issuer": ""}}, "auth.issuer is required"),
    "no-key": ({"auth": {"existingPublicKeySecret": ""}}, "auth needs a key"),
    "no-brokers": ({"kafka": {"brokers": ""}}, "kafka.brokers is required"),
    "no-database": ({"database": {"existingSecret": ""}}, "no database"),
    "sqlite-url": ({"database": {"url": "sqlite://hds.db"}}, "must be a PostgreSQL URL"),
    "bad-schema": ({"services": {"fhir": {"database": {"schema": "Fhir-1"}}}}, "schema"),
    "no-s3-credentials": ({"s3": {"existingSecret": ""}}, "needs S3 credentials"),
    "s3-key-without-secret": ({"s3": {"accessKeyId": "AKIA"}}, "s3.secretAccessKey is required"),
    "bad-blob-kind": ({"services": {"dicom": {"blobs": {"kind": "azure"}}}}, "kind"),
    "bad-exports-kind": ({"services": {"fhir": {"exports": {"kind": "azure"}}}}, "kind"),
    "no-exports-bucket": ({"services": {"fhir": {"exports": {"bucket": ""}}}},
                          "services.fhir.exports.bucket is required"),
    "exports-without-s3-credentials": (
        {"s3": {"existingSecret": ""}, "services": {"dicom": {"blobs": {"kind": "local"}}}},
        "fhir-svc (exports) needs S3 credentials"),
    "bootstrap-empty-name": ({"services": {"operations": {"bootstrap": {"dicomService": ""}}}},
                             "cannot leave a bootstrapped service out"),
    "misspelt-key": ({"services": {"fhir": {"replica": 2}}}, "replica"),
    "misspelt-top-level": ({"kafak": {"brokers": "x:9092"}}, "kafak"),
}


class Checker:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"ok   {what}")

    def fail(self, what: str, why: str) -> None:
        self.failed += 1
        print(f"FAIL {what}: {why}")

    def check(self, what: str, cond: bool, why: str = "") -> None:
        if cond:
            self.ok(what)
        else:
            self.fail(what, why)


def render(values: dict) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name="hds-check", namespace="hds")


def documents(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def toml_key_errors(table: dict, allowed, prefix: str = "") -> list[str]:
    errors = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if allowed == "*":
            continue
        if key not in allowed:
            errors.append(f"unknown key {path}")
            continue
        sub = allowed[key]
        if isinstance(value, dict):
            if sub is None:
                errors.append(f"{path} must not be a table")
            else:
                errors.extend(toml_key_errors(value, sub, path + "."))
        elif isinstance(sub, dict):
            errors.append(f"{path} must be a table")
    return errors


def known_path(settings: dict, path: list[str]) -> bool:
    node = settings
    for part in path:
        if node == "*":
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is None or node == "*"


def check_rendering(c: Checker, name: str, values: dict) -> None:
    try:
        rendered = render(values)
    except helm.HelmError as e:
        c.fail(f"[{name}] renders", str(e).strip().splitlines()[-1])
        return
    c.ok(f"[{name}] renders")
    docs = documents(rendered)
    kinds = sorted({d["kind"] for _, d in docs})
    c.ok(f"[{name}] {len(docs)} manifests: {', '.join(kinds)}")

    # Kubernetes schemas, strict.
    for version in KUBE_VERSIONS:
        bad = []
        for path, doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                bad.append(f"{path} {doc['kind']}/{doc['metadata']['name']}: {e.message}")
        c.check(f"[{name}] valid Kubernetes {version} (strict)", not bad, "; ".join(bad))

    by_kind: dict[tuple[str, str], dict] = {(d["kind"], d["metadata"]["name"]): d for _, d in docs}
    for (kind, res_name), dep in by_kind.items():
        if kind != "Deployment":
            continue
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        label = f"[{name}] {component}"
        cm = by_kind.get(("ConfigMap", res_name))
        if cm is None:
            c.fail(f"{label} has its ConfigMap", f"no ConfigMap {res_name}")
            continue
        try:
            config = tomllib.loads(cm["data"]["config.toml"])
        except tomllib.TOMLDecodeError as e:
            c.fail(f"{label} config.toml parses", str(e))
            continue
        c.ok(f"{label} config.toml parses")
        errors = toml_key_errors(config, SETTINGS[component])
        c.check(f"{label} config.toml has only known keys", not errors, "; ".join(errors))

        env = {e["name"]: e for e in container.get("env", [])}
        unknown_env = []
        for var in env:
            if var.startswith("HDS_") and var != "HDS_CONFIG":
                path = var[len("HDS_"):].lower().split("__")
                if not known_path(SETTINGS[component], path):
                    unknown_env.append(var)
        c.check(f"{label} HDS_* variables name known keys", not unknown_env, ", ".join(unknown_env))
        c.check(f"{label} database URL comes from a Secret",
                "secretKeyRef" in env.get("HDS_DATABASE__URL", {}).get("valueFrom", {}),
                "HDS_DATABASE__URL is not a secretKeyRef")

        # What the service needs at start, file and environment together.
        missing = []
        if "bind" not in config.get("http", {}):
            missing.append("http.bind")
        if config.get("bus", {}).get("kind") != "kafka" or not config["bus"].get("kafka", {}).get("brokers"):
            missing.append("bus.kafka.brokers")
        auth = config.get("auth", {})
        if auth.get("enabled") is not True:
            missing.append("auth.enabled = true")
        for k in ("issuer", "audience"):
            if not auth.get(k):
                missing.append(f"auth.{k}")
        if not (auth.get("jwks_url") or auth.get("public_key_file") or auth.get("public_key_pem")):
            missing.append("an auth key")
        if component == "dicom-svc":
            blobs = config.get("blobs", {})
            if blobs.get("kind") == "s3":
                for var in ("HDS_BLOBS__S3__ACCESS_KEY_ID", "HDS_BLOBS__S3__SECRET_ACCESS_KEY"):
                    if var not in env:
                        missing.append(var)
                if not blobs.get("s3", {}).get("bucket"):
                    missing.append("blobs.s3.bucket")
            elif not blobs.get("local", {}).get("path"):
                missing.append("blobs.local.path")
        if component == "fhir-svc":
            # compose's fhir-svc has [exports]; so must the chart's, unless turned off.
            exports = config.get("exports")
            wanted = values.get("services", {}).get("fhir", {}).get("exports", {}).get("kind", "s3")
            if wanted == "none":
                if exports is not None:
                    missing.append("no [exports] with services.fhir.exports.kind = none")
            elif not exports or exports.get("kind") != wanted:
                missing.append(f"exports.kind = {wanted}")
            elif wanted == "s3":
                for var in ("HDS_EXPORTS__S3__ACCESS_KEY_ID", "HDS_EXPORTS__S3__SECRET_ACCESS_KEY"):
                    if var not in env:
                        missing.append(var)
                if not exports.get("s3", {}).get("bucket"):
                    missing.append("exports.s3.bucket")
            else:
                path = exports.get("local", {}).get("path", "")
                mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
                if not path or path not in mounted:
                    missing.append("exports.local.path, mounted")
        c.check(f"{label} configuration is complete", not missing, ", ".join(missing))

        # The file the service reads and the key it trusts are mounted.
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        files = [env.get("HDS_CONFIG", {}).get("value", "")]
        if auth.get("public_key_file"):
            files.append(auth["public_key_file"])
        unmounted = [f for f in files if not any(f.startswith(p.rstrip("/") + "/") for p in mounts.values())]
        c.check(f"{label} config and key files are mounted", not unmounted, ", ".join(unmounted))
        volumes = {v["name"] for v in pod.get("volumes", [])}
        c.check(f"{label} every mount has a volume", set(mounts) <= volumes,
                ", ".join(sorted(set(mounts) - volumes)))

        port = int(config["http"]["bind"].rsplit(":", 1)[1])
        if not values:
            c.check(f"{label} listens on its default port {PORTS[component]}",
                    port == PORTS[component], f"binds {port}")
        c.check(f"{label} containerPort matches http.bind",
                container["ports"][0]["containerPort"] == port,
                f"{container['ports'][0]['containerPort']} != {port}")
        probes = {p: container.get(p, {}).get("httpGet", {}).get("path")
                  for p in ("livenessProbe", "readinessProbe", "startupProbe")}
        c.check(f"{label} probes", probes == {"livenessProbe": "/health/live",
                                              "readinessProbe": "/health/ready",
                                              "startupProbe": "/health/live"}, str(probes))
        sc = pod.get("securityContext", {})
        c.check(f"{label} runs as non-root", sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0,
                str(sc))
        c.check(f"{label} has resources", bool(container.get("resources", {}).get("requests"))
                and bool(container.get("resources", {}).get("limits")), "no requests/limits")
        svc = by_kind.get(("Service", res_name))
        c.check(f"{label} has its Service",
                svc is not None and svc["spec"]["ports"][0]["targetPort"] == "http"
                and svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
                "missing, or it selects other pods")

    # Secrets referenced by the chart's own Secret exist with those keys.
    own = [d for (k, _), d in by_kind.items() if k == "Secret"]
    for (kind, _), dep in by_kind.items():
        if kind != "Deployment":
            continue
        for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if not ref:
                continue
            for s in own:
                if s["metadata"]["name"] == ref["name"]:
                    c.check(f"[{name}] {e['name']} key exists in the chart's Secret",
                            ref["key"] in s.get("stringData", {}), f"no key {ref['key']}")


def check_refusals(c: Checker) -> None:
    for name, (values, expected) in BAD.items():
        try:
            render(values)
        except helm.HelmError as e:
            msg = str(e)
            c.check(f"[{name}] is refused", expected in msg,
                    f"refused, but the message lacks '{expected}': {msg.strip()[:300]}")
        else:
            c.fail(f"[{name}] is refused", "it rendered")


def check_lint(c: Checker) -> None:
    for version in KUBE_VERSIONS:
        report = helm.lint(str(CHART), strict=True, kube_version=f"v{version}")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        problems += [{"error": e} for e in report.get("errors", [])]
        infos = [m["error"] for m in report.get("messages", []) if m.get("severity", 0) < 2]
        c.check(f"helm lint --strict (kube {version})", not problems,
                "; ".join(str(p.get("error")) for p in problems))
        for i in infos:
            print(f"     lint info: {i}")


VALUE_REF = re.compile(r"(\.Values|\$root\.Values|\.root\.Values|\$v|\$s|\$b|\$d|\$f)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def check_value_references(c: Checker) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    services = values["services"]
    aliases = {
        ".Values": [values], "$root.Values": [values], ".root.Values": [values], "$v": [values],
        "$s": list(services.values()),
        "$b": [services["operations"]["bootstrap"]],
        "$d": [services["dicom"]],
        "$f": [services["fhir"]],
    }
    missing = []
    for tpl in sorted((CHART / "templates").rglob("*")):
        if not tpl.is_file():
            continue
        text = tpl.read_text()
        for m in VALUE_REF.finditer(text):
            base, path = m.group(1), m.group(2).strip(".").split(".")
            # `$s := index $v.services $key` then `$s.x`: any one service having x will do.
            found = False
            for root in aliases[base]:
                node = root
                ok = True
                for part in path:
                    if isinstance(node, dict) and part in node:
                        node = node[part]
                    else:
                        ok = False
                        break
                if ok:
                    found = True
                    break
            if not found:
                missing.append(f"{tpl.relative_to(CHART)}: {base}.{'.'.join(path)}")
    c.check("templates read only values that values.yaml defines", not missing,
            "; ".join(sorted(set(missing))))


def check_schema(c: Checker) -> None:
    json.loads((CHART / "values.schema.json").read_text())
    c.ok("values.schema.json parses")
    with helm.Chart.load(str(CHART)) as chart:
        try:
            chart.validate_schema({})
            c.ok("values.yaml satisfies values.schema.json")
        except helm.HelmError as e:
            c.fail("values.yaml satisfies values.schema.json", str(e))


def main() -> int:
    if "--settings-json" in sys.argv:
        # For deploy/check.sh: the settings tree of every service, as read from the crates.
        print(json.dumps(SETTINGS))
        return 0
    print(f"Helm SDK {helm.helm_sdk_version()} (libhelm_c {helm.helm_c_version()}); "
          f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    c = Checker()
    check_lint(c)
    check_schema(c)
    check_value_references(c)
    for name, values in GOOD.items():
        check_rendering(c, name, values)
    check_refusals(c)
    if "--print" in sys.argv:
        for path, text in sorted(render({}).items()):
            print(f"---\n# Source: {path}\n{text}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    helm.disable_logging()
    sys.exit(main())
