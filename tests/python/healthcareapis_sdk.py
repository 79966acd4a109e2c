"""The real Azure SDK for Python (azure-mgmt-healthcareapis) against hds' management API.

Usage: healthcareapis_sdk.py BASE_URL [all|create|delete]

Phase `create` creates a workspace, a FHIR service, a DICOM service, an IoT connector and its
FHIR destination (the MedTech issue's worked example: blood pressure, resolution type Create);
lists and gets them; reads operation results; patches tags; then prints one line
`created: {json}` with the FHIR service's id. Phase `delete` deletes them in reverse order and
sees 404s. `all` (the default) runs both. Prints "azure-mgmt-healthcareapis: ok" at the end of
each run; a caller may check the data plane between the two phases.
"""

import json

import sys
from urllib.parse import urlparse

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.mgmt.healthcareapis import HealthcareApisManagementClient
from azure.mgmt.healthcareapis import models

SUB = "00000000-0000-0000-0000-0000000000aa"
RG = "sdk-rg"
WS = "sdkws"
LOC = "westus2"


class FakeCredential:
    """hds on loopback runs without auth; the SDK still wants a credential."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("fake", 4102444800)


class HttpBearerPolicy(BearerTokenCredentialPolicy):
    """azure-core refuses bearer tokens over http unless told; hds in tests is plain http."""

    def on_request(self, request):
        request.context.options["enforce_https"] = False
        super().on_request(request)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def client_for(base):
    cred = FakeCredential()
    client = HealthcareApisManagementClient(
        cred,
        SUB,
        base_url=base,
        authentication_policy=HttpBearerPolicy(cred, "https://management.azure.com/.default"),
        polling_interval=0.2,
    )
    return client


def create(client):
    operation_urls = []

    def remember(response):
        url = response.http_response.headers.get("Azure-AsyncOperation")
        if url:
            operation_urls.append(url)

    ws = client.workspaces.begin_create_or_update(
        RG, WS, models.Workspace(location=LOC, tags={"env": "sdk"}), raw_response_hook=remember
    ).result()
    check(ws.name == WS and ws.properties.provisioning_state == "Succeeded", ws)

    fhir = client.fhir_services.begin_create_or_update(
        RG,
        WS,
        "fhir1",
        models.FhirService(
            location=LOC,
            kind="fhir-R4",
            authentication_configuration=models.FhirServiceAuthenticationConfiguration(
                authority="https://login.example.org/tenant", audience="https://sdkws-fhir1.example.org"
            ),
        ),
        raw_response_hook=remember,
    ).result()
    check(fhir.provisioning_state == "Succeeded", fhir)
    check(fhir.kind == "fhir-R4", fhir)
    check(fhir.authentication_configuration.audience == "https://sdkws-fhir1.example.org", fhir)

    dicom = client.dicom_services.begin_create_or_update(
        RG, WS, "dicom1", models.DicomService(location=LOC), raw_response_hook=remember
    ).result()
    check(dicom.provisioning_state == "Succeeded", dicom)

    device_mapping = {
        "templateType": "CollectionContent",
        "template": [
            {
                "templateType": "JsonPathContent",
                "template": {
                    "typeName": "bloodpressure",
                    "typeMatchExpression": "$..[?(@systolic && @diastolic)]",
                    "deviceIdExpression": "$.deviceid",
                    "patientIdExpression": "$.patientid",
                    "timestampExpression": "$.measurementdatetime",
                    "values": [
                        {"valueName": "systolic", "valueExpression": "$.systolic", "required": True},
                        {"valueName": "diastolic", "valueExpression": "$.diastolic", "required": True},
                    ],
                },
            }
        ],
    }
    iot = client.iot_connectors.begin_create_or_update(
        RG,
        WS,
        "iot1",
        models.IotConnector(
            location=LOC,
            ingestion_endpoint_configuration=models.IotEventHubIngestionEndpointConfiguration(
                event_hub_name="devices", consumer_group="medtech"
            ),
            device_mapping=models.IotMappingProperties(content=device_mapping),
        ),
        raw_response_hook=remember,
    ).result()
    check(iot.provisioning_state == "Succeeded", iot)
    check(iot.device_mapping.content == device_mapping, iot.device_mapping.content)

    quantity = {"valueType": "Quantity", "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    fhir_mapping = {
        "templateType": "CollectionFhir",
        "template": [
            {
                "templateType": "CodeValueFhir",
                "template": {
                    "typeName": "bloodpressure",
                    "periodInterval": 0,
                    "codes": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}],
                    "components": [
                        {
                            "codes": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}],
                            "value": dict(valueName="systolic", **quantity),
                        },
                        {
                            "codes": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}],
                            "value": dict(valueName="diastolic", **quantity),
                        },
                    ],
                },
            }
        ],
    }
    dest = client.iot_connector_fhir_destination.begin_create_or_update(
        RG,
        WS,
        "iot1",
        "dest1",
        models.IotFhirDestination(
            location=LOC,
            resource_identity_resolution_type="Create",
            fhir_service_resource_id=fhir.id,
            fhir_mapping=models.IotMappingProperties(content=fhir_mapping),
        ),
        raw_response_hook=remember,
    ).result()
    check(dest.provisioning_state == "Succeeded", dest)
    check(dest.fhir_mapping.content == fhir_mapping, dest.fhir_mapping.content)

    # Lists and gets.
    check([w.name for w in client.workspaces.list_by_subscription()] == [WS], "workspaces by subscription")
    check([w.name for w in client.workspaces.list_by_resource_group(RG)] == [WS], "workspaces by group")
    check([f.name for f in client.fhir_services.list_by_workspace(RG, WS)] == ["fhir1"], "fhir list")
    check([d.name for d in client.dicom_services.list_by_workspace(RG, WS)] == ["dicom1"], "dicom list")
    check([i.name for i in client.iot_connectors.list_by_workspace(RG, WS)] == ["iot1"], "iot list")
    check([d.name for d in client.fhir_destinations.list_by_iot_connector(RG, WS, "iot1")] == ["dest1"], "dest list")
    check(client.workspaces.get(RG, WS).tags == {"env": "sdk"}, "workspace get")
    check(client.fhir_services.get(RG, WS, "fhir1").id == fhir.id, "fhir get")
    check(client.dicom_services.get(RG, WS, "dicom1").name == "dicom1", "dicom get")
    check(client.iot_connectors.get(RG, WS, "iot1").name == "iot1", "iot get")
    check(client.iot_connector_fhir_destination.get(RG, WS, "iot1", "dest1").name == "dest1", "dest get")
    check(len(list(client.operations.list())) > 0, "provider operations")

    # Operation results of every creation.
    check(len(operation_urls) == 5, operation_urls)
    for url in operation_urls:
        parts = urlparse(url).path.split("/")
        location, operation_id = parts[-3], parts[-1]
        result = client.operation_results.get(location, operation_id)
        check(result.status == "Succeeded" and result.end_time is not None, result)

    # Tags by PATCH.
    patched = client.fhir_services.begin_update(
        RG, "fhir1", WS, models.FhirServicePatchResource(tags={"owner": "sdk"})
    ).result()
    check(patched.tags == {"owner": "sdk"}, patched.tags)
    patched = client.workspaces.begin_update(RG, WS, models.WorkspacePatchResource(tags={"env": "patched"})).result()
    check(patched.tags == {"env": "patched"}, patched.tags)
    # The service name comes before the workspace name in these (the spec's order).
    patched = client.dicom_services.begin_update(
        RG, "dicom1", WS, models.DicomServicePatchResource(tags={"t": "1"})
    ).result()
    check(patched.tags == {"t": "1"}, patched.tags)
    patched = client.iot_connectors.begin_update(
        RG, "iot1", WS, models.IotConnectorPatchResource(tags={"t": "2"})
    ).result()
    check(patched.tags == {"t": "2"}, patched.tags)
    check(client.iot_connectors.get(RG, WS, "iot1").provisioning_state == "Succeeded", "iot after patch")
    return {"fhirServiceId": fhir.id, "iotConnectorId": iot.id}


def delete(client):
    # Deletion in reverse order, then 404s.
    client.iot_connector_fhir_destination.begin_delete(RG, WS, "iot1", "dest1").result()
    # Keywords: these deletes take the service name before the workspace name.
    client.iot_connectors.begin_delete(resource_group_name=RG, workspace_name=WS, iot_connector_name="iot1").result()
    client.dicom_services.begin_delete(resource_group_name=RG, workspace_name=WS, dicom_service_name="dicom1").result()
    client.fhir_services.begin_delete(resource_group_name=RG, workspace_name=WS, fhir_service_name="fhir1").result()
    client.workspaces.begin_delete(RG, WS).result()
    for get in [
        lambda: client.iot_connector_fhir_destination.get(RG, WS, "iot1", "dest1"),
        lambda: client.iot_connectors.get(RG, WS, "iot1"),
        lambda: client.dicom_services.get(RG, WS, "dicom1"),
        lambda: client.fhir_services.get(RG, WS, "fhir1"),
        lambda: client.workspaces.get(RG, WS),
    ]:
        try:
            get()
        except ResourceNotFoundError as e:
            check(e.status_code == 404, e)
        else:
            raise AssertionError("still there after delete")

    # ARM errors reach the SDK as such.
    try:
        client.fhir_services.get(RG, WS, "fhir1")
    except HttpResponseError as e:
        check(e.error is not None and e.error.code in ("ResourceNotFound",), e.error)



def main(base, phase):
    client = client_for(base)
    if phase in ("all", "create"):
        created = create(client)
        print("created: " + json.dumps(created), flush=True)
    if phase in ("all", "delete"):
        delete(client)
    print("azure-mgmt-healthcareapis: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "all")
