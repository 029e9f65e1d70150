//! Errors of private retrieval.

use thiserror::Error;

/// What can go wrong laying out or using a batch of retrievals.
#[derive(Debug, Error, PartialEq, Eq)]
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
}

/// Results of this crate.
pub type Result<T> = core::result::Result<T, PirError>;
