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

/// Whether the detected instruction set has 512-bit vectors (AVX-512): kernels that keep
/// sums in registers size their blocks by it (sixteen registers of 256 bits hold half of
/// what thirty-two of 512 bits hold).
pub fn wide_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(*ARCH, pulp::Arch::V4(_))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// A CPU with AVX2 runs the loops on it, not on the scalar fallback (pulp needs its
    /// `x86-v3` feature for that besides `x86-v4`: without it, an AVX2-only CPU got scalar
    /// code).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn an_avx2_cpu_is_not_run_as_scalar() {
        let arch = *super::ARCH;
        if pulp::x86::V4::try_new().is_some() {
            assert!(matches!(arch, pulp::Arch::V4(_)), "{arch:?}");
        } else if pulp::x86::V3::try_new().is_some() {
            assert!(matches!(arch, pulp::Arch::V3(_)), "{arch:?}");
        }
    }
}
