//! The dicom-svc under test, on SQLite + the embedded bus + a blob folder, or on PostgreSQL +
//! Kafka (tansu) + S3 (s3s-fs); DICOM test files made with dicom-rs; and a small DICOMweb
//! client over reqwest.
#![allow(dead_code)]

pub mod client;

use std::sync::Arc;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_svc::{Deps, Settings};
use hds_core::auth::AuthSettings;
use hds_core::blob::SharedBlobStore;
use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::kafka::KafkaBus;
use hds_core::bus::{SharedBus, Subscription};
use hds_core::db::Database;
use hds_core::events::v1::{OperationCommand, OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, to_message, topics};
use hds_core::names::ServiceKind;
use hds_core::CancellationToken;
use hds_testkit::{unique, S3Server, Tansu};
use prost::Message;

pub struct Env {
    pub base: String,
    pub bus: SharedBus,
    pub db: Database,
    pub blobs: SharedBlobStore,
    pub shutdown: CancellationToken,
    pub running: Option<hds_core::ops::Running>,
    pub _tansu: Option<Tansu>,
    pub _s3: Option<S3Server>,
    pub _dir: tempfile::TempDir,
}

impl Env {
    /// SQLite, the embedded bus and a local blob folder.
    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = hds_testkit::sqlite_database(dir.path(), "dicom").await;
        let bus_db = hds_testkit::sqlite_database(dir.path(), "bus").await;
        let bus: SharedBus = Arc::new(
            EmbeddedBus::open(bus_db, EmbeddedBusSettings::new("unused"))
                .await
                .unwrap(),
        );
        let blobs: SharedBlobStore = Arc::new(
            hds_core::blob::local::LocalBlobStore::open(&dir.path().join("blobs"))
                .await
                .unwrap(),
        );
        Self::start(Deps { db, bus, blobs }, None, None, dir).await
    }

    /// PostgreSQL, Kafka (tansu) and S3 (s3s-fs).
    pub async fn kafka() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tansu = Tansu::start().await;
        let s3 = S3Server::start().await;
        let bus: SharedBus = Arc::new(KafkaBus::new(&tansu.settings()).unwrap());
        let db = hds_testkit::pg_database("dicom").await;
        let blobs: SharedBlobStore = Arc::new(
            hds_core::blob::s3::S3BlobStore::new(&s3.settings(&unique("dicom").replace('_', "-")))
                .await
                .unwrap(),
        );
        Self::start(Deps { db, bus, blobs }, Some(tansu), Some(s3), dir).await
    }

    async fn start(
        deps: Deps,
        tansu: Option<Tansu>,
        s3: Option<S3Server>,
        dir: tempfile::TempDir,
    ) -> Self {
        // One status partition: the order of status events is the order of handling.
        deps.bus
            .ensure_topic(topics::OPERATIONS_STATUS, 1)
            .await
            .unwrap();
        let mut settings = Settings::local_defaults(dir.path());
        settings.auth = AuthSettings::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let (bus, db, blobs) = (deps.bus.clone(), deps.db.clone(), deps.blobs.clone());
        let running = dicom_svc::start_with(settings, deps, listener, shutdown.clone())
            .await
            .unwrap();
        Env {
            base: format!("http://{}", running.addr),
            bus,
            db,
            blobs,
            shutdown,
            running: Some(running),
            _tansu: tansu,
            _s3: s3,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Provisions `instance` and waits until dicom-svc reported it ready.
    pub async fn provision(&self, instance: &str) {
        self.provision_with(instance, serde_json::json!({})).await
    }

    /// Provisions (or re-provisions) `instance` with these ARM `properties`; returns once
    /// dicom-svc reported it ready.
    pub async fn provision_with(&self, instance: &str, properties: serde_json::Value) {
        let s = self
            .command(OperationKind::ProvisionInstance, instance, properties)
            .await;
        assert_eq!(s.state, OperationState::Succeeded as i32, "{s:?}");
    }

    /// Deletes `instance`; returns once dicom-svc reported it gone.
    pub async fn deprovision(&self, instance: &str) {
        let s = self
            .command(
                OperationKind::DeprovisionInstance,
                instance,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(s.state, OperationState::Succeeded as i32, "{s:?}");
    }

    /// Sends a provisioning command for `instance` and returns dicom-svc's report of it.
    pub async fn command(
        &self,
        kind: OperationKind,
        instance: &str,
        properties: serde_json::Value,
    ) -> OperationStatus {
        let mut statuses = self
            .bus
            .subscribe(&unique("g"), &[topics::OPERATIONS_STATUS])
            .await
            .unwrap();
        let cmd = OperationCommand {
            event_id: new_event_id(),
            operation_id: new_event_id(),
            kind: kind as i32,
            resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.HealthcareApis/workspaces/ws1/dicomservices/{instance}"),
            service_kind: ServiceKind::Dicom.to_proto() as i32,
            instance: instance.into(),
            properties_json: properties.to_string(),
            requested_at_unix_ms: 0,
        };
        self.bus
            .publish(
                topics::OPERATIONS_COMMANDS,
                to_message(&cmd, cmd.resource_id.clone()),
            )
            .await
            .unwrap();
        let status = loop {
            let d = tokio::time::timeout(Duration::from_secs(60), statuses.next())
                .await
                .expect("a status within 60 s")
                .unwrap();
            let s = OperationStatus::decode(d.payload.as_slice()).unwrap();
            if s.operation_id == cmd.operation_id {
                break s;
            }
        };
        statuses.close().await;
        status
    }

    /// Every blob key of the store under `prefix`.
    pub async fn blob_keys(&self, prefix: &str) -> Vec<String> {
        self.blobs
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect()
    }

    /// The number of rows of `table` for `instance`.
    pub async fn rows(&self, table: &str, instance: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE instance = $1"
        ))
        .bind(instance)
        .fetch_one(self.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
    }

    pub async fn subscribe(&self, topic: &str) -> Box<dyn Subscription> {
        self.bus.subscribe(&unique("t"), &[topic]).await.unwrap()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.running.take().unwrap().wait())
            .await
            .expect("graceful shutdown within 30 s");
    }
}

/// A fresh UID under the UUID root 2.25 (PS3.5 B.2).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// A small secondary-capture instance: the template the tests vary.
pub fn template(study: &str, series: &str, sop: &str) -> InMemDicomObject {
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE),
        text(tags::SOP_INSTANCE_UID, VR::UI, sop),
        text(tags::STUDY_DATE, VR::DA, "20240115"),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
        text(tags::PATIENT_ID, VR::LO, "PID-1"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, study),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(4_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(4_u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8((0..16u8).collect::<Vec<_>>().into()),
        ),
    ])
}

/// `obj` as a DICOM file in `ts`, with a non-zero preamble (which the service must zero).
pub fn file(obj: InMemDicomObject, ts: &str) -> Vec<u8> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid(SECONDARY_CAPTURE)
        .media_storage_sop_instance_uid("1.2.3");
    let mut out = Vec::new();
    obj.with_meta(meta).unwrap().write_all(&mut out).unwrap();
    out[..128].fill(0x5a);
    out
}

/// A generated instance: its UIDs and file bytes.
pub struct Generated {
    pub study: String,
    pub series: String,
    pub sop: String,
    pub bytes: Vec<u8>,
}

impl Generated {
    pub fn new(study: &str) -> Self {
        Self::with(study, |_| {})
    }

    /// A new instance of `study`, changed by `edit` before it is written.
    pub fn with(study: &str, edit: impl FnOnce(&mut InMemDicomObject)) -> Self {
        let (series, sop) = (new_uid(), new_uid());
        let mut obj = template(study, &series, &sop);
        edit(&mut obj);
        Generated {
            study: study.into(),
            series,
            sop,
            bytes: file(obj, EXPLICIT_LE),
        }
    }

    /// The bytes the service keeps: the same, with the preamble zeroed.
    pub fn stored_bytes(&self) -> Vec<u8> {
        let mut b = self.bytes.clone();
        b[..128].fill(0);
        b
    }

    pub fn path(&self) -> String {
        format!(
            "/studies/{}/series/{}/instances/{}",
            self.study, self.series, self.sop
        )
    }
}

/// A multipart/related body of DICOM parts, and its Content-Type.
pub fn multipart(parts: &[&[u8]]) -> (String, Vec<u8>) {
    let boundary = format!("b{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

/// The parts of a multipart/related response body.
pub fn split_multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    loop {
        let start = find(rest, delimiter.as_bytes()).expect("a delimiter") + delimiter.len();
        rest = &rest[start..];
        if rest.starts_with(b"--") {
            return parts;
        }
        let head_end = find(rest, b"\r\n\r\n").expect("part headers") + 4;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let ct = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or_default()
            .to_owned();
        rest = &rest[head_end..];
        let end = find(rest, format!("\r\n{delimiter}").as_bytes()).expect("part end");
        parts.push((ct, rest[..end].to_vec()));
        rest = &rest[end + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
