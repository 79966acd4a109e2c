"""The FHIR service through two real Python clients, fhirpy and fhirclient (SMART).

Run by crates/hds/tests/fhir_clients.rs against `hds up`:  python fhir_clients.py BASE_URL
Exits 0 when every step behaved as FHIR R4 says; an assertion names the step that did not.
"""
import sys

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from fhirclient import client as smart_client
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.patient import Patient

BASE = sys.argv[1].rstrip("/")
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def fhirpy_scenario():
    c = SyncFHIRClient(BASE)

    # create, read, update
    p = c.resource("Patient", name=[{"family": "Fhirpy", "given": ["Py"]}], gender="female",
                   identifier=[{"system": "urn:hds:test", "value": "fp-1"}])
    p.save()
    assert p.id and p.meta.versionId == "1", p
    p.gender = "male"
    p.save()
    assert p.meta.versionId == "2", p
    assert c.reference("Patient", p.id).to_resource().gender == "male"

    # vread and history
    v1 = c.execute(f"Patient/{p.id}/_history/1", method="get")
    assert v1["gender"] == "female", v1
    history = c.execute(f"Patient/{p.id}/_history", method="get")
    assert history["type"] == "history" and len(history["entry"]) == 2, history

    # conditional create: If-None-Exist finds the patient, writes nothing
    body, status = c._do_request("post", "Patient", data={"resourceType": "Patient"},
                                 extra_headers={"If-None-Exist": "identifier=urn:hds:test|fp-1"},
                                 returning_status=True)
    assert status == 200 and body["id"] == p.id, (status, body)

    # conditional update: creates, then updates the same resource
    search = c.resources("Patient").search(identifier="urn:hds:test|fp-2")
    first, created = search.update(c.resource("Patient", active=True,
                                              identifier=[{"system": "urn:hds:test", "value": "fp-2"}]))
    assert created, first
    second, created = search.update(c.resource("Patient", active=False,
                                               identifier=[{"system": "urn:hds:test", "value": "fp-2"}]))
    assert not created and second.id == first.id and second.meta.versionId == "2", second

    # JSON Patch
    patched = c._do_request("patch", f"Patient/{p.id}",
                            data=[{"op": "add", "path": "/active", "value": True}],
                            extra_headers=JSON_PATCH)
    assert patched["active"] is True and patched["meta"]["versionId"] == "3", patched

    # a transaction: a patient and an observation about it
    bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:7c3f5a50-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "name": [{"family": "InTx"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                          "subject": {"reference": "urn:uuid:7c3f5a50-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    result = c.execute(BASE, method="post", data=bundle)
    assert result["type"] == "transaction-response", result
    patient_id = result["entry"][0]["resource"]["id"]
    observation = result["entry"][1]["resource"]
    assert observation["subject"]["reference"] == f"Patient/{patient_id}", observation

    # conditional delete, then delete
    search.delete()
    try:
        c.reference("Patient", first.id).to_resource()
        raise AssertionError("conditionally deleted patient still readable")
    except ResourceNotFound:
        pass
    c.delete("Patient", p.id)
    try:
        c.reference("Patient", p.id).to_resource()
        raise AssertionError("deleted patient still readable")
    except ResourceNotFound:
        pass


def fhirpy_search_scenario():
    """Search through fhirpy: multi-key sort and paging to the end, _include, _revinclude."""
    c = SyncFHIRClient(BASE)
    patients = []
    for i in range(15):
        p = c.resource("Patient", name=[{"family": "Pager", "given": [f"G{i:02d}"]}],
                       birthDate="1990-01-01" if i % 3 == 0 else "2000-01-01")
        p.save()
        patients.append(p)
        c.resource("Observation", status="final",
                   code={"coding": [{"system": "urn:hds:search", "code": "pager"}]},
                   subject={"reference": f"Patient/{p.id}"}).save()

    # Sorted on two keys, four at a time, to the end: every patient once, in order.
    found = c.resources("Patient").search(family="pager").sort("birthdate", "-given").limit(4).fetch_all()
    keys = [(r.birthDate, r.name[0].given[0]) for r in found]
    assert len(keys) == 15 and len({r.id for r in found}) == 15, keys
    assert keys == sorted(keys, key=lambda k: (k[0], [-ord(ch) for ch in k[1]])), keys

    # _include: the observations and, once each, their patients.
    bundle = c.resources("Observation").search(code="urn:hds:search|pager") \
        .include("Observation", "subject").limit(100).fetch_raw()
    modes = {}
    for e in bundle.entry:
        modes.setdefault(e.search.mode, []).append(f"{e.resource.resourceType}/{e.resource.id}")
    assert len(modes["match"]) == 15 and len(set(modes["include"])) == 15 == len(modes["include"]), modes
    assert {r.split("/")[1] for r in modes["include"]} == {p.id for p in patients}

    # _revinclude: the patients and the observations pointing at them.
    bundle = c.resources("Patient").search(family="pager") \
        .revinclude("Observation", "subject").limit(100).fetch_raw()
    kinds = [e.resource.resourceType for e in bundle.entry if e.search.mode == "include"]
    assert kinds.count("Observation") == 15, kinds


def fhirclient_scenario():
    smart = smart_client.FHIRClient(settings={"app_id": "hds-test", "api_base": BASE + "/"})
    # The client parses the CapabilityStatement with its R4 models: it must be valid.
    capability = CapabilityStatement.read_from("metadata", smart.server)
    assert capability.fhirVersion == "4.0.1"
    assert any(r.type == "Patient" for r in capability.rest[0].resource)

    created = Patient({"gender": "other", "name": [{"family": "Smart"}]}).create(smart.server)
    assert created and created["id"], created
    read = Patient.read(created["id"], smart.server)
    assert read.gender == "other"
    read.gender = "unknown"
    read.update(smart.server)
    assert Patient.read(created["id"], smart.server).gender == "unknown"
    read.delete(smart.server)


if __name__ == "__main__":
    fhirpy_scenario()
    fhirpy_search_scenario()
    fhirclient_scenario()
    print("fhirpy and fhirclient: ok")
