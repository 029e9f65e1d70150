//! The HTTP client of the API (reqwest, rustls). Blocking: the CLI is synchronous.
//!
//! The server is not trusted: every response body is read under a size cap (so a hostile
//! server cannot make the client allocate without bound), id lists are sent in chunks the
//! server accepts, and multi-request answers stop when the server stops making progress.

use crate::errors::{ClientError, Result};
use crate::trust::Trust;
use crate::wire::{
    self, AppendSegment, CreateCollection, ImageList, SearchResponse, TOO_MANY_SEGMENTS,
};
use crate::wire::{ImageEntry, PayloadBatch};
use reqwest::blocking::{Client, Response};
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// Largest JSON answer read.
const MAX_JSON: usize = 1 << 20;
/// Largest page of an image list read ([`wire::MAX_PAGE_IMAGES`] images of at most 4 KiB of
/// sealed metadata and 64 bytes of tag each, with their framing).
pub const MAX_IMAGE_PAGE: usize = 20 << 20;
/// Largest search response read (W1's is 0.4 MB; a million images in one segment ~20 MB).
pub const MAX_SEARCH_RESPONSE: usize = 256 << 20;
/// The largest search answer read for a collection whose image list holds `images`
/// images of `channels` channels: 32 MiB, plus 1 KiB per image and channel, at most
/// [`MAX_SEARCH_RESPONSE`]. An honest answer carries about 20 bytes of scores and 16 of its
/// live list per image (W1's is 74 KB, a million 512-value vectors 17 MB) and at most one
/// ciphertext per segment and channel (24 KB each, 256 segments by default); so a hostile
/// server can make the client read and decode no more than this, whatever it claims.
pub fn search_answer_cap(images: usize, channels: usize) -> usize {
    images
        .saturating_mul(channels)
        .saturating_mul(1 << 10)
        .saturating_add(32 << 20)
        .min(MAX_SEARCH_RESPONSE)
}

/// Largest payload answer read (the server caps its answers at 64 MiB, or one payload of
/// at most 64 MiB; the rest is framing).
pub const MAX_PAYLOAD_ANSWER: usize = 65 << 20;
/// Attempts of a request the server answers 503 (busy) or closes early.
const RETRIES: u32 = 8;
/// Ids per payload or deletion request (the server's default cap).
pub const IDS_PER_REQUEST: usize = 1024;

/// Sealed thumbnails per backfill request (4 MiB).
pub const THUMBNAILS_PER_UPLOAD: usize = 256;

/// A connection to a blindsight server, optionally holding a collection's bearer token.
#[derive(Clone)]
pub struct Remote {
    base: String,
    http: Client,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
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
        Self::with_ca_file(base, None)
    }

    /// A client that also trusts the certificate(s) in the PEM file `ca_file`: a private CA,
    /// or the server's own self-signed certificate (trusted exactly, see [`crate::trust`]).
    pub fn with_ca_file(base: &str, ca_file: Option<&Path>) -> Result<Self> {
        Self::with_trust(base, &Trust::from_options(ca_file, None)?)
    }

    /// A client for the server at `base` that trusts what `trust` says besides the public
    /// roots (or, with a pinned fingerprint, only that certificate).
    pub fn with_trust(base: &str, trust: &Trust) -> Result<Self> {
        check_base_url(base)?;
        let mut builder = Client::builder()
            .timeout(Duration::from_secs(3600))
            .connect_timeout(Duration::from_secs(10))
            .https_only(false);
        if !trust.is_default() {
            builder = builder.use_preconfigured_tls(trust.client_config()?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
        })
    }

    /// The same client with a bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(Zeroizing::new(token.to_string())),
            ..self.clone()
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t.as_str()),
            None => req,
        };
        // A busy server answers 503 with Retry-After (or, for a large upload, closes the
        // connection under it): retry a bounded number of times, then report.
        let mut attempt = 0u32;
        let resp = loop {
            attempt += 1;
            let retryable = attempt < RETRIES;
            let this = match req.try_clone() {
                Some(r) if retryable => r,
                _ => break Self::transport(req.send())?,
            };
            match this.send() {
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(1.0)
                        .clamp(0.05, 5.0);
                    std::thread::sleep(Duration::from_secs_f64(wait));
                }
                Ok(r) => break r,
                Err(e) if is_early_close(&e) => {
                    std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
                }
                Err(e) => return Self::transport(Err(e)),
            }
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text =
            String::from_utf8_lossy(&Self::capped(resp, MAX_JSON).unwrap_or_default()).into_owned();
        let answer = serde_json::from_str::<Json>(&text).ok();
        if let Some(j) = &answer
            && j.get("code").and_then(Json::as_str) == Some(TOO_MANY_SEGMENTS)
        {
            let field = |name| j.get(name).and_then(Json::as_u64).unwrap_or(0);
            return Err(ClientError::TooManySegments {
                limit: field("limit"),
                actual: field("actual"),
            });
        }
        let message = answer
            .and_then(|j| j.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        Err(ClientError::Remote { status, message })
    }

    /// A transport result with a message that says what an early close means.
    fn transport(r: reqwest::Result<Response>) -> Result<Response> {
        r.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text.push_str(certificate_hint(&text));
            if is_early_close(&e) {
                text.push_str(
                    " (the server refused the request before its body was sent: a wrong \
                     token, a body over the server's limit, or a busy server)",
                );
            }
            ClientError::Connection(text)
        })
    }

    /// Reads a body of at most `max` bytes (an error beyond, without reading it all).
    fn capped(resp: Response, max: usize) -> Result<Vec<u8>> {
        if resp.content_length().is_some_and(|l| l > max as u64) {
            return Err(ClientError::Malformed(format!(
                "the server's answer is larger than {max} bytes"
            )));
        }
        let mut out = Vec::new();
        resp.take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        if out.len() > max {
            return Err(ClientError::Malformed(format!(
                "the server's answer is larger than {max} bytes"
            )));
        }
        Ok(out)
    }

    fn json(resp: Response) -> Result<Json> {
        let bytes = Self::capped(resp, MAX_JSON)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    /// `GET /health`: the server's JSON status.
    pub fn health(&self) -> Result<Json> {
        Self::json(self.send(self.http.get(self.url("/health")))?)
    }

    /// The random identity of the server's database (tokens are filed under it).
    pub fn store_id(&self) -> Result<String> {
        let id = self
            .health()?
            .get("store_id")
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Malformed("the server did not say its store id".into()))?;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ClientError::Malformed(
                "the server's store id is not a hexadecimal string".into(),
            ));
        }
        Ok(id)
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
            .ok_or_else(|| ClientError::Malformed("no token in the answer".into()))
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

    /// Every image of the collection (sealed metadata) and the version of its first page:
    /// [`Remote::image_pages`] collected. Only for a server the caller trusts with its
    /// memory (tools, tests): a client checks each page's seals as it comes.
    pub fn images(&self, collection: &str) -> Result<ImageList> {
        let mut images = Vec::new();
        let version = self.image_pages(collection, |page| {
            images.extend_from_slice(page);
            Ok(())
        })?;
        Ok(ImageList { version, images })
    }

    /// Reads the collection's image list page by page, handing each page's images to
    /// `each` (which may refuse it: a client opens the sealed metadata, so that a server
    /// cannot make it hold entries it did not seal); returns the version of the first page
    /// (the oldest: anything written after it may be missing). Each page must continue
    /// after the previous one (ids strictly increase), so a server cannot make the client
    /// loop on the same pages.
    pub fn image_pages(
        &self,
        collection: &str,
        mut each: impl FnMut(&[ImageEntry]) -> Result<()>,
    ) -> Result<i64> {
        let mut version = None;
        let mut after: Option<i64> = None;
        loop {
            let page = self.image_page(collection, after, wire::MAX_PAGE_IMAGES)?;
            let version = *version.get_or_insert(page.version);
            each(&page.images)?;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(version),
            }
        }
    }

    /// One page of the collection's image list: at most `limit` images (of at most
    /// [`wire::MAX_PAGE_IMAGES`]) with ids above `after`, checked: ids strictly increasing
    /// and above `after`, no more than asked for, and a next cursor (if any) that is the
    /// page's last id (so a server cannot make a reader loop on the same pages).
    pub fn image_page(
        &self,
        collection: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<wire::ImagePage> {
        let limit = limit.clamp(1, wire::MAX_PAGE_IMAGES);
        let mut url = format!("/v1/collections/{collection}/images?limit={limit}");
        if let Some(a) = after {
            url.push_str(&format!("&after={a}"));
        }
        let resp = self.send(self.http.get(self.url(&url)))?;
        let page = wire::decode_image_page(&Self::capped(resp, MAX_IMAGE_PAGE)?)?;
        let mut last = after;
        for e in &page.images {
            if last.is_some_and(|l| e.id <= l) {
                return Err(ClientError::Malformed(
                    "the server's image list is not in increasing id order".into(),
                ));
            }
            last = Some(e.id);
        }
        if page.images.len() > limit {
            return Err(ClientError::Malformed(format!(
                "the server sent a page of {} images; {limit} were asked for",
                page.images.len(),
            )));
        }
        match page.next {
            Some(next) if Some(next) != last || last == after => Err(ClientError::Malformed(
                "the server's image list page does not continue where it ended".into(),
            )),
            _ => Ok(page),
        }
    }

    /// Appends an ingest batch; returns the new segment's id.
    pub fn append(&self, collection: &str, msg: &AppendSegment) -> Result<i64> {
        let url = self.url(&format!("/v1/collections/{collection}/segments"));
        let resp = self.send(self.http.post(url).body(msg.encode()))?;
        Self::json(resp)?
            .get("segment")
            .and_then(|s| s.as_i64())
            .ok_or_else(|| ClientError::Malformed("no segment in the answer".into()))
    }

    /// Searches; returns the encrypted scores and where the time went. The answer is read
    /// under `max_answer` bytes ([`search_answer_cap`] of the collection).
    pub fn search(
        &self,
        collection: &str,
        query: &[Vec<u8>],
        max_answer: usize,
    ) -> Result<(SearchResponse, RequestTiming)> {
        let url = self.url(&format!("/v1/collections/{collection}/search"));
        let started = std::time::Instant::now();
        let resp = self.send(self.http.post(url).body(wire::encode_search(query)))?;
        let (body, timing) = Self::timed_body(resp, started, max_answer.min(MAX_SEARCH_RESPONSE))?;
        Ok((wire::decode_search_response(&body)?, timing))
    }

    /// A binary answer (at most `max` bytes) and where its request's time went: `send`
    /// returns once the response head is in, so the upload and the server are done then.
    fn timed_body(
        resp: Response,
        started: std::time::Instant,
        max: usize,
    ) -> Result<(Vec<u8>, RequestTiming)> {
        let head_s = started.elapsed().as_secs_f64();
        let server_s = resp
            .headers()
            .get("x-blindsight-server-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |ms| ms / 1000.0);
        let body = Self::capped(resp, max)?;
        let timing = RequestTiming {
            upload_s: (head_s - server_s).max(0.0),
            server_s,
            download_s: started.elapsed().as_secs_f64() - head_s,
        };
        Ok((body, timing))
    }

    /// Sealed payloads of the given images (ids that are not live images are absent).
    /// Asks in chunks, and again for what a capped answer left out, while the server makes
    /// progress; answers for ids that were not asked for are an error.
    pub fn payloads(&self, collection: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        self.sealed(collection, "payloads", ids)
    }

    /// Sealed source vectors of the given images, as [`Remote::payloads`] (ids that are not
    /// live images, or have no source, are absent).
    pub fn sources(&self, collection: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        self.sealed(collection, "sources", ids)
    }

    /// Sealed thumbnails of the given images, as [`Remote::payloads`] (ids that are not live
    /// images, or have no thumbnail, are absent); each of the one size class, or an error.
    pub fn thumbnails(&self, collection: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        let found = self.sealed(collection, "thumbnails", ids)?;
        if let Some((id, t)) = found
            .iter()
            .find(|(_, t)| t.len() != wire::THUMBNAIL_SEALED_BYTES)
        {
            return Err(ClientError::Malformed(format!(
                "the server sent a thumbnail of {} bytes for image {id}, not {}",
                t.len(),
                wire::THUMBNAIL_SEALED_BYTES
            )));
        }
        Ok(found)
    }

    /// Uploads one-time private-retrieval keys (a `blindsight-pir` keys frame).
    pub fn pir_keys(&self, collection: &str, frame: Vec<u8>) -> Result<()> {
        let url = self.url(&format!("/v1/collections/{collection}/pir/keys"));
        Self::json(self.send(self.http.put(&url).body(frame))?)?;
        Ok(())
    }

    /// A private retrieval: sends the request (key id and query), returns the answer's
    /// bytes (at most `max_answer`).
    pub fn pir_retrieve(
        &self,
        collection: &str,
        request: Vec<u8>,
        max_answer: usize,
    ) -> Result<(Vec<u8>, RequestTiming)> {
        let url = self.url(&format!("/v1/collections/{collection}/pir"));
        let started = std::time::Instant::now();
        let resp = self.send(self.http.post(&url).body(request))?;
        Self::timed_body(resp, started, max_answer)
    }

    /// Gives images that have no thumbnail the sealed ones made for them (in requests of
    /// [`THUMBNAILS_PER_UPLOAD`]); returns how many the server set (images deleted meanwhile,
    /// or given one by another client, are passed over).
    pub fn set_thumbnails(&self, collection: &str, thumbnails: &[(i64, Vec<u8>)]) -> Result<u64> {
        let url = self.url(&format!("/v1/collections/{collection}/thumbnails"));
        let mut set = 0u64;
        for chunk in thumbnails.chunks(THUMBNAILS_PER_UPLOAD) {
            let body = wire::encode_payloads(&PayloadBatch {
                found: chunk.to_vec(),
                missing: Vec::new(),
            });
            let answer = Self::json(self.send(self.http.put(&url).body(body))?)?;
            set += count_in(&answer, "set", chunk.len())?;
        }
        Ok(set)
    }

    fn sealed(&self, collection: &str, what: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        let url = self.url(&format!("/v1/collections/{collection}/{what}"));
        let mut seen = HashSet::new();
        let mut todo: Vec<i64> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let mut out = Vec::new();
        while !todo.is_empty() {
            let chunk: Vec<i64> = todo.iter().take(IDS_PER_REQUEST).copied().collect();
            let batch: PayloadBatch = wire::decode_payloads(&Self::capped(
                self.send(self.http.post(&url).body(wire::encode_ids(&chunk)))?,
                MAX_PAYLOAD_ANSWER,
            )?)?;
            let asked: HashSet<i64> = chunk.iter().copied().collect();
            let mut answered = HashSet::new();
            for id in batch
                .missing
                .iter()
                .chain(batch.found.iter().map(|(id, _)| id))
            {
                if !asked.contains(id) || !answered.insert(*id) {
                    return Err(ClientError::Malformed(format!(
                        "the server answered for image {id}, which was not asked for (or twice)"
                    )));
                }
            }
            if answered.is_empty() {
                return Err(ClientError::Malformed(
                    "the server answered a payload request with nothing".into(),
                ));
            }
            out.extend(batch.found);
            todo.retain(|id| !answered.contains(id));
        }
        Ok(out)
    }

    /// Replaces (or drops) segments by one rebuilt from their live images, in a single
    /// transaction; returns the new segment id.
    pub fn compact(&self, collection: &str, msg: &wire::CompactSegment) -> Result<Option<i64>> {
        let url = self.url(&format!("/v1/collections/{collection}/compact"));
        Ok(
            Self::json(self.send(self.http.post(url).body(msg.encode()))?)?
                .get("segment")
                .and_then(|s| s.as_i64()),
        )
    }

    /// Deletes images (in chunks the server accepts); returns how many were live.
    pub fn delete(&self, collection: &str, ids: &[i64]) -> Result<u64> {
        let url = self.url(&format!("/v1/collections/{collection}/delete"));
        let mut deleted = 0u64;
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let answer =
                Self::json(self.send(self.http.post(&url).body(wire::encode_ids(chunk)))?)?;
            deleted += count_in(&answer, "deleted", chunk.len())?;
        }
        Ok(deleted)
    }
}

/// Whether the server closed the connection while the request body was being sent (it
/// answered early: a refusal from the headers, or busy). Depending on which side of the race
/// the client is on, that shows as a failed body write, a broken pipe or reset, or the
/// connection closing before the answer could be read (`IncompleteMessage`); a retry then
/// reads the refusal itself.
fn is_early_close(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = format!("{s:?}");
        if text.contains("BodyWrite")
            || text.contains("BrokenPipe")
            || text.contains("ConnectionReset")
            || text.contains("IncompleteMessage")
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Refuses a server address without its scheme (`127.0.0.1:7878` would otherwise be read
/// as a relative URL and fail later with an unrelated message).
fn check_base_url(base: &str) -> Result<()> {
    if base.starts_with("https://") || base.starts_with("http://") {
        return Ok(());
    }
    Err(ClientError::Usage(format!(
        "the server address `{}` has no scheme: write https://{} (or http:// for a server on \
         this machine's loopback)",
        crate::names::for_terminal(base),
        crate::names::for_terminal(base.split("://").last().unwrap_or(base))
    )))
}

/// The count `key` of a JSON answer about `asked` items: at most `asked`, or the answer is
/// malformed.
fn count_in(answer: &Json, key: &str, asked: usize) -> Result<u64> {
    let n = answer
        .get(key)
        .and_then(|d| d.as_u64())
        .ok_or_else(|| ClientError::Malformed(format!("no `{key}` count in the answer")))?;
    if n > asked as u64 {
        return Err(ClientError::Malformed(format!(
            "the server answers `{key}: {n}` for {asked} items"
        )));
    }
    Ok(n)
}

/// What to do about a TLS failure, from the error's text ("" for other failures).
fn certificate_hint(text: &str) -> &'static str {
    if text.contains("CaUsedAsEndEntity") || text.contains("NotValidForName") {
        " (the server's certificate is self-signed or does not name this host: trust that \
         exact certificate with --ca-file CERT.pem, or with --server-fingerprint SHA256:… \
         as `blindsight serve` prints it; `blindsight remote add` remembers either)"
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        " (the server's certificate is not signed by a CA this client trusts: pass \
         --ca-file with the CA certificate, or with the certificate itself if it is \
         self-signed, or --server-fingerprint SHA256:…)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_scheme_or_a_refused_certificate_says_what_to_do() {
        let e = Remote::new("127.0.0.1:7878").err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("has no scheme: write https://127.0.0.1:7878")),
            "{e:?}"
        );
        assert!(Remote::new("https://127.0.0.1:7878").is_ok());
        assert!(Remote::new("http://localhost:1/").is_ok());
        assert!(
            certificate_hint("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))")
                .contains("--server-fingerprint")
        );
        assert!(certificate_hint("invalid peer certificate: UnknownIssuer").contains("--ca-file"));
        assert_eq!(certificate_hint("connection refused"), "");
    }
}
