//! Paging of every list of the management API: `{ value, nextLink }` pages of
//! `[management] page_size` items (or `$top`), `nextLink` an absolute URL that works as
//! given and is absent on the last page. On SQLite + the embedded bus and on PostgreSQL +
//! Kafka (tansu), with the real data plane so that every kind of resource can exist.

mod common;

use common::{header, Backend, Stack, GROUP, SUB};
use reqwest::Method;
use serde_json::{json, Value};

/// PUT, then follow the operation to its end.
async fn create(stack: &Stack, url: &str, body: &Value) {
    let res = stack.send(Method::PUT, url, Some(body)).await;
    assert_eq!(res.status(), 201, "{url}");
    let done = stack.wait(&header(&res, "azure-asyncoperation")).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
}

/// The names on each page of a list, following `nextLink` exactly as given.
async fn pages(stack: &Stack, list: &str) -> Vec<Vec<String>> {
    let names = |v: &Value| -> Vec<String> {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, mut page) = stack.json(Method::GET, list, None).await;
    assert_eq!(status, 200, "{page}");
    let mut all = vec![names(&page)];
    while let Some(next) = page.get("nextLink") {
        let next = next.as_str().unwrap().to_owned();
        assert!(next.starts_with(&stack.base), "absolute: {next}");
        assert!(
            next.contains("api-version=2024-03-31"),
            "usable as given: {next}"
        );
        let res = stack.http.get(&next).send().await.unwrap();
        assert_eq!(res.status(), 200, "{next}");
        page = res.json().await.unwrap();
        all.push(names(&page));
        assert!(all.len() < 10, "nextLink never ends");
    }
    all
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn every_list_pages_with_next_links(backend: Backend) {
    let stack = Stack::with_data_plane_and(backend, |s| s.management.page_size = 2).await;
    let loc = json!({"location": "westus2"});
    for ws in ["pga", "pgb", "pgc"] {
        create(&stack, &stack.workspace_url(ws), &loc).await;
    }
    let elsewhere = format!(
        "{}/subscriptions/{SUB}/resourceGroups/other/providers/Microsoft.HealthcareApis/workspaces/pgd",
        stack.base
    );
    create(&stack, &elsewhere, &loc).await;

    let group = format!(
        "{}/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces",
        stack.base
    );
    assert_eq!(
        pages(&stack, &group).await,
        vec![strings(&["pga", "pgb"]), strings(&["pgc"])]
    );
    let subscription = format!(
        "{}/subscriptions/{SUB}/providers/Microsoft.HealthcareApis/workspaces",
        stack.base
    );
    assert_eq!(
        pages(&stack, &subscription).await,
        vec![strings(&["pgd", "pga"]), strings(&["pgb", "pgc"])],
        "in id order: resource group 'other' sorts before '{GROUP}'"
    );
    // $top overrides the page size, and nextLink keeps it.
    let (_, first) = stack
        .json(Method::GET, &format!("{subscription}?$top=3"), None)
        .await;
    assert_eq!(first["value"].as_array().unwrap().len(), 3);
    assert!(first["nextLink"].as_str().unwrap().contains("$top=3"));
    assert_eq!(
        pages(&stack, &format!("{subscription}?$top=4")).await.len(),
        1,
        "exactly one full page: no nextLink"
    );

    let ws = stack.workspace_url("pga");
    let fhir_id = format!(
        "/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces/pga/fhirservices/svc1"
    );
    for kind in ["fhirservices", "dicomservices", "iotconnectors"] {
        for name in ["svc1", "svc2", "svc3"] {
            create(&stack, &format!("{ws}/{kind}/{name}"), &loc).await;
        }
        assert_eq!(
            pages(&stack, &format!("{ws}/{kind}")).await,
            vec![strings(&["svc1", "svc2"]), strings(&["svc3"])],
            "{kind}"
        );
    }
    let destination = json!({"location": "westus2", "properties": {
        "resourceIdentityResolutionType": "Create", "fhirServiceResourceId": fhir_id,
        "fhirMapping": {"content": {"templateType": "CollectionFhirTemplate", "template": [
            {"templateType": "CodeValueFhir", "template": {"typeName": "heartrate",
             "value": {"valueType": "Quantity", "valueName": "hr", "unit": "count/min"},
             "codes": [{"system": "http://loinc.org", "code": "8867-4"}]}}]}}}});
    // A connector has one destination (as Azure's MedTech service): a one-item list.
    let connector = format!("{ws}/iotconnectors/svc1");
    create(
        &stack,
        &format!("{connector}/fhirdestinations/dst1"),
        &destination,
    )
    .await;
    let (status, refused) = stack
        .json(
            Method::PUT,
            &format!("{connector}/fhirdestinations/dst2"),
            Some(&destination),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "QuotaExceeded");
    assert_eq!(
        pages(&stack, &format!("{connector}/fhirdestinations")).await,
        vec![strings(&["dst1"])]
    );
    assert_eq!(
        pages(&stack, &format!("{ws}/fhirservices?$top=1"))
            .await
            .len(),
        3
    );

    // A bad $top or $skipToken is the client's mistake.
    for query in ["$top=0", "$top=x", "$top=1001", "$skipToken=zz"] {
        let (status, body) = stack
            .json(Method::GET, &format!("{group}?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "InvalidRequestContent", "{query}");
    }
}

macro_rules! suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            #[tokio::test]
            async fn every_list_pages_with_next_links() {
                super::every_list_pages_with_next_links($backend).await
            }
        }
    };
}

suite!(embedded, super::Backend::Embedded);
suite!(kafka, super::Backend::Kafka);
