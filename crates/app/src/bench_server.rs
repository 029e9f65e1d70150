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

mod hostile;
mod report;
mod server_process;
pub mod tenant;

pub use hostile::Hostile;
use hostile::hostile_op;
use server_process::{Sampled, log_figures, proc_memory, sampler, start_server};

pub use report::{BenchServerReport, Bound, ServerFigures, Tally};

use crate::errors::{AppError, Result};
use blindsight_client::ClientError;
use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_he::Context;
use blindsight_search::he_backend::segment_layout;
use blindsight_search::rank::RankRule;
use blindsight_search::vectors::{DEFAULT_SIDE, image_vector};
use blindsight_server::{DEFAULT_QUOTA, Limits};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
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
    mut attempt: impl FnMut() -> core::result::Result<T, ClientError>,
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
            Err(ClientError::Remote { status: 503, .. }) => {
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

fn client_thread(shared: &Shared<'_>, k: usize, seed: u64) -> Result<Tallies> {
    let remote = Remote::new(&shared.base)?.with_token(&shared.token);
    let client = Client::new(shared.keystore.duplicate(), remote, COLLECTION)?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ClientError::Connection(e.to_string()))?;
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
    let result = run_in(server_exe, opts, &dir).map_err(|e| with_server_log(e, &dir));
    if remove_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Most lines of the server's log a failed run's error quotes.
const QUOTED_LOG_LINES: usize = 20;

/// `e` with the server's own account of what went wrong: the ERROR and WARN lines of its
/// log and any panic (a 500 names only a request id; the log has the detail under it).
fn with_server_log(e: AppError, dir: &Path) -> AppError {
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN ") || l.contains("panicked"))
        .take(QUOTED_LOG_LINES)
        .collect();
    if lines.is_empty() {
        return e;
    }
    AppError::Internal(format!("{e}\nthe server's log says:\n{}", lines.join("\n")))
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
        &blindsight_client::encoder::pixels_kind(),
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
