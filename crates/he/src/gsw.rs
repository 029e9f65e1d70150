//! RGSW ciphertexts and the external product, for private retrieval's second dimension.
//!
//! An RGSW encryption of a bit `b`, for ciphertexts at level `ℓ`, is two rows of `ℓ + 1`
//! RLWE ciphertexts at level `ℓ + 1`: row 0, digit `i`, encrypts `q_{ℓ+1} · ĝ_i · b` and row 1
//! the same times `s`, where `ĝ_i ≡ 1 (mod q_i)`, `≡ 0 (mod q_j)`, `j ≠ i, j ≤ ℓ` is the
//! RNS gadget of `Q_ℓ` (so `q_{ℓ+1}` plays the special prime of a key switch). The external
//! product of `(c_0, c_1)` at level `ℓ` with it decomposes each `c_k` into its residues
//! `[c_k]_{q_i}` (centered), sums `digit × row` over level `ℓ + 1` and divides by `q_{ℓ+1}`
//! with rounding: the result decrypts to `b · (c_0 + c_1 s)` plus a small additive error
//! (`Σ digit · row error / q_{ℓ+1}`), unlike a BFV product, whose error grows by `t·N`.
//!
//! Row 1 need not be sent: [`Evaluator::rgsw_from_rows`] derives it from row 0 with the
//! relinearization key (`s · (c_0 + c_1 s) = c_0 s + c_1 s²`: switch `c_1` from `s²` to `s`).

use crate::errors::{HeError, Result};
use crate::evaluator::Evaluator;
use crate::keys::RelinKey;
use crate::keyswitch::{drop_last_rounded, key_switch};
use crate::math::convert::lift_centered;
use crate::math::poly::{Ntt, RnsPoly};
use crate::meta::Meta;
use crate::plaintext::Ciphertext;

/// An RGSW ciphertext of a bit, for ciphertexts at one level (see the module's
/// documentation).
#[derive(Clone, Debug)]
pub struct Rgsw {
    /// `rows[k][i] = (c_0, c_1)` over `Q_{ℓ+1}` (NTT form).
    rows: [Vec<[RnsPoly; 2]>; 2],
    /// The level `ℓ` of the ciphertexts it multiplies.
    level: usize,
    fingerprint: [u8; 32],
}

impl Rgsw {
    /// The level of the ciphertexts it multiplies.
    pub fn level(&self) -> usize {
        self.level
    }
}

impl Evaluator {
    /// Builds an RGSW ciphertext from its row 0 (`ℓ + 1` ciphertexts at level `ℓ + 1`, digit
    /// `i` encrypting `q_{ℓ+1} · ĝ_i · b` as a raw message, e.g. from
    /// [`crate::SecretKey::encrypt_raw`] or a query expansion), deriving row 1 with the
    /// relinearization key.
    pub fn rgsw_from_rows(&self, row0: &[Ciphertext], rk: &RelinKey) -> Result<Rgsw> {
        let ctx = self.context();
        ctx.check_fingerprint(&rk.fingerprint)?;
        let Some(first) = row0.first() else {
            return Err(HeError::CiphertextSize {
                expected: 1,
                actual: 0,
            });
        };
        let top = first.meta.level;
        if top == 0 || row0.len() != top {
            return Err(HeError::LengthMismatch {
                what: "RGSW digits (one per prime below the rows' level)",
                expected: top,
                actual: row0.len(),
            });
        }
        let q = ctx.q_primes(top);
        let mut r0 = Vec::with_capacity(row0.len());
        let mut r1 = Vec::with_capacity(row0.len());
        for ct in row0 {
            ctx.check_ciphertext(ct)?;
            if ct.meta.level != top || ct.polys.len() != 2 {
                return Err(HeError::LevelMismatch {
                    expected: top,
                    actual: ct.meta.level,
                });
            }
            let (u0, u1) = key_switch(ctx, top, &ct.polys[1], &rk.key)?;
            let mut c1 = ct.polys[0].clone();
            c1.add_assign(&u1, &q);
            r1.push([u0, c1]);
            r0.push([ct.polys[0].clone(), ct.polys[1].clone()]);
        }
        Ok(Rgsw {
            rows: [r0, r1],
            level: top - 1,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// The external product `ct ⊡ rgsw`: decrypts to `b · phase(ct)` plus a small error.
    pub fn external_product(&self, ct: &Ciphertext, rgsw: &Rgsw) -> Result<Ciphertext> {
        let ctx = self.context();
        ctx.check_fingerprint(&rgsw.fingerprint)?;
        ctx.check_ciphertext(ct)?;
        let level = rgsw.level;
        if ct.meta.level != level || ct.polys.len() != 2 {
            return Err(HeError::LevelMismatch {
                expected: level,
                actual: ct.meta.level,
            });
        }
        let n = ctx.degree();
        let q = ctx.q_primes(level);
        let up = ctx.q_primes(level + 1);
        // every digit of both polynomials first, then each prime's two sums over them (summed
        // lazily where the prime allows: Prime::mul_acc_sum)
        let mut digits = Vec::new();
        for (poly, rows) in ct.polys.iter().zip(&rgsw.rows) {
            let coeff = poly.clone().backward(&q);
            for (i, row) in rows.iter().enumerate() {
                let qi = q[i].value();
                let mut digit = RnsPoly::<Ntt>::zero(n, level + 2);
                for (j, prime) in up.iter().enumerate() {
                    let out = digit.comp_mut(j);
                    if j == i {
                        out.copy_from_slice(poly.comp(i));
                        continue;
                    }
                    lift_centered(out, coeff.comp(i), qi, &prime.m);
                    prime.forward(out);
                }
                digits.push((digit, row));
            }
        }
        let mut acc = [RnsPoly::zero(n, level + 2), RnsPoly::zero(n, level + 2)];
        for (c, sum) in acc.iter_mut().enumerate() {
            for (j, prime) in up.iter().enumerate() {
                prime.mul_acc_sum(
                    sum.comp_mut(j),
                    digits.iter().map(|(d, row)| (d.comp(j), row[c].comp(j))),
                );
            }
        }
        let polys = acc
            .iter()
            .map(|a| drop_last_rounded(ctx, level + 1, a))
            .collect::<Result<Vec<_>>>()?;
        Ok(Ciphertext {
            meta: Meta::new(ctx, level, ct.meta.scale)?,
            polys,
            seed: None,
            rounded: None,
            subring: None,
        })
    }
}
