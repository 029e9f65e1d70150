//! A collection's counters ([`Usage`]) and the limits its writes are checked against
//! ([`Quota`]).

use crate::errors::{Result, ServerError};

/// A collection's counters, changed by every write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bumped by every append, deletion and compaction, in the write's transaction.
    pub version: i64,
    /// Bumped whenever the evaluation keys change.
    pub keys_version: i64,
    /// Bytes of evaluation keys.
    pub key_bytes: u64,
    /// Bytes of ciphertexts, tags, sealed metadata and payloads.
    pub stored_bytes: u64,
    /// Images stored (live and deleted, until compaction).
    pub images: u64,
    /// Live images.
    pub live: u64,
    /// Segments.
    pub segments: u64,
}

/// Per-collection limits enforced by the store in the write's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Largest total of evaluation key bytes.
    pub key_bytes: u64,
    /// Most images stored (live and deleted).
    pub images: u64,
    /// Largest total of stored bytes (ciphertexts, tags, metadata, payloads).
    pub stored_bytes: u64,
    /// Most segments: an ingest past it is refused ([`ServerError::TooManySegments`]) until
    /// the client merges; compactions, which never add a segment, always pass.
    pub segments: u64,
}

impl Quota {
    /// No limit (tests, tools).
    pub const UNLIMITED: Quota = Quota {
        key_bytes: u64::MAX,
        images: u64::MAX,
        stored_bytes: u64::MAX,
        segments: u64::MAX,
    };

    /// Refuses a new segment when the collection already holds `segments` (or more).
    pub fn check_new_segment(&self, segments: u64) -> Result<()> {
        if segments >= self.segments {
            return Err(ServerError::TooManySegments {
                limit: self.segments,
                actual: segments,
            });
        }
        Ok(())
    }

    /// Refuses, before anything is written, an upload that would add `images` images and
    /// `bytes` stored bytes to a collection at `usage` past its quota (the write's
    /// transaction checks again, against the state it commits on).
    pub fn check_headroom(&self, usage: &Usage, images: u64, bytes: u64) -> Result<()> {
        let checks = [
            (
                "stored images",
                self.images,
                usage.images.saturating_add(images),
            ),
            (
                "stored bytes",
                self.stored_bytes,
                usage.stored_bytes.saturating_add(bytes),
            ),
        ];
        first_exceeded(checks)
    }
}

/// The first of `(what, limit, actual)` whose actual value passes its limit, as the error.
pub(super) fn first_exceeded(
    checks: impl IntoIterator<Item = (&'static str, u64, u64)>,
) -> Result<()> {
    match checks
        .into_iter()
        .find(|&(_, limit, actual)| actual > limit)
    {
        Some((what, limit, actual)) => Err(ServerError::QuotaExceeded {
            what,
            limit,
            actual,
        }),
        None => Ok(()),
    }
}
