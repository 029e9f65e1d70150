//! Errors of the operating-system helpers.

use thiserror::Error;

/// A failure of the operating system.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OsError {
    /// The operating system's CSPRNG failed: nothing random can be made on this machine
    /// until it is fixed.
    #[error("operating system randomness: {0}")]
    Randomness(String),
}

/// Result type of the operating-system helpers.
pub type Result<T> = core::result::Result<T, OsError>;
