//! The page's JSON API (every route behind [`super::guard`]): the collections, a page of a
//! collection's thumbnails, search (results' thumbnails by private retrieval), ingest jobs,
//! delete, compact, and the one route that tells the server which image: an original.
//!
//! Thumbnails travel inside the JSON as `data:` URLs (a page of them in one answer); the
//! secret keys never leave [`super::workspace`]: answers carry names, ids, scores, timings
//! and decrypted images only.

use super::assets::{ASSETS, Asset, INDEX};
use super::jobs::Jobs;
use super::servers::Servers;
use crate::commands::default_rule;
use crate::errors::AppError;
use crate::report_page::file_of;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use blindsight_client::ClientError;
use blindsight_client::client::SearchTiming;
use blindsight_search::VectorKind;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Largest query image accepted (bytes).
pub const MAX_QUERY_BYTES: usize = 64 << 20;

/// Largest JSON body accepted (bytes).
const MAX_JSON_BYTES: usize = 64 << 10;

/// Images per browsed page at most.
pub const MAX_PAGE: usize = 200;

/// Results of a search at most (the private retrieval fetches them ten per query).
pub const MAX_RESULTS: usize = 100;

/// Largest file dropped on the page for an ingest (bytes).
pub const MAX_UPLOAD_BYTES: usize = 1 << 30;

/// What the routes share.
pub struct AppState {
    /// The servers, the active one's clients, the keystore.
    pub(crate) servers: Servers,
    /// Ingests in the background.
    pub jobs: Jobs,
    /// Files dropped on the page, one folder per batch until it is ingested (owner-only,
    /// removed with the app).
    pub(crate) staging: tempfile::TempDir,
}

/// An error as the page sees it: a status and a message that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let status = match &e {
            AppError::Usage(_) | AppError::Search(_) | AppError::Embed(_) => {
                StatusCode::BAD_REQUEST
            }
            AppError::Client(c) => match c {
                ClientError::Usage(_) | ClientError::Search(_) | ClientError::Embed(_) => {
                    StatusCode::BAD_REQUEST
                }
                ClientError::Remote { status, .. } if (400..500).contains(status) => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                ClientError::Remote { .. } | ClientError::Connection(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking work (HE, HTTP to the server) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(AppError::Internal(format!("a task of the app failed: {e}")).into()),
    }
}

/// The app's routes (without the guard, which [`super::router`] puts around them).
pub fn routes(state: Arc<AppState>) -> Router {
    let json_limit = DefaultBodyLimit::max(MAX_JSON_BYTES);
    Router::new()
        .route("/", get(|| async { asset(&INDEX) }))
        .route("/assets/{file}", get(asset_file))
        .route("/api/overview", get(overview))
        .route("/api/server", post(switch_server).layer(json_limit))
        .route("/api/collections", post(create).layer(json_limit))
        .route("/api/collections/{name}", get(info))
        .route("/api/collections/{name}/images", get(images))
        .route(
            "/api/collections/{name}/search",
            post(search).layer(DefaultBodyLimit::max(MAX_QUERY_BYTES)),
        )
        .route(
            "/api/collections/{name}/delete",
            post(delete).layer(json_limit),
        )
        .route("/api/collections/{name}/compact", post(compact))
        .route(
            "/api/collections/{name}/ingest",
            post(ingest).layer(json_limit),
        )
        .route(
            "/api/collections/{name}/uploads",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/api/collections/{name}/original/{id}", get(original))
        .route("/api/jobs/{id}", get(job))
        .with_state(state)
}

fn asset(a: &Asset) -> Response {
    ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
}

async fn asset_file(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => asset(a),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn overview(State(s): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let ws = s.servers.active()?;
    let mut overview = blocking(move || ws.overview()).await?;
    overview["servers"] = s.servers.choices()?;
    Ok(Json(overview))
}

async fn switch_server(State(s): State<Arc<AppState>>, body: Bytes) -> ApiResult<Json<Value>> {
    let v = parse_json(&body)?;
    let key = v["key"].as_str().unwrap_or("").to_string();
    let state = Arc::clone(&s);
    blocking(move || state.servers.switch(&key)).await?;
    overview(State(s)).await
}

async fn info(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let ws = s.servers.active()?;
    Ok(Json(
        blocking(move || ws.info_with_parameters(&name)).await?,
    ))
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("not JSON: {e}")))
}

async fn create(State(s): State<Arc<AppState>>, body: Bytes) -> ApiResult<Json<Value>> {
    let v = parse_json(&body)?;
    let name = v["name"].as_str().unwrap_or("").trim().to_string();
    let vectors = match v["vectors"].as_str().unwrap_or("embedding") {
        "embedding" => blindsight_client::encoder::embedding_kind(),
        "pixels" => blindsight_client::encoder::pixels_kind(),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown kind of vectors `{other}`: embedding or pixels"
            )));
        }
    };
    let preset = match v["scheme"].as_str() {
        None | Some("") => None,
        Some("ckks") => Some("ckks-8192"),
        Some("bfv") => Some("bfv-8192"),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown scheme `{other}`: ckks or bfv"
            )));
        }
    };
    let ws = s.servers.active()?;
    let created = name.clone();
    blocking(move || ws.create(&created, &vectors, preset)).await?;
    Ok(Json(json!({ "created": name })))
}

fn data_url(jpeg: &[u8]) -> String {
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    )
}

/// A query string's parameters.
type Params = Query<HashMap<String, String>>;

/// Parameter `key` of `q` parsed, if given; a value that does not parse is an error.
fn param<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<T>> {
    q.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("`{key}={v}` is not a valid value")))
        })
        .transpose()
}

async fn images(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    let limit = param::<usize>(&q, "limit")?
        .unwrap_or(60)
        .clamp(1, MAX_PAGE);
    let first = param::<i64>(&q, "after")?;
    let ws = s.servers.active()?;
    let page = blocking(move || {
        let client = ws.client(&name)?;
        // live images only: a page of deleted ones is skipped to the next
        let mut live = Vec::new();
        let mut after = first;
        let next = loop {
            let (page, more) = client.image_page(after, limit - live.len())?;
            live.extend(page.into_iter().filter(|i| !i.deleted));
            if live.len() >= limit || more.is_none() {
                break more;
            }
            after = more;
        };
        let ids: Vec<i64> = live.iter().filter(|i| i.thumbnail).map(|i| i.id).collect();
        let thumbs = client.thumbnails(&ids)?;
        let images: Vec<Value> = live
            .iter()
            .map(|i| {
                json!({
                    "id": i.id.to_string(),
                    "name": i.name,
                    "thumbnail": file_of(&thumbs, i.id).map(data_url),
                })
            })
            .collect();
        Ok(json!({ "images": images, "next": next.map(|n| n.to_string()) }))
    })
    .await?;
    Ok(Json(page))
}

fn timing_json(t: &SearchTiming, retrieval_s: f64, total_s: f64) -> Value {
    let mut timing = crate::commands::output::timing_json(t);
    timing["retrieval_s"] = json!(retrieval_s);
    timing["total_s"] = json!(total_s);
    timing
}

async fn search(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let k = param::<usize>(&q, "k")?.unwrap_or(10);
    if k == 0 || k > MAX_RESULTS {
        return Err(ApiError::bad_request(format!(
            "k = {k}: ask for 1 to {MAX_RESULTS} results"
        )));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "no query image: drop an image, choose a file or paste one",
        ));
    }
    let query_name = q.get("name").cloned().unwrap_or_else(|| "query".into());
    let ws = s.servers.active()?;
    let answer = blocking(move || {
        let client = ws.client(&name)?;
        let rule = default_rule(client.vectors());
        let (matches, t) = client.search(&body, &query_name, k, rule)?;
        let retrieval = Instant::now();
        let (thumbs, _missing) = crate::commands::private_thumbnails(&client, &matches)?;
        let retrieval_s = retrieval.elapsed().as_secs_f64();
        let pixels = matches!(client.vectors(), VectorKind::Pixels { .. });
        let results: Vec<Value> = matches
            .iter()
            .map(|m| {
                let thumbnail = file_of(&thumbs, m.id).map(data_url);
                json!({
                    "id": m.id.to_string(),
                    "name": m.name,
                    "score": m.whole_cosine,
                    "channels": if pixels { json!(m.channel_cosines) } else { Value::Null },
                    "thumbnail": thumbnail,
                })
            })
            .collect();
        Ok(json!({
            "query": query_name,
            "vectors": client.vectors().to_string(),
            "rule": crate::commands::rule_name(rule),
            "results": results,
            "timing": timing_json(&t, retrieval_s, started.elapsed().as_secs_f64()),
        }))
    })
    .await?;
    Ok(Json(answer))
}

/// The image ids of a JSON body's `ids` (numbers or decimal strings: ids are 64-bit).
fn ids_of(v: &Value) -> ApiResult<Vec<i64>> {
    let list = v["ids"]
        .as_array()
        .ok_or_else(|| ApiError::bad_request("no `ids` list"))?;
    if list.len() > 10_000 {
        return Err(ApiError::bad_request("at most 10 000 ids at once"));
    }
    list.iter()
        .map(|id| {
            id.as_i64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::bad_request(format!("{id} is not an image id")))
        })
        .collect()
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ids = ids_of(&parse_json(&body)?)?;
    let ws = s.servers.active()?;
    let deleted = blocking(move || Ok(ws.client(&name)?.delete(&ids)?)).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

async fn compact(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let ws = s.servers.active()?;
    let r = blocking(move || Ok(ws.client(&name)?.compact()?)).await?;
    Ok(Json(json!({
        "replaced": r.replaced,
        "written": r.written,
        "purged": r.purged,
        "skipped": r.skipped,
        "thumbnails": r.thumbnails,
        "thumbnails_failed": r.thumbnails_failed,
        "seconds": r.elapsed.as_secs_f64(),
    })))
}

async fn ingest(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = parse_json(&body)?;
    let ws = s.servers.active()?;
    if let Some(batch) = v["uploaded"].as_str() {
        let dir = staged_batch(&s, batch)?;
        if !dir.is_dir() {
            return Err(ApiError::bad_request(format!(
                "no files were dropped in batch {batch}"
            )));
        }
        let id = s
            .jobs
            .start_ingest(ws, name, dir.clone(), true, Some(dir))?;
        return Ok(Json(json!({ "job": id })));
    }
    let path = v["path"].as_str().unwrap_or("").trim();
    if path.is_empty() {
        return Err(ApiError::bad_request(
            "no folder given: type the path of a folder (or a file) on this machine",
        ));
    }
    let path = PathBuf::from(path);
    if !path.exists() {
        return Err(ApiError::bad_request(format!(
            "{} does not exist on this machine",
            path.display()
        )));
    }
    let recursive = v["recursive"].as_bool().unwrap_or(true);
    let id = s.jobs.start_ingest(ws, name, path, recursive, None)?;
    Ok(Json(json!({ "job": id })))
}

/// The staging folder of upload batch `batch` (1 to 64 letters, digits, `-`: the page's
/// random id for one drop).
fn staged_batch(s: &AppState, batch: &str) -> ApiResult<PathBuf> {
    let ok = !batch.is_empty()
        && batch.len() <= 64
        && batch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok {
        return Err(ApiError::bad_request(
            "an upload batch is 1 to 64 letters, digits or -",
        ));
    }
    Ok(s.staging.path().join(batch))
}

/// A file dropped on the page, kept in its batch's staging folder until the batch is
/// ingested (`POST …/ingest {"uploaded": batch}`); its name made safe as one file name.
async fn upload(
    State(s): State<Arc<AppState>>,
    Path(_name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let dir = staged_batch(&s, q.get("batch").map_or("", String::as_str))?;
    let file = blindsight_client::names::for_file(q.get("file").map_or("", String::as_str));
    let written = blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| AppError::io(&dir, e))?;
        // the same name twice in one drop (from two folders): numbered, never replaced
        let path = blindsight_client::keystore::write_new_private(&dir, &file, &body)?;
        Ok(path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(file))
    })
    .await?;
    Ok(Json(json!({ "file": written })))
}

async fn job(State(s): State<Arc<AppState>>, Path(id): Path<u64>) -> ApiResult<Json<Value>> {
    s.jobs.state(id).map(Json).ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no job {id}"),
    })
}

/// The media type of an image file by its first bytes (anything else is served as a
/// download, never rendered).
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::Gif => Some("image/gif"),
        image::ImageFormat::WebP => Some("image/webp"),
        image::ImageFormat::Bmp => Some("image/bmp"),
        _ => None,
    }
}

async fn original(
    State(s): State<Arc<AppState>>,
    Path((name, id)): Path<(String, i64)>,
) -> ApiResult<Response> {
    let ws = s.servers.active()?;
    let files = blocking(move || Ok(ws.client(&name)?.fetch(&[id])?)).await?;
    let Some((_, bytes)) = files.into_iter().find(|(i, _)| *i == id) else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("image {id} is not in the collection (deleted?)"),
        });
    };
    Ok(match image_type(&bytes) {
        Some(t) => ([(header::CONTENT_TYPE, t)], bytes).into_response(),
        None => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CONTENT_DISPOSITION, "attachment"),
            ],
            bytes,
        )
            .into_response(),
    })
}
