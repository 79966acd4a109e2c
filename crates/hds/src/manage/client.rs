//! A small ARM client: api-version on every call, the error envelope turned into a message,
//! and long-running operations followed to their end.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Target;

const API_VERSION: &str = "2024-03-31";

pub struct Client {
    http: reqwest::Client,
    target: Target,
}

/// What a change answered: the resource (PUT) and the operation to follow, if any.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub operation: Option<String>,
    pub retry_after: Duration,
}

impl Client {
    pub fn new(target: Target) -> Self {
        Self {
            http: reqwest::Client::new(),
            target,
        }
    }

    /// The URL of a path below the resource group's provider (`workspaces/...`).
    pub fn group_url(&self, path: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.HealthcareApis/{path}",
            self.target.url.trim_end_matches('/'),
            self.target.subscription,
            self.target.resource_group
        )
    }

    pub async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = self.http.request(method.clone(), url);
        // Operation URLs (`Azure-AsyncOperation`) come with their api-version already.
        let versioned = reqwest::Url::parse(url)
            .map(|u| u.query_pairs().any(|(k, _)| k == "api-version"))
            .unwrap_or(false);
        if !versioned {
            req = req.query(&[("api-version", API_VERSION)]);
        }
        if let Some(token) = &self.target.token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the management API at {}", self.target.url))?;
        let status = res.status();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let operation = header("azure-asyncoperation");
        let retry_after = header("retry-after")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1));
        let text = res.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("Error");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            bail!("{method} {url}: {status}: {code}: {message}");
        }
        Ok(Answer {
            status,
            body,
            operation,
            retry_after,
        })
    }

    /// Follows an operation to its end, printing its status as it changes.
    pub async fn follow(&self, answer: &Answer, what: &str) -> anyhow::Result<()> {
        let Some(url) = &answer.operation else {
            return Ok(());
        };
        let mut wait = answer.retry_after.max(Duration::from_millis(200));
        let mut last = String::new();
        let mut err = std::io::stderr();
        loop {
            let op = self.call(Method::GET, url, None).await?;
            let status = op.body["status"].as_str().unwrap_or("Unknown").to_owned();
            if status != last {
                let _ = write!(
                    err,
                    "{}{what}: {status}",
                    if last.is_empty() { "" } else { "\n" }
                );
                last = status.clone();
            } else {
                let _ = write!(err, ".");
            }
            let _ = err.flush();
            match status.as_str() {
                "Succeeded" => {
                    let _ = writeln!(err);
                    return Ok(());
                }
                "Failed" | "Canceled" => {
                    let _ = writeln!(err);
                    let e = &op.body["error"];
                    return Err(anyhow!(
                        "{what} {status}: {}: {}",
                        e["code"].as_str().unwrap_or("Error"),
                        e["message"].as_str().unwrap_or_default()
                    ));
                }
                _ => {}
            }
            tokio::time::sleep(wait).await;
            wait = op.retry_after.max(Duration::from_millis(200));
        }
    }
}

/// One line per resource: name, state, location.
pub fn print_list(body: &Value) {
    for r in body["value"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}",
            r["name"].as_str().unwrap_or_default(),
            r["properties"]["provisioningState"]
                .as_str()
                .unwrap_or_default(),
            r["location"].as_str().unwrap_or_default()
        );
    }
}
