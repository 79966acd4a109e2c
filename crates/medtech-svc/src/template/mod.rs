//! Device mappings: Azure's `CollectionContent` of `JsonPathContent`, `CalculatedContent`,
//! `IotJsonPathContent` and `IotCentralJsonPathContent` templates, which turn a device event
//! into normalized [`Measurement`]s.
//!
//! Every template's type match selects tokens in the event; each token becomes one
//! measurement (fan-out). The JSONPath family evaluates its other expressions against the
//! matched token itself; `CalculatedContent` evaluates them against the whole event with the
//! token added as `matchedToken`, so they can reach both.

mod extract;
pub(crate) mod parse;

use serde::Serialize;

use crate::envelope::DeviceEvent;
use crate::expression::Expression;
use crate::identity::TypeName;
use crate::mapping_doc::InvalidMapping;
use crate::measurement::Measurement;

/// A loaded, valid device mapping.
#[derive(Debug, Clone)]
pub struct DeviceMapping {
    templates: Vec<ContentTemplate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TemplateKind {
    JsonPathContent,
    CalculatedContent,
    IotJsonPathContent,
    IotCentralJsonPathContent,
}

/// One template of the collection.
#[derive(Debug, Clone)]
pub struct ContentTemplate {
    pub kind: TemplateKind,
    pub type_name: TypeName,
    /// Where the template is in the mapping, e.g. `$.template[1]`.
    pub path: String,
    type_match: Located,
    /// Alternatives, first found wins (an IoT Hub template falls back to the enqueued time).
    device_id: Vec<Located>,
    timestamp: Vec<Located>,
    patient_id: Option<Located>,
    encounter_id: Option<Located>,
    correlation_id: Option<Located>,
    values: Vec<ValueExpression>,
}

/// An expression and where it was written.
#[derive(Debug, Clone)]
struct Located {
    expression: Expression,
    path: String,
}

#[derive(Debug, Clone)]
struct ValueExpression {
    name: String,
    expression: Located,
    required: bool,
}

/// A message a template could not normalize.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("template '{type_name}' ({template_path}): {message}")]
pub struct ExtractionError {
    pub type_name: String,
    pub template_path: String,
    /// The expression that failed, where the failure is one expression's.
    pub expression_path: Option<String>,
    pub message: String,
}

/// What a device mapping made of one event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Normalization {
    pub measurements: Vec<Measurement>,
    pub errors: Vec<ExtractionError>,
}

impl DeviceMapping {
    /// Loads a mapping, reporting every problem with its path and line.
    pub fn parse(source: &str) -> Result<Self, InvalidMapping> {
        parse::device_mapping(source)
    }

    pub fn templates(&self) -> &[ContentTemplate] {
        &self.templates
    }

    /// Runs every template over the event. The pipeline treats any error as the message's
    /// failure; the debugger shows the measurements that did come out as well.
    pub fn normalize(&self, event: &DeviceEvent) -> Normalization {
        let mut out = Normalization::default();
        for template in &self.templates {
            template.extract(event.as_json(), &mut out);
        }
        out
    }
}
