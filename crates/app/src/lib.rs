//! # blindsight — encrypted image similarity search (application layer)
//!
//! What runs where:
//!
//! - On the untrusted server: [`server`] (axum over hyper: authorization layers, admission,
//!   body limits and deadlines, TLS, graceful shutdown; the gallery cache) and [`store`]
//!   (SQLite: versioned collections, segments, sealed payloads, quotas).
//! - On the client, holding secrets: [`client`] (create, ingest, search, fetch, delete,
//!   compact and tiered merging: all the secret-key work), [`encoder`] (image files to a
//!   collection's vectors: pixels, or the embedded image model's features),
//!   [`source_vector`] (what the vectors are encoded from, sealed beside each image so that
//!   merges re-encrypt without the file or the model), [`keystore`] (HE secret key and payload key, 0600 in a
//!   0700 folder, optionally sealed under a passphrase), [`seal`] (payloads sealed with
//!   XChaCha20-Poly1305), [`remote`] (the HTTP client: capped answers, bounded retries),
//!   [`names`] (names made safe for a terminal or a file name).
//! - Between them: [`wire`] (the `blindsight-proto` crate), the framed binary bodies of the
//!   HTTP API, and
//!   [`channel_ciphertexts`], the ciphertext envelopes they carry.
//! - The command line: [`commands`] (the CLI commands on top of the client and the server),
//!   [`demo`], [`eval`] (search quality on edited copies), [`report_page`] (results as one
//!   self-contained HTML page), [`sandbox`] (a collection on a
//!   loopback server: the demo's and eval's setting), [`bench`](mod@bench) (the benchmark contract of DESIGN.md; [`plot`] draws its timings), [`pipeline`] (the
//!   whole path in one process, every message serialized), [`images`] (galleries from
//!   folders or the embedded test images), [`bench_server`] (`blindsight bench-server`, a
//!   loopback load test of a server process: concurrent clients mixing search, ingest, fetch
//!   and hostile requests).

pub mod bench;
pub mod bench_server;
pub mod channel_ciphertexts;
pub mod client;
pub mod commands;
pub mod demo;
pub mod encoder;
pub mod errors;
pub mod eval;
pub mod images;
pub mod keystore;
pub mod names;
pub mod pipeline;
pub mod plot;
pub mod procfs;
pub mod random;
pub mod remote;
pub mod report_page;
pub mod sandbox;
pub mod seal;
pub mod server;
pub mod source_vector;
pub mod store;
pub mod synthetic;

/// The wire protocol ([`blindsight_proto`]): framed messages, their versions and decoders.
pub use blindsight_proto as wire;
pub use errors::{AppError, Result};

// the protocol's channel bound is the engine's
const _: () = assert!(wire::MAX_CHANNELS == blindsight_search::rank::MAX_CHANNELS);
