//! Read-only memory maps of committed segment files: the crate's only `unsafe` code.
//!
//! The gallery operands of a segment are read in place by the product kernels from the
//! page cache, so a gallery larger than memory costs page-cache bandwidth, not anonymous
//! memory ([`super::segment_file`]). A file that fits comfortably in memory (half of what the
//! kernel reports available) is mapped with its page tables populated up front: the open
//! then reads it (if it is not cached) and the first query does not pay a page fault per
//! 4 KiB (measured: 10^5 × 512 CKKS, first query 0.26 s → 0.19 s, open 0.11 s → 0.18 s).
//! Larger files are mapped lazily, so that opening never reads more than memory holds.

use crate::errors::{Result, ServerError};
use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::path::Path;

/// Maps the committed segment file at `path` read-only.
pub fn map_segment_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| ServerError::io(path, e))?;
    let len = file.metadata().map_err(|e| ServerError::io(path, e))?.len();
    let mut options = MmapOptions::new();
    if available_memory().is_some_and(|avail| len <= avail / 2) {
        options.populate();
    }
    // SAFETY: a mapping is sound while no one writes to or truncates the file. Segment
    // files are written in full under a temporary name and renamed into place by the
    // transaction that commits their segment (`super::files`); nothing in blindsight opens a
    // committed segment file for writing again, and removing one only unlinks it, which
    // leaves existing mappings intact. The segment directory belongs to the server: another
    // program truncating a file in it could fault the process (SIGBUS), as with any
    // database file; `SECURITY.md` says so.
    #[allow(unsafe_code, reason = "the one mmap call, invariant above")]
    let map = unsafe { options.map(&file) }.map_err(|e| ServerError::io(path, e))?;
    Ok(map)
}

/// `MemAvailable` of `/proc/meminfo` (bytes; `None` where there is no such file).
fn available_memory() -> Option<u64> {
    blindsight_os::procfs::read_field_bytes("/proc/meminfo", "MemAvailable:")
}
