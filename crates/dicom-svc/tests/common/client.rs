//! A DICOMweb client of one instance for the tests: requests relative to `root`, answers
//! kept whole (status, headers, bytes) so that tests can look at exactly what was sent.

use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::multipart;

pub struct Dicom {
    pub client: Client,
    /// `{base}/{instance}` (or further down, e.g. `/{instance}/v2`).
    pub root: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl Dicom {
    pub async fn send(&self, r: reqwest::RequestBuilder) -> Answer {
        let res = r.send().await.unwrap();
        Answer {
            status: res.status(),
            headers: res.headers().clone(),
            bytes: res.bytes().await.unwrap().to_vec(),
        }
    }

    /// STOW-RS of these parts (each a DICOM file) to `path`.
    pub async fn stow(&self, path: &str, parts: &[&[u8]]) -> Answer {
        let (ct, body) = multipart(parts);
        self.send(
            self.client
                .post(format!("{}{path}", self.root))
                .header("content-type", ct)
                .header("accept", "application/dicom+json")
                .body(body),
        )
        .await
    }

    pub async fn get(&self, path: &str, accept: &str) -> Answer {
        self.send(
            self.client
                .get(format!("{}{path}", self.root))
                .header("accept", accept),
        )
        .await
    }

    /// A QIDO-RS request.
    pub async fn search(&self, path: &str) -> Answer {
        self.get(path, "application/dicom+json").await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.client.delete(format!("{}{path}", self.root)))
            .await
    }
}
