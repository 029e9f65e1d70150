//! # blindsight-pir — private retrieval of fixed-size records
//!
//! After a search, the client knows which of its collection's images matched; it must fetch
//! their sealed thumbnails (fixed-size records) without the server learning which. This
//! crate holds what both sides agree on, and runs on both sides of the trust boundary: it
//! holds no secret and no storage.
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
//! - [`record`]: records as plaintext coefficients (16 bits each).
//! - [`errors`]: the crate's error type, [`PirError`].

pub mod batch;
pub mod errors;
pub mod record;

pub use errors::{PirError, Result};
