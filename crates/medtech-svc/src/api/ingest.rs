//! `POST /{instance}/ingest`: device messages over HTTP, for when no Kafka producer is at
//! hand (`hds up`, `hds medtech send`). The body is one JSON message, or a JSON array of
//! messages (a batch). Each is published to the instance's device topic
//! (`hds.devices.{instance}`, or the event hub its `ingestionEndpointConfiguration` names)
//! exactly as a device would produce it: the message's JSON as the value, `x-partition-key`
//! (or `?partitionKey=`) as the key, and each `x-property-{name}` header as the message header
//! `{name}`, which the pipeline shows templates as `Properties.{name}`. The answer (202) comes only once every
//! message is durably on the bus; a bus failure answers 503 and the client may send again.

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use hds_core::bus::OutgoingMessage;
use serde_json::Value;

use super::{instance, read_body, ApiState, Caller};
use crate::config::store;
use crate::error::MedtechError;

pub const PARTITION_KEY_HEADER: &str = "x-partition-key";
pub const PROPERTY_HEADER_PREFIX: &str = "x-property-";

#[derive(serde::Deserialize)]
pub struct IngestQuery {
    #[serde(rename = "partitionKey")]
    partition_key: Option<String>,
}

pub async fn ingest(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<ApiState>,
    query: web::Query<IngestQuery>,
    body: web::Payload,
) -> Result<HttpResponse, MedtechError> {
    caller.require(Permission::Write)?;
    let name = instance(&req, &state).await?;
    let body = read_body(body, state.settings.max_body_bytes).await?;
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
        MedtechError::BadRequest(format!(
            "the body is not JSON (one message or an array of messages): {e}"
        ))
    })?;
    let messages = match parsed {
        Value::Array(items) if items.is_empty() => {
            return Err(MedtechError::BadRequest("the batch is empty".into()))
        }
        Value::Array(items) => items,
        one => vec![one],
    };
    let key = query.into_inner().partition_key.or_else(|| {
        req.headers()
            .get(PARTITION_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let mut headers = Vec::new();
    for (header, value) in req.headers() {
        if let Some(property) = header.as_str().strip_prefix(PROPERTY_HEADER_PREFIX) {
            if !property.is_empty() {
                headers.push((property.to_owned(), value.as_bytes().to_vec()));
            }
        }
    }
    let topic = store::get(&state.db, &name.to_string())
        .await?
        .source(&name)
        .topic
        .to_string();
    let count = messages.len();
    let outgoing: Vec<(String, OutgoingMessage)> = messages
        .iter()
        .map(|m| {
            let mut message = OutgoingMessage::new(m.to_string().into_bytes());
            message.key = key.clone().map(String::into_bytes);
            message.headers = headers.clone();
            (topic.clone(), message)
        })
        .collect();
    state.bus.publish_all(outgoing).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "accepted": count })))
}
