//! The HTTP server (axum). [`serve`] takes a bound listener and a shutdown future, so that
//! the binary, the tests and the in-process mode all run the same server.
//!
//! Every route but `/health` needs the collection's bearer token, compared in constant time
//! against the SHA-256 stored at creation; an unknown collection and a wrong token answer
//! alike (401). Bodies are framed binary messages ([`crate::wire`]) with a size limit per
//! route. Evaluation keys and prepared segments are cached in memory after first use. Logs
//! carry routes, sizes and timings, never key or ciphertext bytes.

use crate::errors::AppError;
use crate::store::{CollectionRecord, Store};
use crate::wire::{self, AppendSegment, CreateCollection};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use blindsight_he::{Ciphertext, Context, GaloisKeys, Parameters, RelinKey, Serializable};
use blindsight_search::Layout;
use blindsight_search::engine::{PreparedSegment, score};
use blindsight_search::he_backend::HeEvaluator;
use rand_core::{OsRng, TryRngCore};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// SQLite database file.
    pub db: PathBuf,
    /// Largest ingest batch body (bytes).
    pub max_segment_body: usize,
    /// Memory for resident gallery operands (bytes); beyond it segments are streamed.
    pub memory_budget: usize,
}

impl ServerOptions {
    /// Defaults for a database file: 1 GiB batches, half the RAM for operands.
    pub fn new(db: PathBuf) -> Self {
        Self {
            db,
            max_segment_body: 1 << 30,
            memory_budget: crate::pipeline::default_memory_budget(),
        }
    }
}

/// Limits of the small bodies.
const MAX_SEARCH_BODY: usize = 16 << 20;
const MAX_IDS_BODY: usize = 4 << 20;
const MAX_CREATE_BODY: usize = 512 << 20;

struct Collection {
    ev: Arc<HeEvaluator>,
    ctx: Context,
    segments: Vec<(i64, PreparedSegment<HeEvaluator>)>,
}

struct AppState {
    store: Mutex<Store>,
    cache: Mutex<HashMap<String, Arc<Collection>>>,
    options: ServerOptions,
}

/// Runs the server on `listener` until `shutdown` completes (in-flight requests finish).
pub async fn serve<F>(
    listener: TcpListener,
    options: ServerOptions,
    shutdown: F,
) -> crate::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let store = Store::open(&options.db)?;
    let max_segment = options.max_segment_body;
    let state = Arc::new(AppState {
        store: Mutex::new(store),
        cache: Mutex::new(HashMap::new()),
        options,
    });
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/v1/collections",
            post(create).layer(DefaultBodyLimit::max(MAX_CREATE_BODY)),
        )
        .route("/v1/collections/{name}", get(info))
        .route("/v1/collections/{name}/images", get(images))
        .route(
            "/v1/collections/{name}/segments",
            post(append).layer(DefaultBodyLimit::max(max_segment)),
        )
        .route(
            "/v1/collections/{name}/search",
            post(search).layer(DefaultBodyLimit::max(MAX_SEARCH_BODY)),
        )
        .route(
            "/v1/collections/{name}/payloads",
            post(payloads).layer(DefaultBodyLimit::max(MAX_IDS_BODY)),
        )
        .route(
            "/v1/collections/{name}/delete",
            post(delete).layer(DefaultBodyLimit::max(MAX_IDS_BODY)),
        )
        .route(
            "/v1/collections/{name}/compact",
            post(compact).layer(DefaultBodyLimit::max(max_segment)),
        )
        .with_state(state);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "blindsight server listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| AppError::io("server", e))
}

/// An error as an HTTP response: status and a JSON message.
struct ApiError(StatusCode, String);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let status = match &e {
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::AlreadyExists { .. } => StatusCode::CONFLICT,
            AppError::Malformed(_) | AppError::He(_) | AppError::Search(_) | AppError::Usage(_) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<blindsight_he::HeError> for ApiError {
    fn from(e: blindsight_he::HeError) -> Self {
        AppError::from(e).into()
    }
}

impl From<blindsight_search::SearchError> for ApiError {
    fn from(e: blindsight_search::SearchError) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(status = %self.0, error = %self.1, "request failed");
        } else {
            tracing::info!(status = %self.0, error = %self.1, "request refused");
        }
        json(self.0, serde_json::json!({ "error": self.1 }))
    }
}

/// A JSON response.
fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token for this collection".into(),
    )
}

fn binary(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// Runs blocking work (SQLite, homomorphic evaluation) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker failed: {e}"),
        )
    })?
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, ApiError> {
    m.lock().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "state lock poisoned".into(),
        )
    })
}

/// Checks the bearer token; returns the collection.
fn authorize(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
) -> Result<CollectionRecord, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let record = match lock(&state.store)?.collection(name) {
        Ok(r) => r,
        Err(AppError::NotFound { .. }) => return Err(unauthorized()),
        Err(e) => return Err(e.into()),
    };
    let digest = Sha256::digest(token.trim().as_bytes());
    if bool::from(digest.as_slice().ct_eq(&record.token_hash)) {
        Ok(record)
    } else {
        Err(unauthorized())
    }
}

/// Authorizes a request for collection `name`, then runs `f` off the async workers.
async fn for_collection<F>(
    state: Arc<AppState>,
    name: String,
    headers: HeaderMap,
    f: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&AppState, &str, &CollectionRecord) -> Result<Response, ApiError> + Send + 'static,
{
    blocking(move || {
        let record = authorize(&state, &name, &headers)?;
        f(&state, &name, &record)
    })
    .await
}

async fn create(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    blocking(move || {
        let msg = CreateCollection::decode(&body)?;
        let name_ok = !msg.name.is_empty()
            && msg.name.len() <= 128
            && msg
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(AppError::Malformed(
                "collection names are 1–128 characters of [A-Za-z0-9-_.]".into(),
            )
            .into());
        }
        if msg.key_id.is_empty() || msg.key_id.len() > 128 {
            return Err(AppError::Malformed("key id must be 1–128 bytes".into()).into());
        }
        let params = Parameters::from_envelope(&msg.params)?;
        let ctx = Context::new(&params)?;
        RelinKey::from_bytes(&ctx, &msg.relin_key)?;
        GaloisKeys::from_bytes(&ctx, &msg.galois_keys)?;
        let mut raw = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut raw)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let hash = Sha256::digest(token.as_bytes());
        lock(&state.store)?.create_collection(&crate::store::NewCollection {
            name: &msg.name,
            params: &msg.params,
            fingerprint: &params.fingerprint(),
            dim: msg.dim as usize,
            relin_key: &msg.relin_key,
            galois_keys: &msg.galois_keys,
            token_hash: &hash,
            key_id: &msg.key_id,
        })?;
        tracing::info!(collection = %msg.name, preset = params.name(), "collection created");
        Ok(json(
            StatusCode::CREATED,
            serde_json::json!({ "collection": msg.name, "token": token }),
        ))
    })
    .await
}

async fn info(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, |state, name, record| {
        let store = lock(&state.store)?;
        let ctx = context_of(record)?;
        let images = store.images(record.id)?;
        let deleted = images.iter().filter(|i| i.deleted).count();
        let keys = GaloisKeys::from_bytes(&ctx, &store.evaluation_keys(record.id)?.1)?;
        Ok(json(
            StatusCode::OK,
            serde_json::json!({
                "collection": name,
                "preset": ctx.params().name(),
                "key_id": record.key_id,
                "dim": record.dim,
                "segments": store.segments(record.id)?.len(),
                "images": images.len() - deleted,
                "deleted": deleted,
                "galois_elements": keys.elements().collect::<Vec<_>>(),
            }),
        ))
    })
    .await
}

async fn images(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, |state, _, record| {
        Ok(binary(wire::encode_image_list(
            &lock(&state.store)?.images(record.id)?,
        )))
    })
    .await
}

async fn append(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, move |state, name, record| {
        let started = Instant::now();
        let msg = AppendSegment::decode(&body)?;
        let keys = check_batch(state, record, &msg)?;
        let segment = lock(&state.store)?.append_segment(
            record.id,
            &msg.layout,
            &msg.ciphertexts,
            &msg.images,
            keys.as_deref(),
        )?;
        lock(&state.cache)?.remove(name);
        tracing::info!(collection = %name, segment, images = msg.images.len(), bytes = body.len(), ms = started.elapsed().as_millis() as u64, "segment appended");
        Ok(json(StatusCode::CREATED, serde_json::json!({ "segment": segment })))
    })
    .await
}

async fn compact(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, move |state, name, record| {
        let msg = wire::CompactSegment::decode(&body)?;
        let (batch, keys) = match &msg.batch {
            Some(b) => (
                Some((b.layout.as_slice(), &b.ciphertexts, b.images.as_slice())),
                check_batch(state, record, b)?,
            ),
            None => (None, None),
        };
        let new =
            lock(&state.store)?.replace_segment(record.id, msg.old, batch, keys.as_deref())?;
        lock(&state.cache)?.remove(name);
        tracing::info!(collection = %name, old = msg.old, new = ?new, "segment compacted");
        Ok(json(StatusCode::OK, serde_json::json!({ "segment": new })))
    })
    .await
}

/// Validates an ingest batch against the collection: layout, counts, every ciphertext, image
/// positions, and Galois keys covering the layout. Returns the collection's Galois keys
/// completed by the batch's, if it brought any.
fn check_batch(
    state: &AppState,
    record: &CollectionRecord,
    msg: &AppendSegment,
) -> Result<Option<Vec<u8>>, ApiError> {
    let ctx = context_of(record)?;
    let layout = Layout::from_bytes(&msg.layout)?;
    if msg.images.len() != layout.count {
        return Err(AppError::Malformed(format!(
            "the layout holds {} images but the batch has {}",
            layout.count,
            msg.images.len()
        ))
        .into());
    }
    let expected = layout.ciphertexts_per_channel();
    for ch in &msg.ciphertexts {
        if ch.len() != expected {
            return Err(AppError::Malformed(format!(
                "expected {expected} ciphertexts per channel, got {}",
                ch.len()
            ))
            .into());
        }
        for ct in ch {
            Ciphertext::from_bytes(&ctx, ct)?;
        }
    }
    let (_, stored) = lock(&state.store)?.evaluation_keys(record.id)?;
    let mut keys = GaloisKeys::from_bytes(&ctx, &stored)?;
    let updated = if msg.galois_keys.is_empty() {
        None
    } else {
        keys.merge(GaloisKeys::from_bytes(&ctx, &msg.galois_keys)?)?;
        Some(keys.to_bytes(&ctx)?)
    };
    let missing: Vec<i64> = layout
        .galois_steps()
        .into_iter()
        .filter(|&s| !keys.has_step(&ctx, s))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::Malformed(format!(
            "the layout needs Galois keys for rotation steps {missing:?}; send them with the batch"
        ))
        .into());
    }
    let mut positions: Vec<usize> = msg.images.iter().map(|i| i.position).collect();
    positions.sort_unstable();
    if positions != (0..layout.count).collect::<Vec<_>>() {
        return Err(AppError::Malformed(
            "image positions must be 0..count of the layout, each once".into(),
        )
        .into());
    }
    Ok(updated)
}

fn context_of(record: &CollectionRecord) -> Result<Context, ApiError> {
    Ok(Context::new(&Parameters::from_envelope(&record.params)?)?)
}

/// The evaluator and prepared segments of a collection, loaded on first use.
fn collection(
    state: &AppState,
    name: &str,
    record: &CollectionRecord,
) -> Result<Arc<Collection>, ApiError> {
    let id = record.id;
    if let Some(c) = lock(&state.cache)?.get(name) {
        return Ok(c.clone());
    }
    let started = Instant::now();
    let ctx = context_of(record)?;
    let (rk, gk, segments) = {
        let store = lock(&state.store)?;
        let (rk, gk) = store.evaluation_keys(id)?;
        (rk, gk, store.segments(id)?)
    };
    let ev = Arc::new(HeEvaluator::new(
        &ctx,
        RelinKey::from_bytes(&ctx, &rk)?,
        GaloisKeys::from_bytes(&ctx, &gk)?,
    ));
    let layouts = segments
        .iter()
        .map(|(_, l)| Layout::from_bytes(l))
        .collect::<blindsight_search::Result<Vec<_>>>()?;
    let resident = crate::pipeline::fits_in_memory(&ctx, &layouts, state.options.memory_budget);
    let mut prepared = Vec::with_capacity(segments.len());
    for ((seg_id, _), layout) in segments.iter().zip(layouts) {
        let blobs = lock(&state.store)?.segment_ciphertexts(*seg_id)?;
        let seg = if resident {
            PreparedSegment::load(&*ev, layout, |c, k| {
                stored_ciphertext(&ctx, &layout, &blobs, c, k)
            })?
        } else {
            let ctx = ctx.clone();
            PreparedSegment::streamed(
                layout,
                Box::new(move |c, k| stored_ciphertext(&ctx, &layout, &blobs, c, k)),
            )
        };
        prepared.push((*seg_id, seg));
    }
    let c = Arc::new(Collection {
        ev,
        ctx,
        segments: prepared,
    });
    lock(&state.cache)?.insert(name.to_string(), c.clone());
    tracing::info!(collection = %name, segments = c.segments.len(), resident, ms = started.elapsed().as_millis() as u64, "collection loaded");
    Ok(c)
}

/// Ciphertext `k` of channel `c` of a stored segment.
fn stored_ciphertext(
    ctx: &Context,
    layout: &Layout,
    blobs: &[Vec<Vec<u8>>; 3],
    c: usize,
    k: usize,
) -> blindsight_search::Result<Ciphertext> {
    let b = blobs[c]
        .get(k)
        .ok_or_else(|| blindsight_search::SearchError::CiphertextCount {
            what: "stored ciphertexts",
            expected: layout.ciphertexts_per_channel(),
            actual: blobs[c].len(),
        })?;
    Ok(Ciphertext::from_bytes(ctx, b)?)
}

async fn search(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, move |state, name, record| {
        let started = Instant::now();
        let query = wire::decode_search(&body)?;
        let col = collection(state, name, record)?;
        let [r, g, b] = [0, 1, 2].map(|c| Ciphertext::from_bytes(&col.ctx, &query[c]));
        let q = [r?, g?, b?];
        let segs: Vec<&PreparedSegment<HeEvaluator>> = col.segments.iter().map(|(_, s)| s).collect();
        let responses = score(&*col.ev, &segs, &q)?;
        let resp: wire::SearchResponse = col
            .segments
            .iter()
            .zip(responses)
            .map(|((seg_id, seg), r)| {
                let [x, y, z] = r.map(|cts| {
                    cts.iter()
                        .map(|ct| ct.to_bytes(&col.ctx))
                        .collect::<blindsight_he::Result<Vec<_>>>()
                });
                Ok(wire::SegmentScores {
                    segment: *seg_id,
                    layout: seg.layout.to_bytes(),
                    ciphertexts: [x?, y?, z?],
                })
            })
            .collect::<Result<_, ApiError>>()?;
        let out = wire::encode_search_response(&resp);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(collection = %name, segments = resp.len(), bytes_in = body.len(), bytes_out = out.len(), ms = ms as u64, "search");
        let mut response = binary(out);
        if let Ok(v) = format!("{ms:.3}").parse() {
            response.headers_mut().insert("x-blindsight-server-ms", v);
        }
        Ok(response)
    })
    .await
}

async fn payloads(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, move |state, _, record| {
        let ids = wire::decode_ids(&body)?;
        Ok(binary(wire::encode_payloads(
            &lock(&state.store)?.payloads(record.id, &ids)?,
        )))
    })
    .await
}

async fn delete(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    for_collection(state, name, headers, move |state, name, record| {
        let ids = wire::decode_ids(&body)?;
        let n = lock(&state.store)?.delete_images(record.id, &ids)?;
        tracing::info!(collection = %name, deleted = n, "images deleted");
        Ok(json(StatusCode::OK, serde_json::json!({ "deleted": n })))
    })
    .await
}

/// A server running on a loopback port in a background thread (the CLI's in-process mode,
/// the demo, tests). Stops, letting requests finish, when dropped.
pub struct LocalServer {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<crate::Result<()>>>,
}

impl LocalServer {
    /// Starts a server on `127.0.0.1:0` over the database `db`.
    pub fn start(options: ServerOptions) -> crate::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| AppError::io("127.0.0.1:0", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| AppError::io("listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AppError::io("listener", e))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> crate::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| AppError::io("tokio runtime", e))?;
            rt.block_on(async move {
                let listener =
                    TcpListener::from_std(listener).map_err(|e| AppError::io("listener", e))?;
                serve(listener, options, async move {
                    let _ = rx.await;
                })
                .await
            })
        });
        let server = Self {
            url: format!("http://{addr}"),
            stop: Some(tx),
            thread: Some(thread),
        };
        let remote = crate::remote::Remote::new(&server.url)?;
        for _ in 0..200 {
            if remote.health().is_ok() {
                return Ok(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(AppError::Connection(format!(
            "the in-process server at {} did not start",
            server.url
        )))
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
