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
use crate::keyswitch::{drop_last_rounded_owned, key_switch};
use crate::math::convert::lift_centered;
use crate::math::poly::RnsPoly;
use crate::meta::Meta;
use crate::plaintext::Ciphertext;
use std::cell::RefCell;

thread_local! {
    /// One prime's residues of an external product's lifted digits, reused from call to
    /// call (a ciphertext's digits: nothing secret).
    static DIGITS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

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
        // digit i of c_k is [c_k]_{q_i}, centered: its residue mod q_i is c_k's own, the
        // others are lifted from the coefficients and transformed, one prime at a time into
        // a reused buffer; each prime's two sums add every digit's products lazily
        // (Prime::mul_acc_sum)
        let coeffs = ct
            .polys
            .iter()
            .map(|p| p.clone().backward(&q))
            .collect::<Vec<_>>();
        let digits = ct.polys.len() * q.len();
        let mut acc = [RnsPoly::zero(n, level + 2), RnsPoly::zero(n, level + 2)];
        let mut sum_prime = |lifted: &mut Vec<u64>| {
            lifted.resize(digits * n, 0);
            for (j, prime) in up.iter().enumerate() {
                let mut slots = lifted.chunks_exact_mut(n);
                let mut sources: Vec<&[u64]> = Vec::with_capacity(digits);
                for (poly, coeff) in ct.polys.iter().zip(&coeffs) {
                    for (i, qi) in q.iter().enumerate() {
                        if i == j {
                            sources.push(poly.comp(i));
                        } else if let Some(slot) = slots.next() {
                            lift_centered(slot, coeff.comp(i), qi.value(), &prime.m);
                            prime.forward(slot);
                            sources.push(slot);
                        }
                    }
                }
                for (c, sum) in acc.iter_mut().enumerate() {
                    let rows = rgsw.rows.iter().flat_map(|digit_rows| digit_rows.iter());
                    prime.mul_acc_sum(
                        sum.comp_mut(j),
                        sources
                            .iter()
                            .zip(rows)
                            .map(|(d, row)| (*d, row[c].comp(j))),
                    );
                }
            }
        };
        DIGITS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut lifted) => sum_prime(&mut lifted),
            Err(_) => sum_prime(&mut Vec::new()),
        });
        let polys = acc
            .into_iter()
            .map(|a| drop_last_rounded_owned(ctx, level + 1, a))
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

#[cfg(test)]
mod tests {
    use crate::{BfvEncoder, Context, Evaluator, RelinKey, SecretKey};

    /// `ct ⊡ RGSW(b)` decrypts to `b · m`, exactly, for both bits and ciphertexts whose
    /// digits differ from call to call (the reused digit buffer holds nothing over).
    #[test]
    fn external_products_select_the_message_or_zero() {
        let ctx = Context::preset("pir-4096").unwrap();
        let sk = SecretKey::generate(&ctx).unwrap();
        let rk = RelinKey::generate(&ctx, &sk).unwrap();
        let ev = Evaluator::new(&ctx);
        let enc = BfvEncoder::new(&ctx).unwrap();
        let n = ctx.degree();
        let t = ctx.params().plain_modulus();
        let primes: Vec<u64> = ctx.params().moduli()[..3].to_vec();
        let rgsw = |bit: u64| {
            // row 0, digit i: bit · q_2 · ĝ_i, a constant (ĝ_i ≡ δ_ij mod q_j, 0 mod q_2)
            let row0: Vec<_> = (0..2)
                .map(|i| {
                    let residues: Vec<Vec<u64>> = primes
                        .iter()
                        .enumerate()
                        .map(|(j, &p)| {
                            let mut poly = vec![0u64; n];
                            if j == i {
                                poly[0] = bit * (primes[2] % p);
                            }
                            poly
                        })
                        .collect();
                    sk.encrypt_raw(&ctx, 2, &residues).unwrap()
                })
                .collect();
            ev.rgsw_from_rows(&row0, &rk).unwrap()
        };
        let (zero, one) = (rgsw(0), rgsw(1));
        for seed in 1..4u64 {
            let m: Vec<u64> = (0..n as u64)
                .map(|i| (i * 7919 + seed * 104_729) % t)
                .collect();
            let ct = ev
                .mod_switch_to(
                    &sk.encrypt(&ctx, &enc.encode_coefficients(&m).unwrap())
                        .unwrap(),
                    1,
                )
                .unwrap();
            for (bit, rgsw) in [(0u64, &zero), (1, &one)] {
                let out = ev.external_product(&ct, rgsw).unwrap();
                assert_eq!(out.level(), 1);
                let got = enc
                    .decode_coefficients(&sk.decrypt(&ctx, &out).unwrap())
                    .unwrap();
                let want: Vec<u64> = m.iter().map(|&v| v * bit).collect();
                assert_eq!(got, want, "bit {bit}, seed {seed}");
            }
        }
        // a ciphertext at another level than the RGSW's is an error
        let top = sk
            .encrypt(&ctx, &enc.encode_coefficients(&[1]).unwrap())
            .unwrap();
        assert!(ev.external_product(&top, &one).is_err());
    }
}
