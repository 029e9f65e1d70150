//! Errors of the server: its store, its files, its engine calls and its configuration.
//! [`crate::api_error`] turns them into HTTP answers.

use thiserror::Error;

/// Every failure the blindsight server reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// A request body, or a file the server reads, is malformed.
    #[error("malformed message: {0}")]
    Malformed(String),

    /// The server's configuration asks for something impossible (a quota beyond what
    /// clients accept, a certificate that does not load).
    #[error("{0}")]
    Usage(String),

    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),

    /// The database was written by a newer blindsight.
    #[error(
        "database schema version {actual} is newer than this build's {expected}; upgrade blindsight"
    )]
    SchemaTooNew {
        /// Newest version this build knows.
        expected: i64,
        /// Version found.
        actual: i64,
    },

    /// A segment file is not what its segment's rows say (damaged, truncated, or from
    /// another store).
    #[error(
        "segment file {path}: {reason}; the store is damaged: restore it from a backup, or \
         delete the collection and ingest it again"
    )]
    SegmentFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A named thing does not exist.
    #[error("{what} `{name}` not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// Its name or id.
        name: String,
    },

    /// A thing to create exists already.
    #[error("{what} `{name}` already exists")]
    AlreadyExists {
        /// What.
        what: &'static str,
        /// Its name or id.
        name: String,
    },

    /// The write conflicts with the collection's current state (an id or image it already
    /// holds, or a compaction computed from a live set that has changed since).
    #[error("conflict: {0}")]
    Conflict(String),

    /// A per-collection quota would be exceeded.
    #[error(
        "quota exceeded: {what} would be {actual}, over the collection's limit of {limit}; \
         delete and compact, or ask the server's operator for a larger quota"
    )]
    QuotaExceeded {
        /// What is limited.
        what: &'static str,
        /// The limit.
        limit: u64,
        /// What the write would make it.
        actual: u64,
    },

    /// The collection holds the most segments its server keeps: its segments must be
    /// merged before another ingest (the client does it by itself).
    #[error(
        "the collection holds {actual} segments, the most this server keeps per collection is \
         {limit}: merge them (`blindsight compact`) and ingest again"
    )]
    TooManySegments {
        /// The server's limit.
        limit: u64,
        /// Segments the collection holds.
        actual: u64,
    },

    /// A fault inside the program or its environment (not the caller's input).
    #[error("internal error: {0}")]
    Internal(String),

    /// An error of the search layer.
    #[error(transparent)]
    Search(#[from] blindsight_search::SearchError),

    /// An error of the cryptographic layer.
    #[error(transparent)]
    He(#[from] blindsight_he::HeError),
}

/// Result type of the server.
pub type Result<T> = core::result::Result<T, ServerError>;

impl ServerError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<blindsight_os::OsError> for ServerError {
    fn from(e: blindsight_os::OsError) -> Self {
        ServerError::Internal(e.to_string())
    }
}

impl From<blindsight_proto::ProtoError> for ServerError {
    fn from(e: blindsight_proto::ProtoError) -> Self {
        match e {
            blindsight_proto::ProtoError::Malformed(reason) => ServerError::Malformed(reason),
            other => ServerError::Malformed(other.to_string()),
        }
    }
}
