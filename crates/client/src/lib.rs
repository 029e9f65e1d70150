//! # blindsight-client — the side that holds the secret key
//!
//! Everything here runs on the user's machine, where the HE secret key and the payload key
//! live; nothing here runs on the server, and this crate depends on no server code (no
//! HTTP server, no SQLite, no memory-mapped store: `scripts/check-deps.sh` checks it with
//! `cargo tree`). What leaves this crate for the server is only what [`wire`] frames:
//! ciphertexts, evaluation keys, sealed payloads, opaque tags.
//!
//! - [`client`]: a collection seen from its owner: create, ingest (with tiered merging of
//!   small segments), search (encrypt the query, decrypt and rank the scores), fetch,
//!   delete, compact: all the secret-key work.
//! - [`encoder`]: image files to a collection's vectors (pixels, or the embedded image
//!   model's features).
//! - [`keystore`]: the HE secret key and the payload key, 0600 in a 0700 folder,
//!   optionally sealed under a passphrase (Argon2id).
//! - [`seal`]: payloads sealed with XChaCha20-Poly1305, bound to their collection and image.
//! - [`thumbnail`]: each image's JPEG thumbnail, padded to one size class and sealed.
//! - [`trust`]: which server certificates are trusted (public roots, a CA file, or one
//!   exact certificate by file or fingerprint).
//! - [`remote`]: the HTTP client (rustls): answers read under caps, bounded retries, typed
//!   errors for the server's refusals.
//! - [`channel_ciphertexts`]: a search answer's ciphertexts and score placements.
//! - [`names`]: names made safe for a terminal or a file name.
//! - [`errors`]: the client's error type, [`ClientError`].
//!
//! A hostile server gets errors, never a panic or unbounded memory: every answer is read
//! under a cap computed from what the client itself knows (SECURITY.md).

pub mod channel_ciphertexts;
pub mod client;
pub mod encoder;
pub mod errors;
pub mod keystore;
pub mod names;
pub mod remote;
pub mod seal;
pub mod thumbnail;
pub mod trust;

/// The wire protocol ([`blindsight_proto`]): framed messages, their versions and decoders.
pub use blindsight_proto as wire;
pub use client::Client;
pub use errors::{ClientError, Result};
