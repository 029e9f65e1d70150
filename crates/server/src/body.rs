//! Request bodies, read only after authorization and admission: refused at once when the
//! declared length passes the route's limit (413 before any byte is read), cut off when
//! more arrives than the limit, and abandoned (408) when they fall behind a rolling minimum
//! rate (`min_body_rate` after a grace of `body_timeout`), so a half-sent or trickling
//! request cannot hold a worker or an admission permit.

use crate::Limits;
use crate::api_error::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use std::time::Duration;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than this route's limit of {limit} bytes"),
    )
}

/// The body length a request declares (`Content-Length`), if it does.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a body of at most `limit` bytes, into one buffer (sized from the declared length,
/// so the body is held once, not as chunks plus a contiguous copy). The body must keep up
/// a rolling minimum rate: at any time `t` after the start, at least
/// `(t − body_timeout) · min_body_rate` bytes must have arrived (408 otherwise). So every
/// body has arrived, or been refused, by `body_timeout + limit / min_body_rate` (9 min for
/// a 512 MiB upload at the defaults); meanwhile it holds only its collection's place and
/// its reservation in the body budget (`routes::heavy`).
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    limits: &Limits,
) -> Result<Bytes, ApiError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|d| d > limit as u64) {
        return Err(too_large(limit));
    }
    let start = tokio::time::Instant::now();
    let rate = limits.min_body_rate.max(1) as f64;
    let mut body = body;
    let mut out = Vec::with_capacity(declared.map_or(0, |d| d as usize));
    loop {
        // the next bytes are due by the time the rate would pass the bytes received
        let due = start + limits.body_timeout + Duration::from_secs_f64(out.len() as f64 / rate);
        let frame = match tokio::time::timeout_at(due, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                ));
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read: {e}"),
                )
            })?,
        };
        if let Ok(data) = frame.into_data() {
            if out.len().saturating_add(data.len()) > limit {
                return Err(too_large(limit));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}
