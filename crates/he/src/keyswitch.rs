//! Hybrid key switching: RNS digit decomposition, inner product with a key over `Q ∪ P`,
//! and division by `P` with rounding (mod-down). Decomposing once and switching many
//! times from it is what hoisted rotations reuse.

use crate::context::Context;
use crate::errors::Result;
use crate::keys::KeySwitchingKey;
use crate::math::convert::lift_centered;
use crate::math::poly::{Coeff, RnsPoly};

/// The RNS digits of a polynomial at level `ℓ`: digit `i` is `[d]_{q_i}` (centered), lifted to
/// `Q_ℓ ∪ P`, in NTT form.
pub(crate) fn decompose(ctx: &Context, level: usize, d: &RnsPoly) -> Result<Vec<RnsPoly>> {
    let lv = ctx.level(level)?;
    let qp = ctx.primes_at(&lv.qp);
    let q = ctx.q_primes(level);
    let n = ctx.degree();
    let coeff = d.clone().backward(&q);
    let mut digits = Vec::with_capacity(level + 1);
    for i in 0..=level {
        let qi = q[i].value();
        let src = coeff.comp(i);
        let mut digit = RnsPoly::zero(n, qp.len());
        for (j, prime) in qp.iter().enumerate() {
            let out = digit.comp_mut(j);
            if j == i {
                out.copy_from_slice(d.comp(i));
                continue;
            }
            lift_centered(out, src, qi, &prime.m);
            prime.forward(out);
        }
        digits.push(digit);
    }
    Ok(digits)
}

/// `Σ_i digit_i · key_i` over `Q_ℓ ∪ P`: the two accumulators before mod-down.
pub(crate) fn inner_product(
    ctx: &Context,
    level: usize,
    digits: &[RnsPoly],
    key: &KeySwitchingKey,
) -> Result<(RnsPoly, RnsPoly)> {
    let lv = ctx.level(level)?;
    let qp = ctx.primes_at(&lv.qp);
    let n = ctx.degree();
    let mut acc0 = RnsPoly::zero(n, qp.len());
    let mut acc1 = RnsPoly::zero(n, qp.len());
    for (j, (&kj, prime)) in lv.qp.iter().zip(&qp).enumerate() {
        // the accumulators start at zero
        let pairs = || digits.iter().zip(&key.digits);
        prime.mul_acc_sum(
            acc0.comp_mut(j),
            pairs().map(|(d, pair)| (d.comp(j), pair.b.comp(kj))),
        );
        prime.mul_acc_sum(
            acc1.comp_mut(j),
            pairs().map(|(d, pair)| (d.comp(j), pair.a.comp(kj))),
        );
    }
    Ok((acc0, acc1))
}

/// Divides a polynomial over `Q_ℓ ∪ P` (NTT form) by `P` with rounding, leaving it over `Q_ℓ`
/// (in place: the residues of `P` are dropped).
pub(crate) fn mod_down(ctx: &Context, level: usize, mut x: RnsPoly) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let k = level + 1;
    let q = ctx.q_primes(level);
    let p_primes = ctx.primes_at(&lv.qp[k..]);
    let n = ctx.degree();
    let mut conv = RnsPoly::<Coeff>::zero(n, k);
    {
        let data = x.data_mut();
        let tail = &mut data[k * n..];
        for (c, p) in tail.chunks_exact_mut(n).zip(&p_primes) {
            p.backward(c);
        }
        let input: Vec<&[u64]> = tail.chunks_exact(n).collect();
        let mut output: Vec<&mut [u64]> = conv.comps_mut().collect();
        lv.p_to_q.convert(&input, &mut output);
    }
    let conv = conv.forward(&q);
    x.truncate(k);
    x.sub_mul_scalar_assign(&conv, &lv.p_inv, &q);
    Ok(x)
}

/// Key-switches `d` (NTT form at `level`): returns `(u0, u1)` with `u0 + u1 s ≈ d s'`.
pub(crate) fn key_switch(
    ctx: &Context,
    level: usize,
    d: &RnsPoly,
    key: &KeySwitchingKey,
) -> Result<(RnsPoly, RnsPoly)> {
    let digits = decompose(ctx, level, d)?;
    let (a0, a1) = inner_product(ctx, level, &digits, key)?;
    Ok((mod_down(ctx, level, a0)?, mod_down(ctx, level, a1)?))
}

/// Divides a polynomial over `Q_ℓ` (NTT form) by `q_ℓ` with rounding, leaving it over
/// `Q_{ℓ-1}` (CKKS rescale, BFV modulus switch).
pub(crate) fn drop_last_rounded(ctx: &Context, level: usize, x: &RnsPoly) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let conv = last_residue_centered(ctx, level, x);
    // (x − it) / q_ℓ, as in mod_down
    let mut out = x.slice(0, level);
    out.sub_mul_scalar_assign(&conv, &lv.q_last_inv, &ctx.q_primes(level).prefix(level));
    Ok(out)
}

/// [`drop_last_rounded`] in `x`'s own words (no copy of the lower residues).
pub(crate) fn drop_last_rounded_owned(
    ctx: &Context,
    level: usize,
    mut x: RnsPoly,
) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let conv = last_residue_centered(ctx, level, &x);
    x.truncate(level);
    x.sub_mul_scalar_assign(&conv, &lv.q_last_inv, &ctx.q_primes(level).prefix(level));
    Ok(x)
}

/// The centered residue of `x` mod `q_ℓ` in each lower prime (NTT form), for a level the
/// caller has checked.
fn last_residue_centered(ctx: &Context, level: usize, x: &RnsPoly) -> RnsPoly {
    let q = ctx.q_primes(level);
    let ql = q[level].value();
    let tail = x
        .slice(level, level + 1)
        .backward(&q.range(level, level + 1));
    let lower = q.prefix(level);
    let mut conv = RnsPoly::<Coeff>::zero(ctx.degree(), level);
    for (c, prime) in conv.comps_mut().zip(&lower) {
        lift_centered(c, tail.comp(0), ql, &prime.m);
    }
    conv.forward(&lower)
}
