//! # blindsight — the command line
//!
//! The `blindsight` binary and what only it does: the only crate built on both sides of the
//! trust boundary, so that the demo, the benchmarks and the in-process mode can run a
//! client and a server in one process. The two sides are their own crates:
//!
//! - `blindsight-client` (the user's machine, holding every secret: keystore, encoders,
//!   sealing, the HTTP remote, merges, search and decryption);
//! - `blindsight-server` (the untrusted machine: routes, auth, admission and limits, the
//!   store and its segment files, the gallery cache);
//! - `blindsight-proto` between them (the wire messages and their decoders).
//!
//! Here: [`commands`] (the CLI commands on top of the client and the server), [`demo`],
//! [`eval`] (search quality on edited copies), [`report_page`] (results as one
//! self-contained HTML page), [`sandbox`] (a collection on a loopback server: the demo's and
//! eval's setting), [`bench`](mod@bench) (the benchmark contract of DESIGN.md; [`plot`]
//! draws its timings), [`pipeline`] (the whole path in one process, every message
//! serialized), [`images`] (galleries from folders or the embedded test images),
//! [`synthetic`] (seeded random vectors for scale benchmarks), [`bench_server`]
//! (`blindsight bench-server`, a loopback load test of a server process: concurrent clients
//! mixing search, ingest, fetch and hostile requests), [`webapp`] (`blindsight app`, the local
//! web app: client side, served on loopback to the user's browser only), [`workspace`] (a
//! keystore and a server together, for the web app and the Python package), [`allocator`]
//! (the allocator's purge delay, set at start by the binary and the Python module).

pub mod allocator;
pub mod bench;
pub mod bench_pir;
pub mod bench_server;
pub mod commands;
pub mod demo;
pub mod errors;
pub mod eval;
pub mod images;
pub mod pipeline;
pub mod plot;
pub mod remotes;
pub mod report_page;
pub mod sandbox;
pub mod synthetic;
pub mod webapp;
pub mod workspace;

pub use errors::{AppError, Result};
