//! Paging while others write (R4 search.html#paging; issue 7: keyset paging, opaque tokens).
//!
//! A page is followed by writes that would shift a page counted by position — a new match
//! sorting before the cursor, the removal of a match already seen — and the `next` link
//! must still give exactly the matches after the last one seen, by the search's order.

mod common;

use common::{next_link, Env};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

struct Fhir {
    client: Client,
    base: String,
}

impl Fhir {
    async fn get(&self, path_or_url: &str) -> (StatusCode, Value) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let res = self.client.get(url).send().await.expect("search");
        let status = res.status();
        (status, res.json().await.expect("a JSON body"))
    }

    async fn put(&self, resource: Value) {
        let url = format!("{}/Patient/{}", self.base, resource["id"].as_str().unwrap());
        let res = self
            .client
            .put(&url)
            .header("content-type", "application/fhir+json")
            .json(&resource)
            .send()
            .await
            .expect("put");
        assert!(res.status().is_success(), "PUT {url}: {}", res.status());
    }

    async fn put_patient(&self, id: &str, family: &str, birth: &str) {
        self.put(json!({
            "resourceType": "Patient", "id": id,
            "name": [{"family": family, "given": ["Pat"]}], "birthDate": birth, "active": true,
        }))
        .await
    }

    async fn delete(&self, path: &str) {
        let res = self
            .client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("delete");
        assert!(res.status().is_success(), "DELETE {path}: {}", res.status());
    }
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Page 1 of `query`, then `meanwhile`, then the rest through `next` links.
async fn paged_across_writes(
    fhir: &Fhir,
    query: &str,
    meanwhile: impl AsyncFnOnce(),
) -> (Vec<String>, Vec<String>) {
    let (status, page) = fhir.get(query).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    let first = ids(&page);
    let mut link = next_link(&page);
    if let Some(url) = &link {
        // Opaque: the token is neither the last id nor a position.
        let token = url.split("ct=").nth(1).unwrap_or_default();
        assert!(
            first.last().is_none_or(|id| token != id)
                && !token.starts_with('@')
                && !token.contains("%2F"),
            "{query}: token {token} is not opaque"
        );
    }
    meanwhile().await;
    let mut rest = Vec::new();
    while let Some(url) = link.take() {
        let (status, page) = fhir.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        rest.extend(ids(&page));
        link = next_link(&page);
    }
    (first, rest)
}

async fn paging(env: Env) {
    env.provision("ws1-paging").await;
    let fhir = Fhir {
        client: Client::new(),
        base: env.url("/ws1-paging"),
    };
    // family b..g, born 2001..2006.
    for (i, family) in ["b", "c", "d", "e", "f", "g"].iter().enumerate() {
        fhir.put_patient(&format!("p{i}"), family, &format!("200{}", i + 1))
            .await;
    }

    // Sorted by family: page [b, c]; then "a" arrives before the cursor and "d" (unseen)
    // goes. By position the next page would repeat "c"; by keyset it is e, f, g.
    let (first, rest) = paged_across_writes(&fhir, "/Patient?_sort=family&_count=2", async || {
        fhir.put_patient("pa", "a", "2000").await;
        fhir.delete("/Patient/p2").await;
    })
    .await;
    assert_eq!(first, ["p0", "p1"]);
    assert_eq!(rest, ["p3", "p4", "p5"]);

    // Descending dates with a second key, across a new match that sorts before the cursor.
    let (first, rest) = paged_across_writes(
        &fhir,
        "/Patient?_sort=-birthdate,family&_count=2",
        async || fhir.put_patient("pz", "z", "2010").await,
    )
    .await;
    assert_eq!(first, ["p5", "p4"]);
    assert_eq!(rest, ["p3", "p1", "p0", "pa"]);

    // A resource without a value sorts last, and paging passes it.
    fhir.put(json!({"resourceType": "Patient", "id": "pnone"}))
        .await;
    let (first, rest) =
        paged_across_writes(&fhir, "/Patient?_sort=-family&_count=3", async || {}).await;
    assert_eq!(first, ["pz", "p5", "p4"]);
    assert_eq!(rest, ["p3", "p1", "p0", "pa", "pnone"]);

    // Id order, and system-level search, page by keyset too.
    let (first, rest) = paged_across_writes(&fhir, "/Patient?_count=4", async || {
        fhir.delete("/Patient/p0").await
    })
    .await;
    assert_eq!(first, ["p0", "p1", "p3", "p4"]);
    assert_eq!(rest, ["p5", "pa", "pnone", "pz"]);
    let (first, rest) = paged_across_writes(&fhir, "?_type=Patient&_count=5", async || {}).await;
    assert_eq!(
        [first, rest].concat(),
        ["p1", "p3", "p4", "p5", "pa", "pnone", "pz"]
    );

    // A token of another search, or none of ours, is a 400 with an OperationOutcome.
    let (_, page) = fhir.get("/Patient?_count=2").await;
    let unsorted = next_link(&page).expect("a next link");
    let token = unsorted.split("ct=").nth(1).unwrap().to_owned();
    for url in [
        format!("/Patient?_sort=family&_count=2&ct={token}"),
        format!("?_type=Patient&ct={token}"),
        "/Patient?ct=@20".to_owned(),
        "/Patient?ct=p1".to_owned(),
    ] {
        let (status, body) = fhir.get(&url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{url}");
    }

    // Led by one code, a page is the next matches in the index's own order (by resource
    // key, not by id), by keyset as well: a match already seen going and one not yet reached
    // going shift nothing, and every other match comes exactly once. By position, the
    // removal of a seen match would make the next page skip one.
    let born = ["p1", "p3", "p4", "p5", "pa", "pz"];
    let query = "/Patient?active=true&_count=2";
    let (page_one, later) = paged_across_writes(&fhir, query, async || {}).await;
    let mut all = [page_one, later].concat();
    all.sort();
    assert_eq!(all, born, "each match once");
    let (status, page) = fhir.get(query).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let first = ids(&page);
    let next = next_link(&page).expect("a next link");
    let unseen = *born
        .iter()
        .find(|id| !first.iter().any(|f| f == *id))
        .unwrap();
    fhir.delete(&format!("/Patient/{}", first[0])).await;
    fhir.delete(&format!("/Patient/{unseen}")).await;
    let mut rest = Vec::new();
    let mut link = Some(next.clone());
    while let Some(url) = link.take() {
        let (status, page) = fhir.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        rest.extend(ids(&page));
        link = next_link(&page);
    }
    rest.sort();
    let expected: Vec<&str> = born
        .iter()
        .copied()
        .filter(|id| !first.iter().any(|f| f == id) && *id != unseen)
        .collect();
    assert_eq!(rest, expected);

    // That order's tokens belong to searches led by such a condition only.
    let key_token = next.split("ct=").nth(1).unwrap().to_owned();
    let (status, body) = fhir.get(&format!("/Patient?_count=2&ct={key_token}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn embedded_pages_stay_stable_while_others_write() {
    paging(Env::embedded().await).await
}

#[tokio::test]
async fn kafka_pages_stay_stable_while_others_write() {
    paging(Env::kafka().await).await
}
