//! Search, built on the official R4 SearchParameter definitions.
//!
//! - [`params`]: the definitions (vendored by `scripts/fhir-definitions.py`), compiled once
//!   with our FHIRPath evaluator;
//! - [`index`]: the values each parameter extracts from a resource, kept in index tables for
//!   the current version of every resource;
//! - [`keys`]: the integer keys index rows are organised by (a resource, a parameter);
//! - [`query`]: a search query parsed into typed conditions, and the SQL that finds the
//!   resources matching them;
//! - [`compartments`]: the R4 CompartmentDefinitions, for compartment search;
//! - [`cursor`]: continuation tokens, the keyset position a next page starts after;
//! - [`custom`]: the parameters an instance's own SearchParameter resources define.
//!
//! It serves the search interaction, conditional create/update/delete/patch and conditional
//! references alike.

pub mod compartments;
pub mod cursor;
pub mod custom;
pub mod index;
pub mod keys;
pub mod params;
pub mod query;
