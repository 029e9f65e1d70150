//! Errors of the search layer.

use blindsight_he::HeError;
use thiserror::Error;

/// Every failure the search layer reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SearchError {
    /// An image could not be decoded.
    #[error(
        "cannot read image `{name}`: {reason}; supported formats are PNG, JPEG, WebP, BMP, GIF and TIFF"
    )]
    ImageDecode {
        /// File or image name.
        name: String,
        /// Decoder message.
        reason: String,
    },

    /// An image is larger than the decoder is allowed to allocate (decompression bomb guard).
    #[error(
        "image `{name}` is too large: {actual} pixels, at most {expected} allowed; resize it first"
    )]
    ImageTooLarge {
        /// File or image name.
        name: String,
        /// Largest pixel count accepted.
        expected: u64,
        /// Pixel count of the image.
        actual: u64,
    },

    /// Vectors of different lengths were mixed.
    #[error("{what}: expected vectors of {expected} values, got {actual}")]
    DimensionMismatch {
        /// What was being checked.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },

    /// The layout cannot hold vectors of this size with these parameters.
    #[error("layout: {reason}")]
    Layout {
        /// What is wrong.
        reason: String,
    },

    /// A response or gallery does not match the layout it claims.
    #[error("{what}: expected {expected} ciphertexts, got {actual}")]
    CiphertextCount {
        /// What was being checked.
        what: &'static str,
        /// Expected count.
        expected: usize,
        /// Actual count.
        actual: usize,
    },

    /// Serialized layout bytes are malformed.
    #[error("malformed layout bytes: {reason}")]
    MalformedLayout {
        /// What is wrong.
        reason: String,
    },

    /// A vector-kind spec is malformed.
    #[error("malformed vector kind `{spec}`: {reason}")]
    MalformedKind {
        /// The spec (its first 200 characters).
        spec: String,
        /// What is wrong.
        reason: String,
    },

    /// A query was made another way than the collection's vectors (another kind, dimension,
    /// model or normalization): its scores would mean nothing.
    #[error(
        "the collection holds vectors of kind `{expected}` but the query is `{actual}`; \
         search it with the model and settings it was created with, or create a new collection"
    )]
    KindMismatch {
        /// The collection's kind.
        expected: String,
        /// The query's kind.
        actual: String,
    },

    /// An error of the homomorphic-encryption layer.
    #[error(transparent)]
    He(#[from] HeError),

    /// An image's source vector (sealed beside it) is not one of its collection's.
    #[error("image source vector: {reason}; the payload is corrupted or from another collection")]
    MalformedSource {
        /// What is wrong.
        reason: String,
    },
}

/// Result type of the search layer.
pub type Result<T> = core::result::Result<T, SearchError>;
