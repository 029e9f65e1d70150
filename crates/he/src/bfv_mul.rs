//! BFV ciphertext multiplication in the style of Halevi–Polyakov–Shoup: operands are lifted
//! exactly from `Q` to `Q ∪ R`, multiplied pointwise in NTT form, and the tensor is scaled by
//! `t/Q` with rounding straight into `R` (128-bit fixed-point fractions), then lifted back.
//!
//! Trade-off: an operand kept in `Q ∪ R` takes `(|Q|+|R|)/|Q|` times the memory (8/3 for
//! `bfv-8192`), but every further product with it is pointwise; the lift costs
//! `|Q|` inverse and `|R|` forward NTTs once per operand instead of once per product.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::convert::round_fraction_sum;
use crate::math::poly::{Coeff, RnsPoly};

/// Lifts a polynomial (NTT form over `Q_ℓ`) to `Q_ℓ ∪ R` (NTT form), exactly (centered).
pub(crate) fn extend(ctx: &Context, level: usize, x: &RnsPoly) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let bfv = lv.bfv.as_ref().ok_or(HeError::WrongScheme {
        operation: "BFV multiply",
        scheme: "CKKS",
    })?;
    let tables = ctx.inner.bfv.as_ref().ok_or(HeError::WrongScheme {
        operation: "BFV multiply",
        scheme: "CKKS",
    })?;
    let q = ctx.q_primes(level);
    let r = ctx.primes_at(&tables.r);
    let coeff = x.clone().backward(&q);
    let mut ext = RnsPoly::<Coeff>::zero(ctx.degree(), r.len());
    {
        let input: Vec<&[u64]> = coeff.comps().collect();
        let mut output: Vec<&mut [u64]> = ext.comps_mut().collect();
        bfv.lift_q_to_r.convert(&input, &mut output);
    }
    let ext = ext.forward(&r);
    let mut out = x.clone();
    out.extend_from(&ext);
    Ok(out)
}

/// `round(t/Q_ℓ · x)` for a tensor `x` over `Q_ℓ ∪ R` (NTT form), back over `Q_ℓ` (NTT form).
pub(crate) fn scale_down(ctx: &Context, level: usize, x: &RnsPoly) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let bfv = lv.bfv.as_ref().ok_or(HeError::WrongScheme {
        operation: "BFV multiply",
        scheme: "CKKS",
    })?;
    let idx = ctx.extended_indices(level)?;
    let primes = ctx.primes_at(idx);
    let k = level + 1;
    let nr = idx.len() - k;
    let n = ctx.degree();
    let coeff = x.clone().backward(&primes);
    let mut r_out = RnsPoly::<Coeff>::zero(n, nr);
    let mut y = vec![0u64; k];
    {
        let mut outs: Vec<&mut [u64]> = r_out.comps_mut().collect();
        for c in 0..n {
            for (i, yi) in y.iter_mut().enumerate() {
                let (w, ws) = bfv.hps_inv[i];
                *yi = primes[i].m.mul_shoup(coeff.comp(i)[c], w, ws);
            }
            let frac = round_fraction_sum(&y, &bfv.hps_frac);
            // Lazy u128 sum: k + 1 products of two residues of at most MAX_MODULUS_BITS = 61
            // bits (each < 2^122) plus `frac` (< 2^64) stay below 2^128 while k + 1 < 64.
            debug_assert!(k + 1 < 64);
            for (kk, out) in outs.iter_mut().enumerate() {
                let rk = &primes[k + kk].m;
                let row = &bfv.hps_int[kk];
                let mut acc: u128 =
                    coeff.comp(k + kk)[c] as u128 * bfv.hps_r[kk] as u128 + frac as u128;
                for i in 0..k {
                    acc += y[i] as u128 * row[i] as u128;
                }
                out[c] = rk.reduce_u128(acc);
            }
        }
    }
    let q = ctx.q_primes(level);
    let mut out = RnsPoly::<Coeff>::zero(n, k);
    {
        let input: Vec<&[u64]> = r_out.comps().collect();
        let mut output: Vec<&mut [u64]> = out.comps_mut().collect();
        bfv.lift_r_to_q.convert(&input, &mut output);
    }
    Ok(out.forward(&q))
}
