//! # blindsight-pir — private retrieval of fixed-size records
//!
//! After a search, the client knows which of its collection's images matched; it must fetch
//! their sealed thumbnails (fixed-size records) without the server learning which. This
//! crate holds what both sides agree on, and runs on both sides of the trust boundary: it
//! holds no secret and no storage.
//!
//! - [`batch`]: the batch layout. A search retrieves exactly `k` records in one round. The
//!   records (slots `0..capacity`) are spread over `B` buckets, each slot into the 3 buckets
//!   its hash functions name (the hash seed is chosen by the client with its one-time keys,
//!   so a server cannot pick a layout that fails for some result sets); the client places its
//!   `k` slots one per bucket by cuckoo insertion and queries every bucket (the unused ones
//!   for a dummy), so every search sends the same requests whatever matched. A slot's
//!   position in a bucket depends only on the slots before it, so appending records never
//!   moves a record already laid out.
//! - [`errors`]: the crate's error type, [`PirError`].

pub mod batch;
pub mod errors;

pub use errors::{PirError, Result};
