//! DICOMweb as a client sees it (STOW-RS, WADO-RS, delete, Azure's versioning), on SQLite +
//! the embedded bus + a blob folder and on PostgreSQL + Kafka + S3.

mod common;

use std::time::Duration;

use common::{multipart, new_uid, split_multipart, Env, Generated, IMPLICIT_LE};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use hds_core::events::topics;
use hds_core::events::v1::{DicomInstanceAction, DicomInstanceEvent};
use prost::Message;
use reqwest::{Client, StatusCode};
use serde_json::Value;

const INSTANCE: &str = "ws1-dicom";

struct Dicom {
    client: Client,
    /// `{base}/{instance}`
    root: String,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl Dicom {
    async fn on(env: &Env) -> Self {
        env.provision(INSTANCE).await;
        Dicom {
            // The client must not decompress: the tests look at what is sent.
            client: Client::builder().no_gzip().build().unwrap(),
            root: env.url(&format!("/{INSTANCE}")),
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Answer {
        let res = r.send().await.unwrap();
        Answer {
            status: res.status(),
            headers: res.headers().clone(),
            bytes: res.bytes().await.unwrap().to_vec(),
        }
    }

    async fn stow(&self, path: &str, parts: &[&[u8]]) -> Answer {
        let (ct, body) = multipart(parts);
        self.send(
            self.client
                .post(format!("{}{path}", self.root))
                .header("content-type", ct)
                .header("accept", "application/dicom+json")
                .body(body),
        )
        .await
    }

    async fn get(&self, path: &str, accept: &str) -> Answer {
        self.send(
            self.client
                .get(format!("{}{path}", self.root))
                .header("accept", accept),
        )
        .await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(self.client.delete(format!("{}{path}", self.root)))
            .await
    }
}

/// The values of `tag` in the items of sequence `seq` of a response data set.
fn in_items(body: &Value, seq: &str, tag: &str) -> Vec<Value> {
    body[seq]["Value"]
        .as_array()
        .map(|items| items.iter().map(|i| i[tag]["Value"][0].clone()).collect())
        .unwrap_or_default()
}

const FAILED: &str = "00081198";
const REFERENCED: &str = "00081199";
const FAILURE_REASON: &str = "00081197";
const WARNING_REASON: &str = "00081196";
const SOP_UID: &str = "00081155";
const RETRIEVE_URL: &str = "00081190";
const FAILED_ATTRIBUTES: &str = "00741048";

async fn events(env: &Env, n: usize) -> Vec<DicomInstanceEvent> {
    let mut sub = env.subscribe(topics::DICOM_INSTANCES).await;
    let mut out = Vec::new();
    while out.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("an event within 60 s")
            .unwrap();
        out.push(DicomInstanceEvent::decode(d.payload.as_slice()).unwrap());
    }
    sub.close().await;
    out
}

async fn versions_are_azure_s(env: Env) {
    let dicom = Dicom::on(&env).await;
    let unversioned = dicom.get("/studies/1.2.3/metadata", "*/*").await;
    assert_eq!(unversioned.status, 404);
    let v3 = dicom.get("/v3/studies/1.2.3/metadata", "*/*").await;
    assert_eq!(v3.status, 400, "{}", v3.text());
    assert_eq!(v3.json()["error"]["code"], "UnsupportedApiVersion");
    for v in ["v1", "v1.0-prerelease", "v2"] {
        let a = dicom
            .get(&format!("/{v}/studies/1.2.3/metadata"), "*/*")
            .await;
        assert_eq!(a.status, 404, "{v}: {}", a.text());
        assert_eq!(a.text(), "The specified study cannot be found.");
        assert_eq!(a.header("api-supported-versions"), "1.0-prerelease, 1, 2");
    }
    let bad_uid = dicom.get("/v2/studies/abc.123/metadata", "*/*").await;
    assert_eq!(bad_uid.status, 400, "{}", bad_uid.text());
    let unknown = dicom
        .send(dicom.client.get(env.url("/ws1-nothere/v2/studies/1.2.3")))
        .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("ws1-nothere"), "{}", unknown.text());
    env.stop().await;
}

async fn store_retrieve_and_metadata(env: Env) {
    let dicom = Dicom::on(&env).await;
    let study = new_uid();
    let a = Generated::new(&study);
    let b = Generated::new(&study);
    let stored = dicom.stow("/v2/studies", &[&a.bytes, &b.bytes]).await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(stored.header("content-type"), "application/dicom+json");
    let body = stored.json();
    assert_eq!(
        in_items(&body, REFERENCED, SOP_UID),
        vec![Value::from(a.sop.clone()), Value::from(b.sop.clone())]
    );
    let url = in_items(&body, REFERENCED, RETRIEVE_URL)[0].clone();
    assert_eq!(url, Value::from(format!("{}/v2{}", dicom.root, a.path())));
    assert!(
        body.get(RETRIEVE_URL).is_none(),
        "no study URL without a study in the path"
    );

    // A single-part application/dicom request, to the study's URL.
    let c = Generated::new(&study);
    let single = dicom
        .send(
            dicom
                .client
                .post(format!("{}/v2/studies/{study}", dicom.root))
                .header("content-type", "application/dicom")
                .body(c.bytes.clone()),
        )
        .await;
    assert_eq!(single.status, 200, "{}", single.text());
    assert_eq!(
        single.json()[RETRIEVE_URL]["Value"][0],
        Value::from(format!("{}/v2/studies/{study}", dicom.root))
    );

    // Byte-exact retrieval, apart from the zeroed preamble; never gzip-compressed.
    for accept in [
        "application/dicom; transfer-syntax=*",
        "application/dicom",
        "*/*",
    ] {
        let got = dicom
            .send(
                dicom
                    .client
                    .get(format!("{}/v2{}", dicom.root, a.path()))
                    .header("accept", accept)
                    .header("accept-encoding", "gzip"),
            )
            .await;
        assert_eq!(got.status, 200, "{accept}: {}", got.text());
        assert_ne!(got.header("content-encoding"), "gzip");
        assert!(got.header("content-type").starts_with("application/dicom"));
        assert_eq!(got.bytes, a.stored_bytes(), "{accept}");
    }
    let study_parts = dicom
        .get(
            &format!("/v2/studies/{study}"),
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .await;
    assert_eq!(study_parts.status, 200);
    let parts = split_multipart(&study_parts.header("content-type"), &study_parts.bytes);
    let mut got: Vec<Vec<u8>> = parts.iter().map(|(_, b)| b.clone()).collect();
    let mut want = vec![a.stored_bytes(), b.stored_bytes(), c.stored_bytes()];
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"));
    let series = dicom
        .get(
            &format!("/v2/studies/{study}/series/{}", b.series),
            "multipart/related; type=\"application/dicom\"",
        )
        .await;
    let parts = split_multipart(&series.header("content-type"), &series.bytes);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1, b.stored_bytes());
    let unknown_series = dicom
        .get(&format!("/v2/studies/{study}/series/{}", new_uid()), "*/*")
        .await;
    assert_eq!(unknown_series.status, 404);
    assert_eq!(
        unknown_series.text(),
        "The specified series cannot be found."
    );
    let not_acceptable = dicom.get(&format!("/v2{}", a.path()), "image/png").await;
    assert_eq!(not_acceptable.status, 406);

    // Metadata: DICOM JSON without bulk data, with an ETag. JSON is compressed when the
    // client asks (so the middleware is active, and DICOM bodies above were spared by it).
    let gzipped = dicom
        .send(
            dicom
                .client
                .get(format!("{}/v2{}/metadata", dicom.root, a.path()))
                .header("accept", "application/dicom+json")
                .header("accept-encoding", "gzip"),
        )
        .await;
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), "gzip");
    let meta = dicom
        .get(
            &format!("/v2{}/metadata", a.path()),
            "application/dicom+json",
        )
        .await;
    assert_eq!(meta.status, 200);
    let meta_json = meta.json();
    let first = &meta_json[0];
    assert_eq!(first["00080018"]["Value"][0], Value::from(a.sop.clone()));
    assert_eq!(first["00100010"]["Value"][0]["Alphabetic"], "Doe^Jane");
    assert_eq!(first["00280010"]["Value"][0], 4);
    assert!(first.get("7FE00010").is_none(), "pixel data left out");
    let study_meta = dicom
        .get(
            &format!("/v2/studies/{study}/metadata"),
            "application/dicom+json",
        )
        .await;
    assert_eq!(study_meta.json().as_array().unwrap().len(), 3);
    let etag = study_meta.header("etag");
    assert!(!etag.is_empty());
    let revalidated = dicom
        .send(
            dicom
                .client
                .get(format!("{}/v2/studies/{study}/metadata", dicom.root))
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.bytes.is_empty());
    let d = Generated::new(&study);
    assert_eq!(dicom.stow("/v2/studies", &[&d.bytes]).await.status, 200);
    let changed = dicom
        .send(
            dicom
                .client
                .get(format!("{}/v2/studies/{study}/metadata", dicom.root))
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), etag);
    assert_eq!(changed.json().as_array().unwrap().len(), 4);

    // An implicit VR instance is stored with Azure's warning 45063, and cannot be transcoded.
    let (series, sop) = (new_uid(), new_uid());
    let implicit = common::file(common::template(&study, &series, &sop), IMPLICIT_LE);
    let v1 = dicom.stow("/v1/studies", &[&implicit]).await;
    assert_eq!(
        v1.status,
        200,
        "v1 reports the warning with 200: {}",
        v1.text()
    );
    assert_eq!(
        in_items(&v1.json(), REFERENCED, WARNING_REASON),
        vec![Value::from(45063)]
    );
    let path = format!("/v2/studies/{study}/series/{series}/instances/{sop}");
    assert_eq!(dicom.get(&path, "application/dicom").await.status, 406);
    let as_stored = dicom
        .get(&path, "application/dicom; transfer-syntax=*")
        .await;
    assert_eq!(as_stored.status, 200);
    assert_eq!(&as_stored.bytes[132..], &implicit[132..]);

    // Each stored instance was announced.
    let created = events(&env, 5).await;
    assert!(created
        .iter()
        .all(|e| e.action == DicomInstanceAction::Created as i32 && e.instance == INSTANCE));
    assert!(created
        .iter()
        .any(|e| e.sop_instance_uid == a.sop && e.study_instance_uid == study));
    assert_eq!(env.rows("dicom_changefeed", INSTANCE).await, 5);
    env.stop().await;
}

async fn duplicates_conflict(env: Env) {
    let dicom = Dicom::on(&env).await;
    let study = new_uid();
    let a = Generated::new(&study);
    assert_eq!(dicom.stow("/v2/studies", &[&a.bytes]).await.status, 200);
    let again = dicom.stow("/v2/studies", &[&a.bytes]).await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(
        in_items(&again.json(), FAILED, FAILURE_REASON),
        vec![Value::from(45070)]
    );
    assert_eq!(
        in_items(&again.json(), FAILED, SOP_UID),
        vec![Value::from(a.sop.clone())]
    );
    // Twice in one request: the first is stored.
    let b = Generated::new(&study);
    let twice = dicom.stow("/v2/studies", &[&b.bytes, &b.bytes]).await;
    assert_eq!(twice.status, 202, "{}", twice.text());
    assert_eq!(
        in_items(&twice.json(), FAILED, FAILURE_REASON),
        vec![Value::from(45070)]
    );
    assert_eq!(
        in_items(&twice.json(), REFERENCED, SOP_UID),
        vec![Value::from(b.sop.clone())]
    );
    // The duplicates left no blob: one per stored instance.
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 2);
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 2);
    // And the stored bytes are the first upload's.
    let got = dicom
        .get(
            &format!("/v2{}", a.path()),
            "application/dicom; transfer-syntax=*",
        )
        .await;
    assert_eq!(got.bytes, a.stored_bytes());
    env.stop().await;
}

async fn broken_parts_fail_alone(env: Env) {
    let dicom = Dicom::on(&env).await;
    let study = new_uid();
    let good = Generated::new(&study);
    let no_class = Generated::with(&study, |o| {
        o.remove_element(tags::SOP_CLASS_UID);
    });
    let bad_uid = Generated::with(&study, |o| {
        o.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("abc.123"),
        ));
    });
    let other_study = Generated::new(&new_uid());
    let not_dicom: &[u8] = b"this is not a DICOM file";
    let mixed = dicom
        .stow(
            &format!("/v2/studies/{study}"),
            &[
                &good.bytes,
                not_dicom,
                &no_class.bytes,
                &bad_uid.bytes,
                &other_study.bytes,
            ],
        )
        .await;
    assert_eq!(mixed.status, 202, "{}", mixed.text());
    let body = mixed.json();
    assert_eq!(
        in_items(&body, FAILED, FAILURE_REASON),
        [43264, 43264, 43264, 43265].map(Value::from).to_vec()
    );
    assert_eq!(
        in_items(&body, REFERENCED, SOP_UID),
        vec![Value::from(good.sop.clone())]
    );
    assert_eq!(
        body[RETRIEVE_URL]["Value"][0],
        Value::from(format!("{}/v2/studies/{study}", dicom.root))
    );
    // The failed items name the instance when it could be read, and say what was wrong.
    let failed = body[FAILED]["Value"].as_array().unwrap();
    assert!(failed[0].get(SOP_UID).is_none());
    assert_eq!(
        failed[1][SOP_UID]["Value"][0],
        Value::from(no_class.sop.clone())
    );
    let comment = failed[1][FAILED_ATTRIBUTES]["Value"][0]["00000902"]["Value"][0]
        .as_str()
        .unwrap();
    assert!(comment.contains("(0008,0016)"), "{comment}");
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 1);
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 1);

    let all_broken = dicom
        .stow("/v2/studies", &[not_dicom, &no_class.bytes])
        .await;
    assert_eq!(all_broken.status, 409);
    assert!(all_broken.json().get(REFERENCED).is_none());
    let empty = dicom.stow("/v2/studies", &[]).await;
    assert_eq!(empty.status, 204);

    // A wrong media type is refused before anything is read or stored.
    let json = dicom
        .send(
            dicom
                .client
                .post(format!("{}/v2/studies", dicom.root))
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert_eq!(json.status, 415);
    let boundary = "xyz";
    let text_part = dicom
        .send(
            dicom
                .client
                .post(format!("{}/v2/studies", dicom.root))
                .header(
                    "content-type",
                    format!("multipart/related; boundary={boundary}"),
                )
                .body(format!(
                    "--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
                )),
        )
        .await;
    assert_eq!(text_part.status, 415, "{}", text_part.text());
    let malformed = dicom
        .send(
            dicom
                .client
                .post(format!("{}/v2/studies", dicom.root))
                .header("content-type", "multipart/related; boundary=abc")
                .body("garbage without any delimiter"),
        )
        .await;
    assert!(malformed.status.is_client_error(), "{}", malformed.status);
    let bad_accept = dicom
        .send(
            dicom
                .client
                .post(format!("{}/v2/studies", dicom.root))
                .header("content-type", "application/dicom")
                .header("accept", "application/xml")
                .body(good.bytes.clone()),
        )
        .await;
    assert_eq!(bad_accept.status, 406);
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 1);
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 1);
    env.stop().await;
}

async fn v1_strict_v2_lenient(env: Env) {
    let dicom = Dicom::on(&env).await;
    let study = new_uid();
    let bad_date = |o: &mut dicom_object::InMemDicomObject| {
        o.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from("NotAValidDate"),
        ));
    };
    let v1 = Generated::with(&study, bad_date);
    let rejected = dicom.stow("/v1/studies", &[&v1.bytes]).await;
    assert_eq!(rejected.status, 409, "{}", rejected.text());
    let body = rejected.json();
    assert_eq!(
        in_items(&body, FAILED, FAILURE_REASON),
        vec![Value::from(43264)]
    );
    let comment = body[FAILED]["Value"][0][FAILED_ATTRIBUTES]["Value"][0]["00000902"]["Value"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(comment.starts_with("DICOM100: (0008,0020)"), "{comment}");

    let v2 = Generated::with(&study, bad_date);
    let warned = dicom.stow("/v2/studies", &[&v2.bytes]).await;
    assert_eq!(warned.status, 202, "{}", warned.text());
    let body = warned.json();
    assert_eq!(
        in_items(&body, REFERENCED, WARNING_REASON),
        vec![Value::from(1)]
    );
    let comment = body[REFERENCED]["Value"][0][FAILED_ATTRIBUTES]["Value"][0]["00000902"]["Value"]
        [0]
    .as_str()
    .unwrap()
    .to_owned();
    assert!(comment.contains("NotAValidDate"), "{comment}");
    // The invalid attribute is not in the metadata; the stored bytes still have it.
    let meta = dicom
        .get(
            &format!("/v2{}/metadata", v2.path()),
            "application/dicom+json",
        )
        .await;
    assert!(meta.json()[0].get("00080020").is_none());
    let bytes = dicom.get(&format!("/v2{}", v2.path()), "*/*").await.bytes;
    assert_eq!(bytes, v2.stored_bytes());
    // v1 refuses an empty PatientID; v2 stores it with a warning.
    let empty_pid = |o: &mut dicom_object::InMemDicomObject| {
        o.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from(""),
        ));
    };
    let p1 = Generated::with(&study, empty_pid);
    assert_eq!(dicom.stow("/v1/studies", &[&p1.bytes]).await.status, 409);
    let p2 = Generated::with(&study, empty_pid);
    assert_eq!(dicom.stow("/v2/studies", &[&p2.bytes]).await.status, 202);
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 2);
    env.stop().await;
}

async fn delete_leaves_nothing(env: Env) {
    let dicom = Dicom::on(&env).await;
    let study = new_uid();
    let a = Generated::new(&study);
    let b = Generated::new(&study);
    let c = Generated::new(&study);
    let other = Generated::new(&new_uid());
    assert_eq!(
        dicom
            .stow("/v2/studies", &[&a.bytes, &b.bytes, &c.bytes, &other.bytes])
            .await
            .status,
        200
    );
    let prefix = format!("{INSTANCE}/{study}/");
    assert_eq!(env.blob_keys(&prefix).await.len(), 3);

    assert_eq!(dicom.delete(&format!("/v2{}", a.path())).await.status, 204);
    assert_eq!(
        dicom
            .get(&format!("/v2{}/metadata", a.path()), "*/*")
            .await
            .status,
        404
    );
    assert_eq!(env.blob_keys(&prefix).await.len(), 2);
    assert_eq!(
        dicom
            .delete(&format!("/v2/studies/{study}/series/{}", b.series))
            .await
            .status,
        204
    );
    assert_eq!(env.blob_keys(&prefix).await.len(), 1);
    assert_eq!(
        dicom.delete(&format!("/v2/studies/{study}")).await.status,
        204
    );
    assert!(env.blob_keys(&prefix).await.is_empty());
    let again = dicom.delete(&format!("/v2/studies/{study}")).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.text(), "The specified study cannot be found.");
    assert_eq!(
        dicom
            .get(&format!("/v2/studies/{study}"), "*/*")
            .await
            .status,
        404
    );
    // Only the other study is left, in every table and in the blob store.
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 1);
    assert_eq!(env.rows("dicom_series", INSTANCE).await, 1);
    assert_eq!(env.rows("dicom_studies", INSTANCE).await, 1);
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 1);
    assert_eq!(env.rows("dicom_changefeed", INSTANCE).await, 4 + 3);
    let all = events(&env, 7).await;
    let deleted: Vec<&DicomInstanceEvent> = all
        .iter()
        .filter(|e| e.action == DicomInstanceAction::Deleted as i32)
        .collect();
    assert_eq!(deleted.len(), 3);
    assert!(deleted.iter().any(|e| e.sop_instance_uid == c.sop));
    // Sequence numbers order the changes.
    assert!(deleted.iter().all(|e| e.sequence_number > 4));
    env.stop().await;
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn versions_are_azure_s() {
                super::versions_are_azure_s(Env::$backend().await).await
            }
            #[tokio::test]
            async fn store_retrieve_and_metadata() {
                super::store_retrieve_and_metadata(Env::$backend().await).await
            }
            #[tokio::test]
            async fn duplicates_conflict() {
                super::duplicates_conflict(Env::$backend().await).await
            }
            #[tokio::test]
            async fn broken_parts_fail_alone() {
                super::broken_parts_fail_alone(Env::$backend().await).await
            }
            #[tokio::test]
            async fn v1_strict_v2_lenient() {
                super::v1_strict_v2_lenient(Env::$backend().await).await
            }
            #[tokio::test]
            async fn delete_leaves_nothing() {
                super::delete_leaves_nothing(Env::$backend().await).await
            }
        }
    };
}

suite!(embedded);
suite!(kafka);
