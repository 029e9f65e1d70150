//! # blindsight-pir — private retrieval of fixed-size records
//!
//! After a search, the client knows which of its collection's images matched; it must fetch
//! their sealed thumbnails (fixed-size records) without the server learning which. This
//! crate holds the protocol both sides run; it runs on both sides of the trust boundary:
//! the client builds queries and decodes answers with a secret it holds
//! ([`query`]), the server answers with public keys only ([`answer`]). It holds no storage.
//!
//! - [`batch`]: the batch layout. A search retrieves exactly `k` records in one round. The
//!   records (slots `0..capacity`) are spread over `B` buckets, each slot into `w` of them
//!   (cells of `B / w` slots share out a per-cell permutation of the buckets, seeded by the
//!   client with its one-time keys, so a server cannot pick a layout that fails for some
//!   result sets): every bucket holds one record per cell, a slot sits at the same position
//!   (its cell) in each of its buckets, and appending records never moves one laid out.
//!   The client places its `k` slots one per bucket by cuckoo insertion and queries every
//!   bucket (the unused ones for a dummy), so every search sends the same requests
//!   whatever matched.
//! - [`params`]: the agreed parameters and the grid (`rows × cols`) of each bucket.
//! - [`query`] (client): one-hot row and column selectors per bucket, coefficient-encoded
//!   in one or a few seeded ciphertexts; decoding of the answer.
//! - [`expand`] (server): query expansion by substitutions (SealPIR's tree).
//! - [`answer`] (server): plaintext products down each column (first dimension),
//!   ciphertext products across the columns (second), one relinearization per bucket, a
//!   modulus switch and rounding for transfer.
//! - [`keys`]: the one-time keys (substitution and relinearization keys of the client's
//!   retrieval secret).
//! - [`record`]: records as plaintext coefficients (16 bits each).
//! - [`wire`]: queries and answers as bytes, bounded and checked.
//! - [`errors`]: the crate's error type, [`PirError`].

pub mod answer;
pub mod batch;
pub mod errors;
pub mod expand;
pub mod keys;
pub mod params;
pub mod query;
pub mod record;
pub mod wire;

pub use answer::{AnswerTimes, Records, answer, answer_timed};
pub use errors::{PirError, Result};
pub use keys::QueryKeys;
pub use params::{PirParams, Shape};
pub use query::{PendingQuery, Retrieved, build_query, decode_response};
pub use wire::{KeysUpload, Query, Response};
