//! Read-only memory maps of committed segment files: the crate's only `unsafe` code.
//!
//! The gallery operands of a segment are read in place by the product kernels from the
//! page cache, so a gallery larger than memory costs page-cache bandwidth, not anonymous
//! memory ([`super::segment_file`]).

use crate::errors::{AppError, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// Maps the committed segment file at `path` read-only.
pub fn map_segment_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| AppError::io(path, e))?;
    // SAFETY: a mapping is sound while no one writes to or truncates the file. Segment
    // files are written in full under a temporary name and renamed into place by the
    // transaction that commits their segment (`super::files`); nothing in blindsight opens a
    // committed segment file for writing again, and removing one only unlinks it, which
    // leaves existing mappings intact. The segment directory belongs to the server: another
    // program truncating a file in it could fault the process (SIGBUS), as with any
    // database file; `SECURITY.md` says so.
    #[allow(unsafe_code, reason = "the one mmap call, invariant above")]
    let map = unsafe { Mmap::map(&file) }.map_err(|e| AppError::io(path, e))?;
    Ok(map)
}
