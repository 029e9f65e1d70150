//! # blindsight — encrypted image similarity search (application layer)
//!
//! - [`images`]: galleries from folders or the embedded test images.
//! - [`pipeline`]: the full client/server path in one process, every message serialized.
//! - [`bench`]: `blindsight bench`, the benchmark contract of DESIGN.md.
//! - [`bench_server`]: `blindsight bench-server`, a loopback load test of the HTTP server
//!   (concurrent clients mixing search, ingest, fetch and hostile requests).
//! - [`demo`]: `blindsight demo`.
//! - [`client`]: create, ingest, search, fetch, delete: all the secret-key work.
//! - [`commands`]: the CLI commands (keygen, create, ingest, search, delete, info, serve).
//! - [`keystore`]: the client's secret material (HE secret key, payload key), mode 0600,
//!   optionally sealed under a passphrase.
//! - [`seal`]: image payloads sealed with XChaCha20-Poly1305.
//! - [`remote`]: the HTTP client of the API.
//! - [`server`]: the HTTP server (axum), a library function taking a listener and a
//!   shutdown future.
//! - [`wire`]: the framed binary bodies of the HTTP API.
//! - [`store`]: the SQLite store (WAL, versioned schema, one transaction per ingest batch).
//!
//! The SQLite store, the HTTP server and client, and the rest of the CLI are being built
//! (issue #4).

pub mod bench;
pub mod bench_server;
pub mod client;
pub mod commands;
pub mod demo;
pub mod errors;
pub mod images;
pub mod keystore;
pub mod names;
pub mod pipeline;
pub mod remote;
pub mod seal;
pub mod server;
pub mod store;
pub mod wire;

pub use errors::{AppError, Result};
