//! Authorization from the headers alone, before any body is read.
//!
//! Collection tokens live in an in-memory table (name → row id and SHA-256 of the token),
//! loaded at start and updated at creation, so that checking a token never reads the
//! database nor waits for the store lock, whatever other requests do. The check does the
//! same work whether the collection exists or not: the presented token is hashed, the name
//! looked up, and the hash compared in constant time against the stored one or a dummy.

use crate::AdminAccess;
use crate::api_error::ApiError;
use crate::errors::Result;
use crate::state::AppState;
use crate::store::{CollectionRecord, Store};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// SHA-256 of a bearer token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The collections and their token hashes.
pub struct AuthTable {
    entries: RwLock<HashMap<String, Arc<CollectionRecord>>>,
}

/// The collection a request was authorized for (a request extension).
#[derive(Clone, Debug)]
pub struct Authorized(pub Arc<CollectionRecord>);

impl AuthTable {
    /// Loads every collection's narrow row.
    pub fn load(store: &Store) -> Result<Self> {
        let entries = store
            .collections()?
            .into_iter()
            .map(|c| (c.name.clone(), Arc::new(c)))
            .collect();
        Ok(Self {
            entries: RwLock::new(entries),
        })
    }

    /// Records a new collection.
    pub fn insert(&self, record: CollectionRecord) -> std::result::Result<(), ApiError> {
        self.entries
            .write()
            .map_err(|_| ApiError::internal("the token table lock is poisoned"))?
            .insert(record.name.clone(), Arc::new(record));
        Ok(())
    }

    /// The collection `name` if `token` is its token; otherwise 401, after the same work.
    pub fn check(
        &self,
        name: &str,
        token: Option<&str>,
    ) -> std::result::Result<Arc<CollectionRecord>, ApiError> {
        let presented = token_hash(token.unwrap_or(""));
        let record = self
            .entries
            .read()
            .map_err(|_| ApiError::internal("the token table lock is poisoned"))?
            .get(name)
            .cloned();
        let dummy = [0xA5u8; 32];
        let expected: &[u8] = record.as_ref().map_or(&dummy, |r| &r.token_hash);
        let equal = bool::from(presented.as_slice().ct_eq(expected));
        match record {
            Some(r) if equal && token.is_some() => Ok(r),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Middleware of the collection routes: authorizes from the headers and passes the
/// collection on as an [`Authorized`] extension. The body is not touched.
pub async fn collection_auth(
    State(state): State<Arc<AppState>>,
    UrlPath(params): UrlPath<HashMap<String, String>>,
    mut request: Request,
    next: Next,
) -> std::result::Result<Response, ApiError> {
    let name = params.get("name").map_or("", String::as_str);
    let record = state.auth.check(name, bearer(request.headers()))?;
    request.extensions_mut().insert(Authorized(record));
    Ok(next.run(request).await)
}

/// Middleware of collection creation: the admin credential, from the headers.
pub async fn admin_auth(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> std::result::Result<Response, ApiError> {
    let allowed = match &state.options.admin {
        AdminAccess::Open => true,
        AdminAccess::Closed => false,
        AdminAccess::TokenHash(expected) => {
            let presented = token_hash(bearer(request.headers()).unwrap_or(""));
            bool::from(presented.as_slice().ct_eq(expected)) && bearer(request.headers()).is_some()
        }
    };
    if !allowed {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "creating a collection needs the server's admin token \
             (BLINDSIGHT_ADMIN_TOKEN or --admin-token-file)",
        ));
    }
    Ok(next.run(request).await)
}
