//! Sums of relinearized, rotated ciphertexts with one mod-down (the giant steps of a
//! baby-step/giant-step product, "lazy mod-down").
//!
//! Relinearizing a product `(d_0, d_1, d_2)` and rotating it by `σ` costs two key switches,
//! each ending in a division by `P` (mod-down) of both output polynomials. Summed over many
//! giant steps, most of those divisions can wait: with `(u_0, u_1)` the relinearization's
//! inner product and `(v_0, v_1)` the rotation's, both over `Q ∪ P`,
//!
//! ```text
//! P · rotate(relin(d)) = σ(P·d_0 + u_0 + v_0),  σ(v_1)      (up to the rounding of mod-down)
//! ```
//!
//! where only `c_1 = d_1 + ⌊u_1/P⌉` must be reduced (it is decomposed for the rotation). The
//! terms are added in `Q ∪ P` and divided by `P` once: per giant step one mod-down of one
//! polynomial instead of four, and one rounding error for the whole sum instead of one per
//! term.

use crate::errors::{HeError, Result};
use crate::evaluator::Evaluator;
use crate::keys::{GaloisKeys, RelinKey};
use crate::keyswitch::{decompose, inner_product, mod_down};
use crate::math::poly::RnsPoly;
use crate::meta::Meta;
use crate::plaintext::Ciphertext;

/// A sum of rotated ciphertexts, times `P`, over `Q_ℓ ∪ P` in NTT form: finished (one
/// mod-down) by [`Evaluator::finish_rotation_sum`].
#[derive(Clone, Debug)]
pub struct RotationSum {
    level: usize,
    scale: f64,
    polys: [RnsPoly; 2],
    fingerprint: [u8; 32],
}

impl RotationSum {
    /// Adds another sum of the same level, scale and parameter set.
    pub fn add(&mut self, other: &RotationSum, ev: &Evaluator) -> Result<()> {
        let ctx = ev.context();
        ctx.check_fingerprint(&other.fingerprint)?;
        if other.level != self.level {
            return Err(HeError::LevelMismatch {
                expected: self.level,
                actual: other.level,
            });
        }
        if ctx.scheme() == crate::params::Scheme::Ckks
            && (self.scale - other.scale).abs() > self.scale.abs().max(other.scale.abs()) * 1e-9
        {
            return Err(HeError::ScaleMismatch {
                expected: self.scale.log2(),
                actual: other.scale.log2(),
            });
        }
        let qp = ctx.primes_at(&ctx.level(self.level)?.qp);
        for (a, b) in self.polys.iter_mut().zip(&other.polys) {
            a.add_assign(b, &qp);
        }
        Ok(())
    }
}

impl Evaluator {
    /// `P·rotate(relinearize(ct), step)` over `Q ∪ P`, without its mod-down: a term of a
    /// [`RotationSum`]. `ct` has 2 or 3 polynomials; `step` 0 does not rotate.
    pub fn rotated_term(
        &self,
        ct: &Ciphertext,
        step: i64,
        rk: &RelinKey,
        gk: &GaloisKeys,
    ) -> Result<RotationSum> {
        let ctx = self.context();
        ctx.check_ciphertext(ct)?;
        ctx.check_fingerprint(&rk.fingerprint)?;
        ctx.check_fingerprint(&gk.fingerprint)?;
        let level = ct.meta.level;
        let lv = ctx.level(level)?;
        let q = ctx.q_primes(level);
        let qp = ctx.primes_at(&lv.qp);
        let n = ctx.degree();
        // P·x over Q ∪ P: the Q residues times P mod q_i, the P residues zero
        let times_p = |x: &RnsPoly| {
            let mut out = RnsPoly::zero(n, qp.len());
            for (i, (o, p)) in out.comps_mut().zip(&q).enumerate() {
                o.copy_from_slice(x.comp(i));
                p.mul_const_assign(o, lv.p_mod_q[i]);
            }
            out
        };
        let (mut lazy0, c1) = match ct.polys.len() {
            2 => (times_p(&ct.polys[0]), ct.polys[1].clone()),
            3 => {
                let digits = decompose(ctx, level, &ct.polys[2])?;
                let (u0, u1) = inner_product(ctx, level, &digits, &rk.key)?;
                let mut lazy0 = times_p(&ct.polys[0]);
                lazy0.add_assign(&u0, &qp);
                let mut c1 = mod_down(ctx, level, u1)?;
                c1.add_assign(&ct.polys[1], &q);
                (lazy0, c1)
            }
            size => {
                return Err(HeError::CiphertextSize {
                    expected: 3,
                    actual: size,
                });
            }
        };
        let g = ctx.galois_element(step);
        let polys = if g == 1 {
            [lazy0, times_p(&c1)]
        } else {
            // the Galois key switches from s to σ^-1(s): switch, then apply σ once
            let key = gk.get(g, Some(step))?;
            let digits = decompose(ctx, level, &c1)?;
            let (v0, v1) = inner_product(ctx, level, &digits, key)?;
            lazy0.add_assign(&v0, &qp);
            let perm = ctx.galois_permutation(g);
            [lazy0.permuted(&perm), v1.permuted(&perm)]
        };
        Ok(RotationSum {
            level,
            scale: ct.meta.scale,
            polys,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Divides a [`RotationSum`] by `P` (one mod-down per polynomial): the sum of the
    /// relinearized, rotated ciphertexts.
    pub fn finish_rotation_sum(&self, sum: RotationSum) -> Result<Ciphertext> {
        let ctx = self.context();
        ctx.check_fingerprint(&sum.fingerprint)?;
        let [a0, a1] = sum.polys;
        Ok(Ciphertext {
            polys: vec![mod_down(ctx, sum.level, a0)?, mod_down(ctx, sum.level, a1)?],
            meta: Meta::new(ctx, sum.level, sum.scale)?,
            seed: None,
            rounded: None,
            subring: None,
        })
    }
}
