//! `blindsight bench-server`: a loopback load test of the HTTP server.
//!
//! The server runs as a separate process (`blindsight serve` on `127.0.0.1:0`), so that its
//! memory can be read from `/proc/<pid>/status` and its shutdown on SIGTERM timed. After a
//! setup (keystore, collection, a gallery of embedded images ingested through [`Client`]),
//! `clients` threads run for `seconds`, each picking at random (seeded per thread) among
//!
//! - **search**: a gallery image (plain or a perturbed copy) through [`Client::search`], top
//!   5; the original must rank first, or the answer counts as an error;
//! - **ingest**: 2–4 new images (further in the embedded list, each once) through
//!   [`Client::ingest`];
//! - **fetch**: 1–5 known ids through [`Client::fetch`], each payload checked byte for byte;
//! - **hostile**: one raw request of [`Hostile`], which must get its expected refusal.
//!
//! Each thread first sends every kind of hostile request once, so that every kind is
//! exercised whatever the draw. A 503 (the server's admission limit) for a well-formed
//! request is not an error: it is counted apart and the request retried after the server's
//! default `Retry-After` (the library [`Client`] reports the status, not the header). Any
//! other failure of a well-formed request, any 5xx, an unexpected answer to a hostile
//! request or a server that dies is an error.
//!
//! With `--hostile-tenant`, the owner of a second collection runs beside them
//! ([`tenant`]): slow uploads held open and one-image segments past the collection's segment
//! cap; the well-behaved clients' figures then show what that tenant costs them.
//!
//! The report gives, per kind of operation, the count, rate, p50 and p99 latency (of the
//! attempt that succeeded), errors and 503s; the server's peak RSS (`VmHWM`) and the peak of
//! its sampled `RssAnon`, against the bound the server's defaults state (see [`Bound`]); and
//! how long the server took to stop after SIGTERM.

mod report;
pub mod tenant;

pub use report::{BenchServerReport, Bound, ServerFigures, Tally};

use crate::client::Client;
use crate::errors::{AppError, Result};
use crate::keystore::Keystore;
use crate::remote::Remote;
use crate::server::{DEFAULT_QUOTA, Limits};
use crate::wire;
use blindsight_he::Context;
use blindsight_search::he_backend::segment_layout;
use blindsight_search::rank::RankRule;
use blindsight_search::vectors::{DEFAULT_SIDE, image_vector};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The collection the benchmark creates.
const COLLECTION: &str = "bench";
/// Matches asked of each search.
const TOP: usize = 5;
/// Fixed allowance of the memory bound for the binary, runtimes, thread stacks and SQLite
/// page caches.
pub const BASELINE_BYTES: u64 = 64 << 20;
/// Images set aside for ingests per client and second of the run.
const INGEST_POOL_PER_CLIENT_SECOND: usize = 8;
/// How long a raw hostile request waits for the status line (beyond the server's 10 s
/// header timeout, so that a server answering late is seen as late, not as refused).
const RAW_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest a well-formed operation keeps retrying after 503s past the end of the run.
const RETRY_GRACE: Duration = Duration::from_secs(10);

/// Options of `blindsight bench-server`.
#[derive(Clone, Debug)]
pub struct BenchServerOptions {
    /// Parameter preset of the collection (`ckks-8192`, `bfv-8192`, ...).
    pub preset: String,
    /// Gallery size: the first images of the embedded list (pixel-identical twins skipped).
    pub gallery: usize,
    /// Client threads.
    pub clients: usize,
    /// Length of the measured run (seconds).
    pub seconds: f64,
    /// The server's admission limit (`serve --max-concurrent`).
    pub max_concurrent: usize,
    /// Seed of the clients' random choices (thread k uses a seed derived from it and k).
    pub seed: u64,
    /// Working folder (database, admin token, server log); default: a fresh folder under
    /// the system's temporary folder, removed at the end.
    pub dir: Option<PathBuf>,
    /// Run a hostile tenant beside the clients ([`tenant`]).
    pub hostile_tenant: bool,
}

impl Default for BenchServerOptions {
    fn default() -> Self {
        Self {
            preset: "ckks-8192".into(),
            gallery: 200,
            clients: 4,
            seconds: 20.0,
            max_concurrent: Limits::default().max_concurrent,
            seed: 1,
            dir: None,
            hostile_tenant: false,
        }
    }
}

/// The hostile requests of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostile {
    /// A segment upload with a wrong token declaring a 300 MB body (64 KiB sent).
    WrongTokenLargeBody,
    /// A search of a collection that does not exist (with a valid token of another).
    UnknownCollection,
    /// Random bytes as the body of a search, ingest or payload request, right token.
    GarbageBody,
    /// A payload request naming one id 5000 times.
    RepeatedIds,
    /// A segment upload with the right token declaring 3 GB (over the route's limit).
    OversizedLength,
    /// A collection creation without credentials declaring a 200 MB body.
    UnauthenticatedCreate,
    /// A request abandoned half-way (in its headers or its body).
    HalfSent,
}

impl Hostile {
    /// Every kind.
    pub const ALL: [Hostile; 7] = [
        Hostile::WrongTokenLargeBody,
        Hostile::UnknownCollection,
        Hostile::GarbageBody,
        Hostile::RepeatedIds,
        Hostile::OversizedLength,
        Hostile::UnauthenticatedCreate,
        Hostile::HalfSent,
    ];

    /// Short name (JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Hostile::WrongTokenLargeBody => "wrong_token_large_body",
            Hostile::UnknownCollection => "unknown_collection",
            Hostile::GarbageBody => "garbage_body",
            Hostile::RepeatedIds => "repeated_ids",
            Hostile::OversizedLength => "oversized_length",
            Hostile::UnauthenticatedCreate => "unauthenticated_create",
            Hostile::HalfSent => "half_sent",
        }
    }

    /// The answer it must get.
    pub fn expected(self) -> &'static str {
        match self {
            Hostile::WrongTokenLargeBody | Hostile::UnauthenticatedCreate => "401 or closed",
            Hostile::UnknownCollection => "401",
            Hostile::GarbageBody => "400 (or 503)",
            Hostile::RepeatedIds => "200, one payload (or 503)",
            Hostile::OversizedLength => "413 or closed (or 503)",
            Hostile::HalfSent => "nothing (sent, dropped)",
        }
    }

    /// Whether the server may close the connection instead of answering (a refusal from
    /// the headers while the client is still sending a large body).
    fn may_close(self) -> bool {
        matches!(
            self,
            Hostile::WrongTokenLargeBody
                | Hostile::UnauthenticatedCreate
                | Hostile::OversizedLength
        )
    }

    /// Whether the route takes an admission permit first (so 503 is a legitimate answer).
    fn admitted(self) -> bool {
        matches!(
            self,
            Hostile::GarbageBody | Hostile::RepeatedIds | Hostile::OversizedLength
        )
    }

    fn status_ok(self, status: u16) -> bool {
        match self {
            Hostile::WrongTokenLargeBody
            | Hostile::UnknownCollection
            | Hostile::UnauthenticatedCreate => status == 401,
            Hostile::GarbageBody => status == 400,
            Hostile::RepeatedIds => status == 200,
            Hostile::OversizedLength => status == 413,
            Hostile::HalfSent => false,
        }
    }
}

/// The well-formed operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Client::search`].
    Search,
    /// [`Client::ingest`].
    Ingest,
    /// [`Client::fetch`].
    Fetch,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 3] = [Op::Search, Op::Ingest, Op::Fetch];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Search => "search",
            Op::Ingest => "ingest",
            Op::Fetch => "fetch",
        }
    }

    /// HTTP requests one operation makes (search and ingest: collection information, image
    /// list, then the search or the upload; fetch: one payload request).
    pub fn http_requests(self) -> usize {
        match self {
            Op::Search | Op::Ingest => 3,
            Op::Fetch => 1,
        }
    }
}

/// A small deterministic generator (SplitMix64): the clients' choices, not secrets.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// An image of the load: name, file, perturbed copy (PNG).
struct PoolImage {
    name: String,
    png: Vec<u8>,
}

/// The server process; killed if still running when dropped (an error path).
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `(VmRSS, RssAnon, VmHWM)` of a process, bytes.
fn proc_memory(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| crate::procfs::field_bytes(&status, name);
    Some((field("VmRSS:")?, field("RssAnon:")?, field("VmHWM:")?))
}

fn start_server(
    exe: &Path,
    dir: &Path,
    max_concurrent: usize,
) -> Result<(ServerProcess, std::thread::JoinHandle<()>)> {
    let log = std::fs::File::create(dir.join("server.log"))
        .map_err(|e| AppError::io(dir.join("server.log"), e))?;
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--db")
        .arg(dir.join("gallery.db"))
        .args(["--listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(dir.join("admin"))
        .args(["--max-concurrent", &max_concurrent.to_string()])
        .env("RUST_LOG", "warn,blindsight=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| AppError::io(exe, e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| AppError::Internal("the server's stdout is not piped".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // reads the first line, hands it over, then drains the rest so the server never blocks
    let drain = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let mut process = ServerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let addr = first
        .trim()
        .rsplit_once(" on http://")
        .and_then(|(_, a)| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            AppError::Internal(format!(
                "the server did not announce its address (first line {first:?}; log: {})",
                log.chars().take(2000).collect::<String>()
            ))
        })?;
    process.addr = addr;
    Ok((process, drain))
}

fn png_of_perturbed(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let v = image_vector(bytes, name, DEFAULT_SIDE)?.perturbed();
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(v.to_rgb())
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| AppError::Internal(format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// The first `gallery + extra` distinct images of the embedded list (pixel-identical twins
/// skipped, so that a right answer is unambiguous) and the number of twins skipped.
fn image_pool(gallery: usize, extra: usize) -> Result<(Vec<PoolImage>, usize)> {
    let want = gallery + extra;
    let mut seen = HashSet::new();
    let mut pool = Vec::with_capacity(want);
    let mut twins = 0;
    for e in blindsight_testdata::all() {
        if pool.len() == want {
            break;
        }
        let v = image_vector(e.png, e.name, DEFAULT_SIDE)?;
        let digest: [u8; 32] = Sha256::new()
            .chain_update(&v.channels[0])
            .chain_update(&v.channels[1])
            .chain_update(&v.channels[2])
            .finalize()
            .into();
        if seen.insert(digest) {
            pool.push(PoolImage {
                name: e.name.to_string(),
                png: e.png.to_vec(),
            });
        } else {
            twins += 1;
        }
    }
    if pool.len() < gallery.max(1) {
        return Err(AppError::Usage(format!(
            "only {} distinct embedded images; asked for a gallery of {gallery}",
            pool.len()
        )));
    }
    Ok((pool, twins))
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What every client thread shares.
struct Shared<'a> {
    addr: SocketAddr,
    base: String,
    token: String,
    keystore: &'a Keystore,
    pool: &'a [PoolImage],
    gallery: usize,
    perturbed: &'a [Vec<u8>],
    /// Gallery ids and the SHA-256 of each one's file.
    ids: &'a [(i64, [u8; 32])],
    next_ingest: AtomicUsize,
    ingested: AtomicUsize,
    deadline: Instant,
    retry_after: Duration,
}

/// One thread's tallies.
#[derive(Default)]
struct Tallies {
    ops: BTreeMap<Op, Tally>,
    hostile: BTreeMap<Hostile, Tally>,
}

/// Runs a well-formed operation, retrying after each 503 (counted) until it succeeds, fails
/// or runs past the end of the run by [`RETRY_GRACE`].
fn well_formed<T>(
    shared: &Shared<'_>,
    tally: &mut Tally,
    mut attempt: impl FnMut() -> Result<T>,
) -> Option<T> {
    tally.count += 1;
    loop {
        let started = Instant::now();
        match attempt() {
            Ok(v) => {
                tally
                    .latencies_ms
                    .push(started.elapsed().as_secs_f64() * 1e3);
                return Some(v);
            }
            Err(AppError::Remote { status: 503, .. }) => {
                tally.busy += 1;
                if Instant::now() > shared.deadline + RETRY_GRACE {
                    tally.error("still 503 after the end of the run".into());
                    return None;
                }
                std::thread::sleep(shared.retry_after);
            }
            Err(e) => {
                tally.error(e.to_string());
                return None;
            }
        }
    }
}

fn search_op(shared: &Shared<'_>, client: &Client, rng: &mut Rng, tally: &mut Tally) {
    let i = rng.below(shared.gallery);
    let (query, name) = if rng.below(2) == 0 {
        (&shared.perturbed[i], "query.png")
    } else {
        (&shared.pool[i].png, shared.pool[i].name.as_str())
    };
    let expected = &shared.pool[i].name;
    if let Some((matches, _)) = well_formed(shared, tally, || {
        client.search(query, name, TOP, RankRule::ChannelTriple)
    }) {
        match matches.first() {
            Some(m) if &m.name == expected && matches.len() >= TOP.min(shared.gallery) => {}
            other => {
                // a wrong answer is an error, its latency is not kept
                tally.latencies_ms.pop();
                tally.error(format!(
                    "search for {expected}: top match {:?}, {} matches",
                    other.map(|m| &m.name),
                    matches.len()
                ));
            }
        }
    }
}

fn ingest_op(shared: &Shared<'_>, client: &Client, rng: &mut Rng, tally: &mut Tally) -> bool {
    let n = 2 + rng.below(3);
    let start = shared.gallery + shared.next_ingest.fetch_add(n, Ordering::SeqCst);
    if start + n > shared.pool.len() {
        return false;
    }
    let files: Vec<(String, Vec<u8>)> = shared.pool[start..start + n]
        .iter()
        .map(|p| (p.name.clone(), p.png.clone()))
        .collect();
    if let Some(report) = well_formed(shared, tally, || client.ingest(&files, |_| {})) {
        if report.added == n && report.duplicates == 0 && report.failed.is_empty() {
            shared.ingested.fetch_add(n, Ordering::SeqCst);
        } else {
            tally.latencies_ms.pop();
            tally.error(format!(
                "ingest of {n} new images: added {}, duplicates {}, failed {}",
                report.added,
                report.duplicates,
                report.failed.len()
            ));
        }
    }
    true
}

fn fetch_op(shared: &Shared<'_>, client: &Client, rng: &mut Rng, tally: &mut Tally) {
    let k = 1 + rng.below(5);
    let picks: Vec<&(i64, [u8; 32])> = (0..k)
        .map(|_| &shared.ids[rng.below(shared.ids.len())])
        .collect();
    let ids: Vec<i64> = picks.iter().map(|p| p.0).collect();
    let expected: HashMap<i64, [u8; 32]> = picks.iter().map(|p| (p.0, p.1)).collect();
    if let Some(found) = well_formed(shared, tally, || client.fetch(&ids)) {
        let right = found.len() == expected.len()
            && found
                .iter()
                .all(|(id, bytes)| expected.get(id) == Some(&sha(bytes)));
        if !right {
            tally.latencies_ms.pop();
            tally.error(format!(
                "fetch of {} ids: {} payloads back, not the files ingested",
                expected.len(),
                found.len()
            ));
        }
    }
}

/// The status line of a raw exchange, or `None` if the server closed the connection.
fn raw_exchange(addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<Option<u16>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(RAW_READ_TIMEOUT))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(head.as_bytes())?;
    // the server may refuse from the headers and close before the body is in
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(2).any(|w| w == b"\r\n") || buf.len() > 8192 {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP status line: {:?}",
                    line.chars().take(80).collect::<String>()
                ),
            )
        })?;
    Ok(Some(status))
}

fn hostile_op(
    shared: &Shared<'_>,
    http: &reqwest::blocking::Client,
    kind: Hostile,
    rng: &mut Rng,
    tally: &mut Tally,
) {
    tally.count += 1;
    let started = Instant::now();
    let c = COLLECTION;
    let token = &shared.token;
    let first_chunk = vec![0u8; 64 << 10];
    let outcome: std::result::Result<Option<u16>, String> = match kind {
        Hostile::WrongTokenLargeBody => raw_exchange(
            shared.addr,
            &format!(
                "POST /v1/collections/{c}/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong{:016x}\r\nContent-Length: 300000000\r\nConnection: close\r\n\r\n",
                rng.next()
            ),
            &first_chunk,
        )
        .map_err(|e| e.to_string()),
        Hostile::UnknownCollection => raw_exchange(
            shared.addr,
            &format!(
                "POST /v1/collections/nope-{:08x}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n",
                rng.next() as u32
            ),
            &[0u8; 1024],
        )
        .map_err(|e| e.to_string()),
        Hostile::GarbageBody => {
            let route = ["search", "segments", "payloads"][rng.below(3)];
            let body = rng.bytes(4096);
            raw_exchange(
                shared.addr,
                &format!(
                    "POST /v1/collections/{c}/{route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                &body,
            )
            .map_err(|e| e.to_string())
        }
        Hostile::RepeatedIds => {
            let id = shared.ids[rng.below(shared.ids.len())].0;
            http.post(format!("{}/v1/collections/{c}/payloads", shared.base))
                .bearer_auth(token)
                .body(wire::encode_ids(&vec![id; 5000]))
                .send()
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let status = r.status().as_u16();
                    let body = r.bytes().map_err(|e| e.to_string())?;
                    if status == 200 {
                        let batch = wire::decode_payloads(&body).map_err(|e| e.to_string())?;
                        if batch.found.len() != 1 || batch.found[0].0 != id {
                            return Err(format!(
                                "5000 copies of one id: {} payloads back",
                                batch.found.len()
                            ));
                        }
                    }
                    Ok(Some(status))
                })
        }
        Hostile::OversizedLength => raw_exchange(
            shared.addr,
            &format!(
                "POST /v1/collections/{c}/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 3000000000\r\nConnection: close\r\n\r\n"
            ),
            &first_chunk,
        )
        .map_err(|e| e.to_string()),
        Hostile::UnauthenticatedCreate => raw_exchange(
            shared.addr,
            "POST /v1/collections HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\nConnection: close\r\n\r\n",
            &first_chunk,
        )
        .map_err(|e| e.to_string()),
        Hostile::HalfSent => {
            let head = if rng.below(2) == 0 {
                // headers cut off
                format!("POST /v1/collections/{c}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bea")
            } else {
                // body cut off
                format!(
                    "POST /v1/collections/{c}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n{}",
                    "x".repeat(1000)
                )
            };
            TcpStream::connect_timeout(&shared.addr, Duration::from_secs(5))
                .and_then(|mut s| s.write_all(head.as_bytes()))
                .map(|()| None)
                .map_err(|e| e.to_string())
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Ok(None) if kind == Hostile::HalfSent => {
            tally.as_expected += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(None) if kind.may_close() => {
            tally.closed_early += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(Some(503)) if kind.admitted() => {
            tally.busy += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(Some(s)) if kind.status_ok(s) => {
            tally.as_expected += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(Some(s)) => tally.error(format!("{}: answered {s}", kind.name())),
        Ok(None) => tally.error(format!("{}: connection closed, no answer", kind.name())),
        Err(e) => tally.error(format!("{}: {e}", kind.name())),
    }
}

fn client_thread(shared: &Shared<'_>, k: usize, seed: u64) -> Result<Tallies> {
    let remote = Remote::new(&shared.base)?.with_token(&shared.token);
    let client = Client::new(shared.keystore.duplicate(), remote, COLLECTION)?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| AppError::Connection(e.to_string()))?;
    let mut rng = Rng::new(seed ^ (k as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut t = Tallies::default();
    for kind in Hostile::ALL {
        hostile_op(
            shared,
            &http,
            kind,
            &mut rng,
            t.hostile.entry(kind).or_default(),
        );
    }
    while Instant::now() < shared.deadline {
        // weights: search 35, ingest 15, fetch 25, hostile 25
        let r = rng.below(100);
        if r < 35 {
            search_op(
                shared,
                &client,
                &mut rng,
                t.ops.entry(Op::Search).or_default(),
            );
        } else if r < 50 {
            let done = ingest_op(
                shared,
                &client,
                &mut rng,
                t.ops.entry(Op::Ingest).or_default(),
            );
            if !done {
                // the ingest pool is used up: a fetch instead
                fetch_op(
                    shared,
                    &client,
                    &mut rng,
                    t.ops.entry(Op::Fetch).or_default(),
                );
            }
        } else if r < 75 {
            fetch_op(
                shared,
                &client,
                &mut rng,
                t.ops.entry(Op::Fetch).or_default(),
            );
        } else {
            let kind = Hostile::ALL[rng.below(Hostile::ALL.len())];
            hostile_op(
                shared,
                &http,
                kind,
                &mut rng,
                t.hostile.entry(kind).or_default(),
            );
        }
    }
    Ok(t)
}

/// Peak memory of the server, sampled every 50 ms until `stop`.
#[derive(Default)]
struct Sampled {
    rss: u64,
    anon: u64,
    samples: usize,
    /// `unix_ms,vm_rss,rss_anon` lines (written to `rss.csv` in the working folder).
    series: String,
}

fn sampler(pid: u32, stop: Arc<AtomicBool>, out: Arc<Mutex<Sampled>>) {
    while !stop.load(Ordering::SeqCst) {
        if let Some((rss, anon, _)) = proc_memory(pid)
            && let Ok(mut s) = out.lock()
        {
            s.rss = s.rss.max(rss);
            s.anon = s.anon.max(anon);
            s.samples += 1;
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            s.series.push_str(&format!("{ms},{rss},{anon}\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Figures the server wrote in its log: (ERROR lines, largest `cache_bytes`, largest
/// appended body, largest search bytes in + out); only lines after `skip` lines count for
/// the bodies (the setup's gallery upload is not part of the run).
fn log_figures(log: &str, skip: usize) -> (usize, u64, u64, u64) {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let (mut errors, mut cache, mut append, mut search) = (0, 0, 0, 0);
    for (i, raw) in log.lines().enumerate() {
        let line = strip_ansi(raw);
        if line.contains(" ERROR ") {
            errors += 1;
        }
        if let Some(c) = field(&line, "cache_bytes") {
            cache = cache.max(c);
        }
        if i < skip {
            continue;
        }
        if line.contains("segment appended")
            && let Some(b) = field(&line, "bytes")
        {
            append = append.max(b);
        }
        if let (Some(a), Some(b)) = (field(&line, "bytes_in"), field(&line, "bytes_out")) {
            search = search.max(a + b);
        }
    }
    (errors, cache, append, search)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What the gallery cache holds for a collection with these segment sizes and key bytes.
fn cache_estimate(ctx: &Context, segment_sizes: &[usize], key_bytes: u64) -> Result<u64> {
    let operand = ctx.product_operand_bytes(ctx.max_level()) as u64;
    let mut total = 2 * key_bytes;
    for &n in segment_sizes {
        let layout = segment_layout(ctx, n, (DEFAULT_SIDE * DEFAULT_SIDE) as usize)?;
        total += 3 * layout.ciphertexts_per_channel() as u64 * operand;
    }
    Ok(total)
}

/// Runs the load test against a server started from `server_exe` (`blindsight serve`).
pub fn run(server_exe: &Path, opts: &BenchServerOptions) -> Result<BenchServerReport> {
    if opts.clients == 0 || opts.gallery == 0 || !opts.seconds.is_finite() || opts.seconds <= 0.0 {
        return Err(AppError::Usage(
            "--clients, --gallery and --seconds must be positive".into(),
        ));
    }
    let (dir, remove_dir) = match &opts.dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            (
                std::env::temp_dir().join(format!(
                    "blindsight-bench-server-{}-{nanos}",
                    std::process::id()
                )),
                true,
            )
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| AppError::io(&dir, e))?;
    let result = run_in(server_exe, opts, &dir);
    if remove_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(server_exe: &Path, opts: &BenchServerOptions, dir: &Path) -> Result<BenchServerReport> {
    let setup_started = Instant::now();
    let extra =
        (opts.clients as f64 * opts.seconds.ceil()) as usize * INGEST_POOL_PER_CLIENT_SECOND;
    let (pool, twins) = image_pool(opts.gallery, extra)?;
    let gallery = opts.gallery.min(pool.len());
    let perturbed = pool[..gallery]
        .iter()
        .map(|p| png_of_perturbed(&p.png, &p.name))
        .collect::<Result<Vec<_>>>()?;

    let (mut server, drain) = start_server(server_exe, dir, opts.max_concurrent)?;
    let pid = server.child.id();
    let idle_rss = proc_memory(pid).map_or(0, |m| m.0);
    let base = format!("http://{}", server.addr);
    let admin = crate::commands::admin_token(&dir.join("admin"))?;

    let keystore = Keystore::generate(&opts.preset)?;
    let remote = Remote::new(&base)?;
    // pixels: the load test measures the server, not the client's image model
    let token = Client::create(
        &keystore,
        &remote.with_token(&admin),
        COLLECTION,
        &crate::encoder::pixels_kind(),
    )?;
    let setup_client = Client::new(keystore.duplicate(), remote.with_token(&token), COLLECTION)?;
    let files: Vec<(String, Vec<u8>)> = pool[..gallery]
        .iter()
        .map(|p| (p.name.clone(), p.png.clone()))
        .collect();
    let added = setup_client.ingest(&files, |_| {})?.added;
    if added != gallery {
        return Err(AppError::Internal(format!(
            "the gallery ingest added {added} of {gallery} images"
        )));
    }
    // every gallery file back, byte for byte: the ids the fetches use
    let listed: Vec<i64> = remote
        .with_token(&token)
        .images(COLLECTION)?
        .images
        .iter()
        .map(|e| e.id)
        .collect();
    let known: HashSet<[u8; 32]> = files.iter().map(|(_, b)| sha(b)).collect();
    let ids: Vec<(i64, [u8; 32])> = setup_client
        .fetch(&listed)?
        .into_iter()
        .map(|(id, bytes)| (id, sha(&bytes)))
        .collect();
    if ids.len() != gallery || ids.iter().any(|(_, h)| !known.contains(h)) {
        return Err(AppError::Internal(
            "the gallery's payloads do not come back as ingested".into(),
        ));
    }
    // one search, so that the run starts with the gallery loaded (cache filled)
    let (warm, _) =
        setup_client.search(&perturbed[0], "query.png", TOP, RankRule::ChannelTriple)?;
    if warm.first().map(|m| &m.name) != Some(&pool[0].name) {
        return Err(AppError::Internal(format!(
            "the warm-up search for {} found {:?}",
            pool[0].name,
            warm.first().map(|m| &m.name)
        )));
    }
    let hostile = if opts.hostile_tenant {
        // images no gallery or ingest of the clients uses: the end of the embedded list
        let mut files = blindsight_testdata::distinct_files(usize::MAX);
        let cap = DEFAULT_QUOTA.segments as usize;
        let keep = files.len().saturating_sub(cap + 2000);
        files.drain(..keep.max(pool.len()).min(files.len()));
        Some(tenant::Tenant::setup(
            &base,
            server.addr,
            &admin,
            cap,
            files,
        )?)
    } else {
        None
    };
    let setup_peak_rss = proc_memory(pid).map_or(0, |m| m.2);
    let log_lines_at_start =
        std::fs::read_to_string(dir.join("server.log")).map_or(0, |l| l.lines().count());
    let setup_s = setup_started.elapsed().as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(Mutex::new(Sampled::default()));
    let sampler_thread = {
        let (stop, sampled) = (stop.clone(), sampled.clone());
        std::thread::spawn(move || sampler(pid, stop, sampled))
    };
    let started = Instant::now();
    let shared = Shared {
        addr: server.addr,
        base: base.clone(),
        token: token.clone(),
        keystore: &keystore,
        pool: &pool,
        gallery,
        perturbed: &perturbed,
        ids: &ids,
        next_ingest: AtomicUsize::new(0),
        ingested: AtomicUsize::new(0),
        deadline: started + Duration::from_secs_f64(opts.seconds),
        retry_after: Duration::from_secs(Limits::default().retry_after_s),
    };
    let deadline = shared.deadline;
    let (results, tenant): (Vec<Result<Tallies>>, Option<tenant::TenantReport>) =
        std::thread::scope(|s| {
            let tenant = hostile.map(|t| s.spawn(move || t.run(deadline)));
            let handles: Vec<_> = (0..opts.clients)
                .map(|k| {
                    let shared = &shared;
                    s.spawn(move || client_thread(shared, k, opts.seed))
                })
                .collect();
            let results = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(AppError::Internal("a client thread panicked".into()))
                    })
                })
                .collect();
            (results, tenant.and_then(|t| t.join().ok()))
        });
    let duration_s = started.elapsed().as_secs_f64();
    let mut report = BenchServerReport {
        preset: opts.preset.clone(),
        gallery,
        twins_skipped: twins,
        clients: opts.clients,
        max_concurrent: opts.max_concurrent,
        seed: opts.seed,
        setup_s,
        duration_s,
        ingested: shared.ingested.load(Ordering::SeqCst),
        tenant,
        ..BenchServerReport::default()
    };
    for op in Op::ALL {
        report.ops.insert(op, Tally::default());
    }
    for h in Hostile::ALL {
        report.hostile.insert(h, Tally::default());
    }
    for r in results {
        let t = r?;
        for (op, tally) in t.ops {
            report.ops.entry(op).or_default().merge(tally);
        }
        for (h, tally) in t.hostile {
            report.hostile.entry(h).or_default().merge(tally);
        }
    }

    // the server after the load: alive, healthy, its collection as the clients left it
    let crashed = !matches!(server.child.try_wait(), Ok(None));
    let authed = remote.with_token(&token);
    if !crashed {
        authed.health()?;
        let info = authed.info(COLLECTION)?;
        report.final_images = info.get("images").and_then(Value::as_u64).unwrap_or(0);
        report.final_segments = info.get("segments").and_then(Value::as_u64).unwrap_or(0);
        report.final_key_bytes = info.get("key_bytes").and_then(Value::as_u64).unwrap_or(0);
        let mut sizes: BTreeMap<i64, usize> = BTreeMap::new();
        for e in authed.images(COLLECTION)?.images {
            *sizes.entry(e.segment_id).or_default() += 1;
        }
        let sizes: Vec<usize> = sizes.into_values().collect();
        report.bound.cache_estimate =
            cache_estimate(&keystore.context, &sizes, report.final_key_bytes)?;
        let expected_images = (gallery + report.ingested) as u64;
        if report.final_images != expected_images {
            report.ops.entry(Op::Ingest).or_default().error(format!(
                "the collection holds {} images, {expected_images} were acknowledged",
                report.final_images
            ));
        }
    }
    let peak_rss = proc_memory(pid).map_or(0, |m| m.2);
    stop.store(true, Ordering::SeqCst);
    let _ = sampler_thread.join();

    // SIGTERM, and the time to exit
    let term = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let mut exit = String::from("still running after 60 s: killed");
    while term.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(status)) = server.child.try_wait() {
            exit = status.to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop_s = term.elapsed().as_secs_f64();
    drop(server);
    let _ = drain.join();

    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let (log_errors, cache_logged, largest_append, largest_search) =
        log_figures(&log, log_lines_at_start);
    let sampled = sampled
        .lock()
        .map(|s| {
            let _ = std::fs::write(
                dir.join("rss.csv"),
                format!("unix_ms,vm_rss,rss_anon\n{}", s.series),
            );
            (s.rss, s.anon, s.samples)
        })
        .unwrap_or_default();
    report.server = ServerFigures {
        pid,
        idle_rss,
        setup_peak_rss,
        peak_rss,
        peak_rss_anon: sampled.1,
        peak_rss_sampled: sampled.0,
        samples: sampled.2,
        crashed,
        stop_s,
        exit,
        log_errors,
        cache_logged,
        largest_append,
        largest_search,
    };
    let limits = Limits::default();
    let largest_body = limits
        .max_segment_body
        .max(limits.max_search_body)
        .max(limits.max_ids_body)
        .max(usize::try_from(DEFAULT_QUOTA.key_bytes).unwrap_or(usize::MAX) + (1 << 20))
        as u64;
    let b = &mut report.bound;
    b.baseline = BASELINE_BYTES;
    b.cache = cache_logged.max(b.cache_estimate);
    b.max_concurrent = opts.max_concurrent as u64;
    b.largest_body = largest_body;
    b.stated = b.baseline + b.cache + b.max_concurrent * 3 * largest_body;
    b.workload = b.baseline + b.cache + b.max_concurrent * 3 * largest_append.max(largest_search);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let t = Tally {
            latencies_ms: (1..=100).map(f64::from).collect(),
            ..Tally::default()
        };
        assert_eq!(t.quantile_ms(0.5), Some(50.0));
        assert_eq!(t.quantile_ms(0.99), Some(99.0));
        assert_eq!(Tally::default().quantile_ms(0.5), None);
    }

    #[test]
    fn log_figures_read_the_server_fields() {
        let log = "\u{1b}[2m2026\u{1b}[0m  INFO blindsight::server::gallery: collection loaded collection=bench cache_bytes=1234 ms=3\n\
                   x  INFO blindsight::server::routes: segment appended collection=bench segment=2 images=3 bytes=999 ms=1\n\
                   x  INFO blindsight::server::routes: search collection=bench version=3 segments=2 bytes_in=10 bytes_out=20 ms=5\n\
                   x ERROR blindsight::server::errors: request failed request_id=ab\n";
        assert_eq!(log_figures(log, 0), (1, 1234, 999, 30));
        assert_eq!(log_figures(log, 3), (1, 1234, 0, 0));
    }
}
