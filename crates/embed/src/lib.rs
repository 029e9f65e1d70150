//! Image embeddings for blindsight's client, computed on the device, offline: client side
//! only (the server never sees an image and never links this crate).
//!
//! The model is EfficientNet-Lite0 (Apache-2.0; `models/efficientnet-lite0/` at the root of
//! the repository holds the ONNX file, its converter, licence and notice), embedded in the
//! binary as an NNEF archive converted from the ONNX file (`examples/onnx_to_nnef`; a test
//! checks the conversion byte for byte) and run with `tract-nnef`: nothing is downloaded at
//! build, test or run time, and the client links no memory-mapping crate (tract's ONNX
//! front end maps files).
//!
//! Layout:
//! - [`model`]: the embedded network, its identity (name and SHA-256 of the ONNX file)
//!   and [`Embedder`], which turns an image into the network's 1280 raw features;
//! - [`preprocess`]: an image to the network's input (RGB, 224 × 224, `(x − 127)/128`);
//! - [`normalize`]: raw features to the stored unit vector (square root, then L2), chosen
//!   by measurement;
//! - [`errors`]: what can go wrong, with what to do about it.

pub mod errors;
pub mod model;
pub mod normalize;
pub mod preprocess;

pub use errors::{EmbedError, Result};
pub use model::{Embedder, FEATURES, MODEL_NAME, ModelIdentity};
pub use normalize::Normalization;
