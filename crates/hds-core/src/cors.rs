//! Cross-origin resource sharing as an instance's `corsConfiguration` sets it (origins,
//! headers, methods, maxAge, allowCredentials), with the semantics of ASP.NET Core's CORS
//! middleware, which Azure's FHIR and DICOM services run:
//!
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   204 by the service itself; the `Access-Control-*` headers are there only when origin,
//!   method and headers are all allowed (a refused preflight is a 204 without them, which
//!   the browser reads as a refusal);
//! - any other request from an allowed origin gets `Access-Control-Allow-Origin` (and
//!   `-Credentials`) on its response, errors included;
//! - `*` in a list allows anything; the allowed origin is echoed (with `Vary: Origin`)
//!   unless any origin is allowed without credentials, which is answered `*`.
//!
//! An instance without origins has no CORS at all: no headers, and `OPTIONS` is not a route.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::HttpResponse;
use serde_json::Value;

/// Request headers a browser may always send, which need no listing (ASP.NET's
/// `CorsConstants.SimpleRequestHeaders`).
const SIMPLE_HEADERS: [&str; 4] = ["origin", "accept", "accept-language", "content-language"];

/// One instance's CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Allowed,
    headers: Allowed,
    methods: Allowed,
    max_age: Option<u64>,
    allow_credentials: bool,
}

/// A list from the configuration: `*` in it allows anything.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Any,
    /// Lowercased (origins without a trailing `/`), compared case-insensitively; `shown`
    /// keeps the configured spelling for `Access-Control-Allow-*`.
    Listed {
        keys: Vec<String>,
        shown: Vec<String>,
    },
}

impl Allowed {
    fn from_list(v: Option<&Value>, normalise: fn(&str) -> String) -> Self {
        let items: Vec<&str> = v
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if items.contains(&"*") {
            return Allowed::Any;
        }
        Allowed::Listed {
            keys: items.iter().map(|s| normalise(s)).collect(),
            shown: items.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn allows(&self, item: &str, normalise: fn(&str) -> String) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Listed { keys, .. } => keys.contains(&normalise(item)),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Allowed::Listed { keys, .. } if keys.is_empty())
    }
}

fn lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

fn origin_key(s: &str) -> String {
    lower(s).trim_end_matches('/').to_owned()
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl CorsPolicy {
    /// The policy of an instance's ARM `properties`; `None` without any origin.
    pub fn from_properties(properties: &Value) -> Option<Self> {
        let c = properties.get("corsConfiguration")?;
        let origins = Allowed::from_list(c.get("origins"), origin_key);
        if origins.is_empty() {
            return None;
        }
        Some(Self {
            origins,
            headers: Allowed::from_list(c.get("headers"), lower),
            methods: Allowed::from_list(c.get("methods"), lower),
            max_age: c.get("maxAge").and_then(Value::as_u64),
            allow_credentials: c
                .get("allowCredentials")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Whether a request is a CORS preflight, which the policy answers itself.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight.
    pub fn preflight(&self, request: &HeaderMap) -> HttpResponse {
        let mut res = HttpResponse::NoContent();
        let text = |name: HeaderName| request.get(name).and_then(|v| v.to_str().ok());
        let Some(origin) = text(header::ORIGIN) else {
            return res.finish();
        };
        let method = text(header::ACCESS_CONTROL_REQUEST_METHOD).unwrap_or_default();
        let asked: Vec<&str> = request
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let headers_ok = asked
            .iter()
            .all(|h| SIMPLE_HEADERS.contains(&lower(h).as_str()) || self.headers.allows(h, lower));
        if !self.origins.allows(origin, origin_key)
            || !self.methods.allows(method, lower)
            || !headers_ok
        {
            return res.finish();
        }
        let mut headers = HeaderMap::new();
        self.allow_origin(origin, &mut headers);
        // As ASP.NET: a wildcard answers with what was asked, a list with the whole list.
        let methods = match &self.methods {
            Allowed::Any => method.to_owned(),
            Allowed::Listed { shown, .. } => shown.join(","),
        };
        if let Some(v) = value(&methods) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        let allowed_headers = match &self.headers {
            Allowed::Any => asked.join(","),
            Allowed::Listed { shown, .. } => shown.join(","),
        };
        if !allowed_headers.is_empty() {
            if let Some(v) = value(&allowed_headers) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if let Some(age) = self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
        for (name, v) in headers {
            res.append_header((name, v));
        }
        res.finish()
    }

    /// Adds the headers of an actual (not preflight) cross-origin request's response.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            return;
        };
        if self.origins.allows(origin, origin_key) {
            self.allow_origin(origin, response);
        }
    }

    fn allow_origin(&self, origin: &str, headers: &mut HeaderMap) {
        if self.origins == Allowed::Any && !self.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else if let Some(v) = value(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(h: &HeaderMap, name: HeaderName) -> &str {
        h.get(name).unwrap().to_str().unwrap()
    }

    fn policy(cors: Value) -> Option<CorsPolicy> {
        CorsPolicy::from_properties(&json!({ "corsConfiguration": cors }))
    }

    fn preflight(p: &CorsPolicy, origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, value(origin).unwrap());
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            value(method).unwrap(),
        );
        if !headers.is_empty() {
            req.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                value(headers).unwrap(),
            );
        }
        let res = p.preflight(&req);
        assert_eq!(res.status(), 204);
        res.headers().clone()
    }

    #[test]
    fn no_origins_is_no_policy() {
        assert!(CorsPolicy::from_properties(&json!({})).is_none());
        assert!(policy(json!({"origins": [], "methods": ["GET"]})).is_none());
    }

    #[test]
    fn a_listed_origin_gets_the_configured_lists() {
        let p = policy(json!({
            "origins": ["https://App.example.org/"], "headers": ["Content-Type", "Authorization"],
            "methods": ["GET", "PUT"], "maxAge": 600, "allowCredentials": true
        }))
        .unwrap();
        let h = preflight(
            &p,
            "https://app.example.org",
            "PUT",
            "content-type, if-match",
        );
        assert!(
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "If-Match is not allowed"
        );
        let h = preflight(&p, "https://app.example.org", "PUT", "content-type, accept");
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "https://app.example.org"
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), "GET,PUT");
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS),
            "Content-Type,Authorization"
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_MAX_AGE), "600");
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "true");
        assert_eq!(get(&h, header::VARY), "Origin");
        for (origin, method) in [
            ("https://evil.example.org", "GET"),
            ("https://app.example.org", "DELETE"),
        ] {
            assert!(
                preflight(&p, origin, method, "").is_empty(),
                "{origin} {method}"
            );
        }
    }

    #[test]
    fn wildcards_echo_what_was_asked() {
        let p = policy(json!({"origins": ["*"], "headers": ["*"], "methods": ["*"]})).unwrap();
        let h = preflight(&p, "https://any.example", "PATCH", "x-custom");
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), "PATCH");
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), "x-custom");
        assert!(h.get(header::ACCESS_CONTROL_MAX_AGE).is_none());
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        let mut res = HeaderMap::new();
        p.decorate(value("https://any.example").as_ref(), &mut res);
        assert_eq!(get(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        let mut none = HeaderMap::new();
        p.decorate(None, &mut none);
        assert!(none.is_empty());
    }
}
