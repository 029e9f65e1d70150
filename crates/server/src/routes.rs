//! The routes. Policy (authorization, sensitive headers, request logs) is applied as layers,
//! so a route cannot skip it. Every handler but `health` and `info` is then admitted in
//! three steps ([`heavy`]), each waited for up to `admission_wait` (then 503): one of its
//! collection's places (`max_concurrent − 1` requests in flight per collection, so one is
//! always left to the others), its body's declared length reserved in the server's budget
//! of bodies in flight, and, once the body has arrived under its limit and deadline, a place
//! among `max_concurrent` for the work; the work runs off the async workers. A slow or large
//! upload therefore holds its own collection's places, never the places other collections'
//! searches need.
//!
//! | route | auth | body limit |
//! |-------|------|-----------|
//! | `GET /health` | none | — |
//! | `POST /v1/collections` | admin | key quota + 1 MiB |
//! | `GET /v1/collections/{name}` | token | — |
//! | `GET /v1/collections/{name}/images?after=ID&limit=N` | token | — (a page of ≤ 4096) |
//! | `POST /v1/collections/{name}/segments` | token | `max_segment_body` |
//! | `POST /v1/collections/{name}/search` | token | `max_search_body` |
//! | `POST /v1/collections/{name}/payloads` | token | `max_ids_body` |
//! | `POST /v1/collections/{name}/sources` | token | `max_ids_body` |
//! | `POST /v1/collections/{name}/thumbnails` | token | `max_ids_body` |
//! | `PUT /v1/collections/{name}/thumbnails` | token | `max_ids` thumbnails |
//! | `POST /v1/collections/{name}/delete` | token | `max_ids_body` |
//! | `POST /v1/collections/{name}/compact` | token | `max_segment_body` |

use crate::api_error::{ApiError, json};
use crate::auth::{self, Authorized};
use crate::body;
use crate::engine;
use crate::errors::ServerError;
use crate::state::AppState;
use crate::store::{CollectionRecord, NewCollection, SealedData};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use blindsight_he::{Context, GaloisKeys, Parameters, RelinKey, RingSwitchKey, Serializable};
use blindsight_proto::{self as wire, AppendSegment, CompactSegment, CreateCollection};
use blindsight_search::VectorKind;
use blindsight_search::he_backend::segment_layout;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The application: every route with its policy layers.
pub fn router(state: Arc<AppState>) -> Router {
    let collection = Router::new()
        .route("/v1/collections/{name}", get(info))
        .route("/v1/collections/{name}/images", get(images))
        .route("/v1/collections/{name}/segments", post(append))
        .route("/v1/collections/{name}/search", post(search))
        .route("/v1/collections/{name}/payloads", post(payloads))
        .route("/v1/collections/{name}/sources", post(sources))
        .route(
            "/v1/collections/{name}/thumbnails",
            post(thumbnails).put(set_thumbnails),
        )
        .route("/v1/collections/{name}/pir/keys", put(pir_keys))
        .route("/v1/collections/{name}/pir", post(pir_retrieve))
        .route("/v1/collections/{name}/delete", post(delete))
        .route("/v1/collections/{name}/compact", post(compact))
        .route_layer(from_fn_with_state(state.clone(), auth::collection_auth));
    let admin = Router::new()
        .route("/v1/collections", post(create))
        .route_layer(from_fn_with_state(state.clone(), auth::admin_auth));
    Router::new()
        .route("/health", get(health))
        .merge(admin)
        .merge(collection)
        // bodies are read by the handlers, under their own limits (`body::read`)
        .layer(DefaultBodyLimit::disable())
        // one log line per request (method, path, status, latency; never headers), inside
        // the layer that marks the token sensitive
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // a 503 (busy) or 507 (quota) is no fault of the server's: warnings; a real
                // fault is logged at ERROR with its request id (`errors.rs`)
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .with_state(state)
}

fn binary(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// A binary answer that says how long the server worked on it (`x-blindsight-server-ms`,
/// which the client reports as the server's share of a request).
fn timed_binary(bytes: Vec<u8>, ms: f64) -> Response {
    let mut response = binary(bytes);
    if let Ok(v) = format!("{ms:.3}").parse() {
        response.headers_mut().insert("x-blindsight-server-ms", v);
    }
    response
}

/// A place for heavy work among `max_concurrent`, waiting up to `admission_wait`; 503
/// after that.
async fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    let limits = &state.options.limits;
    match tokio::time::timeout(limits.admission_wait, state.heavy.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::busy(limits.retry_after_s)),
    }
}

/// One of the collection's places for requests in flight (bodies and work), waiting up to
/// `admission_wait`, then 503: a collection's requests queue behind its own, and always
/// leave a place of `max_concurrent` to the others.
async fn admit_collection(
    state: &AppState,
    collection: Option<i64>,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let Some(id) = collection else {
        return Ok(None);
    };
    let wait = state.options.limits.admission_wait;
    match state.per_collection.acquire(id, wait).await? {
        Some(permit) => Ok(Some(permit)),
        None => Err(ApiError::busy_with(
            state.options.limits.retry_after_s,
            format!(
                "this collection already has {} requests in flight; retry when one finishes",
                state.options.limits.max_per_collection()
            ),
        )),
    }
}

/// Reserves a large body's declared length (or `limit` without one) in the server's budget
/// of bodies in flight, waiting up to `admission_wait`, then 503. A collection has at most
/// `max_per_collection` requests in flight, so it never reserves more than that many bodies
/// of its routes' limits. Bodies no larger than a search's (`max_search_body`) reserve
/// nothing: however many large uploads fill the budget, a search is never refused for it
/// (their memory is bounded by the places of the collections, each `max_search_body`).
async fn reserve_body(
    state: &AppState,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let limits = &state.options.limits;
    let declared = body::declared_length(headers).map_or(limit, |d| d.min(limit as u64) as usize);
    if declared <= limits.max_search_body {
        return Ok(None);
    }
    let kib = u32::try_from(declared.div_ceil(1 << 10).max(1)).unwrap_or(u32::MAX);
    match tokio::time::timeout(
        limits.admission_wait,
        state.bodies.clone().acquire_many_owned(kib),
    )
    .await
    {
        Ok(Ok(permit)) => Ok(Some(permit)),
        _ => Err(ApiError::busy(limits.retry_after_s)),
    }
}

/// A heavy request of `collection` (none for the admin's): takes one of the collection's
/// places, reserves its body in the server's budget, reads the body
/// under `limit` and the body deadline, then waits for a place among `max_concurrent` and
/// runs `work` off the async workers. A body trickling in holds only its collection's place
/// and its reservation, never a place of the work that other collections wait for.
async fn heavy<T: Send + 'static>(
    state: Arc<AppState>,
    collection: Option<i64>,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    work: impl FnOnce(&AppState, Bytes) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let own = admit_collection(&state, collection).await?;
    let reserved = reserve_body(&state, headers, limit).await?;
    let body = body::read(body, headers, limit, &state.options.limits).await?;
    let permit = admit(&state).await?;
    blocking(move || {
        let _held = (own, reserved, permit);
        work(&state, body)
    })
    .await
}

/// Runs blocking work (SQLite, homomorphic evaluation) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({ "status": "ok", "store_id": state.store_id }),
    )
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = usize::try_from(state.options.quota.key_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    heavy(state, None, &headers, body, limit, move |state, body| {
        let msg = CreateCollection::decode(&body)?;
        if !valid_name(&msg.name) {
            return Err(ServerError::Malformed(
                "collection names are 1–128 characters of [A-Za-z0-9-_.]".into(),
            )
            .into());
        }
        if msg.key_id.is_empty() || msg.key_id.len() > 128 {
            return Err(ServerError::Malformed("key id must be 1–128 bytes".into()).into());
        }
        let params = Parameters::from_envelope(&msg.params)?;
        let ctx = Context::new(&params)?;
        let vectors = VectorKind::parse(&msg.vectors)?;
        segment_layout(&ctx, 1, vectors.dim())?;
        RelinKey::from_bytes(&ctx, &msg.relin_key)?;
        let gk = GaloisKeys::from_bytes(&ctx, &msg.galois_keys)?;
        let rsk = RingSwitchKey::from_bytes(&ctx, &msg.response_key)?;
        if rsk.level() != 0 {
            return Err(ServerError::Malformed(
                "the response key must switch ciphertexts at level 0".into(),
            )
            .into());
        }
        let elements: Vec<u64> = gk.elements().collect();
        let token = blindsight_os::random::token()?;
        let hash = auth::token_hash(&token);
        let fingerprint = params.fingerprint();
        let mut store = state.writer()?;
        let id = store.create_collection(
            &NewCollection {
                name: &msg.name,
                params: &msg.params,
                fingerprint: &fingerprint,
                vectors: &vectors,
                relin_key: &msg.relin_key,
                galois_keys: &msg.galois_keys,
                galois_elements: &elements,
                response_key: &msg.response_key,
                token_hash: &hash,
                key_id: &msg.key_id,
            },
            &state.options.quota,
        )?;
        drop(store);
        state.auth.insert(CollectionRecord {
            id,
            name: msg.name.clone(),
            params: msg.params.clone(),
            fingerprint: fingerprint.to_vec(),
            vectors,
            token_hash: hash.to_vec(),
            key_id: msg.key_id.clone(),
        })?;
        tracing::info!(collection = %msg.name, preset = params.name(), "collection created");
        Ok(json(
            StatusCode::CREATED,
            serde_json::json!({ "collection": msg.name, "token": token.as_str() }),
        ))
    })
    .await
}

async fn info(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let ctx = state.context(&record.params)?;
        let store = state.reader()?;
        let usage = store.usage(record.id)?;
        Ok(json(
            StatusCode::OK,
            serde_json::json!({
                "collection": record.name,
                "preset": ctx.params().name(),
                "key_id": record.key_id,
                "vectors": record.vectors.spec(),
                "dim": record.vectors.dim(),
                "channels": record.vectors.channels(),
                "version": usage.version,
                "segments": usage.segments,
                "images": usage.live,
                "deleted": usage.images - usage.live,
                "stored_bytes": usage.stored_bytes,
                "key_bytes": usage.key_bytes,
                "quota": {
                    "images": state.options.quota.images,
                    "stored_bytes": state.options.quota.stored_bytes,
                    "key_bytes": state.options.quota.key_bytes,
                },
                "galois_elements": store.galois_elements(record.id)?,
                "thumbnail_slots": store.thumbnail_capacity(record.id)?.0,
            }),
        ))
    })
    .await
}

/// One page of the collection's images: `?after=ID` (the previous page's `next`) and
/// `?limit=N` (at most [`wire::MAX_PAGE_IMAGES`], the default).
async fn images(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let number = |key: &str| -> Result<Option<i64>, ApiError> {
        query
            .get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ServerError::Malformed(format!("`{key}` must be an integer, not {v:?}")).into()
                })
            })
            .transpose()
    };
    let after = number("after")?;
    let limit = number("limit")?
        .map_or(wire::MAX_PAGE_IMAGES, |l| usize::try_from(l).unwrap_or(0))
        .clamp(1, wire::MAX_PAGE_IMAGES);
    let own = admit_collection(&state, Some(record.id)).await?;
    let permit = admit(&state).await?;
    blocking(move || {
        let _held = (own, permit);
        let (version, images, next) = state.reader()?.image_page(record.id, after, limit)?;
        Ok(binary(wire::encode_image_page(&wire::ImagePage {
            version,
            images,
            next,
        })))
    })
    .await
}

async fn append(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.options.limits.max_segment_body;
    heavy(state, Some(record.id), &headers, body, limit, move |state, body| {
        let started = Instant::now();
        let ctx = state.context(&record.params)?;
        let msg = AppendSegment::decode(&body)?;
        // the decoded copy is all that is needed from here: free the body
        let body_len = body.len();
        drop(body);
        let segment = engine::append(state, &record, &ctx, &msg)?;
        tracing::info!(collection = %record.name, segment, images = msg.images.len(), bytes = body_len, ms = started.elapsed().as_millis() as u64, "segment appended");
        Ok(json(
            StatusCode::CREATED,
            serde_json::json!({ "segment": segment }),
        ))
    })
    .await
}

async fn compact(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.options.limits.max_segment_body;
    heavy(state, Some(record.id), &headers, body, limit, move |state, body| {
        let ctx = state.context(&record.params)?;
        let msg = CompactSegment::decode(&body)?;
        drop(body);
        let new = engine::compact(state, &record, &ctx, &msg)?;
        tracing::info!(collection = %record.name, replaced = msg.olds.len(), new = ?new, "segments compacted");
        Ok(json(StatusCode::OK, serde_json::json!({ "segment": new })))
    })
    .await
}

async fn search(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.options.limits.max_search_body;
    heavy(state, Some(record.id), &headers, body, limit, move |state, body| {
        let started = Instant::now();
        let query = wire::decode_search(&body)?;
        let gallery = state.gallery.load(state, &record)?;
        let resp = engine::respond(&gallery, &record.vectors, &query)?;
        let out = wire::encode_search_response(&resp);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(collection = %record.name, version = resp.version, segments = resp.segments.len(), ciphertexts = resp.ciphertexts.first().map_or(0, Vec::len), bytes_in = body.len(), bytes_out = out.len(), ms = ms as u64, "search");
        Ok(timed_binary(out, ms))
    })
    .await
}

/// Ids of a request, deduplicated in order and capped.
/// A heavy request whose body is a list of image ids (bounded by the id limits).
async fn with_ids(
    state: Arc<AppState>,
    collection: i64,
    headers: &HeaderMap,
    body: Body,
    work: impl FnOnce(&AppState, &[i64]) -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let (body_limit, max_ids) = (
        state.options.limits.max_ids_body,
        state.options.limits.max_ids,
    );
    heavy(
        state,
        Some(collection),
        headers,
        body,
        body_limit,
        move |state, body| work(state, &request_ids(&body, max_ids)?),
    )
    .await
}

fn request_ids(body: &[u8], max: usize) -> Result<Vec<i64>, ApiError> {
    let ids = wire::decode_ids(body)?;
    let mut seen = HashSet::with_capacity(ids.len());
    let unique: Vec<i64> = ids.into_iter().filter(|id| seen.insert(*id)).collect();
    if unique.len() > max {
        return Err(ServerError::Malformed(format!(
            "at most {max} distinct image ids per request, got {}; split the request",
            unique.len()
        ))
        .into());
    }
    Ok(unique)
}

async fn payloads(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    sealed(state, record, SealedData::Payload, &headers, body).await
}

async fn sources(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    sealed(state, record, SealedData::Source, &headers, body).await
}

async fn thumbnails(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    sealed(state, record, SealedData::Thumbnail, &headers, body).await
}

/// Gives images ingested before thumbnails existed the ones their client made (a
/// `Payloads` frame of sealed thumbnails by id, each exactly
/// [`wire::THUMBNAIL_SEALED_BYTES`]); images that have one keep it.
async fn set_thumbnails(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let max = state.options.limits.max_ids;
    let limit = max
        .saturating_mul(wire::THUMBNAIL_SEALED_BYTES + 32)
        .saturating_add(1024);
    heavy(
        state,
        Some(record.id),
        &headers,
        body,
        limit,
        move |state, body| {
            let batch = wire::decode_payloads(&body)?;
            let distinct: HashSet<i64> = batch.found.iter().map(|(id, _)| *id).collect();
            if batch.found.len() > max || distinct.len() != batch.found.len() {
                return Err(ServerError::Malformed(format!(
                    "at most {max} thumbnails of distinct images per request; split the request"
                ))
                .into());
            }
            if let Some((_, t)) = batch
                .found
                .iter()
                .find(|(_, t)| t.len() != wire::THUMBNAIL_SEALED_BYTES)
            {
                return Err(ServerError::Malformed(format!(
                    "a sealed thumbnail is {} bytes, every one must be {}",
                    t.len(),
                    wire::THUMBNAIL_SEALED_BYTES
                ))
                .into());
            }
            let n =
                state
                    .writer()?
                    .set_thumbnails(record.id, &batch.found, &state.options.quota)?;
            tracing::info!(collection = %record.name, thumbnails = n, "thumbnails set");
            Ok(json(StatusCode::OK, serde_json::json!({ "set": n })))
        },
    )
    .await
}

/// Stores a client's one-time retrieval keys (a `blindsight-pir` keys frame: key id, layout
/// seed, substitution and relinearization keys) in memory for the collection.
async fn pir_keys(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = blindsight_pir::wire::MAX_KEYS_BYTES;
    heavy(
        state,
        Some(record.id),
        &headers,
        body,
        limit,
        move |state, body| {
            state.pir.store_keys(record.id, &body)?;
            tracing::info!(collection = %record.name, bytes = body.len(), "retrieval keys stored");
            Ok(json(StatusCode::OK, serde_json::json!({ "stored": true })))
        },
    )
    .await
}

/// Answers a private retrieval (key id, then a query frame) over the collection's sealed
/// thumbnails: the server learns neither which records were asked for nor what came back.
async fn pir_retrieve(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.options.limits.max_search_body;
    heavy(state, Some(record.id), &headers, body, limit, move |state, body| {
        let started = Instant::now();
        let out = state.pir.answer(&state.reader()?, record.id, &body)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(collection = %record.name, bytes_in = body.len(), bytes_out = out.len(), ms = ms as u64, "private retrieval");
        Ok(timed_binary(out, ms))
    })
    .await
}

/// Sealed data of the images a request names, capped at `max_payload_response`.
async fn sealed(
    state: Arc<AppState>,
    record: Arc<CollectionRecord>,
    what: SealedData,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let max_response = state.options.limits.max_payload_response;
    with_ids(state, record.id, headers, body, move |state, ids| {
        let batch = state.reader()?.sealed(record.id, what, ids, max_response)?;
        Ok(binary(wire::encode_payloads(&batch)))
    })
    .await
}

async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(Authorized(record)): Extension<Authorized>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    with_ids(state, record.id, &headers, body, move |state, ids| {
        let n = state.writer()?.delete_images(record.id, ids)?;
        tracing::info!(collection = %record.name, deleted = n, "images deleted");
        Ok(json(StatusCode::OK, serde_json::json!({ "deleted": n })))
    })
    .await
}
