//! Errors of the application layer.

use thiserror::Error;

/// Every failure the `blindsight` application reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),

    /// An error of the search layer.
    #[error(transparent)]
    Search(#[from] blindsight_search::SearchError),

    /// An error of the cryptographic layer.
    #[error(transparent)]
    He(#[from] blindsight_he::HeError),
}

/// Result type of the application layer.
pub type Result<T> = core::result::Result<T, AppError>;

impl AppError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
