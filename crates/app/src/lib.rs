//! # blindsight — encrypted image similarity search (application layer)
//!
//! - [`images`]: galleries from folders or the embedded test images.
//! - [`pipeline`]: the full client/server path in one process, every message serialized.
//! - [`bench`]: `blindsight bench`, the benchmark contract of DESIGN.md.
//! - [`demo`]: `blindsight demo`.
//!
//! The store (SQLite), the HTTP server and client, and the rest of the CLI come with the
//! product issue.

pub mod bench;
pub mod demo;
pub mod errors;
pub mod images;
pub mod pipeline;

pub use errors::{AppError, Result};
