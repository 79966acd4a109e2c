//! A template expression: JSONPath (Json.NET's dialect, the default) or JMESPath (with
//! Azure's custom functions), compiled once when a mapping is loaded.

mod convert;
mod functions;
mod jmes;

use serde_json::Value;

use crate::jsonpath::JsonPath;

pub use jmes::JmesPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Language {
    JsonPath,
    JmesPath,
}

impl Language {
    /// Json.NET's enum reading: the name, any case.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("JsonPath") {
            Some(Language::JsonPath)
        } else if text.eq_ignore_ascii_case("JmesPath") {
            Some(Language::JmesPath)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expression {
    JsonPath(JsonPath),
    JmesPath(JmesPath),
}

/// Why an expression could not be evaluated against a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("the expression '{0}' returned multiple tokens where one was expected")]
    MultipleTokens(String),
    #[error("the expression '{expression}' failed: {message}")]
    Failed { expression: String, message: String },
}

impl Expression {
    pub fn compile(source: &str, language: Language) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        match language {
            Language::JsonPath => JsonPath::parse(source)
                .map(Expression::JsonPath)
                .map_err(|e| e.to_string()),
            Language::JmesPath => JmesPath::compile(source).map(Expression::JmesPath),
        }
    }

    pub fn source(&self) -> &str {
        match self {
            Expression::JsonPath(p) => p.as_str(),
            Expression::JmesPath(p) => p.as_str(),
        }
    }

    /// Every token the expression selects (the type match's fan-out).
    pub fn select_all(&self, data: &Value) -> Result<Vec<Value>, EvalError> {
        match self {
            Expression::JsonPath(p) => Ok(p.select(data).into_iter().cloned().collect()),
            Expression::JmesPath(p) => p.select_all(data),
        }
    }

    /// The one token the expression selects, if any; several are an error.
    pub fn select_one(&self, data: &Value) -> Result<Option<Value>, EvalError> {
        match self {
            Expression::JsonPath(p) => p
                .select_one(data)
                .map(|v| v.cloned())
                .map_err(|e| EvalError::MultipleTokens(e.0)),
            Expression::JmesPath(p) => p.select_one(data),
        }
    }
}
