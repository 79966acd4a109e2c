//! FHIR destination mappings: Azure's `CollectionFhir` of `CodeValueFhir` templates, which say
//! how the measurements of one type become an Observation: its codes and category, how
//! measurements are grouped in time (`periodInterval`), and which measurement values fill
//! `value[x]` and `component`s as Quantity, SampledData, String or CodeableConcept.

mod parse;
pub mod value;

use serde_json::Number;

use crate::identity::TypeName;
use crate::mapping_doc::InvalidMapping;

/// A loaded, valid FHIR destination mapping.
#[derive(Debug, Clone)]
pub struct FhirMapping {
    templates: Vec<CodeValueTemplate>,
}

impl FhirMapping {
    pub fn parse(source: &str) -> Result<Self, InvalidMapping> {
        parse::fhir_mapping(source)
    }

    /// The template of a measurement type (Azure matches type names in any case).
    pub fn template_for(&self, type_name: &TypeName) -> Option<&CodeValueTemplate> {
        self.templates
            .iter()
            .find(|t| t.type_name.matches(type_name))
    }

    pub fn templates(&self) -> &[CodeValueTemplate] {
        &self.templates
    }
}

/// How measurements are grouped into Observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodInterval {
    /// `-1`: one Observation per correlation id.
    CorrelationId,
    /// `0`: one Observation per measurement time.
    Single,
    /// `60`: one Observation per UTC hour.
    Hourly,
    /// `1440`: one Observation per UTC day.
    Daily,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coding {
    pub system: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConceptTemplate {
    pub text: Option<String>,
    pub codes: Vec<Coding>,
}

#[derive(Debug, Clone)]
pub struct CodeValueTemplate {
    pub type_name: TypeName,
    pub period_interval: PeriodInterval,
    pub codes: Vec<Coding>,
    pub category: Vec<ConceptTemplate>,
    pub value: Option<ValueTemplate>,
    pub components: Vec<ComponentTemplate>,
}

#[derive(Debug, Clone)]
pub struct ComponentTemplate {
    pub codes: Vec<Coding>,
    pub value: ValueTemplate,
}

/// Which measurement value fills a `value[x]`, and as what.
#[derive(Debug, Clone)]
pub struct ValueTemplate {
    /// The measurement property; a top-level value without one is never filled (as in Azure).
    pub value_name: Option<String>,
    pub kind: ValueKind,
}

#[derive(Debug, Clone)]
pub enum ValueKind {
    Quantity {
        unit: Option<String>,
        system: Option<String>,
        code: Option<String>,
    },
    SampledData {
        /// Milliseconds between samples, as written (it becomes `SampledData.period`).
        default_period: Number,
        unit: Option<String>,
    },
    String,
    CodeableConcept(ConceptTemplate),
}
