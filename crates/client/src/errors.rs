//! Errors of the client: what the side holding the secret key reports to its user.

use thiserror::Error;

/// Every failure the blindsight client reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// A request or response body is malformed.
    #[error("malformed message: {0}")]
    Malformed(String),

    /// The keystore is not the one the collection was created with.
    #[error(
        "the keystore does not match collection `{collection}` ({preset}, created with key {expected}; \
         this keystore is {actual}): use the keystore the collection was created with"
    )]
    KeyMismatch {
        /// Collection.
        collection: String,
        /// Key id of the collection.
        expected: String,
        /// Key id of this keystore.
        actual: String,
        /// The collection's preset.
        preset: String,
    },

    /// The server answered with an error.
    #[error("server answered {status}: {message}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },

    /// The server could not be reached.
    #[error("cannot reach the server: {0}")]
    Connection(String),

    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),

    /// The keystore file is missing, unreadable or corrupted.
    #[error("keystore {path}: {reason}")]
    Keystore {
        /// The keystore path.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// Refusing to overwrite an existing keystore.
    #[error("keystore {path} already exists; refusing to overwrite it (move it away first)")]
    KeystoreExists {
        /// The keystore path.
        path: String,
    },

    /// The keystore is passphrase-protected and no passphrase was given.
    #[error(
        "keystore {path} is protected by a passphrase; provide it (--passphrase-file or BLINDSIGHT_PASSPHRASE), or run the command on a terminal to be asked for it"
    )]
    PassphraseRequired {
        /// The keystore path.
        path: String,
    },

    /// The passphrase does not open the keystore.
    #[error("wrong passphrase for keystore {path} (or the file was tampered with)")]
    WrongPassphrase {
        /// The keystore path.
        path: String,
    },

    /// A sealed payload does not open with this key for this image.
    #[error(
        "sealed payload of image {image} does not open: wrong key, wrong image or corrupted data"
    )]
    PayloadAuthentication {
        /// The image id.
        image: String,
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

    /// Creating a collection on this server needs its admin token and none was given.
    #[error(
        "the server {server} creates collections only with its admin token: put the token in a \
         file and pass --admin-token-file FILE (or set BLINDSIGHT_ADMIN_TOKEN)"
    )]
    AdminTokenRequired {
        /// The server URL.
        server: String,
    },

    /// The server refused the admin token that was given.
    #[error(
        "the server {server} refused the admin token ({message}): check the token in \
         --admin-token-file or BLINDSIGHT_ADMIN_TOKEN"
    )]
    AdminTokenRejected {
        /// The server URL.
        server: String,
        /// The server's message (sanitized for a terminal).
        message: String,
    },

    /// A secret (passphrase, admin token) could not be used as given.
    #[error("{what} from {origin}: {reason}")]
    Secret {
        /// What the secret is for (`passphrase`, `admin token`).
        what: &'static str,
        /// Where it came from: a file path or an environment variable.
        origin: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// An error of the search layer.
    #[error(transparent)]
    Search(#[from] blindsight_search::SearchError),

    /// An error of the image model.
    #[error(transparent)]
    Embed(#[from] blindsight_embed::EmbedError),

    /// An error of the cryptographic layer.
    #[error(transparent)]
    He(#[from] blindsight_he::HeError),

    /// Private retrieval refused a query or an answer.
    #[error(transparent)]
    Pir(#[from] blindsight_pir::PirError),
}

/// Result type of the client.
pub type Result<T> = core::result::Result<T, ClientError>;

impl ClientError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<blindsight_os::OsError> for ClientError {
    fn from(e: blindsight_os::OsError) -> Self {
        ClientError::Internal(e.to_string())
    }
}

impl From<blindsight_proto::ProtoError> for ClientError {
    fn from(e: blindsight_proto::ProtoError) -> Self {
        match e {
            blindsight_proto::ProtoError::Malformed(reason) => ClientError::Malformed(reason),
            other => ClientError::Malformed(other.to_string()),
        }
    }
}
