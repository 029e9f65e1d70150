//! Errors of the embedding crate.

use thiserror::Error;

/// What can go wrong while embedding an image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The embedded network could not be loaded or run (a build defect, not the input's).
    #[error("the image model failed: {reason}; rebuild blindsight from a clean checkout")]
    Model {
        /// What the inference engine reported.
        reason: String,
    },
    /// The network returned something of another shape than its declared output.
    #[error("the image model returned {actual} features, expected {expected}")]
    Output {
        /// Features the model declares.
        expected: usize,
        /// Features it returned.
        actual: usize,
    },
    /// An image with no pixels.
    #[error("the image is empty ({width}×{height}); give an image with pixels")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, EmbedError>;

impl EmbedError {
    pub(crate) fn model(e: impl std::fmt::Display) -> Self {
        EmbedError::Model {
            reason: e.to_string(),
        }
    }
}
