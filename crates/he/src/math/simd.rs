//! Runtime dispatch of plain element-wise loops to the widest vector instructions of the
//! CPU (AVX-512 or AVX2 on x86-64, through `pulp`): the crate is compiled for the baseline
//! target, so without it loops such as modular additions, digit lifts and permutations run
//! on 128-bit SSE2 or scalar code. No `unsafe`: `pulp` proves the features at run time and
//! compiles the closure with them enabled.

use std::sync::LazyLock;

/// The instruction set detected once per process.
static ARCH: LazyLock<pulp::Arch> = LazyLock::new(pulp::Arch::new);

/// Runs `f` compiled for the detected instruction set. Mark the closure
/// `#[inline(always)]` so that its body (and what it inlines) is compiled inside the
/// dispatched function.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    ARCH.dispatch(f)
}
