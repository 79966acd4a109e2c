//! DICOMweb as a client sees it (STOW-RS, WADO-RS, delete, Azure's versioning), on SQLite +
//! the embedded bus + a blob folder and on PostgreSQL + Kafka + S3.

mod common;

use std::time::Duration;

use common::client::{Answer, Dicom};
use common::{new_uid, split_multipart, Env, Generated, IMPLICIT_LE};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use hds_core::events::topics;
use hds_core::events::v1::{DicomInstanceAction, DicomInstanceEvent};
use prost::Message;
use reqwest::{Client, StatusCode};
use serde_json::Value;

const INSTANCE: &str = "ws1-dicom";

impl Dicom {
    async fn on(env: &Env) -> Self {
        env.provision(INSTANCE).await;
        Dicom {
            // The client must not decompress: the tests look at what is sent.
            client: Client::builder().no_gzip().build().unwrap(),
            root: env.url(&format!("/{INSTANCE}")),
        }
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

    // An implicit VR instance is stored with Azure's warning 45063, and transcoded on request.
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
    let transcoded = dicom.get(&path, "application/dicom").await;
    assert_eq!(transcoded.status, 200, "{}", transcoded.text());
    assert_eq!(
        transcoded.header("content-type"),
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    );
    let back = dicom_object::from_reader(&transcoded.bytes[128..]).unwrap();
    assert_eq!(back.meta().transfer_syntax(), common::EXPLICIT_LE);
    assert_eq!(
        back.element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap(),
        sop
    );
    assert_eq!(
        back.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        (0..16u8).collect::<Vec<_>>().as_slice()
    );
    let series_transcoded = dicom
        .get(
            &format!("/v2/studies/{study}/series/{series}"),
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1",
        )
        .await;
    let parts = split_multipart(
        &series_transcoded.header("content-type"),
        &series_transcoded.bytes,
    );
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1, transcoded.bytes);
    // What cannot be produced is refused: the service decodes, it never encodes compressed
    // syntaxes.
    assert_eq!(
        dicom
            .get(
                &path,
                "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
            )
            .await
            .status,
        406
    );
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

/// An instance of `study` and `series` with the given text attributes.
fn instance_in(study: &str, series: &str, attrs: &[(dicom_core::Tag, VR, &str)]) -> Generated {
    let sop = new_uid();
    let mut obj = common::template(study, series, &sop);
    for (tag, vr, v) in attrs {
        obj.put(DataElement::new(*tag, *vr, PrimitiveValue::from(*v)));
    }
    Generated {
        study: study.into(),
        series: series.into(),
        sop,
        bytes: common::file(obj, common::EXPLICIT_LE),
    }
}

/// The values of `tag` (first value each) in a search answer, in answer order.
fn found(a: &Answer, tag: &str) -> Vec<String> {
    if a.status == StatusCode::NO_CONTENT {
        return Vec::new();
    }
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match &r[tag]["Value"][0] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const STUDY_UID: &str = "0020000D";
const SERIES_UID: &str = "0020000E";

async fn search_matches_and_returns(env: Env) {
    let dicom = Dicom::on(&env).await;
    let (a, b, c) = (new_uid(), new_uid(), new_uid());
    let (a_ct, a_mr) = (new_uid(), new_uid());
    let pn = |v| (tags::PATIENT_NAME, VR::PN, v);
    let pid = |v| (tags::PATIENT_ID, VR::LO, v);
    let date = |v| (tags::STUDY_DATE, VR::DA, v);
    let modality = |v| (tags::MODALITY, VR::CS, v);
    let a_attrs = [pn("Müller^José"), pid("PID-A"), date("20200315")];
    let a1 = instance_in(
        &a,
        &a_ct,
        &[a_attrs[0], a_attrs[1], a_attrs[2], modality("CT")],
    );
    let a2 = instance_in(
        &a,
        &a_ct,
        &[a_attrs[0], a_attrs[1], a_attrs[2], modality("CT")],
    );
    let a3 = instance_in(
        &a,
        &a_mr,
        &[a_attrs[0], a_attrs[1], a_attrs[2], modality("MR")],
    );
    let b1 = instance_in(
        &b,
        &new_uid(),
        &[pn("Doe^Jane"), pid("pid-b"), date("20211201")],
    );
    let c1 = instance_in(
        &c,
        &new_uid(),
        &[pn("Roe^Richard"), pid("X%_1"), date("20190101")],
    );
    for i in [&a1, &a2, &a3, &b1, &c1] {
        assert_eq!(dicom.stow("/v2/studies", &[&i.bytes]).await.status, 200);
    }

    // Studies: case-insensitive text, date ranges with open ends, newest first.
    let by_pid = dicom.search("/v2/studies?PatientID=pid-a").await;
    assert_eq!(by_pid.header("content-type"), "application/dicom+json");
    assert_eq!(found(&by_pid, STUDY_UID), vec![a.clone()]);
    let first = &by_pid.json()[0];
    assert_eq!(first["00100020"]["Value"][0], "PID-A");
    assert_eq!(first["00080020"]["Value"][0], "20200315");
    assert!(first.get("00080061").is_none(), "computed only when asked");
    assert!(
        first.get("00080060").is_none(),
        "no series attributes at study level"
    );
    assert_eq!(
        found(
            &dicom
                .search("/v2/studies?StudyDate=20200101-20201231")
                .await,
            STUDY_UID
        ),
        vec![a.clone()]
    );
    assert_eq!(
        found(
            &dicom.search("/v2/studies?StudyDate=-20200101").await,
            STUDY_UID
        ),
        vec![c.clone()]
    );
    assert_eq!(
        found(
            &dicom.search("/v2/studies?StudyDate=20200101-").await,
            STUDY_UID
        ),
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        found(
            &dicom.search("/v2/studies?StudyDate=20211201").await,
            STUDY_UID
        ),
        vec![b.clone()]
    );
    // ModalitiesInStudy and the computed attributes.
    assert_eq!(
        found(
            &dicom.search("/v2/studies?ModalitiesInStudy=MR").await,
            STUDY_UID
        ),
        vec![a.clone()]
    );
    assert_eq!(
        sorted(found(
            &dicom.search("/v2/studies?ModalitiesInStudy=mr,OT").await,
            STUDY_UID
        )),
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );
    let counted = dicom.search(&format!(
        "/v2/studies?StudyInstanceUID={a}&includefield=ModalitiesInStudy,00201206&includefield=NumberOfStudyRelatedInstances"
    ))
    .await;
    let r = &counted.json()[0];
    assert_eq!(r["00080061"]["Value"], serde_json::json!(["CT", "MR"]));
    assert_eq!(r["00201206"]["Value"][0], 2);
    assert_eq!(r["00201208"]["Value"][0], 3);
    // Person names: exact and wildcard ignore case and accents; fuzzy is by word prefix.
    for hit in [
        "PatientName=muller%5Ejose",
        "PatientName=M%C3%BCller%5EJos%C3%A9",
        "PatientName=MUL*",
        "PatientName=jos%20mul&fuzzymatching=true",
        "PatientName=M%C3%BC&fuzzymatching=true",
    ] {
        assert_eq!(
            found(
                &dicom.search(&format!("/v2/studies?{hit}")).await,
                STUDY_UID
            ),
            vec![a.clone()],
            "{hit}"
        );
    }
    for miss in ["PatientName=ose&fuzzymatching=true", "PatientName=muller"] {
        let none = dicom.search(&format!("/v2/studies?{miss}")).await;
        assert_eq!(none.status, 204, "{miss}: {}", none.text());
        assert!(none.bytes.is_empty());
    }
    // Wildcards treat LIKE's characters literally; UID lists; limit and offset.
    assert_eq!(
        found(
            &dicom.search("/v2/studies?PatientID=X%25*").await,
            STUDY_UID
        ),
        vec![c.clone()]
    );
    assert_eq!(
        found(
            &dicom.search("/v2/studies?PatientID=PID-%3F").await,
            STUDY_UID
        ),
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        found(&dicom.search("/v2/studies?PatientID=X_*").await, STUDY_UID),
        Vec::<String>::new()
    );
    assert_eq!(
        sorted(found(
            &dicom
                .search(&format!("/v2/studies?StudyInstanceUID={a},{c}"))
                .await,
            STUDY_UID
        )),
        sorted(vec![a.clone(), c.clone()])
    );
    assert_eq!(
        found(
            &dicom.search("/v2/studies?limit=1&offset=1").await,
            STUDY_UID
        ),
        vec![b.clone()]
    );
    assert_eq!(dicom.search("/v2/studies?offset=3").await.status, 204);

    // Series: all of them carry study attributes; a study's do not.
    let ct = dicom.search("/v2/series?Modality=ct").await;
    assert_eq!(found(&ct, SERIES_UID), vec![a_ct.clone()]);
    assert_eq!(ct.json()[0]["00100020"]["Value"][0], "PID-A");
    let in_a = dicom
        .search(&format!(
            "/v2/studies/{a}/series?includefield=NumberOfSeriesRelatedInstances"
        ))
        .await;
    assert_eq!(found(&in_a, SERIES_UID), vec![a_mr.clone(), a_ct.clone()]);
    assert_eq!(found(&in_a, STUDY_UID), vec![a.clone(), a.clone()]);
    assert_eq!(found(&in_a, "00201209"), vec!["1", "2"]);
    assert!(in_a.json()[0].get("00100020").is_none());
    assert_eq!(
        found(
            &dicom.search("/v2/series?PatientID=PID-A&Modality=MR").await,
            SERIES_UID
        ),
        vec![a_mr.clone()]
    );

    // Instances at the three paths.
    let sop = "00080018";
    assert_eq!(
        sorted(found(
            &dicom
                .search(&format!("/v2/studies/{a}/series/{a_ct}/instances"))
                .await,
            sop
        )),
        sorted(vec![a1.sop.clone(), a2.sop.clone()])
    );
    assert_eq!(
        found(
            &dicom
                .search(&format!("/v2/studies/{a}/instances?Modality=MR"))
                .await,
            sop
        ),
        vec![a3.sop.clone()]
    );
    let one = dicom
        .search(&format!(
            "/v2/instances?SOPInstanceUID={}&includefield=00280010",
            b1.sop
        ))
        .await;
    assert_eq!(found(&one, sop), vec![b1.sop.clone()]);
    assert_eq!(one.json()[0]["00280010"]["Value"][0], 4);
    assert_eq!(
        one.json()[0]["0020000D"]["Value"][0],
        Value::from(b.clone())
    );
    let all = dicom
        .search(&format!(
            "/v2/instances?SOPInstanceUID={}&includefield=all",
            c1.sop
        ))
        .await;
    assert_eq!(
        all.json()[0]["00080016"]["Value"][0],
        common::SECONDARY_CAPTURE
    );
    assert_eq!(all.json()[0]["00080060"]["Value"][0], "OT");
    assert_eq!(
        found(&dicom.search("/v2/instances?StudyDate=20190101").await, sop),
        vec![c1.sop.clone()]
    );

    // Malformed parameters: 400 with Azure's message; nothing matched: 204.
    for (query, message) in [
        (
            "/v2/studies?limit=201",
            "specified limit value 201 is outside the allowed range of 1..200",
        ),
        (
            "/v2/studies?limit=abc",
            "specified limit value 'abc' is not a valid integer",
        ),
        (
            "/v2/studies?Modality=CT",
            "AttributeId Modality is not queryable",
        ),
        ("/v2/studies?StudyDate=2020", "Date value '2020' is invalid"),
        (
            "/v2/studies?StudyDate=20201231-20200101",
            "should be lesser than or equal",
        ),
        (
            "/v2/studies?nonsense=1",
            "unknown query parameter 'nonsense'",
        ),
        (
            "/v2/studies?includefield=Nonsense",
            "IncludeField has unknown attribute 'Nonsense'",
        ),
        ("/v2/studies?PatientID=", "has empty string value"),
        ("/v2/studies?fuzzymatching=maybe", "is not a valid boolean"),
        (
            "/v2/studies/1.2.3/series?StudyInstanceUID=1.2.3",
            "cannot specify attribute 'StudyInstanceUID'",
        ),
        (
            "/v2/studies/1.2.3/series/1.2.4/instances?Modality=CT",
            "AttributeId Modality is not queryable",
        ),
    ] {
        let bad = dicom.search(query).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.text());
        assert!(bad.text().contains(message), "{query}: {}", bad.text());
    }
    assert_eq!(
        dicom.search("/v2/studies?PatientID=nobody").await.status,
        204
    );
    assert_eq!(
        dicom
            .search(&format!("/v2/studies/{}/series", new_uid()))
            .await
            .status,
        204
    );
    assert_eq!(
        dicom.get("/v2/studies", "application/dicom").await.status,
        406
    );
    // ModalitiesInStudy follows the study's series: a series stored again with another
    // modality moves it, a deleted series takes its modality away.
    let a4 = instance_in(
        &a,
        &a_ct,
        &[a_attrs[0], a_attrs[1], a_attrs[2], modality("US")],
    );
    assert_eq!(dicom.stow("/v2/studies", &[&a4.bytes]).await.status, 200);
    let by_modality = |m: &str| format!("/v2/studies?ModalitiesInStudy={m}&StudyInstanceUID={a}");
    assert_eq!(
        found(&dicom.search(&by_modality("US")).await, STUDY_UID),
        vec![a.clone()]
    );
    assert_eq!(
        dicom.search(&by_modality("CT")).await.status,
        204,
        "no CT series is left"
    );
    let deleted = dicom
        .delete(&format!("/v2/studies/{a}/series/{a_mr}"))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(
        dicom.search(&by_modality("MR")).await.status,
        204,
        "the MR series is gone"
    );
    assert_eq!(
        found(&dicom.search(&by_modality("us")).await, STUDY_UID),
        vec![a.clone()]
    );
    env.stop().await;
}

/// The entries of a change feed answer.
fn feed(a: &Answer) -> Vec<Value> {
    assert_eq!(a.status, 200, "{}", a.text());
    a.json().as_array().unwrap().clone()
}

fn sequences(entries: &[Value]) -> Vec<i64> {
    entries
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect()
}

async fn change_feed_in_order(env: Env) {
    let dicom = Dicom::on(&env).await;
    assert_eq!(
        dicom
            .get("/v2/changefeed/latest", "application/json")
            .await
            .status,
        204
    );
    assert!(feed(&dicom.get("/v2/changefeed", "application/json").await).is_empty());
    let study = new_uid();
    let a = Generated::new(&study);
    let b = Generated::new(&study);
    assert_eq!(dicom.stow("/v2/studies", &[&a.bytes]).await.status, 200);
    assert_eq!(dicom.stow("/v2/studies", &[&b.bytes]).await.status, 200);
    assert_eq!(dicom.delete(&format!("/v2{}", a.path())).await.status, 204);
    // Stored again after its deletion: the first create is now "replaced".
    assert_eq!(dicom.stow("/v2/studies", &[&a.bytes]).await.status, 200);

    let all = feed(&dicom.get("/v2/changefeed", "application/json").await);
    assert_eq!(sequences(&all), vec![1, 2, 3, 4]);
    let first = all[0].as_object().unwrap();
    let mut names: Vec<&str> = first.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "action",
            "metadata",
            "partitionName",
            "sequence",
            "seriesInstanceUid",
            "sopInstanceUid",
            "state",
            "studyInstanceUid",
            "timestamp"
        ]
        .into_iter()
        .filter(|n| *n != "metadata")
        .collect::<Vec<_>>(),
        "a replaced entry has no metadata"
    );
    assert_eq!(first["studyInstanceUid"], Value::from(study.clone()));
    assert_eq!(first["partitionName"], Value::from("Microsoft.Default"));
    assert_eq!(first["sopInstanceUid"], Value::from(a.sop.clone()));
    assert_eq!(
        all.iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["create", "create", "delete", "create"]
    );
    assert_eq!(
        all.iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["replaced", "current", "replaced", "current"]
    );
    assert_eq!(
        all[1]["metadata"]["00080018"]["Value"][0],
        Value::from(b.sop.clone())
    );
    let ts = all[0]["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with("+00:00"),
        "{ts}"
    );
    let bare = feed(
        &dicom
            .get("/v2/changefeed?includemetadata=false", "application/json")
            .await,
    );
    assert!(bare.iter().all(|e| e.get("metadata").is_none()));

    // v1: after a sequence, up to `limit` past it; v2: skip and take.
    assert_eq!(
        sequences(&feed(
            &dicom.get("/v1/changefeed?offset=1&limit=2", "*/*").await
        )),
        vec![2, 3]
    );
    assert_eq!(
        sequences(&feed(
            &dicom.get("/v2/changefeed?offset=1&limit=2", "*/*").await
        )),
        vec![2, 3]
    );
    assert_eq!(
        sequences(&feed(&dicom.get("/v1/changefeed", "*/*").await)),
        vec![1, 2, 3, 4]
    );
    assert!(feed(
        &dicom
            .get("/v2/changefeed?startTime=2999-01-01T00:00:00Z", "*/*")
            .await
    )
    .is_empty());
    assert!(feed(
        &dicom
            .get("/v2/changefeed?endTime=2000-01-01T00:00:00Z", "*/*")
            .await
    )
    .is_empty());
    assert_eq!(
        sequences(&feed(&dicom.get("/v2/changefeed?startTime=2000-01-01T00:00:00Z&endTime=2999-01-01T00:00:00%2B01:00", "*/*").await)),
        vec![1, 2, 3, 4]
    );
    let latest = dicom.get("/v2/changefeed/latest", "application/json").await;
    assert_eq!(latest.status, 200);
    assert_eq!(latest.json()["sequence"], 4);
    assert_eq!(
        latest.json()["metadata"]["00080018"]["Value"][0],
        Value::from(a.sop.clone())
    );
    for (path, message) in [
        (
            "/v1/changefeed?limit=101",
            "The limit must be between 1 and 100.",
        ),
        (
            "/v2/changefeed?limit=0",
            "The limit must be between 1 and 200.",
        ),
        (
            "/v2/changefeed?offset=-1",
            "The offset cannot be a negative value.",
        ),
        ("/v2/changefeed?startTime=soon", "startTime"),
    ] {
        let bad = dicom.get(path, "*/*").await;
        assert_eq!(bad.status, 400, "{path}");
        assert!(bad.text().contains(message), "{path}: {}", bad.text());
    }

    // Concurrent writers: every sequence is handed out once, without gaps.
    let uploads: Vec<Generated> = (0..8).map(|_| Generated::new(&study)).collect();
    let stored = futures::future::join_all(
        uploads
            .iter()
            .map(|g| async { dicom.stow("/v2/studies", &[&g.bytes]).await }),
    )
    .await;
    assert!(stored.iter().all(|s| s.status == 200));
    let all = feed(&dicom.get("/v2/changefeed", "*/*").await);
    assert_eq!(sequences(&all), (1..=12).collect::<Vec<i64>>());
    env.stop().await;
}

/// A two-frame 4x4 8-bit monochrome instance in `ts`: frame 1 is 0..16, frame 2 counts down
/// from 115 (so that rendered with auto-windowing, too, the frames differ).
fn two_frames(ts: &str) -> Generated {
    let (study, series, sop) = (new_uid(), new_uid(), new_uid());
    let mut obj = common::template(&study, &series, &sop);
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    obj.put(us(tags::SAMPLES_PER_PIXEL, 1));
    obj.put(us(tags::BITS_STORED, 8));
    obj.put(us(tags::HIGH_BIT, 7));
    obj.put(us(tags::PIXEL_REPRESENTATION, 0));
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("MONOCHROME2"),
    ));
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("2"),
    ));
    let pixels: Vec<u8> = (0..16u8).chain((100..116u8).rev()).collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(pixels.into()),
    ));
    Generated {
        study,
        series,
        sop,
        bytes: common::file(obj, ts),
    }
}

async fn frames_and_rendered(env: Env) {
    let dicom = Dicom::on(&env).await;
    let explicit = two_frames(common::EXPLICIT_LE);
    let implicit = two_frames(IMPLICIT_LE);
    assert_eq!(
        dicom
            .stow("/v2/studies", &[&explicit.bytes, &implicit.bytes])
            .await
            .status,
        202
    );
    let frame1: Vec<u8> = (0..16u8).collect();
    let frame2: Vec<u8> = (100..116u8).rev().collect();
    for g in [&explicit, &implicit] {
        let base = format!("/v2{}", g.path());
        let both = dicom
            .get(
                &format!("{base}/frames/1,2"),
                "multipart/related; type=\"application/octet-stream\"",
            )
            .await;
        assert_eq!(both.status, 200, "{}", both.text());
        let parts = split_multipart(&both.header("content-type"), &both.bytes);
        assert_eq!(
            parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
            vec![frame1.clone(), frame2.clone()]
        );
        assert!(parts[0].0.starts_with("application/octet-stream"));
        let bare = dicom
            .get(&format!("{base}/frames/2"), "application/octet-stream")
            .await;
        assert_eq!(bare.status, 200);
        assert_eq!(bare.bytes, frame2);
        assert_eq!(
            dicom.get(&format!("{base}/frames/1"), "*/*").await.status,
            200
        );
    }
    let base = format!("/v2{}", explicit.path());
    let missing = dicom.get(&format!("{base}/frames/3"), "*/*").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "The specified frame cannot be found.");
    let zero = dicom.get(&format!("{base}/frames/0"), "*/*").await;
    assert_eq!(zero.status, 400);
    assert!(zero.text().contains("greater than 0"), "{}", zero.text());
    assert_eq!(
        dicom
            .get(&format!("{base}/frames/1"), "image/png")
            .await
            .status,
        406
    );
    assert_eq!(
        dicom
            .get(
                &format!(
                    "/v2/studies/{}/series/{}/instances/{}/frames/1",
                    explicit.study,
                    explicit.series,
                    new_uid()
                ),
                "*/*"
            )
            .await
            .status,
        404
    );

    // Rendered: JPEG by default and with a quality, PNG when asked, per frame.
    let jpeg = dicom.get(&format!("{base}/rendered"), "image/jpeg").await;
    assert_eq!(jpeg.status, 200, "{}", jpeg.text());
    assert_eq!(jpeg.header("content-type"), "image/jpeg");
    assert!(jpeg.bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
    let low = dicom
        .get(&format!("{base}/rendered?quality=10"), "*/*")
        .await;
    assert!(low.bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert_ne!(low.bytes, jpeg.bytes, "quality changes the encoding");
    let png1 = dicom
        .get(&format!("{base}/frames/1/rendered"), "image/png")
        .await;
    let png2 = dicom
        .get(
            &format!("/v2{}/frames/2/rendered", implicit.path()),
            "image/png",
        )
        .await;
    for png in [&png1, &png2] {
        assert_eq!(png.status, 200, "{}", png.text());
        assert!(png.bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    assert_ne!(png1.bytes, png2.bytes, "each frame is its own image");
    let bad_quality = dicom
        .get(&format!("{base}/rendered?quality=0"), "image/jpeg")
        .await;
    assert_eq!(bad_quality.status, 400);
    assert_eq!(
        bad_quality.text(),
        "Image quality must be between 1 and 100 inclusive"
    );
    assert_eq!(
        dicom
            .get(&format!("{base}/frames/3/rendered"), "image/png")
            .await
            .status,
        404
    );
    assert_eq!(
        dicom
            .get(&format!("{base}/rendered"), "text/html")
            .await
            .status,
        406
    );
    env.stop().await;
}

/// A value of the service's Prometheus metrics (0 if it has none yet).
async fn metric(env: &Env, name: &str) -> f64 {
    let text = reqwest::get(env.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Holds the index's write path from outside until dropped or rolled back: on PostgreSQL the
/// change-feed counters (the last statement before a group commits), on SQLite the write lock.
async fn block_index_writes(env: &Env) -> sqlx::Transaction<'static, sqlx::Any> {
    match env.db.backend() {
        hds_core::db::Backend::Postgres => {
            let mut tx = env.db.begin().await.unwrap();
            sqlx::query("LOCK TABLE dicom_changefeed_counters IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx
        }
        hds_core::db::Backend::Sqlite => {
            let outside = hds_testkit::sqlite_database(env._dir.path(), "dicom").await;
            outside.begin().await.unwrap()
        }
    }
}

/// Until the committer holds `committing` requests and `waiting` more queue behind them (a
/// condition, not a delay).
async fn until_queued(env: &Env, committing: f64, waiting: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let c = metric(env, "dicom_group_requests_committing").await;
        let w = metric(env, "dicom_group_requests_waiting").await;
        if c == committing && w == waiting {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {committing} committing and {waiting} waiting (got {c} and {w})"
        );
        tokio::task::yield_now().await;
    }
}

fn stow_task(dicom: &std::sync::Arc<Dicom>, g: Generated) -> tokio::task::JoinHandle<Answer> {
    let dicom = dicom.clone();
    tokio::spawn(async move { dicom.stow("/v2/studies", &[&g.bytes]).await })
}

/// Store requests that arrive while a group is being indexed wait, then share one
/// transaction: the first request is held in its group by a lock taken from outside, the
/// other 11 queue behind it, and all 12 are stored with 2 commits, each with its change-feed
/// entry and blob.
async fn concurrent_stores_share_a_commit(env: Env) {
    let dicom = std::sync::Arc::new(Dicom::on(&env).await);
    let commits_before = metric(&env, "dicom_group_commits_total").await;
    let lock = block_index_writes(&env).await;
    let first = stow_task(&dicom, Generated::new(&new_uid()));
    until_queued(&env, 1.0, 0.0).await;
    let rest: Vec<_> = (0..11)
        .map(|_| stow_task(&dicom, Generated::new(&new_uid())))
        .collect();
    until_queued(&env, 1.0, 11.0).await;
    lock.rollback().await.unwrap();
    for t in std::iter::once(first).chain(rest) {
        let answer = t.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(
        metric(&env, "dicom_group_commits_total").await - commits_before,
        2.0
    );
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 12);
    assert_eq!(env.rows("dicom_changefeed", INSTANCE).await, 12);
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 12);
    let feed = dicom
        .get("/v2/changefeed?limit=100", "application/json")
        .await;
    let mut sequences: Vec<i64> = feed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    sequences.sort();
    assert_eq!(sequences, (1..=12).collect::<Vec<i64>>());
    assert_eq!(events(&env, 12).await.len(), 12);
    env.stop().await;
}

/// A request whose indexing fails in a shared transaction fails alone: the group is rolled
/// back and its requests indexed one by one, so the other request of the group is stored and
/// the failing one leaves no row and no blob. (A trigger makes the index refuse one patient.)
async fn a_failing_request_fails_alone_in_its_group(env: Env) {
    let dicom = std::sync::Arc::new(Dicom::on(&env).await);
    let trigger: &[&str] = match env.db.backend() {
        hds_core::db::Backend::Postgres => &[
            "CREATE FUNCTION refuse_marked() RETURNS trigger AS $$ BEGIN \
             IF NEW.patient_id = 'REFUSED' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON dicom_studies \
             FOR EACH ROW EXECUTE FUNCTION refuse_marked()",
        ],
        hds_core::db::Backend::Sqlite => &["CREATE TRIGGER refuse_marked BEFORE INSERT ON \
             dicom_studies WHEN NEW.patient_id = 'REFUSED' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END"],
    };
    for sql in trigger {
        sqlx::query(sql).execute(env.db.pool()).await.unwrap();
    }
    let patient = |id: &'static str| {
        move |o: &mut dicom_object::InMemDicomObject| {
            let _ = o.put(DataElement::new(
                tags::PATIENT_ID,
                VR::LO,
                PrimitiveValue::from(id),
            ));
        }
    };
    let (a, refused, c) = (
        Generated::new(&new_uid()),
        Generated::with(&new_uid(), patient("REFUSED")),
        Generated::new(&new_uid()),
    );
    let (a_path, refused_sop, c_path) = (a.path(), refused.sop.clone(), c.path());
    let lock = block_index_writes(&env).await;
    let first = stow_task(&dicom, a);
    until_queued(&env, 1.0, 0.0).await;
    let refused = stow_task(&dicom, refused);
    let third = stow_task(&dicom, c);
    // Both in the next group.
    until_queued(&env, 1.0, 2.0).await;
    lock.rollback().await.unwrap();
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(refused.await.unwrap().status, 503);
    let third = third.await.unwrap();
    assert_eq!(third.status, 200, "{}", third.text());
    for path in [a_path, c_path] {
        let got = dicom
            .get(
                &format!("/v2{path}"),
                "application/dicom; transfer-syntax=*",
            )
            .await;
        assert_eq!(got.status, 200, "{path}");
    }
    let found = dicom
        .search(&format!("/v2/instances?SOPInstanceUID={refused_sop}"))
        .await;
    assert_eq!(found.status, 204);
    assert_eq!(env.rows("dicom_instances", INSTANCE).await, 2);
    assert_eq!(env.rows("dicom_changefeed", INSTANCE).await, 2);
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 2);
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
            async fn search_matches_and_returns() {
                super::search_matches_and_returns(Env::$backend().await).await
            }
            #[tokio::test]
            async fn change_feed_in_order() {
                super::change_feed_in_order(Env::$backend().await).await
            }
            #[tokio::test]
            async fn frames_and_rendered() {
                super::frames_and_rendered(Env::$backend().await).await
            }
            #[tokio::test]
            async fn concurrent_stores_share_a_commit() {
                super::concurrent_stores_share_a_commit(Env::$backend().await).await
            }
            #[tokio::test]
            async fn a_failing_request_fails_alone_in_its_group() {
                super::a_failing_request_fails_alone_in_its_group(Env::$backend().await).await
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
