//! # blindsight-server — the untrusted side
//!
//! The only part of blindsight that runs on the server's machine. It holds public material
//! only (evaluation keys, ciphertexts, sealed payloads, opaque tags), never a secret key,
//! and must survive a hostile network and hostile tenants. It depends on the protocol
//! (`blindsight-proto`) and the engine (`blindsight-search`), never on the client crate
//! (`scripts/check-deps.sh` checks it with `cargo tree`). [`serve`] takes a bound listener
//! and a shutdown future, so the binary, the tests and the in-process mode all run the same
//! server.
//!
//! - [`listener`]: the accept loop: optional TLS, a connection limit, header and handshake
//!   timeouts, a minimum rate for response writes, graceful shutdown with a deadline.
//! - [`connections`]: slots per client network (IPv4 address, IPv6 `/64`) and eviction of
//!   idle keep-alive connections when slots run out.
//! - [`auth`]: the admin credential (creating collections) and per-collection bearer
//!   tokens, checked from the headers before any body is read, against an in-memory table
//!   (no database read, same work whether the collection exists or not).
//! - [`routes`]: the handlers; bodies are read only after authorization and admission, with
//!   a size limit and a deadline ([`body`]).
//! - [`engine`]: the two engine calls, written once: `respond` (a search) and `append` (an
//!   ingest), called by the handlers, the in-process pipeline and the tests; [`ingest`]:
//!   an ingest's checks and its staged segment file.
//! - [`gallery`]: collections loaded for search, one version at a time, under one memory
//!   budget (LRU over prepared segments and evaluators), each loaded once at a time.
//! - [`store`]: SQLite (versioned collections, segments, sealed payloads, quotas) and the
//!   immutable segment files beside it; [`upgrade`] moves older stores' segments to files.
//! - [`state`]: what the handlers share (the store, the gallery cache, admission).
//! - [`api_error`]: error → status mapping; internal faults are a generic 500 with a
//!   request id that is logged with the detail. [`errors`]: [`ServerError`].
//! - [`tls`]: certificate and key loading (rustls).

pub mod api_error;
pub mod auth;
pub mod body;
pub mod connections;
pub mod engine;
pub mod errors;
pub mod gallery;
pub mod ingest;
pub mod listener;
mod local;
pub mod pir;
pub mod routes;
pub mod state;
pub mod store;
pub mod tls;
pub mod upgrade;

pub use errors::{Result, ServerError};

// the protocol's channel bound is the engine's
const _: () = assert!(blindsight_proto::MAX_CHANNELS == blindsight_search::rank::MAX_CHANNELS);
pub use local::LocalServer;

use crate::store::Quota;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Who may create collections.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminAccess {
    /// Requests carrying `Authorization: Bearer <token>` whose SHA-256 is this.
    TokenHash([u8; 32]),
    /// Anyone (`serve --open-registration`).
    Open,
    /// No one (a server only for existing collections).
    Closed,
}

impl AdminAccess {
    /// Access for holders of `token`.
    pub fn token(token: &str) -> Self {
        Self::TokenHash(auth::token_hash(token))
    }
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TokenHash(_) => "TokenHash(..)",
            Self::Open => "Open",
            Self::Closed => "Closed",
        })
    }
}

/// Bounds on the work and memory of requests. The defaults keep one request under about
/// `max_segment_body` × 3 of memory (body, decoded copy, transaction, allocator; measured
/// 2.8×) and the whole server under `memory_budget` + `max_concurrent` such requests
/// (SECURITY.md, "Limits").
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest ingest or compaction body (bytes).
    pub max_segment_body: usize,
    /// Largest images in one ingest batch.
    pub max_batch_images: usize,
    /// Largest sealed payload, metadata or tag of one image (bytes).
    pub max_image_bytes: usize,
    /// Largest search body (bytes).
    pub max_search_body: usize,
    /// Largest id-list body (bytes).
    pub max_ids_body: usize,
    /// Most ids in one payload or deletion request (after deduplication).
    pub max_ids: usize,
    /// Largest payload response (bytes; at least one payload is always sent).
    pub max_payload_response: usize,
    /// Searches, ingests, compactions and payload reads computing at once (their bodies
    /// read); more wait up to `admission_wait`, then get 503. One collection may have
    /// `max(1, max_concurrent − 1)` requests in flight, bodies included (more wait, then
    /// get 503), so another collection always finds a place.
    pub max_concurrent: usize,
    /// Longest a request waits for each of its places (its collection's, its body's, its
    /// work's) before it is answered 503.
    pub admission_wait: Duration,
    /// Request bodies larger than a search's in flight at once, by their declared length
    /// (bytes; a body without one counts as its route's limit). More wait, then get 503.
    pub max_body_bytes_in_flight: usize,
    /// Open connections at once; a newcomer beyond makes the longest-idle connection of
    /// the network holding the most close, or waits up to `header_timeout`.
    pub max_connections: usize,
    /// Open connections from one network (an IPv4 address, an IPv6 `/64`); a newcomer
    /// beyond makes the network's longest-idle connection close, or is closed.
    pub max_connections_per_address: usize,
    /// Time to receive a request's headers (and to finish a TLS handshake).
    pub header_timeout: Duration,
    /// Longest a connection's response writes may be blocked by a client that does not
    /// read, beyond what `min_write_rate` allows for the bytes it read; then it is closed.
    pub write_timeout: Duration,
    /// Slowest accepted reader of responses (bytes per second) beyond `write_timeout`.
    pub min_write_rate: u64,
    /// Base time to receive a body, plus `size / min_body_rate`.
    pub body_timeout: Duration,
    /// Slowest accepted upload (bytes per second) beyond the base body time.
    pub min_body_rate: u64,
    /// How long shutdown waits for requests in flight.
    pub shutdown_deadline: Duration,
    /// `Retry-After` of a 503 (seconds).
    pub retry_after_s: u64,
}

impl Limits {
    /// Requests of one collection in flight at once: all but one of `max_concurrent`.
    pub fn max_per_collection(&self) -> usize {
        self.max_concurrent.saturating_sub(1).max(1)
    }

    /// The body budget in KiB (the unit of its semaphore).
    pub fn body_budget_kib(&self) -> usize {
        (self.max_body_bytes_in_flight >> 10).clamp(1, u32::MAX as usize)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_segment_body: 512 << 20,
            max_batch_images: 1 << 16,
            max_image_bytes: 64 << 20,
            max_search_body: 16 << 20,
            max_ids_body: 64 << 10,
            max_ids: 1024,
            max_payload_response: 64 << 20,
            max_concurrent: 4,
            admission_wait: Duration::from_secs(2),
            max_body_bytes_in_flight: 2 << 30,
            max_connections: 256,
            max_connections_per_address: 64,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            min_write_rate: 64 << 10,
            body_timeout: Duration::from_secs(30),
            min_body_rate: 1 << 20,
            shutdown_deadline: Duration::from_secs(10),
            retry_after_s: 1,
        }
    }
}

/// Default quota of a collection: 256 MiB of evaluation keys, a million images, 64 GiB,
/// 256 segments (an honest client's tiered merging keeps `O(4·log_4 n)`: a few dozen at a
/// million images).
pub const DEFAULT_QUOTA: Quota = Quota {
    key_bytes: 256 << 20,
    images: 1 << 20,
    stored_bytes: 64 << 30,
    segments: 256,
};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// SQLite database file.
    pub db: PathBuf,
    /// Who may create collections (default: no one).
    pub admin: AdminAccess,
    /// Per-request bounds.
    pub limits: Limits,
    /// Per-collection quota.
    pub quota: Quota,
    /// Memory for loaded collections: evaluation keys and the handles of mapped segments
    /// (the gallery operands themselves are read from the page cache).
    pub memory_budget: usize,
    /// TLS (None: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServerOptions {
    /// Defaults for a database file: no collection creation, default limits and quota, half
    /// the RAM for loaded collections, plain HTTP.
    pub fn new(db: PathBuf) -> Self {
        Self {
            db,
            admin: AdminAccess::Closed,
            limits: Limits::default(),
            quota: DEFAULT_QUOTA,
            memory_budget: default_memory_budget(),
            tls: None,
        }
    }
}

/// Default memory budget of a server's loaded collections (evaluation keys, the handles of
/// mapped segments): half of the machine's RAM (4 GiB if it cannot be read).
pub fn default_memory_budget() -> usize {
    blindsight_os::procfs::read_field_bytes("/proc/meminfo", "MemTotal:")
        .map_or(4 << 30, |b| usize::try_from(b / 2).unwrap_or(usize::MAX))
}

/// Runs the server on `listener` until `shutdown` completes; requests in flight then get
/// `limits.shutdown_deadline` to finish.
pub async fn serve<F>(listener: TcpListener, options: ServerOptions, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let opened = Opened::open(options)?;
    opened.run(listener, shutdown).await
}

/// A server whose store is open and upgraded, not yet serving: what [`serve`] does in two
/// steps, for callers that report a failed start before they accept connections.
pub(crate) struct Opened {
    state: Arc<state::AppState>,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Opened {
    /// Opens the store of `options` (and upgrades it).
    pub(crate) fn open(options: ServerOptions) -> Result<Self> {
        let limits = options.limits.clone();
        let tls = options.tls.clone();
        let state = state::AppState::open(options)?;
        Ok(Self { state, limits, tls })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub(crate) async fn run<F>(self, listener: TcpListener, shutdown: F) -> Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let app = routes::router(self.state);
        listener::run(listener, app, self.tls, &self.limits, shutdown).await
    }
}
