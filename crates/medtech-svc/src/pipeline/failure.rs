//! Why a message (or what it produced) could not be written, in Azure's terms: the stage
//! (`ConnectorOperation`), the error type (`ErrorType`) and whether waiting can cure it.
//! Transient failures are retried; permanent ones send the message to the dead-letter topic.

use std::fmt;

/// Azure's `ConnectorOperation` of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Normalization,
    Grouping,
    FhirConversion,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Normalization => "Normalization",
            Stage::Grouping => "Grouping",
            Stage::FhirConversion => "FHIRConversion",
        }
    }
}

/// Azure's `ErrorType` names.
pub mod error_type {
    pub const DEVICE_MESSAGE: &str = "DeviceMessageError";
    pub const DEVICE_TEMPLATE: &str = "DeviceTemplateError";
    pub const FHIR_TEMPLATE: &str = "FHIRTemplateError";
    pub const FHIR_CONVERSION: &str = "FHIRConversionError";
    pub const FHIR_RESOURCE: &str = "FHIRResourceError";
    pub const FHIR_SERVICE: &str = "FHIRServiceError";
    pub const EVENT_HUB: &str = "EventHubError";
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub stage: Stage,
    pub error_type: &'static str,
    /// A stable, machine-readable reason, e.g. `InvalidDeviceMessage`, `DeviceNotFound`.
    pub code: &'static str,
    pub message: String,
    /// The template (type name) involved, when one is.
    pub template: Option<String>,
    /// Waiting may cure it (FHIR 5xx/429, network): retry instead of dead-lettering.
    pub transient: bool,
}

impl Failure {
    pub fn permanent(
        stage: Stage,
        error_type: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            stage,
            error_type,
            code,
            message: message.into(),
            template: None,
            transient: false,
        }
    }

    pub fn transient(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            stage: Stage::FhirConversion,
            error_type: error_type::FHIR_SERVICE,
            code,
            message: message.into(),
            template: None,
            transient: true,
        }
    }

    pub fn with_template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Azure's severity: a service that cannot be reached is critical, a bad message a warning.
    pub fn severity(&self) -> &'static str {
        if self.transient {
            "Critical"
        } else {
            "Warning"
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.stage.as_str(),
            self.error_type,
            self.code,
            self.message
        )
    }
}
