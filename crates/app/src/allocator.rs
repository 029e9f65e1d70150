//! The allocator's tuning, set once at start by the programs built on this crate (the
//! command line and the Python module, whose global allocator is mimalloc).
//!
//! mimalloc returns freed memory to the system 10 ms after it was freed (its
//! `purge_delay`). The homomorphic operations free and allocate polynomials of 32–96 KiB by
//! the thousand per second, so with that default the same pages are given back and faulted
//! in again (and zeroed by the kernel, 2 MiB at a time on a host with transparent huge
//! pages) all through a search or a retrieval: measured, 15 % of a retrieval's cycles at
//! 10⁵ records went to page clearing and faults. Kept for a second, freed memory is
//! reused within the burst of work that freed it and still goes back to the system when
//! the process is idle.
//!
//! A `MIMALLOC_PURGE_DELAY` set in the environment is left as it is (mimalloc reads it at
//! start).

/// How long freed memory stays with the process before it goes back to the system.
pub const PURGE_DELAY_MS: i32 = 1_000;

/// mimalloc v2's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in its
/// `mimalloc.h`; `libmimalloc-sys` does not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the purge delay to [`PURGE_DELAY_MS`], unless the environment chose one. Call it
/// first thing in `main` (or a module's initialization), before other threads start.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only writes mimalloc's table of options (an option number
    // in range and a plain integer value; no pointers). It is not synchronized, so it is
    // called here, before the program starts its threads, as the doc above says; a
    // concurrent allocation would at worst read the old or the new delay.
    #[allow(
        unsafe_code,
        reason = "the one FFI call of this crate, invariant above"
    )]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS.into());
    }
}

/// The purge delay mimalloc runs with now, in milliseconds (`-1`: never).
pub fn purge_delay_ms() -> i64 {
    // SAFETY: `mi_option_get` reads one entry of mimalloc's table of options (an option
    // number in range; it initializes the entry from the environment on first use).
    #[allow(
        unsafe_code,
        reason = "a read of the option set above, invariant above"
    )]
    let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    #[allow(
        clippy::useless_conversion,
        reason = "`c_long` is 64 bits here, 32 on other targets"
    )]
    i64::from(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_tuned() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc v2's default: the option number is the purge delay's
        assert_eq!(purge_delay_ms(), 10);
        tune();
        assert_eq!(purge_delay_ms(), i64::from(PURGE_DELAY_MS));
    }
}
