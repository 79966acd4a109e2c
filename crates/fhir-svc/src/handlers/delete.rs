//! delete: `DELETE [base]/[type]/[id]` — a soft delete (read answers 410; history keeps
//! every version unless the type's policy is `no-version`); `?hardDelete=true` removes every version. 204 either way, also when there
//! was nothing to delete (as Azure's FHIR service answers).
//!
//! Conditional delete: `DELETE [base]/[type]?[search]` deletes the one match; none is 204,
//! several are 412.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use serde::Deserialize;

use super::conditional::{several, Matches};
use super::FhirCaller;
use crate::domain::etag;
use crate::error::FhirError;
use crate::http::{resource_id, resource_type, Config, FhirState, Instance};
use crate::search::query;
use crate::store::Version;
use crate::versioning;

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(rename = "hardDelete", default)]
    hard_delete: Option<String>,
}

fn hard(flag: Option<&str>) -> Result<bool, FhirError> {
    match flag {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(FhirError::invalid(format!(
            "hardDelete must be true or false, not '{other}'"
        ))),
    }
}

fn permission(hard: bool) -> Permission {
    if hard {
        Permission::HardDelete
    } else {
        Permission::Delete
    }
}

pub async fn delete(
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    path: web::Path<(String, String, String)>,
    query: web::Query<DeleteQuery>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    let hard = hard(query.hard_delete.as_deref())?;
    caller.require(permission(hard))?;
    let rt = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    Ok(deleted(
        state
            .store
            .delete(&instance, &rt, &id, hard, versioning::history(&config, &rt))
            .await?,
    ))
}

pub async fn conditional_delete(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
) -> Result<HttpResponse, FhirError> {
    let rt = resource_type(&path.1)?;
    let mut hard_flag = None;
    let mut criteria = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        if k == "hardDelete" {
            hard_flag = Some(v.into_owned());
        } else {
            criteria.append_pair(&k, &v);
        }
    }
    let hard = hard(hard_flag.as_deref())?;
    caller.require(permission(hard))?;
    let conditions = query::parse(
        &state.store.catalog(&instance).await?,
        &rt,
        &criteria.finish(),
    )?;
    match Matches::of(state.store.find(&instance, &rt, &conditions, 2).await?) {
        Matches::None => Ok(HttpResponse::NoContent().finish()),
        Matches::One(id) => {
            let id = resource_id(&id)?;
            Ok(deleted(
                state
                    .store
                    .delete(&instance, &rt, &id, hard, versioning::history(&config, &rt))
                    .await?,
            ))
        }
        Matches::Several => Err(several("delete")),
    }
}

fn deleted(version: Option<Version>) -> HttpResponse {
    let mut res = HttpResponse::NoContent();
    if let Some(v) = version {
        res.insert_header((header::ETAG, etag(v.version)));
    }
    res.finish()
}
