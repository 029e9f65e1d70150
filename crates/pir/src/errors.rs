//! Errors of private retrieval.

use thiserror::Error;

/// What can go wrong laying out, asking for or answering a batch of retrievals.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PirError {
    /// A parameter is outside what the layout supports.
    #[error("PIR parameters: {what} must be {expected}, not {actual}")]
    Parameters {
        /// Which parameter.
        what: &'static str,
        /// What it must be.
        expected: String,
        /// What it was.
        actual: String,
    },

    /// A slot beyond the database's capacity was asked for.
    #[error("record slot {slot} is beyond the database's {capacity} slots")]
    SlotOutOfRange {
        /// The slot asked for.
        slot: u64,
        /// The number of slots.
        capacity: u64,
    },

    /// A query or an answer does not have the shape the other side expects.
    #[error(
        "private retrieval: expected {expected}, got {actual} (client and server disagree on the collection's size or layout: list it again and retry)"
    )]
    Answer {
        /// What was expected.
        expected: String,
        /// What came.
        actual: String,
    },

    /// Bytes that are not a query or answer frame.
    #[error(
        "private retrieval: expected {what}, found {actual} (the peer speaks another version or the bytes were damaged)"
    )]
    Malformed {
        /// What was expected.
        what: String,
        /// What was found.
        actual: String,
    },

    /// The operating system's CSPRNG failed.
    #[error(transparent)]
    Os(#[from] blindsight_os::OsError),

    /// The homomorphic-encryption layer refused an operation or an input.
    #[error(transparent)]
    He(#[from] blindsight_he::HeError),
}

/// Results of this crate.
pub type Result<T> = core::result::Result<T, PirError>;
