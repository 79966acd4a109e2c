//! The handlers every resource type shares (get, put, patch, delete, list); each type's
//! module registers them on its paths and checks its own `properties`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Resource as Route};
use hds_core::auth::Permission;
use hds_core::ops::Caller;
use serde_json::json;

use super::{method_not_allowed, ApiVersion, AppState};
use crate::body::{check_media_type, PatchBody, PutBody};
use crate::changes::{self, Accepted, Ctx, Preconditions};
use crate::error::ArmError;
use crate::paging::{next_link, ListQuery, Page, PageRequest};
use crate::resource_id::{
    collection_prefix, group_prefix, subscription_prefix, ResourcePath, ResourceType,
};
use crate::resources::{self, Resource};

/// The resource type a route serves, and the check of its `properties`.
#[derive(Clone, Copy)]
pub struct Kind {
    pub rtype: ResourceType,
    pub validate: fn(&mut PutBody) -> Result<(), ArmError>,
}

/// `GET`, `PUT`, `PATCH` (unless `patch` is false) and `DELETE` on one resource path.
pub fn item(pattern: &str, kind: Kind, patch: bool) -> Route {
    let mut route = web::resource(pattern)
        .app_data(web::Data::new(kind))
        .route(web::get().to(get))
        .route(web::put().to(put))
        .route(web::delete().to(delete));
    if patch {
        route = route.route(web::patch().to(self::patch));
    }
    route.default_service(web::to(method_not_allowed))
}

/// `GET` on the collection of `kind` under its parent.
pub fn collection(pattern: &str, kind: Kind) -> Route {
    web::resource(pattern)
        .app_data(web::Data::new(kind))
        .route(web::get().to(list))
        .default_service(web::to(method_not_allowed))
}

/// Workspaces of a subscription (`group` absent) or of a resource group.
pub fn workspace_collection(pattern: &str) -> Route {
    web::resource(pattern)
        .route(web::get().to(list_workspaces))
        .default_service(web::to(method_not_allowed))
}

fn path_of(req: &HttpRequest, t: ResourceType) -> Result<ResourcePath, ArmError> {
    let m = req.match_info();
    let seg = |k: &str| m.get(k).unwrap_or_default();
    ResourcePath::parse(
        t,
        seg("subscription"),
        seg("group"),
        seg("workspace"),
        m.get("service"),
        m.get("destination"),
    )
}

fn preconditions(req: &HttpRequest) -> Preconditions {
    let h = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Preconditions {
        if_match: h(header::IF_MATCH),
        if_none_match: h(header::IF_NONE_MATCH),
    }
}

fn with_etag(
    mut res: actix_web::HttpResponseBuilder,
    r: &Resource,
    state: &AppState,
) -> HttpResponse {
    res.insert_header((header::ETAG, format!("\"{}\"", r.etag)))
        .json(r.to_json(&state.service_urls))
}

/// Percent-encodes one path segment (a location like "West US 2").
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The absolute URL of an operation's result, on the host the client called.
pub fn operation_url(req: &HttpRequest, subscription: &str, location: &str, id: &str) -> String {
    let info = req.connection_info();
    format!(
        "{}://{}/subscriptions/{}/providers/Microsoft.HealthcareApis/locations/{}/operationresults/{id}?api-version={}",
        info.scheme(),
        info.host(),
        segment(subscription),
        segment(location),
        crate::API_VERSION
    )
}

/// `Azure-AsyncOperation`, `Location` and `Retry-After` of a long-running change.
fn async_headers(
    res: &mut actix_web::HttpResponseBuilder,
    req: &HttpRequest,
    state: &AppState,
    a: &Accepted,
) {
    let url = operation_url(req, &a.subscription, &a.resource.location, &a.operation);
    res.insert_header(("Azure-AsyncOperation", url.clone()))
        .insert_header((header::LOCATION, url))
        .insert_header((header::RETRY_AFTER, state.retry_after_secs.to_string()));
}

async fn get(
    caller: Caller<ArmError>,
    req: HttpRequest,
    version: web::Query<ApiVersion>,
    kind: web::Data<Kind>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::ManageRead)?;
    let path = path_of(&req, kind.rtype)?;
    let r = resources::get(state.db.pool(), &path.key())
        .await?
        .ok_or_else(|| ArmError::ResourceNotFound(path.id()))?;
    Ok(with_etag(HttpResponse::Ok(), &r, &state))
}

async fn put(
    caller: Caller<ArmError>,
    req: HttpRequest,
    version: web::Query<ApiVersion>,
    kind: web::Data<Kind>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::Manage)?;
    let path = path_of(&req, kind.rtype)?;
    check_media_type(&req)?;
    let mut put = PutBody::parse(&body)?;
    (kind.validate)(&mut put)?;
    let instance = path.instance().map(|i| i.to_string());
    resources::drop_computed_defaults(
        kind.rtype,
        instance.as_deref(),
        &mut put.properties,
        &state.service_urls,
    );
    let ctx = Ctx {
        db: &state.db,
        relay: &state.relay,
        caller: &caller.principal.subject,
    };
    let accepted = changes::put(&ctx, &path, put, &preconditions(&req)).await?;
    let mut res = if accepted.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    async_headers(&mut res, &req, &state, &accepted);
    Ok(with_etag(res, &accepted.resource, &state))
}

async fn patch(
    caller: Caller<ArmError>,
    req: HttpRequest,
    version: web::Query<ApiVersion>,
    kind: web::Data<Kind>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::Manage)?;
    let path = path_of(&req, kind.rtype)?;
    check_media_type(&req)?;
    let patch = PatchBody::parse(&body)?;
    let ctx = Ctx {
        db: &state.db,
        relay: &state.relay,
        caller: &caller.principal.subject,
    };
    let r = changes::patch(&ctx, &path, patch, &preconditions(&req)).await?;
    Ok(with_etag(HttpResponse::Ok(), &r, &state))
}

async fn delete(
    caller: Caller<ArmError>,
    req: HttpRequest,
    version: web::Query<ApiVersion>,
    kind: web::Data<Kind>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::Manage)?;
    let path = path_of(&req, kind.rtype)?;
    let ctx = Ctx {
        db: &state.db,
        relay: &state.relay,
        caller: &caller.principal.subject,
    };
    match changes::delete(&ctx, &path, &preconditions(&req)).await? {
        None => Ok(HttpResponse::NoContent().finish()),
        Some(accepted) => {
            let mut res = HttpResponse::Accepted();
            async_headers(&mut res, &req, &state, &accepted);
            Ok(res.finish())
        }
    }
}

/// One page of a list as ARM answers it: `value`, and `nextLink` unless it is the last.
async fn page(
    req: &HttpRequest,
    state: &AppState,
    query: &ListQuery,
    rtype: ResourceType,
    prefix: &str,
) -> Result<HttpResponse, ArmError> {
    let wanted = PageRequest::parse(query, state.page_size)?;
    let fetched = resources::list(
        state.db.pool(),
        rtype,
        prefix,
        wanted.after.as_deref(),
        wanted.size + 1,
    )
    .await?;
    let page = Page::cut(fetched, wanted.size, Resource::key);
    let value: Vec<_> = page
        .items
        .iter()
        .map(|r| r.to_json(&state.service_urls))
        .collect();
    let mut body = json!({ "value": value });
    if let Some(after) = &page.next_after {
        body["nextLink"] = next_link(req, &wanted, after).into();
    }
    Ok(HttpResponse::Ok().json(body))
}

async fn list(
    caller: Caller<ArmError>,
    req: HttpRequest,
    version: web::Query<ApiVersion>,
    query: web::Query<ListQuery>,
    kind: web::Data<Kind>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::ManageRead)?;
    // The collection's parent: the path with the parent type, whose id prefixes the items.
    let parent_type = kind.rtype.parent().unwrap_or(ResourceType::Workspace);
    let parent = path_of(&req, parent_type)?;
    resources::get(state.db.pool(), &parent.key())
        .await?
        .ok_or_else(|| ArmError::ParentResourceNotFound(parent.id()))?;
    let prefix = collection_prefix(&parent.key(), kind.rtype);
    page(&req, &state, &query, kind.rtype, &prefix).await
}

async fn list_workspaces(
    caller: Caller<ArmError>,
    req: HttpRequest,
    version: web::Query<ApiVersion>,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ArmError> {
    version.check()?;
    caller.require(Permission::ManageRead)?;
    let m = req.match_info();
    let subscription = m.get("subscription").unwrap_or_default();
    let prefix = match m.get("group") {
        Some(group) => {
            crate::resource_id::check_group(group)?;
            group_prefix(subscription, group)
        }
        None => subscription_prefix(subscription),
    };
    page(&req, &state, &query, ResourceType::Workspace, &prefix).await
}
