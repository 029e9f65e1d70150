//! Errors of the protocol: a message that does not decode.

/// A message that is not a valid frame of this protocol, or whose fields do not hold
/// together. Every decoder returns this instead of panicking or allocating beyond the
/// bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The bytes are not a well-formed message of the expected kind: what is wrong, in
    /// words (truncated, a count beyond the bytes present, another version, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message was written by another version of the protocol: update the side that
    /// is older.
    #[error(
        "unsupported message version {actual} (this build speaks version {expected}): update \
         the older of client and server"
    )]
    Version {
        /// The version this build speaks.
        expected: u16,
        /// The version of the message.
        actual: u16,
    },
}

/// A result of the protocol.
pub type Result<T> = std::result::Result<T, ProtoError>;
