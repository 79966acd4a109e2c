//! The configuration of a MedTech service instance: its device mapping, its FHIR destination
//! mapping, its [`Destination`] (which FHIR service, how Patient and Device are resolved) and
//! its [`IngestionEndpoint`] (which topic and consumer group it reads).
//!
//! Mappings are kept as the user wrote them and validated whenever they are set, so what is
//! stored always loads; [`LoadedConfig`] is the parsed form the pipeline runs with.

pub mod arm;
pub mod destination;
pub mod ingestion;
pub mod store;

use std::sync::Arc;

pub use destination::{Destination, ResolutionType};
use hds_core::names::InstanceName;
pub use ingestion::{DeviceSource, IngestionEndpoint};

use crate::fhir_mapping::FhirMapping;
use crate::mapping_doc::InvalidMapping;
use crate::template::DeviceMapping;

/// What is stored for an instance; any part may still be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceConfig {
    pub device_mapping: Option<String>,
    pub fhir_mapping: Option<String>,
    pub destination: Option<Destination>,
    /// Absent until provisioning set it: the defaults.
    pub ingestion: Option<IngestionEndpoint>,
    /// Grows with every change.
    pub revision: i64,
}

/// A complete configuration, parsed: what a pipeline runs with.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub device: Arc<DeviceMapping>,
    pub fhir: Arc<FhirMapping>,
    pub destination: Destination,
    pub ingestion: IngestionEndpoint,
    pub revision: i64,
}

impl LoadedConfig {
    /// The topic and group the pipeline reads.
    pub fn source(&self, instance: &InstanceName) -> DeviceSource {
        self.ingestion.source(instance)
    }
}

/// Which part of the configuration is missing or invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Incomplete {
    #[error("no {0} has been set")]
    Missing(&'static str),
    #[error("the stored {0} no longer loads: {1}")]
    Invalid(&'static str, InvalidMapping),
}

impl InstanceConfig {
    /// The topic and group the instance reads (HTTP ingestion publishes to that topic too),
    /// whether or not the rest of the configuration is complete.
    pub fn source(&self, instance: &InstanceName) -> DeviceSource {
        self.ingestion.clone().unwrap_or_default().source(instance)
    }

    /// The parsed configuration, once all three parts are set.
    pub fn load(&self) -> Result<LoadedConfig, Incomplete> {
        let device = self
            .device_mapping
            .as_deref()
            .ok_or(Incomplete::Missing("device mapping"))?;
        let fhir = self
            .fhir_mapping
            .as_deref()
            .ok_or(Incomplete::Missing("FHIR destination mapping"))?;
        let destination = self
            .destination
            .clone()
            .ok_or(Incomplete::Missing("destination"))?;
        Ok(LoadedConfig {
            device: Arc::new(
                DeviceMapping::parse(device)
                    .map_err(|e| Incomplete::Invalid("device mapping", e))?,
            ),
            fhir: Arc::new(
                FhirMapping::parse(fhir)
                    .map_err(|e| Incomplete::Invalid("FHIR destination mapping", e))?,
            ),
            destination,
            ingestion: self.ingestion.clone().unwrap_or_default(),
            revision: self.revision,
        })
    }
}
