use super::{BLOCK, BatchJob, Consts, GalleryWord, LANES, MASK52, for_each_group};

/// `lo += (a·b) mod 2^52`, `hi += ⌊a·b / 2^52⌋` on the low 52 bits of `a` and `b`,
/// exactly what `vpmadd52luq` / `vpmadd52huq` compute per lane (wrapping like them:
/// the flush schedule keeps the sums in range for inputs below `p`).
#[inline(always)]
fn mac(lo: &mut u64, hi: &mut u64, a: u64, b: u64) {
    let prod = (a & MASK52) as u128 * (b & MASK52) as u128;
    *lo = lo.wrapping_add(prod as u64 & MASK52);
    *hi = hi.wrapping_add((prod >> 52) as u64);
}

/// `lo + hi·2^52 mod p` (exact: the value is below `2^116 + 2^64`).
#[inline(always)]
fn reduce(c: &Consts, lo: u64, hi: u64) -> u64 {
    c.m.reduce_u128(((hi as u128) << 52) + lo as u128)
}

pub(super) fn add(acc: &mut [u64], g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) {
    let operands = g0
        .chunks_exact(LANES)
        .zip(g1.chunks_exact(LANES))
        .zip(q0.chunks_exact(LANES).zip(q1.chunks_exact(LANES)));
    for (blk, ((g0, g1), (q0, q1))) in acc.chunks_exact_mut(BLOCK).zip(operands) {
        let (lo0, rest) = blk.split_at_mut(LANES);
        let (hi0, rest) = rest.split_at_mut(LANES);
        let (lo1, rest) = rest.split_at_mut(LANES);
        let (hi1, rest) = rest.split_at_mut(LANES);
        let (lo2, hi2) = rest.split_at_mut(LANES);
        for l in 0..LANES {
            mac(&mut lo0[l], &mut hi0[l], g0[l], q0[l]);
            mac(&mut lo1[l], &mut hi1[l], g0[l], q1[l]);
            mac(&mut lo1[l], &mut hi1[l], g1[l], q0[l]);
            mac(&mut lo2[l], &mut hi2[l], g1[l], q1[l]);
        }
    }
}

/// Adds every product of `ops` in the order of [`for_each_group`], a group of products
/// at a time to each block.
pub(super) fn add_batch<W: GalleryWord>(jobs: &mut [BatchJob<'_, '_, W>]) {
    for_each_group(jobs, |blk, b, group| {
        let [lo0, hi0, lo1, hi1, lo2, hi2] = blk.as_chunks_mut::<LANES>().0 else {
            return;
        };
        for ([g0, g1], [q0, q1]) in group {
            let (g0, g1, q0, q1) = (&g0[b], &g1[b], &q0[b], &q1[b]);
            for l in 0..LANES {
                let (g0, g1) = (g0[l].into(), g1[l].into());
                mac(&mut lo0[l], &mut hi0[l], g0, q0[l]);
                mac(&mut lo1[l], &mut hi1[l], g0, q1[l]);
                mac(&mut lo1[l], &mut hi1[l], g1, q0[l]);
                mac(&mut lo2[l], &mut hi2[l], g1, q1[l]);
            }
        }
    });
}

pub(super) fn flush(c: &Consts, acc: &mut [u64]) {
    for blk in acc.chunks_exact_mut(BLOCK) {
        for pair in blk.chunks_exact_mut(2 * LANES) {
            let (lo, hi) = pair.split_at_mut(LANES);
            for l in 0..LANES {
                lo[l] = reduce(c, lo[l], hi[l]);
                hi[l] = 0;
            }
        }
    }
}

pub(super) fn finish(c: &Consts, acc: &[u64], d0: &mut [u64], d1: &mut [u64], d2: &mut [u64]) {
    let outputs = d0
        .chunks_exact_mut(LANES)
        .zip(d1.chunks_exact_mut(LANES))
        .zip(d2.chunks_exact_mut(LANES));
    for (blk, ((d0, d1), d2)) in acc.chunks_exact(BLOCK).zip(outputs) {
        for (pair, d) in blk.chunks_exact(2 * LANES).zip([d0, d1, d2]) {
            let (lo, hi) = pair.split_at(LANES);
            for l in 0..LANES {
                d[l] = reduce(c, lo[l], hi[l]);
            }
        }
    }
}
