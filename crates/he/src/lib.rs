//! # blindsight-he — RNS homomorphic encryption (BFV and CKKS) in pure Rust
//!
//! The cryptographic core of blindsight. Layout:
//!
//! - [`math`]: modular arithmetic, NTT (tfhe-ntt underneath), RNS polynomials, sampling from
//!   an OS-seeded ChaCha20 CSPRNG, exact base conversion.
//! - [`params`]: named presets checked against the 128-bit HE standard table, fingerprints.
//! - [`context`]: a parameter set with its precomputed tables.
//! - [`keys`]: secret, public, relinearization and Galois keys (hybrid key switching).
//! - [`bfv`] / [`ckks`]: the two encoders.
//! - [`crypt`]: encryption (seeded secret-key, public-key), decryption, noise budget.
//! - [`evaluator`]: homomorphic operations, hoisted rotations, lazy multiply-accumulate.
//! - [`serialize`]: the versioned binary envelope of every object.
//!
//! Ciphertexts stay in NTT form between operations.

pub mod bfv;
mod bfv_mul;
pub mod ckks;
pub mod context;
pub mod crypt;
pub mod errors;
pub mod evaluator;
pub mod keys;
mod keyswitch;
pub mod math;
pub mod params;
pub mod plaintext;
pub mod serialize;

pub use bfv::BfvEncoder;
pub use ckks::{CkksEncoder, Complex};
pub use context::Context;
pub use errors::{HeError, Result};
pub use evaluator::{Evaluator, HoistedCiphertext, ProductAccumulator, ProductOperand};
pub use keys::{GaloisKeys, PublicKey, RelinKey, SecretKey};
pub use params::{Parameters, Scheme};
pub use plaintext::{Ciphertext, Plaintext};
pub use serialize::{Kind, Serializable};
