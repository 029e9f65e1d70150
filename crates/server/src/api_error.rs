//! Errors as HTTP responses. The caller's mistakes get a 4xx with a message that says what
//! to do; faults of the server (database, I/O, randomness, a worker that died) get a generic
//! 500 naming a request id, and the detail goes to the log under that id only.

use crate::errors::ServerError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answer: status, message for the client, and (for 500s) the logged detail.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_s: Option<u64>,
    /// Fields a client acts on, beside the message (`code`, `limit`, `actual`).
    detail: Option<serde_json::Value>,
}

impl ApiError {
    /// Whether the request met a concurrent change (409).
    pub fn is_conflict(&self) -> bool {
        self.status == StatusCode::CONFLICT
    }

    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_s: None,
            detail: None,
        }
    }

    /// A fault of the server: the detail is logged, the client sees a request id.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 401, the same for a wrong token and an unknown collection.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token for this collection",
        )
    }

    /// 503 with `Retry-After`.
    pub fn busy(retry_after_s: u64) -> Self {
        Self::busy_with(
            retry_after_s,
            "the server is busy with other searches and ingests; retry shortly",
        )
    }

    /// 503 with `Retry-After` and `message`.
    pub fn busy_with(retry_after_s: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A server answer where an application error is expected (in-process callers of the
/// server's pieces): its status and message as an internal error.
impl From<ApiError> for ServerError {
    fn from(e: ApiError) -> Self {
        ServerError::Internal(format!("{e:?}"))
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        let status = match &e {
            ServerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServerError::AlreadyExists { .. } | ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ServerError::TooManySegments { limit, actual } => {
                return Self {
                    detail: Some(serde_json::json!({
                        "code": blindsight_proto::TOO_MANY_SEGMENTS,
                        "limit": limit,
                        "actual": actual,
                    })),
                    ..Self::new(StatusCode::CONFLICT, e.to_string())
                };
            }
            ServerError::Malformed(_) | ServerError::Usage(_) => StatusCode::BAD_REQUEST,
            ServerError::He(he) if !is_server_fault(he) => StatusCode::BAD_REQUEST,
            ServerError::Search(blindsight_search::SearchError::He(he)) if is_server_fault(he) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ServerError::Search(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// Whether an error of the cryptographic layer is the server's fault, not the input's.
fn is_server_fault(e: &blindsight_he::HeError) -> bool {
    matches!(e, blindsight_he::HeError::Randomness { .. })
}

impl From<blindsight_proto::ProtoError> for ApiError {
    fn from(e: blindsight_proto::ProtoError) -> Self {
        ServerError::from(e).into()
    }
}

impl From<blindsight_he::HeError> for ApiError {
    fn from(e: blindsight_he::HeError) -> Self {
        ServerError::from(e).into()
    }
}

impl From<blindsight_os::OsError> for ApiError {
    fn from(e: blindsight_os::OsError) -> Self {
        ServerError::from(e).into()
    }
}

impl From<blindsight_search::SearchError> for ApiError {
    fn from(e: blindsight_search::SearchError) -> Self {
        ServerError::from(e).into()
    }
}

fn request_id() -> String {
    // an all-zero id if the OS refuses randomness: still logged, still generic
    blindsight_os::random::hex(&blindsight_os::random::bytes::<8>().unwrap_or([0; 8]))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (message, id) = if self.status.is_server_error()
            && self.status != StatusCode::SERVICE_UNAVAILABLE
            && self.status != StatusCode::INSUFFICIENT_STORAGE
        {
            let id = request_id();
            tracing::error!(request_id = %id, status = %self.status, error = %self.message, "request failed");
            (
                format!(
                    "internal server error (request id {id}); the operator's log has the detail"
                ),
                Some(id),
            )
        } else {
            tracing::info!(status = %self.status, error = %self.message, "request refused");
            (self.message, None)
        };
        let mut body = serde_json::json!({ "error": message });
        if let (Some(serde_json::Value::Object(fields)), Some(out)) =
            (self.detail, body.as_object_mut())
        {
            out.extend(fields);
        }
        let mut response = json(self.status, body);
        if let Some(id) = id.and_then(|i| HeaderValue::from_str(&i).ok()) {
            response.headers_mut().insert("x-request-id", id);
        }
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(r: Response) -> (StatusCode, String, Option<String>) {
        let status = r.status();
        let id = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned(), id)
    }

    #[test]
    #[allow(clippy::panic, reason = "test")]
    fn database_faults_are_generic_500s_with_a_request_id() {
        let e = ServerError::Database(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(11),
            Some("database disk image is malformed: table images".into()),
        ));
        let (status, body, id) = body_of(ApiError::from(e).into_response());
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !body.contains("malformed") && !body.contains("images"),
            "{body}"
        );
        let id = id.unwrap_or_default();
        assert_eq!(id.len(), 16);
        assert!(body.contains(&id), "{body}");
    }

    #[test]
    fn the_callers_mistakes_keep_their_message() {
        let (status, body, id) =
            body_of(ApiError::from(ServerError::Conflict("id 5 exists".into())).into_response());
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(body.contains("id 5 exists") && id.is_none());
        let (status, _, _) = body_of(
            ApiError::from(ServerError::QuotaExceeded {
                what: "stored images",
                limit: 1,
                actual: 2,
            })
            .into_response(),
        );
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        let r = ApiError::busy(3).into_response();
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
    }
}
