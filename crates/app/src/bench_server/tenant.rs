//! The hostile tenant of `bench-server --hostile-tenant`: the owner of a second collection,
//! with a valid token, doing what the server must bound without hurting the well-behaved
//! clients of the first:
//!
//! - **slow uploads**: [`SLOW_UPLOADS`] segment uploads at a time that declare 512 MiB and
//!   then send 64 bytes every 100 ms (within the body grace, so none is cut off during a
//!   short run); each answered or closed one is opened again;
//! - **tiny segments**: one-image ingests by a client that never merges, from a collection
//!   filled to a few segments under its cap at setup, so that the run reaches the cap and
//!   every further ingest is refused (`too_many_segments`).

use crate::errors::{AppError, Result};
use blindsight_client::ClientError;
use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The hostile tenant's collection.
pub const COLLECTION: &str = "hostile";
/// Slow uploads held open at once.
pub const SLOW_UPLOADS: usize = 2;
/// Segments the tenant's collection is short of its cap when the run starts.
const SHORT_OF_CAP: usize = 8;
/// Pause between two rounds (a trickle to every slow upload and one tiny ingest).
const ROUND: Duration = Duration::from_millis(100);

/// What the hostile tenant did and got.
#[derive(Clone, Debug, Default)]
pub struct TenantReport {
    /// Slow uploads opened.
    pub slow_opened: usize,
    /// How slow uploads ended: status line code, or `closed`.
    pub slow_answers: BTreeMap<String, usize>,
    /// One-image segments added during the run.
    pub tiny_added: usize,
    /// One-image ingests refused for the segment cap.
    pub tiny_refused: usize,
    /// One-image ingests answered 503.
    pub tiny_busy: usize,
    /// Other failures of the tenant's ingests.
    pub tiny_error_count: usize,
    /// A few of their messages.
    pub tiny_errors: Vec<String>,
    /// Segments of the tenant's collection at the end.
    pub segments: u64,
}

impl TenantReport {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "collection": COLLECTION,
            "slow_uploads_at_once": SLOW_UPLOADS,
            "slow_uploads_opened": self.slow_opened,
            "slow_upload_answers": self.slow_answers,
            "tiny_segments_added": self.tiny_added,
            "tiny_segments_refused_at_cap": self.tiny_refused,
            "tiny_segments_503": self.tiny_busy,
            "tiny_segment_errors": self.tiny_error_count,
            "tiny_segment_error_samples": self.tiny_errors,
            "segments_at_end": self.segments,
        })
    }

    /// One line for a terminal.
    pub fn line(&self) -> String {
        format!(
            "hostile tenant ({COLLECTION}): {} slow uploads opened ({SLOW_UPLOADS} at a time), \
             ended {:?}; one-image segments: {} added, {} refused at the cap, {} 503, {} other \
             errors; {} segments at the end",
            self.slow_opened,
            self.slow_answers,
            self.tiny_added,
            self.tiny_refused,
            self.tiny_busy,
            self.tiny_error_count,
            self.segments
        )
    }
}

/// The tenant, set up and ready to run.
pub struct Tenant {
    client: Client,
    addr: SocketAddr,
    head: String,
    files: Vec<(String, Vec<u8>)>,
    next: usize,
}

impl Tenant {
    /// Creates the tenant's collection (8×8 pixels: the tenant's own encryption costs
    /// little) on the server at `base`/`addr` with the admin token, and fills it to a few
    /// segments short of `cap` with one-image ingests, from `files` (used from the end).
    pub fn setup(
        base: &str,
        addr: SocketAddr,
        admin: &str,
        cap: usize,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<Self> {
        let keystore = Keystore::generate("ckks-8192")?;
        let remote = Remote::new(base)?;
        let kind = blindsight_search::VectorKind::Pixels { side: 8 };
        let token = Client::create(&keystore, &remote.with_token(admin), COLLECTION, &kind)?;
        let client =
            Client::new(keystore, remote.with_token(&token), COLLECTION)?.without_merging();
        let head = format!(
            "POST /v1/collections/{COLLECTION}/segments HTTP/1.1\r\nHost: bench\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            (512usize << 20) - 1
        );
        let mut tenant = Self {
            client,
            addr,
            head,
            files,
            next: 0,
        };
        for _ in 0..cap.saturating_sub(SHORT_OF_CAP) {
            match tenant.tiny_ingest() {
                Some(Ok(1)) => {}
                other => {
                    return Err(AppError::Internal(format!(
                        "the hostile tenant's setup ingest failed: {other:?}"
                    )));
                }
            }
        }
        Ok(tenant)
    }

    /// Ingests the next file as a segment of its own; `None` when the files are used up.
    fn tiny_ingest(&mut self) -> Option<core::result::Result<usize, ClientError>> {
        let file = self.files.get(self.next)?.clone();
        self.next += 1;
        Some(self.client.ingest(&[file], |_| {}).map(|r| r.added))
    }

    /// Opens a slow upload: its head and a first kilobyte.
    fn open_slow(&self) -> Option<TcpStream> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.write_all(self.head.as_bytes()).ok()?;
        s.write_all(&[0u8; 1024]).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    }

    /// Runs until `deadline`.
    pub fn run(mut self, deadline: Instant) -> TenantReport {
        let mut report = TenantReport::default();
        let mut slow: Vec<Option<TcpStream>> = (0..SLOW_UPLOADS).map(|_| None).collect();
        while Instant::now() < deadline {
            for s in &mut slow {
                if s.is_none() {
                    *s = self.open_slow();
                    report.slow_opened += usize::from(s.is_some());
                }
                let Some(stream) = s else { continue };
                let mut buf = [0u8; 256];
                let ended = match stream.read(&mut buf) {
                    Ok(0) => Some("closed".to_string()),
                    Ok(n) => Some(
                        String::from_utf8_lossy(&buf[..n])
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("?")
                            .to_string(),
                    ),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => stream
                        .write_all(&[0u8; 64])
                        .err()
                        .map(|_| "closed".to_string()),
                    Err(_) => Some("closed".to_string()),
                };
                if let Some(how) = ended {
                    *report.slow_answers.entry(how).or_default() += 1;
                    *s = None;
                }
            }
            match self.tiny_ingest() {
                Some(Ok(_)) => report.tiny_added += 1,
                Some(Err(ClientError::TooManySegments { .. })) => report.tiny_refused += 1,
                Some(Err(ClientError::Remote { status: 503, .. })) => report.tiny_busy += 1,
                Some(Err(e)) => {
                    report.tiny_error_count += 1;
                    if report.tiny_errors.len() < 5 {
                        report.tiny_errors.push(e.to_string());
                    }
                }
                None => {}
            }
            std::thread::sleep(ROUND);
        }
        drop(slow);
        report.segments = self
            .client
            .check_collection()
            .ok()
            .and_then(|info| info.get("segments").and_then(Value::as_u64))
            .unwrap_or(0);
        report
    }
}
