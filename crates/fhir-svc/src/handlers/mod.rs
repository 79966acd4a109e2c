//! One module per FHIR interaction (R4 `http.html`), named as the spec names them.

pub mod bundle;
pub mod capabilities;
pub mod conditional;
pub mod create;
mod creations;
pub mod delete;
pub mod export;
pub mod history;
pub mod patch;
pub mod purge_history;
pub mod read;
pub mod reindex;
pub mod search;
pub mod search_parameter_status;
pub mod update;
pub mod validate;
pub mod vread;

/// Handlers name their caller as before; who it is now depends on the instance's settings.
pub use crate::caller::FhirCaller;
