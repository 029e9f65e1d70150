//! # blindsight-proto — the wire protocol
//!
//! What crosses the trust boundary between a blindsight client (which holds every secret)
//! and a server (which holds none): the framed binary bodies of the HTTP API, their
//! version, and their decoders. No keys, no SQL, no HTTP: both sides depend on this crate,
//! and it depends on neither.
//!
//! - [`messages`]: every message with its encoder and decoder, and the limits both sides
//!   agree on ([`MAX_PAGE_IMAGES`], [`MAX_ANSWER_SEGMENTS`], [`TOO_MANY_SEGMENTS`]).
//! - [`types`]: images as an ingest sends them, a list shows them, a payload answer
//!   returns them.
//! - [`errors`]: [`ProtoError`], what a decoder returns for bytes that are not a message.
//!
//! Ciphertexts, keys and parameters inside a frame are `blindsight-he` envelopes, opaque
//! here and checked by whoever uses them. Every decoder bounds each count and length by
//! the bytes actually present: a malformed body is an error, never a panic or an
//! allocation beyond its own size.

pub mod errors;
pub mod messages;
pub mod types;

pub use errors::{ProtoError, Result};
pub use messages::*;
pub use types::{ImageEntry, ImageRecord, PayloadBatch};
