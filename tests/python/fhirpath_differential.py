"""Differential test of hds's FHIRPath evaluator (crate fhirpath) against fhirpathpy (PyPI),
over the R4 SearchParameters fhir-svc indexes and the official R4 examples.

Run by crates/fhirpath/tests/r4_search_differential.rs:

    python fhirpath_differential.py SEARCH_PARAMS COMPOSITES PACKAGE_DIR OURS.jsonl

SEARCH_PARAMS and COMPOSITES are crates/fhir-svc/definitions/r4/{search,composite}-
parameters.json, PACKAGE_DIR the npm package hl7.fhir.r4.examples, OURS.jsonl what hds's
evaluator extracted: one line `{"file", "param", "values"}` (or `"error": true` where the
evaluation failed) per example file and parameter of its resourceType. A composite is one
line `"param": "composite:CODE"` whose values are its context items, each as
`{"context": item, "components": [values of each component, evaluated on the item]}`.

Every example is evaluated with fhirpathpy and its R4 model, for every parameter whose `base`
holds the example's resourceType or `Resource`, and every composite of that type except the
4 whose components read `%resource` (fhir-svc does not index those). Output on stdout, one
JSON object per line:
    {"mismatch": {"file", "param", "expression", "ours", "theirs"}}   each disagreement
    {"summary": {...counts...}}                                          last line

What the comparison normalises, and nothing else (order and duplicates count):
- numbers: compared by decimal value (`1.50` equals `1.5`, `2` equals `2.0`). The examples
  are read with decimals as `Decimal`, so fhirpathpy keeps their digits as hds does; the
  value comparison only forgives trailing zeroes and exponent notation;
- computed fhirpathpy values (FP_DateTime, FP_Quantity, ...) are compared as their text;
- an evaluation error matches an evaluation error (hds's `Expr::try_evaluate` gives Err,
  fhirpathpy raises); an error on one side only is a mismatch.

Where fhirpathpy cannot evaluate an R4 expression as written, it is given one that means
what hds implements, and each such case is counted in the summary:
- `resolve()` is not implemented by fhirpathpy (it cannot fetch): it is given one that
  resolves as hds does without fetching (fhirpath crate, `resolve()`): `#id` is the contained
  resource with that id (`#` alone the resource itself); a reference inside a Bundle is the
  entry whose fullUrl equals it or, for a relative reference, whose resource has its type
  and id; anything else is a stub `{"resourceType": T, "id": id}` with T the type named by
  the reference's last `Type/id` (ignoring `|version`, `/_history/n`, `?...`, `#...`) or else
  by `Reference.type`. So `where(resolve() is Patient)` compares the reference's type;
- `hasExtension(url)` (in one R4 expression, not defined by FHIRPath) is true when an item
  has an extension with that url, i.e. `extension(url).exists()`;
- a leading `Resource.` (the six common parameters `_id`, `_lastUpdated`, ...) is replaced by
  the example's resourceType: fhirpathpy matches a leading type name only against the exact
  resourceType, not its base types;
- `(X as T)` is given as `(X.ofType(T))` only when fhirpathpy raised because X has several
  items: hds documents that its `as` filters like `ofType` (R4 indexes every
  `Observation.component.value as Quantity`), which FHIRPath N1 calls an error;
- `as(DateTime)` / `is(DateTime)` / `ofType(DateTime)` (R4's composite `code-value-date`
  says `value.as(DateTime)`) is given with the FHIR type `dateTime`: hds folds the System
  types onto the FHIR primitives (documented in the fhirpath crate), fhirpathpy does not, so
  it would never index a `valueDateTime` there;
- a composite's context is evaluated branch by branch of its top-level `|` (duplicates
  dropped by canonical form, as `|` does by `=`), and each component on the n-th item of its
  branch as `(BRANCH)[n].select(COMPONENT)`: fhirpathpy's `|` rebuilds its items without
  their element paths, after which a choice element (`value` of `valueQuantity`) is no
  longer found.
"""
import json
import os
import re
import sys
from decimal import Decimal

import fhirpathpy
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models

MODEL = models["r4"]

# The resource being evaluated, for resolve() (user functions see only their input).
CURRENT = {"resource": None}


def split_reference(r):
    r = r.split("|")[0]
    r = r.split("/_history/")[0]
    r = re.split(r"[?#]", r)[0]
    parts = r.rstrip("/").split("/")
    if len(parts) < 2:
        return None
    rt, id_ = parts[-2], parts[-1]
    if is_type_name(rt) and id_:
        return rt, id_
    return None


def is_type_name(s):
    return bool(re.fullmatch(r"[A-Z][A-Za-z0-9]*", s))


def in_bundle(resource, reference):
    if resource.get("resourceType") != "Bundle":
        return None
    relative = split_reference(reference)
    for e in resource.get("entry") or []:
        if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
            continue
        res = e["resource"]
        if e.get("fullUrl") == reference:
            return res
        if (relative and ":" not in reference and res.get("resourceType") == relative[0]
                and res.get("id") == relative[1]):
            return res
    return None


def resolve_one(v):
    resource = CURRENT["resource"]
    if isinstance(v, str):
        reference, declared = v, None
    elif isinstance(v, dict):
        reference = v.get("reference") if isinstance(v.get("reference"), str) else None
        declared = v.get("type") if isinstance(v.get("type"), str) else None
    else:
        return None
    if reference is not None:
        if reference.startswith("#"):
            id_ = reference[1:]
            if not id_:
                return resource
            for c in resource.get("contained") or []:
                if isinstance(c, dict) and c.get("id") == id_:
                    return c
            return None
        found = in_bundle(resource, reference)
        if found is not None:
            return found
        split = split_reference(reference)
        if split:
            return {"resourceType": split[0], "id": split[1]}
    if declared is not None and is_type_name(declared):
        return {"resourceType": declared}
    return None


def resolve(inputs):
    out = []
    for v in inputs:
        r = resolve_one(v)
        if r is not None:
            out.append(ResourceNode.create_node(r, r["resourceType"]))
    return out


def has_extension(inputs, url):
    url = url[0] if isinstance(url, list) else url
    return [any(isinstance(i, dict) and any(isinstance(e, dict) and e.get("url") == url
                                            for e in i.get("extension") or [])
                for i in inputs)]


OPTIONS = {
    "userInvocationTable": {
        "resolve": {"fn": resolve, "arity": {0: []}},
        "hasExtension": {"fn": has_extension, "arity": {1: ["String"]}},
    }
}

AS_TYPE = re.compile(r"\(([^()]+?) as ([A-Za-z]+)\)")
SYSTEM_TYPES = re.compile(r"(\b(?:as|is|ofType)\()DateTime(?=\))")


def canon(v):
    """A value as comparable JSON: numbers as normalised decimal text."""
    if isinstance(v, ResourceNode):
        v = v.data
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float, Decimal)):
        d = Decimal(str(v)).normalize()
        return {"#number": "0" if d == 0 else format(d, "f")}
    if isinstance(v, str):
        return v
    if isinstance(v, FP_Type):
        return str(v)
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, list):
        return [canon(x) for x in v]
    return repr(v)


def key(values):
    """Comparable form of a result: the list of its items' canonical JSON, in order."""
    if values is None:
        return None
    return [json.dumps(canon(v), sort_keys=True) for v in values]


COMPILED = {}


def run(expression, resource):
    """fhirpathpy's values, or (None, error text)."""
    if expression not in COMPILED:
        COMPILED[expression] = fhirpathpy.compile(expression, MODEL, OPTIONS)
    CURRENT["resource"] = resource
    return COMPILED[expression](resource, {"resource": resource})


class Differ:
    def __init__(self, ours):
        self.ours = ours
        self.seen = set()
        self.counts = {"examples": 0, "evaluations": 0, "mismatches": 0, "errors_both": 0,
                       "nonempty": 0, "composite_component_evaluations": 0,
                       "resolve_used": 0, "as_rewritten": 0, "system_type_rewritten": 0}

    def evaluate(self, expression, resource):
        """fhirpathpy's values (None on error) and the error text."""
        rewritten = SYSTEM_TYPES.sub(lambda m: m.group(1) + "dateTime", expression)
        if rewritten != expression:
            self.counts["system_type_rewritten"] += 1
            expression = rewritten
        if "resolve()" in expression:
            self.counts["resolve_used"] += 1
        try:
            return run(expression, resource), None
        except Exception as e:  # noqa: BLE001 - fhirpathpy raises plain Exceptions
            error = f"{type(e).__name__}: {e}"
            if "singleton on left side of 'as'" not in str(e):
                return None, error
        self.counts["as_rewritten"] += 1
        try:
            return run(AS_TYPE.sub(r"(\1.ofType(\2))", expression), resource), None
        except Exception as e:  # noqa: BLE001
            return None, f"{type(e).__name__}: {e}"

    def compare(self, name, param, expression, resource):
        theirs, error = self.evaluate(expression, resource)
        self.record(name, param, expression, theirs, error)

    def composite(self, name, d, resource):
        """A composite: the context items, each with its components' values. The context is
        evaluated branch by branch of its top-level union, and when there is a union the
        duplicates (same canonical form, i.e. FHIRPath `=`) are dropped here: fhirpathpy's own `|` rebuilds the items without their element
        paths, after which a choice element (`value` for `valueQuantity`) is not found."""
        param = f"composite:{d['code']}"
        items, seen, error = [], set(), None
        branches = [b.strip() for b in d["expression"].split("|")]
        for branch in branches:
            found, error = self.evaluate(branch, resource)
            if found is None:
                break
            for k, item in enumerate(found):
                c = json.dumps(canon(item), sort_keys=True)
                if len(branches) == 1 or c not in seen:
                    seen.add(c)
                    items.append((branch, k, item))
        theirs = None
        if error is None:
            theirs = []
            for branch, k, item in items:
                components = []
                for c in d["components"]:
                    values, err = self.evaluate(f"({branch})[{k}].select({c['expression']})",
                                                resource)
                    self.counts["composite_component_evaluations"] += 1
                    components.append("error" if values is None else values)
                theirs.append({"context": item, "components": components})
        self.record(name, param, d["expression"], theirs, error)

    def record(self, name, param, expression, theirs, error):
        self.counts["evaluations"] += 1
        if theirs:
            self.counts["nonempty"] += 1
        self.seen.add((name, param))
        mine = self.ours.get((name, param), "missing")
        if theirs is None and mine is None:
            self.counts["errors_both"] += 1
            return
        if mine == "missing" or key(mine) != key(theirs):
            self.counts["mismatches"] += 1
            print(json.dumps({"mismatch": {
                "file": name, "param": param, "expression": expression,
                "ours": "not evaluated" if mine == "missing" else
                ("error" if mine is None else canon(mine)),
                "theirs": f"error ({error})"[:300] if theirs is None else canon(theirs),
            }}))


def main():
    definitions_path, composites_path, package, ours_path = sys.argv[1:5]
    by_type = {}
    for d in json.load(open(definitions_path)):
        for base in d["base"]:
            by_type.setdefault(base, []).append(d)
    composites = {}
    for d in json.load(open(composites_path)):
        # fhir-svc leaves out the 4 whose components read %resource (params.rs).
        if any("%" in c["expression"] for c in d["components"]):
            continue
        for base in d["base"]:
            composites.setdefault(base, []).append(d)

    ours = {}
    with open(ours_path) as f:
        for line in f:
            o = json.loads(line, parse_float=Decimal)
            ours[(o["file"], o["param"])] = None if o.get("error") else o["values"]
    differ = Differ(ours)

    files = sorted(n for n in os.listdir(package) if n.endswith(".json") and n[:1].isupper())
    for name in files:
        # Decimals as Decimal, so that fhirpathpy keeps the digits (as hds does) instead of
        # rounding them to a float.
        resource = json.load(open(os.path.join(package, name)), parse_float=Decimal)
        rt = resource.get("resourceType")
        differ.counts["examples"] += 1
        for d in by_type.get(rt, []) + by_type.get("Resource", []):
            expression = d["expression"]
            if "Resource" in d["base"]:
                expression = re.sub(r"(^|\|\s*)Resource\.", lambda m: m.group(1) + rt + ".",
                                    expression)
            differ.compare(name, d["code"], expression, resource)
        for d in composites.get(rt, []):
            differ.composite(name, d, resource)
    for (name, param) in ours:
        if (name, param) not in differ.seen:
            differ.counts["mismatches"] += 1
            print(json.dumps({"mismatch": {"file": name, "param": param, "expression": None,
                                           "ours": "evaluated", "theirs": "not evaluated"}}))
    print(json.dumps({"summary": differ.counts}))


if __name__ == "__main__":
    main()
