//! Errors of the command line: the client's and the server's errors, and the CLI's own
//! (usage, files, the benchmarks' and the demo's setting).

use blindsight_client::ClientError;
use blindsight_server::ServerError;
use thiserror::Error;

/// Every failure a `blindsight` command reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppError {
    /// An error of the client (the side holding the keys).
    #[error(transparent)]
    Client(#[from] ClientError),

    /// An error of the server (the store, its files, its configuration).
    #[error(transparent)]
    Server(#[from] ServerError),

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

    /// Some files of an ingest could not be read or decoded (each is listed with its
    /// reason); the others were ingested.
    #[error(
        "{failed} of {total} files could not be ingested (listed above with the reason); the \
         others were added: fix or remove those files and run the ingest again (files \
         already added are skipped)"
    )]
    Incomplete {
        /// Files that failed.
        failed: usize,
        /// Files the ingest read.
        total: usize,
    },

    /// A fault inside the program or its environment (not the caller's input).
    #[error("internal error: {0}")]
    Internal(String),

    /// An error of the search layer.
    #[error(transparent)]
    Search(#[from] blindsight_search::SearchError),

    /// An error of the image model.
    #[error(transparent)]
    Embed(#[from] blindsight_embed::EmbedError),

    /// An error of the cryptographic layer.
    #[error(transparent)]
    He(#[from] blindsight_he::HeError),

    /// An error of private retrieval.
    #[error(transparent)]
    Pir(#[from] blindsight_pir::PirError),
}

/// Result type of the command line.
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

impl From<blindsight_proto::ProtoError> for AppError {
    fn from(e: blindsight_proto::ProtoError) -> Self {
        Self::Client(e.into())
    }
}

impl From<blindsight_server::api_error::ApiError> for AppError {
    fn from(e: blindsight_server::api_error::ApiError) -> Self {
        Self::Server(e.into())
    }
}

impl From<blindsight_os::OsError> for AppError {
    fn from(e: blindsight_os::OsError) -> Self {
        Self::Internal(e.to_string())
    }
}
