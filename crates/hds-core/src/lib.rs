//! hds-core: the vocabulary and the seams that every hds service shares.
//!
//! Nothing here knows FHIR, DICOM or device mappings. A service builds on:
//! - [`names`]: workspaces, services and the `{ws}-{name}` data-plane instance names;
//! - [`config`]: settings from file, environment and flags, with errors that name the key;
//! - [`db`]: one sqlx pool over PostgreSQL or SQLite, migrations run at start;
//! - [`bus`]: the [`bus::EventBus`] seam (Kafka or the embedded bus) and its consumer loop;
//! - [`blob`]: the [`blob::BlobStore`] seam (S3 or a local folder);
//! - [`outbox`]: events committed with the change they report, relayed to the bus after;
//! - [`events`]: the protobuf events of `proto/` and their topics;
//! - [`provisioning`]: the data-plane side of provisioning, shared by the three data-plane services;
//! - [`dataplane`]: start-up and instance routes of the three data-plane services;
//! - [`auth`]: bearer tokens and Azure's data-plane roles;
//! - [`telemetry`]: logs, traces and W3C trace-context propagation;
//! - [`ops`]: the operational HTTP surface every service has (health, metrics, server start).

pub mod auth;
pub mod blob;
pub mod bus;
pub mod config;
pub mod cors;
pub mod dataplane;
pub mod db;
pub mod events;
pub mod names;
pub mod ops;
pub mod outbox;
pub mod provisioning;
pub mod telemetry;

pub use tokio_util::sync::CancellationToken;
