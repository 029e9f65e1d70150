//! Hybrid key switching: RNS digit decomposition, inner product with a key over `Q ∪ P`,
//! and division by `P` with rounding (mod-down). Decomposing once and switching many
//! times from it is what hoisted rotations reuse.

use crate::context::Context;
use crate::errors::Result;
use crate::keys::KeySwitchingKey;
use crate::math::ntt::permute;
use crate::math::poly::RnsPoly;

/// The RNS digits of a polynomial at level `ℓ`: digit `i` is `[d]_{q_i}` (centered), lifted to
/// `Q_ℓ ∪ P`, in NTT form.
pub(crate) fn decompose(ctx: &Context, level: usize, d: &RnsPoly) -> Result<Vec<RnsPoly>> {
    let lv = ctx.level(level)?;
    let qp = ctx.primes_at(&lv.qp);
    let q = ctx.q_primes(level);
    let n = ctx.degree();
    let mut coeff = d.clone();
    coeff.backward(&q);
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
            if prime.value() > qi {
                for (o, &x) in out.iter_mut().zip(src) {
                    // centered: x > qi/2 stands for x - qi
                    *o = if x > qi / 2 {
                        prime.value() - (qi - x)
                    } else {
                        x
                    };
                }
            } else {
                for (o, &x) in out.iter_mut().zip(src) {
                    *o = prime.m.reduce_centered(x, qi);
                }
            }
            prime.forward(out);
        }
        digits.push(digit);
    }
    Ok(digits)
}

/// `Σ_i σ(digit_i) · key_i` over `Q_ℓ ∪ P` (σ the permutation `perm`, if any): the two
/// accumulators before mod-down.
pub(crate) fn inner_product(
    ctx: &Context,
    level: usize,
    digits: &[RnsPoly],
    key: &KeySwitchingKey,
    perm: Option<&[u32]>,
) -> Result<(RnsPoly, RnsPoly)> {
    let lv = ctx.level(level)?;
    let qp = ctx.primes_at(&lv.qp);
    let n = ctx.degree();
    let mut acc0 = RnsPoly::zero(n, qp.len());
    let mut acc1 = RnsPoly::zero(n, qp.len());
    let mut scratch = vec![0u64; n];
    for (digit, pair) in digits.iter().zip(&key.digits) {
        for (j, (&kj, prime)) in lv.qp.iter().zip(&qp).enumerate() {
            let src = match perm {
                Some(p) => {
                    permute(&mut scratch, digit.comp(j), p);
                    &scratch[..]
                }
                None => digit.comp(j),
            };
            prime.mul_acc(acc0.comp_mut(j), src, pair.b.comp(kj));
            prime.mul_acc(acc1.comp_mut(j), src, pair.a.comp(kj));
        }
    }
    Ok((acc0, acc1))
}

/// Divides a polynomial over `Q_ℓ ∪ P` (NTT form) by `P` with rounding, leaving it over `Q_ℓ`.
pub(crate) fn mod_down(ctx: &Context, level: usize, x: &RnsPoly) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let k = level + 1;
    let num_p = ctx.inner.num_p;
    let q = ctx.q_primes(level);
    let p_primes = ctx.primes_at(&lv.qp[k..]);
    let mut tail = x.slice(k, k + num_p);
    tail.backward(&p_primes);
    let n = ctx.degree();
    let mut conv = RnsPoly::zero(n, k);
    {
        let input: Vec<&[u64]> = tail.comps().collect();
        let mut output: Vec<&mut [u64]> = conv.comps_mut().collect();
        lv.p_to_q.convert(&input, &mut output);
    }
    conv.forward(&q);
    let mut out = x.slice(0, k);
    out.sub_assign(&conv, &q);
    out.mul_scalar_assign(&lv.p_inv, &q);
    Ok(out)
}

/// Key-switches `d` (NTT form at `level`): returns `(u0, u1)` with `u0 + u1 s ≈ d s'`.
pub(crate) fn key_switch(
    ctx: &Context,
    level: usize,
    d: &RnsPoly,
    key: &KeySwitchingKey,
) -> Result<(RnsPoly, RnsPoly)> {
    let digits = decompose(ctx, level, d)?;
    let (a0, a1) = inner_product(ctx, level, &digits, key, None)?;
    Ok((mod_down(ctx, level, &a0)?, mod_down(ctx, level, &a1)?))
}

/// Divides a polynomial over `Q_ℓ` (NTT form) by `q_ℓ` with rounding, leaving it over
/// `Q_{ℓ-1}` (CKKS rescale, BFV modulus switch).
pub(crate) fn drop_last_rounded(ctx: &Context, level: usize, x: &RnsPoly) -> Result<RnsPoly> {
    let lv = ctx.level(level)?;
    let q = ctx.q_primes(level);
    let last = q[level];
    let ql = last.value();
    let mut tail = x.slice(level, level + 1);
    last.backward(tail.comp_mut(0));
    let n = ctx.degree();
    let mut out = x.slice(0, level);
    let mut scratch = vec![0u64; n];
    for (j, prime) in q[..level].iter().enumerate() {
        for (s, &v) in scratch.iter_mut().zip(tail.comp(0)) {
            *s = prime.m.reduce_centered(v, ql);
        }
        prime.forward(&mut scratch);
        let inv = lv.q_last_inv[j];
        let inv_s = prime.m.shoup(inv);
        for (o, &s) in out.comp_mut(j).iter_mut().zip(&scratch) {
            *o = prime.m.mul_shoup(prime.m.sub(*o, s), inv, inv_s);
        }
    }
    Ok(out)
}
