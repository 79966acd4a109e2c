//! Custom search parameters (R4 search.html#custom; Azure's "Defining custom search
//! parameters"): a SearchParameter resource stored in an instance defines a parameter of that
//! instance's resources.
//!
//! Its life, as Azure's FHIR service gives it:
//! - **Supported**: from the moment the SearchParameter is stored, every resource written to
//!   the instance is indexed with it as well; it cannot be searched yet, since the resources
//!   stored before it have no rows for it (a search naming it is lenient-ignored or, with
//!   `handling=strict`, refused);
//! - **Enabled**: once a `$reindex` of the instance has run through every resource (see
//!   [`crate::reindex`]), it is searchable, sortable, chainable like an R4 parameter.
//!
//! Deleting the SearchParameter resource removes the parameter. A definition whose code an R4
//! parameter of the same base already has is stored but defines nothing (the R4 one serves),
//! and so are definitions that cannot be indexed from a FHIRPath expression alone: of type
//! `composite` or `special`, or without an expression (R4's own `_text`, `_content` and its
//! XPath-only extension parameters are such). One that names an unknown base or whose
//! expression our evaluator cannot compile is refused with 400: stored, it would promise a
//! parameter that never works.
//!
//! Every replica keeps the definitions of each instance it serves for [`FRESH_FOR`] (or until
//! it writes a SearchParameter itself); a `$reindex` therefore starts no sooner than that
//! after the newest definition, so that no replica still writes resources without its rows
//! behind the job's back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Any, Row, Transaction};

use super::params::{self, Param, ParamType};
use crate::domain::{ResourceId, ResourceType};
use crate::error::FhirError;

/// How long a replica relies on the definitions it read.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// The resource type that defines parameters.
pub const SEARCH_PARAMETER: &str = "SearchParameter";

/// Where a custom parameter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Indexed on every write; waiting for a `$reindex` before it can be searched.
    Supported,
    /// Searchable.
    Enabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Supported => "Supported",
            Status::Enabled => "Enabled",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "Enabled" => Status::Enabled,
            _ => Status::Supported,
        }
    }
}

/// What a SearchParameter resource defines: a parameter `code` of each type in `bases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub url: String,
    pub code: String,
    pub bases: Vec<String>,
    pub kind: ParamType,
    pub expression: String,
    pub targets: Vec<String>,
}

fn kind_of(s: &str) -> Option<ParamType> {
    Some(match s {
        "token" => ParamType::Token,
        "string" => ParamType::String,
        "reference" => ParamType::Reference,
        "date" => ParamType::Date,
        "uri" => ParamType::Uri,
        "number" => ParamType::Number,
        "quantity" => ParamType::Quantity,
        _ => return None,
    })
}

fn kind_name(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Token => "token",
        ParamType::String => "string",
        ParamType::Reference => "reference",
        ParamType::Date => "date",
        ParamType::Uri => "uri",
        ParamType::Number => "number",
        ParamType::Quantity => "quantity",
    }
}

impl Definition {
    /// The parameter a SearchParameter resource defines, if it defines one (see the module
    /// notes); an error for a definition that cannot work.
    pub fn of(resource: &Value) -> Result<Option<Self>, FhirError> {
        let text = |k: &str| resource.get(k).and_then(Value::as_str).map(str::to_owned);
        let list = |k: &str| -> Vec<String> {
            resource
                .get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (Some(code), Some(kind)) = (text("code"), text("type")) else {
            // Both are required by R4 (1..1): validation has refused such a resource already.
            return Ok(None);
        };
        for base in list("base") {
            if base != "Resource"
                && base != "DomainResource"
                && base.parse::<ResourceType>().is_err()
            {
                return Err(FhirError::invalid(format!(
                    "SearchParameter.base: '{base}' is not an R4 resource type"
                )));
            }
        }
        // A base whose R4 parameters have this code already keeps the R4 one.
        let bases: Vec<String> = list("base")
            .into_iter()
            .flat_map(|b| match b.as_str() {
                "Resource" | "DomainResource" => {
                    ResourceType::all().map(str::to_owned).collect::<Vec<_>>()
                }
                _ => vec![b],
            })
            .filter(|b| {
                params::find(b, &code).is_none() && params::find_composite(b, &code).is_none()
            })
            .collect();
        let Some(kind) = kind_of(&kind) else {
            return Ok(None);
        };
        if bases.is_empty() {
            return Ok(None);
        }
        let Some(expression) = text("expression").filter(|e| !e.trim().is_empty()) else {
            return Ok(None);
        };
        if let Err(e) = fhirpath::compile(&expression) {
            return Err(FhirError::invalid(format!(
                "SearchParameter '{code}': the expression cannot be evaluated here: {e}"
            )));
        }
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(FhirError::invalid(format!(
                "SearchParameter.code '{code}' may hold letters, digits, '-' and '_' only"
            )));
        }
        Ok(Some(Self {
            url: text("url").unwrap_or_default(),
            code,
            bases,
            kind,
            expression,
            targets: list("target"),
        }))
    }

    fn param(&self) -> Result<Arc<Param>, fhirpath::ParseError> {
        Ok(Arc::new(Param {
            code: self.code.clone(),
            kind: self.kind,
            expression: fhirpath::compile(&self.expression)?,
            targets: self.targets.clone(),
        }))
    }
}

/// One custom parameter as stored.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The id of the SearchParameter resource that defines it.
    pub id: String,
    pub definition: Definition,
    pub status: Status,
    pub registered_ms: i64,
}

/// The custom parameters of one instance.
#[derive(Debug, Default)]
pub struct InstanceParams {
    registered: Vec<Registered>,
    /// Every parameter per base type, whatever its status: what writes index.
    indexed: HashMap<String, Vec<Arc<Param>>>,
    /// The enabled ones per (base type, code): what searches may name.
    searchable: HashMap<(String, String), Arc<Param>>,
}

impl InstanceParams {
    fn new(registered: Vec<Registered>) -> Self {
        let mut indexed: HashMap<String, Vec<Arc<Param>>> = HashMap::new();
        let mut searchable = HashMap::new();
        for r in &registered {
            let param = match r.definition.param() {
                Ok(p) => p,
                Err(e) => {
                    // Checked when it was stored; a newer evaluator may disagree.
                    tracing::warn!(code = %r.definition.code, error = %e, "custom search parameter not compiled");
                    continue;
                }
            };
            for base in &r.definition.bases {
                indexed.entry(base.clone()).or_default().push(param.clone());
                if r.status == Status::Enabled {
                    searchable.insert((base.clone(), r.definition.code.clone()), param.clone());
                }
            }
        }
        Self {
            registered,
            indexed,
            searchable,
        }
    }

    /// The parameters a resource of `rt` is indexed with beyond R4's.
    pub fn indexed(&self, rt: &str) -> &[Arc<Param>] {
        self.indexed.get(rt).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The enabled parameter `code` of `rt`.
    pub fn searchable(&self, rt: &str, code: &str) -> Option<&Param> {
        self.searchable
            .get(&(rt.to_owned(), code.to_owned()))
            .map(Arc::as_ref)
    }

    /// The parameter `code` of `rt`, enabled or not.
    fn any(&self, rt: &str, code: &str) -> Option<&Param> {
        self.indexed(rt)
            .iter()
            .find(|p| p.code == code)
            .map(Arc::as_ref)
    }

    pub fn registered(&self) -> &[Registered] {
        &self.registered
    }

    /// The newest definition's time, if any waits for a reindex.
    pub fn newest_supported_ms(&self) -> Option<i64> {
        self.registered
            .iter()
            .filter(|r| r.status == Status::Supported)
            .map(|r| r.registered_ms)
            .max()
    }
}

/// Every instance's custom parameters as this replica last read them.
#[derive(Default)]
pub struct CustomParams {
    state: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    read: HashMap<String, (Instant, Arc<InstanceParams>)>,
    /// Instances whose definitions a transaction of this replica is changing: nothing read
    /// of them is kept until it ended, so that once it committed every read sees the change.
    changing: HashMap<String, usize>,
    /// Counts changes begun and ended: a read that overlapped one is not kept either.
    generation: u64,
}

/// While alive, the instance's definitions are being changed by this replica (see
/// [`CustomParams::changing`]); dropped after the commit, or with a rolled-back transaction.
pub struct Change {
    params: Arc<CustomParams>,
    instance: String,
}

impl Drop for Change {
    fn drop(&mut self) {
        let mut c = self.params.lock();
        if let Some(n) = c.changing.get_mut(&self.instance) {
            *n -= 1;
            if *n == 0 {
                c.changing.remove(&self.instance);
            }
        }
        c.read.remove(&self.instance);
        c.generation += 1;
    }
}

impl CustomParams {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance's parameters, if this replica read them less than [`FRESH_FOR`] ago.
    pub fn cached(&self, instance: &str) -> Option<Arc<InstanceParams>> {
        self.lock()
            .read
            .get(instance)
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, p)| p.clone())
    }

    /// Marks the definitions of `instance` as being changed until the returned guard is
    /// dropped (after the changing transaction ended).
    pub fn changing(self: &Arc<Self>, instance: &str) -> Change {
        let mut c = self.lock();
        *c.changing.entry(instance.to_owned()).or_default() += 1;
        c.read.remove(instance);
        c.generation += 1;
        Change {
            params: self.clone(),
            instance: instance.to_owned(),
        }
    }

    /// Reads the instance's parameters through `executor` (and keeps them).
    pub async fn load<'e, E>(
        &self,
        executor: E,
        instance: &str,
    ) -> Result<Arc<InstanceParams>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let generation = self.lock().generation;
        let rows = sqlx::query(
            "SELECT id, url, code, bases, kind, expression, targets, status, registered_ms \
             FROM fhir_search_params WHERE instance = $1 ORDER BY registered_ms, id",
        )
        .bind(instance)
        .fetch_all(executor)
        .await?;
        let mut registered = Vec::with_capacity(rows.len());
        for row in rows {
            let words =
                |s: String| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
            let kind: String = row.try_get("kind")?;
            let Some(kind) = kind_of(&kind) else { continue };
            registered.push(Registered {
                id: row.try_get("id")?,
                definition: Definition {
                    url: row.try_get("url")?,
                    code: row.try_get("code")?,
                    bases: words(row.try_get("bases")?),
                    kind,
                    expression: row.try_get("expression")?,
                    targets: words(row.try_get("targets")?),
                },
                status: Status::parse(&row.try_get::<String, _>("status")?),
                registered_ms: row.try_get("registered_ms")?,
            });
        }
        let params = Arc::new(InstanceParams::new(registered));
        let mut c = self.lock();
        if c.generation == generation && !c.changing.contains_key(instance) {
            c.read
                .insert(instance.to_owned(), (Instant::now(), params.clone()));
        }
        Ok(params)
    }
}

/// Records what the SearchParameter `id` now defines (`None`: nothing, e.g. it was deleted).
/// A definition that is unchanged keeps its status; a changed one needs a reindex again.
pub async fn record(
    tx: &mut Transaction<'static, Any>,
    instance: &str,
    id: &ResourceId,
    definition: Option<&Definition>,
) -> Result<(), FhirError> {
    let Some(d) = definition else {
        sqlx::query("DELETE FROM fhir_search_params WHERE instance = $1 AND id = $2")
            .bind(instance)
            .bind(id.as_str())
            .execute(&mut **tx)
            .await?;
        return Ok(());
    };
    // Two definitions of one code for one type would index two things under one name.
    let others = sqlx::query(
        "SELECT id, bases FROM fhir_search_params WHERE instance = $1 AND code = $2 AND id <> $3",
    )
    .bind(instance)
    .bind(&d.code)
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    for other in others {
        let bases: String = other.try_get("bases")?;
        if let Some(base) = bases
            .split_whitespace()
            .find(|b| d.bases.iter().any(|m| m == b))
        {
            let other: String = other.try_get("id")?;
            return Err(FhirError::invalid(format!(
                "a search parameter with the code '{}' exists for {base} already (SearchParameter/{other})",
                d.code
            )));
        }
    }
    let bases = d.bases.join(" ");
    let targets = d.targets.join(" ");
    let kind = kind_name(d.kind);
    let unchanged = sqlx::query(
        "SELECT 1 FROM fhir_search_params WHERE instance = $1 AND id = $2 AND code = $3 \
         AND bases = $4 AND kind = $5 AND expression = $6 AND targets = $7",
    )
    .bind(instance)
    .bind(id.as_str())
    .bind(&d.code)
    .bind(&bases)
    .bind(kind)
    .bind(&d.expression)
    .bind(&targets)
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    if unchanged {
        sqlx::query("UPDATE fhir_search_params SET url = $3 WHERE instance = $1 AND id = $2")
            .bind(instance)
            .bind(id.as_str())
            .bind(&d.url)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    sqlx::query("DELETE FROM fhir_search_params WHERE instance = $1 AND id = $2")
        .bind(instance)
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO fhir_search_params \
         (instance, id, url, code, bases, kind, expression, targets, status, registered_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(instance)
    .bind(id.as_str())
    .bind(&d.url)
    .bind(&d.code)
    .bind(&bases)
    .bind(kind)
    .bind(&d.expression)
    .bind(&targets)
    .bind(Status::Supported.as_str())
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Enables the parameters of `instance` that a reindex which began at `started_ms` covered:
/// those defined at least [`FRESH_FOR`] before it (every replica indexed with them by then).
pub async fn enable_covered(
    tx: &mut Transaction<'static, Any>,
    instance: &str,
    started_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE fhir_search_params SET status = $2 \
         WHERE instance = $1 AND status = $3 AND registered_ms <= $4",
    )
    .bind(instance)
    .bind(Status::Enabled.as_str())
    .bind(Status::Supported.as_str())
    .bind(started_ms - FRESH_FOR.as_millis() as i64)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// The search parameters a request of one instance may name: R4's and its enabled custom ones
/// (with `partial`, the ones not reindexed yet as well).
#[derive(Clone, Default)]
pub struct Catalog {
    custom: Arc<InstanceParams>,
    partial: bool,
}

/// Azure's request header for searching with parameters a reindex has not covered yet
/// (to try one out before reindexing everything; resources older than it do not match).
pub const USE_PARTIAL_INDICES: &str = "x-ms-use-partial-indices";

impl Catalog {
    pub fn new(custom: Arc<InstanceParams>) -> Self {
        Self {
            custom,
            partial: false,
        }
    }

    /// This catalog, with the parameters still waiting for a reindex if `partial`.
    pub fn with_partial(self, partial: bool) -> Self {
        Self { partial, ..self }
    }

    /// The parameter `code` of `rt`.
    pub fn find(&self, rt: &str, code: &str) -> Option<&Param> {
        params::find(rt, code).or_else(|| match self.partial {
            true => self.custom.any(rt, code),
            false => self.custom.searchable(rt, code),
        })
    }

    /// The instance's custom parameters.
    pub fn custom(&self) -> &InstanceParams {
        &self.custom
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_search_parameter_defines_a_parameter_of_its_bases() {
        let d = Definition::of(&json!({
            "resourceType": "SearchParameter", "url": "http://example.org/sp/eye",
            "code": "eye-colour", "base": ["Patient"], "type": "token",
            "expression": "Patient.extension('http://example.org/eye').value"
        }))
        .unwrap()
        .unwrap();
        assert_eq!(d.bases, ["Patient"]);
        assert_eq!(d.kind, ParamType::Token);
    }

    #[test]
    fn an_r4_code_of_the_same_base_defines_nothing() {
        let d = Definition::of(&json!({
            "resourceType": "SearchParameter", "code": "name", "base": ["Patient"],
            "type": "string", "expression": "Patient.name"
        }))
        .unwrap();
        assert_eq!(d, None);
        // Nor do definitions without an expression, or of composite and special types.
        let d = Definition::of(&json!({
            "resourceType": "SearchParameter", "code": "age-x", "base": ["Patient"],
            "type": "number"
        }))
        .unwrap();
        assert_eq!(d, None);
        let d = Definition::of(&json!({
            "resourceType": "SearchParameter", "code": "near-x", "base": ["Location"],
            "type": "special", "expression": "Location.position"
        }))
        .unwrap();
        assert_eq!(d, None);
    }

    #[test]
    fn a_definition_that_cannot_work_is_refused() {
        for bad in [
            json!({"code": "x1", "base": ["Patient"], "type": "token", "expression": "Patient.("}),
            json!({"code": "x1", "base": ["NoSuchType"], "type": "token", "expression": "a"}),
            json!({"code": "x y", "base": ["Patient"], "type": "token", "expression": "Patient.id"}),
        ] {
            assert!(
                matches!(Definition::of(&bad), Err(FhirError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
