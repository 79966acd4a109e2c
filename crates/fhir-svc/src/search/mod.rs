//! Search, built on the official R4 SearchParameter definitions.
//!
//! - [`params`]: the definitions (vendored by `scripts/fhir-definitions.py`), compiled once
//!   with our FHIRPath evaluator;
//! - [`index`]: the values each parameter extracts from a resource, kept in index tables for
//!   the current version of every resource;
//! - [`query`]: a search query parsed into typed conditions, and the SQL that finds the
//!   resources matching them.
//!
//! Today this serves conditional create/update/delete and conditional references; the search
//! interaction itself extends the same engine.

pub mod index;
pub mod params;
pub mod query;
