use super::{BLOCK, BatchJob, Consts, GalleryWord, LANES, MASK52, for_each_group};
use core::arch::x86_64::__m512i;
use pulp::{as_arrays, as_arrays_mut, cast};

pulp::simd_type! {
    /// Proof that the CPU has AVX-512F and AVX-512 IFMA (pulp also requires AVX-512VL
    /// for every AVX-512 token).
    pub struct Ifma {
        pub avx512f: "avx512f",
        pub avx512ifma: "avx512ifma",
    }
}

/// The reduction constants broadcast to all lanes.
#[derive(Clone, Copy)]
struct VConsts {
    mask: __m512i,
    p: __m512i,
    p2: __m512i,
    p4: __m512i,
    neg_p: __m512i,
    one_shoup: __m512i,
    r1: __m512i,
    r1_shoup: __m512i,
    r2: __m512i,
    r2_shoup: __m512i,
}

impl Ifma {
    #[inline(always)]
    fn splat(self, x: u64) -> __m512i {
        self.avx512f._mm512_set1_epi64(x as i64)
    }

    #[inline(always)]
    fn consts(self, c: &Consts) -> VConsts {
        let p = c.m.value();
        VConsts {
            mask: self.splat(MASK52),
            p: self.splat(p),
            p2: self.splat(2 * p),
            p4: self.splat(4 * p),
            neg_p: self.splat(c.neg_p),
            one_shoup: self.splat(c.one_shoup),
            r1: self.splat(c.r1),
            r1_shoup: self.splat(c.r1_shoup),
            r2: self.splat(c.r2),
            r2_shoup: self.splat(c.r2_shoup),
        }
    }

    /// `acc + ((a·b) mod 2^52)` per lane (`vpmadd52luq`; `a`, `b` taken mod `2^52`).
    #[inline(always)]
    fn madd_lo(self, acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        self.avx512ifma._mm512_madd52lo_epu64(acc, a, b)
    }

    /// `acc + ⌊a·b / 2^52⌋` per lane (`vpmadd52huq`; `a`, `b` taken mod `2^52`).
    #[inline(always)]
    fn madd_hi(self, acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        self.avx512ifma._mm512_madd52hi_epu64(acc, a, b)
    }

    /// `a·w mod p` up to one multiple of `p` (a value in `[0, 2p)`), for `a < 2^52`,
    /// `w < p` and `aw = a·w mod 2^52`, `w_shoup = ⌊w·2^52 / p⌋` (Shoup's method in radix
    /// `2^52`): with `q = ⌊a·w_shoup / 2^52⌋`, `a·w/p − 2 < q ≤ a·w/p`, so
    /// `a·w − q·p ∈ [0, 2p)`; as that is below `2^52` it equals
    /// `(aw + q·(2^52 − p)) mod 2^52`.
    #[inline(always)]
    fn shoup(self, v: &VConsts, a: __m512i, aw: __m512i, w_shoup: __m512i) -> __m512i {
        let zero = self.splat(0);
        let q = self.madd_hi(zero, a, w_shoup);
        self.avx512f
            ._mm512_and_si512(self.madd_lo(aw, q, v.neg_p), v.mask)
    }

    /// `min(x, x − k)` as unsigned: `x − k` if `x ≥ k`, else `x` (the difference wraps).
    #[inline(always)]
    fn csub(self, x: __m512i, k: __m512i) -> __m512i {
        let f = self.avx512f;
        f._mm512_min_epu64(x, f._mm512_sub_epi64(x, k))
    }

    /// `(lo + hi·2^52) mod p` exactly, for `hi < 2^60` (the flush schedule guarantees
    /// `hi < 4094·2^48`) and any `lo`.
    ///
    /// Write `lo = a0 + 2^52·(lo >> 52)` and `a1 = (lo >> 52) + hi < 2^61` (no overflow),
    /// `a1 = b0 + 2^52·b1` with `b0 < 2^52`, `b1 < 2^9`. Then
    /// `value = a0 + b0·2^52 + b1·2^104 ≡ a0·1 + b0·r1 + b1·r2 (mod p)`; each term is
    /// brought into `[0, 2p)` by a Shoup product, the sum (`< 6p < 2^53`) into
    /// `[0, p)` by conditional subtractions of `4p`, `2p`, `p`.
    #[inline(always)]
    fn reduce(self, v: &VConsts, lo: __m512i, hi: __m512i) -> __m512i {
        let f = self.avx512f;
        let zero = self.splat(0);
        let a0 = f._mm512_and_si512(lo, v.mask);
        let a1 = f._mm512_add_epi64(f._mm512_srli_epi64::<52>(lo), hi);
        let b0 = f._mm512_and_si512(a1, v.mask);
        let b1 = f._mm512_srli_epi64::<52>(a1);
        // a0·1 mod 2^52 is a0 itself
        let t0 = self.shoup(v, a0, a0, v.one_shoup);
        let t1 = self.shoup(v, b0, self.madd_lo(zero, b0, v.r1), v.r1_shoup);
        let t2 = self.shoup(v, b1, self.madd_lo(zero, b1, v.r2), v.r2_shoup);
        let s = f._mm512_add_epi64(f._mm512_add_epi64(t0, t1), t2);
        let s = self.csub(s, v.p4);
        let s = self.csub(s, v.p2);
        self.csub(s, v.p)
    }
}

pub(super) fn add(simd: Ifma, acc: &mut [u64], g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) {
    simd.vectorize(
        #[inline(always)]
        move || {
            let (acc, _) = as_arrays_mut::<BLOCK, u64>(acc);
            let operands = as_arrays::<LANES, u64>(g0)
                .0
                .iter()
                .zip(as_arrays::<LANES, u64>(g1).0)
                .zip(
                    as_arrays::<LANES, u64>(q0)
                        .0
                        .iter()
                        .zip(as_arrays::<LANES, u64>(q1).0),
                );
            for (blk, ((g0, g1), (q0, q1))) in acc.iter_mut().zip(operands) {
                let [lo0, hi0, lo1, hi1, lo2, hi2]: [__m512i; 6] = cast(*blk);
                let g0: __m512i = cast(*g0);
                let g1: __m512i = cast(*g1);
                let q0: __m512i = cast(*q0);
                let q1: __m512i = cast(*q1);
                *blk = cast([
                    simd.madd_lo(lo0, g0, q0),
                    simd.madd_hi(hi0, g0, q0),
                    simd.madd_lo(simd.madd_lo(lo1, g0, q1), g1, q0),
                    simd.madd_hi(simd.madd_hi(hi1, g0, q1), g1, q0),
                    simd.madd_lo(lo2, g1, q1),
                    simd.madd_hi(hi2, g1, q1),
                ]);
            }
        },
    );
}

/// Adds every product of `ops` in the order of [`for_each_group`], a block's six vectors
/// held in registers while a group of products is applied. The two products of `d1` go
/// to separate accumulators (`lo1`/`hi1` and a second pair started at zero, added in at
/// the end), so that eight independent IFMA chains hide the instruction latency; as
/// `u64` addition wraps and is associative, the stored state is bit for bit what one
/// accumulator (or repeated `add`) gives.
pub(super) fn add_batch<W: GalleryWord>(simd: Ifma, jobs: &mut [BatchJob<'_, '_, W>]) {
    simd.vectorize(
        #[inline(always)]
        move || {
            let f = simd.avx512f;
            let zero = simd.splat(0);
            for_each_group(
                jobs,
                #[inline(always)]
                |blk, b, group| {
                    let [mut lo0, mut hi0, mut lo1, mut hi1, mut lo2, mut hi2]: [__m512i; 6] =
                        cast(*blk);
                    let (mut lo1b, mut hi1b) = (zero, zero);
                    for ([g0, g1], [q0, q1]) in group {
                        let g0 = W::vector(&g0[b], simd);
                        let g1 = W::vector(&g1[b], simd);
                        let q0: __m512i = cast(q0[b]);
                        let q1: __m512i = cast(q1[b]);
                        lo0 = simd.madd_lo(lo0, g0, q0);
                        hi0 = simd.madd_hi(hi0, g0, q0);
                        lo1 = simd.madd_lo(lo1, g0, q1);
                        hi1 = simd.madd_hi(hi1, g0, q1);
                        lo1b = simd.madd_lo(lo1b, g1, q0);
                        hi1b = simd.madd_hi(hi1b, g1, q0);
                        lo2 = simd.madd_lo(lo2, g1, q1);
                        hi2 = simd.madd_hi(hi2, g1, q1);
                    }
                    *blk = cast([
                        lo0,
                        hi0,
                        f._mm512_add_epi64(lo1, lo1b),
                        f._mm512_add_epi64(hi1, hi1b),
                        lo2,
                        hi2,
                    ]);
                },
            );
        },
    );
}

pub(super) fn flush(simd: Ifma, c: &Consts, acc: &mut [u64]) {
    simd.vectorize(
        #[inline(always)]
        move || {
            let v = simd.consts(c);
            let zero = simd.splat(0);
            for blk in as_arrays_mut::<BLOCK, u64>(acc).0 {
                let [lo0, hi0, lo1, hi1, lo2, hi2]: [__m512i; 6] = cast(*blk);
                *blk = cast([
                    simd.reduce(&v, lo0, hi0),
                    zero,
                    simd.reduce(&v, lo1, hi1),
                    zero,
                    simd.reduce(&v, lo2, hi2),
                    zero,
                ]);
            }
        },
    );
}

pub(super) fn finish(
    simd: Ifma,
    c: &Consts,
    acc: &[u64],
    d0: &mut [u64],
    d1: &mut [u64],
    d2: &mut [u64],
) {
    simd.vectorize(
        #[inline(always)]
        move || {
            let v = simd.consts(c);
            let outputs = as_arrays_mut::<LANES, u64>(d0)
                .0
                .iter_mut()
                .zip(as_arrays_mut::<LANES, u64>(d1).0.iter_mut())
                .zip(as_arrays_mut::<LANES, u64>(d2).0.iter_mut());
            for (blk, ((d0, d1), d2)) in as_arrays::<BLOCK, u64>(acc).0.iter().zip(outputs) {
                let [lo0, hi0, lo1, hi1, lo2, hi2]: [__m512i; 6] = cast(*blk);
                *d0 = cast(simd.reduce(&v, lo0, hi0));
                *d1 = cast(simd.reduce(&v, lo1, hi1));
                *d2 = cast(simd.reduce(&v, lo2, hi2));
            }
        },
    );
}
