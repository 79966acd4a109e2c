//! create: `POST [base]/[type]` — the server assigns the id; 201 with `Location`.
//! Conditional create: with `If-None-Exist: [search]`, a match is answered 200 with the
//! existing resource and nothing is written; several matches are 412.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use super::conditional::{several, Matches};
use super::FhirCaller;
use crate::domain::ResourceId;
use crate::error::FhirError;
use crate::http::{
    base_url, check_type, prefer_return, read_resource, resource_id, resource_type,
    version_response, FhirState, Instance,
};
use crate::search::query;
use crate::store::{self, History, Method};

pub async fn create(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    path: web::Path<(String, String)>,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    caller.require(Permission::Write)?;
    let rt = resource_type(&path.1)?;
    let resource = read_resource(&req, body, state.max_body_bytes).await?;
    check_type(&resource, &rt)?;
    let base = base_url(&req, &state, &instance);
    if let Some(criteria) = req.headers().get("if-none-exist") {
        let criteria = criteria
            .to_str()
            .map_err(|_| FhirError::invalid("If-None-Exist is not text"))?;
        let criteria = criteria.split_once('?').map_or(criteria, |(_, q)| q);
        let conditions = query::parse(&state.store.catalog(&instance).await?, &rt, criteria)?;
        // Search and create in one transaction, after concurrent creates with these criteria.
        let mut tx = state.store.begin().await?;
        store::lock_criteria(&mut tx, &instance, &rt, &conditions).await?;
        let found = query::find(
            &mut **tx.conn_for(&query::types_read(&rt, &conditions)).await?,
            &instance,
            &rt,
            &conditions,
            2,
        )
        .await?;
        return match Matches::of(found) {
            Matches::None => {
                // A client-supplied id is ignored on create, as the spec allows.
                let id = ResourceId::generate();
                let written = store::write_in(
                    &mut tx,
                    &instance,
                    &rt,
                    &id,
                    resource,
                    Method::Post,
                    None,
                    History::Keep,
                )
                .await?;
                state.store.commit(tx).await?;
                Ok(version_response(
                    HttpResponse::Created(),
                    &written.version,
                    &base,
                    true,
                    prefer_return(&req),
                ))
            }
            Matches::One(id) => {
                let id = resource_id(&id)?;
                let existing = store::read_in(&mut **tx.conn().await?, &instance, &rt, &id)
                    .await?
                    .ok_or_else(|| FhirError::Internal("a matched resource vanished".into()))?;
                Ok(version_response(
                    HttpResponse::Ok(),
                    &existing,
                    &base,
                    false,
                    prefer_return(&req),
                ))
            }
            Matches::Several => Err(several("create")),
        };
    }
    // A client-supplied id is ignored on create, as the spec allows.
    let id = ResourceId::generate();
    let written = state
        .store
        .write(
            &instance,
            &rt,
            &id,
            resource,
            Method::Post,
            None,
            History::Keep,
        )
        .await?;
    Ok(version_response(
        HttpResponse::Created(),
        &written.version,
        &base,
        true,
        prefer_return(&req),
    ))
}
