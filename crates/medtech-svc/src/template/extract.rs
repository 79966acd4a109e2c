//! Extracting measurements from an event, with iomt-fhir's rules for each field:
//! - an expression that selects nothing leaves an optional field out and fails a required one;
//! - a required field that is null or blank fails;
//! - an expression selecting several tokens fails the message;
//! - device id and timestamp are required; a correlation id is required once its expression
//!   is set; patient and encounter ids are optional;
//! - values are read as Json.NET's `Value<string>()` reads them: numbers in their shortest
//!   round-trip form, booleans as `True`/`False`, objects and arrays refused.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ContentTemplate, ExtractionError, Located, Normalization, TemplateKind};
use crate::expression::EvalError;
use crate::measurement::{Measurement, MeasurementProperty};

/// The name under which a `CalculatedContent` template sees its matched token.
pub const MATCHED_TOKEN: &str = "matchedToken";

impl ContentTemplate {
    pub(super) fn extract(&self, event: &Value, out: &mut Normalization) {
        let matches = match self.type_match.expression.select_all(event) {
            Ok(m) => m,
            Err(e) => {
                out.errors
                    .push(self.error(Some(&self.type_match), e.to_string()));
                return;
            }
        };
        for token in matches {
            let scope = match (self.kind, event) {
                (TemplateKind::CalculatedContent, Value::Object(envelope)) => {
                    let mut scope = envelope.clone();
                    scope.insert(MATCHED_TOKEN.into(), token);
                    Value::Object(scope)
                }
                _ => token,
            };
            match self.measurement(&scope) {
                Ok(m) => out.measurements.push(m),
                Err(e) => out.errors.push(e),
            }
        }
    }

    fn error(&self, at: Option<&Located>, message: String) -> ExtractionError {
        ExtractionError {
            type_name: self.type_name.to_string(),
            template_path: self.path.clone(),
            expression_path: at.map(|l| l.path.clone()),
            message,
        }
    }

    fn measurement(&self, scope: &Value) -> Result<Measurement, ExtractionError> {
        let device_id = self.required(scope, "DeviceIdExpression", &self.device_id, to_text)?;
        let occurrence_time_utc =
            self.required(scope, "TimestampExpression", &self.timestamp, to_time)?;
        let correlation_id = match &self.correlation_id {
            Some(expr) => Some(self.required(
                scope,
                "CorrelationIdExpression",
                std::slice::from_ref(expr),
                to_text,
            )?),
            None => None,
        };
        let optional = |name: &str, expr: &Option<Located>| match expr {
            Some(expr) => self.evaluate(scope, name, false, std::slice::from_ref(expr), to_text),
            None => Ok(None),
        };
        let patient_id = optional("PatientIdExpression", &self.patient_id)?;
        let encounter_id = optional("EncounterIdExpression", &self.encounter_id)?;
        let mut properties = Vec::new();
        for value in &self.values {
            let found = self.evaluate(
                scope,
                &value.name,
                value.required,
                std::slice::from_ref(&value.expression),
                to_text,
            )?;
            if let Some(found) = found {
                properties.push(MeasurementProperty {
                    name: value.name.clone(),
                    value: found,
                });
            }
        }
        Ok(Measurement {
            type_name: self.type_name.clone(),
            occurrence_time_utc,
            device_id,
            patient_id,
            encounter_id,
            correlation_id,
            properties,
        })
    }

    fn required<T: Blank>(
        &self,
        scope: &Value,
        name: &str,
        alternatives: &[Located],
        convert: fn(&Value) -> Result<Option<T>, String>,
    ) -> Result<T, ExtractionError> {
        self.evaluate(scope, name, true, alternatives, convert)?
            .ok_or_else(|| {
                self.error(
                    alternatives.first(),
                    format!("unable to extract required value for [{name}]"),
                )
            })
    }

    /// Tries each alternative in turn; the first usable value wins.
    fn evaluate<T: Blank>(
        &self,
        scope: &Value,
        name: &str,
        required: bool,
        alternatives: &[Located],
        convert: fn(&Value) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, ExtractionError> {
        let mut problems = Vec::new();
        for alternative in alternatives {
            let found = alternative
                .expression
                .select_one(scope)
                .map_err(|e: EvalError| self.error(Some(alternative), e.to_string()))?;
            let Some(found) = found else { continue };
            match convert(&found) {
                Ok(v) if required && v.as_ref().is_none_or(Blank::is_blank) => problems.push(format!(
                    "a null or empty value was supplied for the required field [{name}]"
                )),
                Ok(v) => return Ok(v),
                Err(reason) => problems.push(format!(
                    "encountered an error while extracting value for [{name}] using expression {}: {reason}",
                    alternative.expression.source()
                )),
            }
        }
        if !required {
            return Ok(None);
        }
        let sources: Vec<&str> = alternatives.iter().map(|a| a.expression.source()).collect();
        let message = if problems.is_empty() {
            format!(
                "unable to extract required value for [{name}] using {}",
                sources.join(",")
            )
        } else {
            format!(
                "unable to extract required value for [{name}]: {}",
                problems.join("; ")
            )
        };
        Err(self.error(alternatives.first(), message))
    }
}

/// A null or whitespace-only value, which a required field refuses.
trait Blank {
    fn is_blank(&self) -> bool;
}

impl Blank for String {
    fn is_blank(&self) -> bool {
        self.trim().is_empty()
    }
}

impl Blank for DateTime<Utc> {
    fn is_blank(&self) -> bool {
        false
    }
}

/// Json.NET's `Value<string>()`.
pub(crate) fn to_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(true) => Ok(Some("True".into())),
        Value::Bool(false) => Ok(Some("False".into())),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Value::Number(n) => {
            let text = n.to_string();
            // Json.NET reads a fraction into a double and prints its shortest round trip.
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() && !text.contains(['e', 'E']) => Ok(Some(f.to_string())),
                _ => Ok(Some(text)),
            }
        }
        Value::Array(_) => Err("cannot convert an array to a value".into()),
        Value::Object(_) => Err("cannot convert an object to a value".into()),
    }
}

/// Json.NET's `Value<DateTime?>()`: a time in a string.
fn to_time(value: &Value) -> Result<Option<DateTime<Utc>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => crate::time::parse_timestamp(s)
            .map(Some)
            .ok_or_else(|| format!("'{s}' is not a valid time")),
        other => Err(format!("{other} is not a valid time")),
    }
}
