//! The HTTP client of the API (reqwest, rustls). Blocking: the CLI is synchronous.

use crate::errors::{AppError, Result};
use crate::store::ImageEntry;
use crate::wire::{self, AppendSegment, CreateCollection, SearchResponse};
use reqwest::blocking::{Client, Response};
use std::time::Duration;

/// A connection to a blindsight server, optionally holding a collection's bearer token.
#[derive(Clone, Debug)]
pub struct Remote {
    base: String,
    http: Client,
    token: Option<String>,
}

/// Where the time of a request went (seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestTiming {
    /// Sending the request (and everything before the server started).
    pub upload_s: f64,
    /// The server's own time, as it reports it.
    pub server_s: f64,
    /// Receiving the response body.
    pub download_s: f64,
}

/// A JSON answer of the server, as text.
pub type Json = serde_json::Value;

impl Remote {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Result<Self> {
        let http = Client::builder()
            .timeout(Duration::from_secs(3600))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AppError::Connection(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
        })
    }

    /// The same client with a bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .map_err(|e| AppError::Connection(e.to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let message = serde_json::from_str::<Json>(&text)
            .ok()
            .and_then(|j| j.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        Err(AppError::Remote { status, message })
    }

    fn bytes(resp: Response) -> Result<Vec<u8>> {
        Ok(resp
            .bytes()
            .map_err(|e| AppError::Connection(e.to_string()))?
            .to_vec())
    }

    fn json(resp: Response) -> Result<Json> {
        let text = resp
            .text()
            .map_err(|e| AppError::Connection(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| AppError::Malformed(e.to_string()))
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<()> {
        self.send(self.http.get(self.url("/health")))?;
        Ok(())
    }

    /// Creates a collection; returns its bearer token.
    pub fn create(&self, msg: &CreateCollection) -> Result<String> {
        let resp = self.send(
            self.http
                .post(self.url("/v1/collections"))
                .body(msg.encode()),
        )?;
        Self::json(resp)?
            .get("token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| AppError::Malformed("no token in the answer".into()))
    }

    /// Collection information (JSON).
    pub fn info(&self, collection: &str) -> Result<Json> {
        Self::json(
            self.send(
                self.http
                    .get(self.url(&format!("/v1/collections/{collection}"))),
            )?,
        )
    }

    /// Every image of the collection (sealed metadata).
    pub fn images(&self, collection: &str) -> Result<Vec<ImageEntry>> {
        let resp = self.send(
            self.http
                .get(self.url(&format!("/v1/collections/{collection}/images"))),
        )?;
        wire::decode_image_list(&Self::bytes(resp)?)
    }

    /// Appends an ingest batch; returns the new segment's id.
    pub fn append(&self, collection: &str, msg: &AppendSegment) -> Result<i64> {
        let url = self.url(&format!("/v1/collections/{collection}/segments"));
        let resp = self.send(self.http.post(url).body(msg.encode()))?;
        Self::json(resp)?
            .get("segment")
            .and_then(|s| s.as_i64())
            .ok_or_else(|| AppError::Malformed("no segment in the answer".into()))
    }

    /// Searches; returns the encrypted scores and where the time went.
    pub fn search(
        &self,
        collection: &str,
        query: &[Vec<u8>; 3],
    ) -> Result<(SearchResponse, RequestTiming)> {
        let url = self.url(&format!("/v1/collections/{collection}/search"));
        let started = std::time::Instant::now();
        let resp = self.send(self.http.post(url).body(wire::encode_search(query)))?;
        // `send` returns once the response head is in: the upload and the server are done.
        let head_s = started.elapsed().as_secs_f64();
        let server_s = resp
            .headers()
            .get("x-blindsight-server-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |ms| ms / 1000.0);
        let body = Self::bytes(resp)?;
        let timing = RequestTiming {
            upload_s: (head_s - server_s).max(0.0),
            server_s,
            download_s: started.elapsed().as_secs_f64() - head_s,
        };
        Ok((wire::decode_search_response(&body)?, timing))
    }

    /// Sealed payloads of the given images.
    pub fn payloads(&self, collection: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        let url = self.url(&format!("/v1/collections/{collection}/payloads"));
        wire::decode_payloads(&Self::bytes(
            self.send(self.http.post(url).body(wire::encode_ids(ids)))?,
        )?)
    }

    /// Replaces (or drops) one segment in a single transaction; returns the new segment id.
    pub fn compact(&self, collection: &str, msg: &wire::CompactSegment) -> Result<Option<i64>> {
        let url = self.url(&format!("/v1/collections/{collection}/compact"));
        Ok(
            Self::json(self.send(self.http.post(url).body(msg.encode()))?)?
                .get("segment")
                .and_then(|s| s.as_i64()),
        )
    }

    /// Deletes images; returns how many were live.
    pub fn delete(&self, collection: &str, ids: &[i64]) -> Result<u64> {
        let url = self.url(&format!("/v1/collections/{collection}/delete"));
        Self::json(self.send(self.http.post(url).body(wire::encode_ids(ids)))?)?
            .get("deleted")
            .and_then(|d| d.as_u64())
            .ok_or_else(|| AppError::Malformed("no count in the answer".into()))
    }
}
