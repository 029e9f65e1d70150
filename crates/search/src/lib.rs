//! # blindsight-search — similarity on ciphertexts
//!
//! The engine of blindsight, on top of `blindsight-he`, used on both sides of the trust
//! boundary: the client packs, encrypts and ranks ([`client`], [`rank`]); the server
//! evaluates ([`engine`], [`response`]) without a key that decrypts. What each side may run
//! is decided by the crates above (`blindsight-client`, `blindsight-server`).
//!
//!
//! - [`kind`]: what a collection encrypts ([`VectorKind`]: pixels or an embedding), recorded
//!   with it so that every query is checked against it.
//! - `vectors` (feature `images`, on by default; the server builds without it): image files
//!   to R, G, B vectors (alpha on white, resized square).
//! - [`encoding`]: the numerics: exact integers for BFV (no dot product can wrap), unit
//!   vectors for CKKS; cosines from dot products; norms stay with the client.
//! - [`slots`], [`layout`]: slot shapes and the serialized [`Layout`] of a gallery segment
//!   (generalized diagonals with baby-step/giant-step; hybrid or rows-in-slots), from which
//!   the Galois keys are derived.
//! - [`backend`]: the scheme traits the engine is generic over, and the no-op scheme;
//!   [`he_backend`]: BFV and CKKS behind them.
//! - [`client`]: packing and encrypting segments and queries, decrypting scores.
//! - [`engine`]: the server's encrypted matrix-vector product over all segments;
//!   [`response`]: its results packed across segments (small segments share ciphertexts).
//! - [`source_vector`]: what an image's vectors are encoded from (pixels or features),
//!   sealed beside it by the client so that merges re-encrypt without the file; the server
//!   bounds uploads by its length.
//! - [`rank`]: per-image, per-channel dot products ([`rank::ChannelDots`]), cosines, the
//!   demo's rule on squared channel cosines, whole-vector cosine, top-k, and the f64
//!   reference engine.

pub mod backend;
pub mod client;
pub mod encoding;
pub mod engine;
pub mod errors;
pub mod he_backend;
pub mod kind;
pub mod layout;
pub mod rank;
pub mod response;
pub mod slots;
pub mod source_vector;
#[cfg(feature = "images")]
pub mod vectors;

pub use errors::{Result, SearchError};
pub use kind::VectorKind;
pub use layout::Layout;
