#!/usr/bin/env python3
"""Derives fhir-svc's vendored R4 definitions from the official package (CC0).

Source: npm `hl7.fhir.r4.examples@4.0.1` (downloaded with `npm pack` into
~/.cache/hds-fhir once). Output, under crates/fhir-svc/definitions/r4/:
  resource-types.txt       every concrete resource type, one per line, sorted
  search-parameters.json   every SearchParameter with an expression, compact:
                           [{"code", "type", "base": [...], "expression"}], sorted

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


def package_dir():
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(TARBALL):
        subprocess.run(["npm", "pack", PACKAGE], cwd=CACHE, check=True, stdout=subprocess.DEVNULL)
    target = os.path.join(CACHE, "package")
    if not os.path.isdir(target):
        with tarfile.open(TARBALL) as t:
            t.extractall(CACHE, filter="data")
    return target


def main():
    pkg = package_dir()
    if "--fetch-only" in sys.argv:
        print(pkg)
        return
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
            params.append({
                "code": sp["code"],
                "type": sp["type"],
                "base": sorted(sp["base"]),
                "expression": sp["expression"],
            })
    params.sort(key=lambda p: (p["code"], p["base"], p["expression"]))
    # A few parameters are published twice (e.g. `_id` as `Resource.id` and as `id`): keep one.
    seen = set()
    params = [p for p in params if (p["code"], tuple(p["base"])) not in seen and not seen.add((p["code"], tuple(p["base"])))]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "search-parameters.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(p, separators=(",", ":")) for p in params) + "\n]\n")
    with open(os.path.join(OUT, "resource-types.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(types) + "\n")
    print(f"{len(types)} resource types, {len(params)} search parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
