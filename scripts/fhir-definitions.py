#!/usr/bin/env python3
"""Derives the vendored R4 definitions of fhir-svc and fhir-validation from the official
package (CC0).

Source: npm `hl7.fhir.r4.examples@4.0.1` (downloaded with `npm pack` into
~/.cache/hds-fhir once). Output, under crates/fhir-svc/definitions/r4/:
  resource-types.txt       every concrete resource type, one per line, sorted
  compartments.json        {compartment: {member type: [reference parameters]}}
  composite-parameters.json  the composite SearchParameters: code, base, context expression,
                           components [{type, expression relative to the context}]
  search-parameters.json   every SearchParameter with an expression, compact:
                           [{"code", "type", "base": [...], "expression", "target"?: [...]}],
                           sorted
and under crates/fhir-validation/definitions/r4/ (a JSON array, one object per line):
  structures.json          the snapshot elements of every base resource and datatype
                           (derivation specialization; no profiles, no logical models).
                           A type's root line carries `kind` (and `abstract`, and for a
                           primitive its `regex`); each element line carries `path`, `min`,
                           `max` and either `types` or `contentReference`, `plain` when the
                           element is a bare JSON value without a `_name` companion
                           (Element.id, Extension.url, Resource.id), and `binding` (the value
                           set canonical) only for required bindings.
  value-sets.json          every value set of a required binding: {"url", "version",
                           "codes": {system: [code, ...]}} when the package enumerates it
                           (a compose of concept lists and whole code systems the package
                           defines completely, nested concepts included; failing that, a
                           closed expansion in Bundle-valueset-expansions.json over such
                           code systems), or {"url", "version", "skipped": reason}.

Rerun after changing what is derived; the output is committed.
`--fetch-only` just makes sure the package is in the cache (the test suite reads its examples).
"""
import glob
import json
import os
import subprocess
import sys
import tarfile

PACKAGE = "hl7.fhir.r4.examples@4.0.1"
CACHE = os.path.expanduser("~/.cache/hds-fhir")
TARBALL = os.path.join(CACHE, "hl7.fhir.r4.examples-4.0.1.tgz")
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "fhir-svc", "definitions", "r4")
VALIDATION_OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "fhir-validation", "definitions", "r4")

FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
# Expansions flagged with these are partial by their own admission.
PARTIAL_EXPANSION_EXTS = (
    "http://hl7.org/fhir/StructureDefinition/valueset-toocostly",
    "http://hl7.org/fhir/StructureDefinition/valueset-unclosed",
)


def package_dir():
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(TARBALL):
        subprocess.run(["npm", "pack", PACKAGE], cwd=CACHE, check=True, stdout=subprocess.DEVNULL)
    target = os.path.join(CACHE, "package")
    if not os.path.isdir(target):
        with tarfile.open(TARBALL) as t:
            t.extractall(CACHE, filter="data")
    return target


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_lines(path, objects):
    """A JSON array with one compact object per line, so that diffs stay readable."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(o, separators=(",", ":"), ensure_ascii=False) for o in objects) + "\n]\n")


def extension_value(extensions, url):
    for ext in extensions or []:
        if ext.get("url") == url:
            return next(v for k, v in ext.items() if k.startswith("value"))
    return None


def base_structures(pkg):
    """Resources and datatypes as the spec defines them: specializations (plus the abstract
    roots Element and Resource, which have no derivation), no profiles, no logical models."""
    sds = []
    for path in glob.glob(os.path.join(pkg, "StructureDefinition-*.json")):
        sd = load(path)
        if sd.get("kind") in ("resource", "complex-type", "primitive-type") and sd.get("derivation") != "constraint":
            sds.append(sd)
    sds.sort(key=lambda sd: sd["type"])
    return sds


def element_types(element):
    """The type codes of an element, and whether it is `plain`.

    The elements typed with FHIRPath system types (Element.id, Extension.url, Resource.id) are
    XML attributes in the XML format and bare values in JSON: they can carry no extensions, so
    they have no `_name` companion. Their FHIR type is in the fhir-type extension. Resource.id
    is published as `string` there, but the spec defines it as `id` (resource.html#id), which
    is what every server enforces."""
    types, plain = [], False
    for t in element["type"]:
        code = t["code"]
        if code.startswith(FHIRPATH_SYSTEM):
            plain = True
            code = extension_value(t.get("extension"), FHIR_TYPE_EXT)
            if element["base"]["path"] == "Resource.id":
                code = "id"
        types.append(code)
    return types, plain


def structure_lines(sds):
    lines, required_value_sets = [], set()
    for sd in sds:
        root = {"path": sd["type"], "kind": sd["kind"]}
        if sd.get("abstract"):
            root["abstract"] = True
        elements = sd["snapshot"]["element"]
        if sd["kind"] == "primitive-type":
            # A primitive's id/extension are those of every `_name` companion; only the
            # format of its value is its own.
            value = next(e for e in elements if e["path"] == sd["type"] + ".value")
            regex = extension_value(value["type"][0].get("extension"), REGEX_EXT)
            if regex is not None:
                root["regex"] = regex
            lines.append(root)
            continue
        lines.append(root)
        for e in elements[1:]:
            line = {"path": e["path"], "min": e["min"], "max": e["max"]}
            # Which elements `_summary=true` returns.
            if e.get("isSummary"):
                line["summary"] = True
            if "contentReference" in e:
                line["contentReference"] = e["contentReference"]
            else:
                line["types"], plain = element_types(e)
                if plain:
                    line["plain"] = True
            binding = e.get("binding")
            if binding and binding.get("strength") == "required" and binding.get("valueSet"):
                line["binding"] = binding["valueSet"]
                required_value_sets.add(binding["valueSet"])
            lines.append(line)
    return lines, required_value_sets


def concept_codes(concepts):
    """The codes of a CodeSystem's concepts, nested ones included."""
    for c in concepts or []:
        yield c["code"]
        yield from concept_codes(c.get("concept"))


def enumerate_compose(vs, code_systems):
    """{system: set(codes)} of a value set's compose, or (None, why not)."""
    compose = vs.get("compose") or {}
    if compose.get("exclude"):
        return None, "compose has exclusions"
    codes = {}
    for inc in compose.get("include", []):
        system = inc.get("system")
        if inc.get("valueSet"):
            return None, "imports other value sets"
        if inc.get("filter"):
            return None, "filter on " + system
        if system is None:
            return None, "include without a system"
        if inc.get("concept"):
            codes.setdefault(system, set()).update(c["code"] for c in inc["concept"])
            continue
        cs = code_systems.get(system)
        if cs is None:
            return None, "all of " + system + ", which the package does not define"
        if cs.get("content") != "complete":
            return None, "all of " + system + ", published with content " + str(cs.get("content"))
        codes.setdefault(system, set()).update(concept_codes(cs.get("concept")))
    if not codes:
        return None, "empty compose"
    return codes, None


def enumerate_expansion(expansion, code_systems):
    """{system: set(codes)} of a published expansion when it is complete and closed, else None.

    Only code systems the package defines count: an expansion of an external code system
    (ISO 4217 currencies, say) is a 2018 snapshot of something that keeps changing, and
    checking against it would reject codes that are valid today."""
    if expansion is None:
        return None
    if any(ext.get("url") in PARTIAL_EXPANSION_EXTS for ext in expansion.get("extension", [])):
        return None
    codes, count = {}, 0
    stack = list(expansion.get("contains", []))
    while stack:
        c = stack.pop()
        stack.extend(c.get("contains", []))
        if "code" in c:
            if c.get("system") not in code_systems:
                return None
            codes.setdefault(c["system"], set()).add(c["code"])
            count += 1
    if count == 0 or expansion.get("total", count) != count:
        return None
    return codes


def value_set_lines(pkg, canonicals):
    value_sets = {}
    for path in glob.glob(os.path.join(pkg, "ValueSet-*.json")):
        vs = load(path)
        value_sets[vs["url"]] = vs
    code_systems = {}
    for path in glob.glob(os.path.join(pkg, "CodeSystem-*.json")):
        cs = load(path)
        code_systems[cs["url"]] = cs
    expansions = {}
    for entry in load(os.path.join(pkg, "Bundle-valueset-expansions.json"))["entry"]:
        vs = entry["resource"]
        expansions[(vs["url"], vs.get("version"))] = vs.get("expansion")
    lines, skipped = [], []
    for canonical in sorted(canonicals):
        url, _, version = canonical.partition("|")
        line = {"url": url, "version": version or None}
        vs = value_sets.get(url)
        if vs is None:
            why = "not in the package"
        elif version and vs.get("version") != version:
            why = "version " + version + " not in the package (it has " + str(vs.get("version")) + ")"
        else:
            line["version"] = vs.get("version")
            codes, why = enumerate_compose(vs, code_systems)
            if codes is None:
                codes = enumerate_expansion(expansions.get((url, vs.get("version"))), code_systems)
                if codes is not None:
                    why = None
        if why is None:
            line["codes"] = {system: sorted(c) for system, c in sorted(codes.items())}
        else:
            line["skipped"] = why
            skipped.append(canonical + ": " + why)
        lines.append(line)
    return lines, skipped


def write_validation_definitions(pkg):
    lines, required_value_sets = structure_lines(base_structures(pkg))
    vs_lines, skipped = value_set_lines(pkg, required_value_sets)
    os.makedirs(VALIDATION_OUT, exist_ok=True)
    write_lines(os.path.join(VALIDATION_OUT, "structures.json"), lines)
    write_lines(os.path.join(VALIDATION_OUT, "value-sets.json"), vs_lines)
    print(f"{len(lines)} structure lines, {len(vs_lines)} required value sets, {len(skipped)} not enumerable:", file=sys.stderr)
    for s in skipped:
        print("  " + s, file=sys.stderr)


def main():
    pkg = package_dir()
    if "--fetch-only" in sys.argv:
        print(pkg)
        return
    write_validation_definitions(pkg)
    types = []
    for path in glob.glob(os.path.join(pkg, "StructureDefinition-*.json")):
        with open(path, encoding="utf-8") as f:
            sd = json.load(f)
        if sd.get("kind") == "resource" and sd.get("derivation") == "specialization" and not sd.get("abstract"):
            types.append(sd["type"])
    types.sort()
    params = []
    for path in glob.glob(os.path.join(pkg, "SearchParameter-*.json")):
        with open(path, encoding="utf-8") as f:
            sp = json.load(f)
        if sp.get("expression") and sp.get("type") not in ("composite", "special"):
            param = {
                "code": sp["code"],
                "type": sp["type"],
                "base": sorted(sp["base"]),
                "expression": sp["expression"],
            }
            # The types a reference parameter can point at (chained search needs them).
            if sp["type"] == "reference" and sp.get("target"):
                param["target"] = sorted(sp["target"])
            params.append(param)
    params.sort(key=lambda p: (p["code"], p["base"], p["expression"]))
    # A few parameters are published twice (e.g. `_id` as `Resource.id` and as `id`): keep one.
    seen = set()
    params = [p for p in params if (p["code"], tuple(p["base"])) not in seen and not seen.add((p["code"], tuple(p["base"])))]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "search-parameters.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(p, separators=(",", ":")) for p in params) + "\n]\n")
    # Composite parameters: the context expression and, per component, the type of the
    # parameter it stands for and its expression relative to the context.
    by_url = {}
    composites = []
    for path in glob.glob(os.path.join(pkg, "SearchParameter-*.json")):
        with open(path, encoding="utf-8") as f:
            sp = json.load(f)
        by_url[sp.get("url")] = sp
        if sp.get("type") == "composite" and sp.get("expression"):
            composites.append(sp)
    out = []
    for sp in composites:
        components = [{"type": by_url.get(c["definition"], {}).get("type"), "expression": c["expression"]}
                      for c in sp.get("component", [])]
        if any(c["type"] is None for c in components):
            continue
        out.append({"code": sp["code"], "base": sorted(sp["base"]), "expression": sp["expression"],
                    "components": components})
    out.sort(key=lambda p: (p["code"], p["base"]))
    with open(os.path.join(OUT, "composite-parameters.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(p, separators=(",", ":")) for p in out) + "\n]\n")
    # Compartments (Patient, Encounter, RelatedPerson, Practitioner, Device): for each member
    # type, the reference parameters that put a resource in the compartment.
    compartments = {}
    for name in ["patient", "encounter", "relatedPerson", "practitioner", "device"]:
        with open(os.path.join(pkg, f"CompartmentDefinition-{name}.json"), encoding="utf-8") as f:
            cd = json.load(f)
        compartments[cd["code"]] = {r["code"]: sorted(r["param"]) for r in cd["resource"] if r.get("param")}
    with open(os.path.join(OUT, "compartments.json"), "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(
            json.dumps(code) + ":" + json.dumps(members, sort_keys=True, separators=(",", ":"))
            for code, members in sorted(compartments.items())) + "\n}\n")
    with open(os.path.join(OUT, "resource-types.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(types) + "\n")
    print(f"{len(types)} resource types, {len(params)} search parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
