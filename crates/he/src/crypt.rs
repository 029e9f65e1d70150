//! Encryption (secret key, seeded; public key), decryption (plain, and CKKS with noise
//! flooding) and the BFV noise budget.
//!
//! Every secret-derived temporary (restrictions and powers of `s`, errors, the public-key
//! randomness `u`, phases `c_0 + c_1 s + …`, encoded messages) lives in a [`Zeroizing`]
//! wrapper and is cleared when dropped, on error paths too.

use crate::ckks::{CkksEncoder, Complex};
use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::flooding::NoiseFlooding;
use crate::keys::{PublicKey, SecretKey, rlwe_zero};
use crate::math::convert::round_fraction_sum;
use crate::math::modulus::Modulus;
use crate::math::poly::{Coeff, RnsPoly};
use crate::math::sample::{centered_binomial, os_rng, rounded_gaussian, ternary};
use crate::meta::Meta;
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, PlainData, Plaintext};
use zeroize::Zeroizing;

/// A BFV plaintext has one coefficient per ring position.
fn check_bfv_coefficients(ctx: &Context, coeffs: &[u64]) -> Result<()> {
    if coeffs.len() == ctx.degree() {
        Ok(())
    } else {
        Err(HeError::LengthMismatch {
            what: "BFV plaintext coefficients",
            expected: ctx.degree(),
            actual: coeffs.len(),
        })
    }
}
/// The message term added to `c_0` (NTT form over `Q_level`): for BFV the rounded
/// `round(Q_level·m/t)` (SEAL's scaling: `⌊Q/t⌋·m` alone would leave an error of up to
/// `(Q mod t)·m/t`, about `t` times the fresh noise); for CKKS the encoded polynomial.
pub(crate) fn message_term(
    ctx: &Context,
    pt: &Plaintext,
    level: usize,
) -> Result<Zeroizing<RnsPoly>> {
    pt.meta.check_context(ctx)?;
    match &pt.data {
        PlainData::Bfv(coeffs) => {
            let lv = ctx.level(level)?;
            let bfv = lv.bfv.as_ref().ok_or(HeError::WrongScheme {
                operation: "BFV plaintext",
                scheme: "CKKS",
            })?;
            check_bfv_coefficients(ctx, coeffs)?;
            let q = ctx.q_primes(level);
            let tm = bfv_t(ctx)?;
            let t = tm.value();
            let half = t / 2;
            // round((Q mod t)·m/t) for every coefficient m < t, without a branch or a
            // division: (Q mod t)·m = z·t + rem, z = ((Q mod t)·m - rem) / t exactly (mod
            // 2^64 by t^-1, as z < t < 2^64), plus one when rem/t > 1/2 (t odd: never a tie).
            let correction = Zeroizing::new(
                coeffs
                    .iter()
                    .map(|&m| {
                        let rem = tm.mul(bfv.q_mod_t, m);
                        let z = bfv
                            .q_mod_t
                            .wrapping_mul(m)
                            .wrapping_sub(rem)
                            .wrapping_mul(bfv.t_inv_word);
                        z + (half.wrapping_sub(rem) >> 63)
                    })
                    .collect::<Vec<u64>>(),
            );
            let mut out = Zeroizing::new(RnsPoly::zero(ctx.degree(), level + 1));
            for (j, (o, prime)) in out.comps_mut().zip(&q).enumerate() {
                let m = &prime.m;
                let (d, ds) = (bfv.delta[j], m.shoup(bfv.delta[j]));
                // m < t < q_j and the correction is at most Q mod t < t < q_j: both reduced.
                for ((x, &c), &r) in o.iter_mut().zip(coeffs).zip(correction.iter()) {
                    *x = m.add(m.mul_shoup(c, d, ds), r);
                }
                prime.forward(o);
            }
            Ok(out)
        }
        PlainData::Ckks(_) => plain_poly(ctx, pt, level),
    }
}

/// The plaintext as a polynomial over `Q_level` in NTT form (BFV: centered lift of `m`,
/// without `Δ`; CKKS: the encoding, truncated to `level`).
pub(crate) fn plain_poly(
    ctx: &Context,
    pt: &Plaintext,
    level: usize,
) -> Result<Zeroizing<RnsPoly>> {
    pt.meta.check_context(ctx)?;
    let q = ctx.q_primes(level);
    match &pt.data {
        PlainData::Bfv(coeffs) => {
            let tm = bfv_t(ctx)?;
            check_bfv_coefficients(ctx, coeffs)?;
            let centered = Zeroizing::new(coeffs.iter().map(|&c| tm.center(c)).collect::<Vec<_>>());
            Ok(Zeroizing::new(
                RnsPoly::from_small(&centered, &q).forward(&q),
            ))
        }
        PlainData::Ckks(poly) => {
            if ctx.scheme() != Scheme::Ckks || poly.degree() != ctx.degree() {
                return Err(HeError::WrongScheme {
                    operation: "CKKS plaintext",
                    scheme: "BFV",
                });
            }
            if pt.meta.level < level || poly.count() != pt.meta.level + 1 {
                return Err(HeError::LevelMismatch {
                    expected: level,
                    actual: pt.meta.level,
                });
            }
            let mut m = Zeroizing::new(poly.slice(0, level + 1));
            m.truncate(level + 1);
            Ok(m)
        }
    }
}

/// Arithmetic modulo the BFV plaintext modulus `t`.
fn bfv_t(ctx: &Context) -> Result<&Modulus> {
    ctx.inner
        .bfv
        .as_ref()
        .map(|b| &b.t.m)
        .ok_or(HeError::WrongScheme {
            operation: "BFV plaintext",
            scheme: "CKKS",
        })
}

impl SecretKey {
    /// Encrypts with the secret key. The result is seeded: `c_1` is expanded from a 32-byte
    /// seed, so that it serializes in half the space.
    pub fn encrypt(&self, ctx: &Context, pt: &Plaintext) -> Result<Ciphertext> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let level = pt.meta.level.min(ctx.max_level());
        let m = message_term(ctx, pt, level)?;
        let idx: Vec<usize> = (0..=level).collect();
        let mut rng = os_rng()?;
        let pair = rlwe_zero(ctx, self, &idx, &mut rng)?;
        let mut c0 = pair.b;
        c0.add_assign(&m, &ctx.q_primes(level));
        Ok(Ciphertext {
            meta: Meta::new(ctx, level, pt.meta.scale)?,
            polys: vec![c0, pair.a],
            seed: Some(pair.seed),
            rounded: None,
            subring: None,
        })
    }

    /// Encrypts a raw message at `level`: `residues[j]` holds the `N` coefficients of the
    /// message modulo `q_j` (`j ≤ level`), used as they are (no `Δ`, no encoding). For
    /// messages a protocol scales itself: private retrieval's query values and RGSW rows
    /// ([`crate::gsw`]). Seeded, like [`SecretKey::encrypt`].
    pub fn encrypt_raw(
        &self,
        ctx: &Context,
        level: usize,
        residues: &[Vec<u64>],
    ) -> Result<Ciphertext> {
        ctx.check_fingerprint(&self.fingerprint)?;
        ctx.level(level)?;
        if residues.len() != level + 1 {
            return Err(HeError::LengthMismatch {
                what: "raw message residues (one per prime of the level)",
                expected: level + 1,
                actual: residues.len(),
            });
        }
        let q = ctx.q_primes(level);
        let n = ctx.degree();
        let mut m = RnsPoly::<Coeff>::zero(n, level + 1);
        for (j, (r, prime)) in residues.iter().zip(q.iter()).enumerate() {
            if r.len() != n {
                return Err(HeError::LengthMismatch {
                    what: "raw message coefficients",
                    expected: n,
                    actual: r.len(),
                });
            }
            if let Some(&v) = r.iter().find(|&&v| v >= prime.value()) {
                return Err(HeError::ValueOutOfRange {
                    what: "raw message residue",
                    value: v.to_string(),
                    hint: "residues must be below their prime",
                });
            }
            m.comp_mut(j).copy_from_slice(r);
        }
        // the message (a query's selection) is zeroized with the wrapper
        let m = Zeroizing::new(m.forward(&q));
        let idx: Vec<usize> = (0..=level).collect();
        let mut rng = os_rng()?;
        let pair = rlwe_zero(ctx, self, &idx, &mut rng)?;
        let mut c0 = pair.b;
        c0.add_assign(&m, &q);
        Ok(Ciphertext {
            meta: Meta::new(ctx, level, 1.0)?,
            polys: vec![c0, pair.a],
            seed: Some(pair.seed),
            rounded: None,
            subring: None,
        })
    }

    /// `c_0 + c_1 s + c_2 s^2 + …` in coefficient form over `Q_level` (zeroized on drop).
    pub(crate) fn phase(
        &self,
        ctx: &Context,
        ct: &Ciphertext,
    ) -> Result<Zeroizing<RnsPoly<Coeff>>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        ctx.check_ciphertext_shape(ct)?;
        // The main key decrypts ciphertexts under it; a response key those ring-switched to
        // it, projected to its subring or a larger one (a secret of Z[X^d] lies in Z[X^d']
        // for every d' dividing d).
        let matches = match (self.response_log_d, ct.subring) {
            (None, None) => true,
            (Some(key), Some(ct)) => ct <= key,
            _ => false,
        };
        if !matches {
            let name = |s: Option<u32>| match s {
                None => "the main secret key".to_string(),
                Some(k) => format!("a response key of the subring Z[X^{}]", 1u64 << k),
            };
            return Err(HeError::KeyMismatch {
                expected: name(ct.subring),
                actual: name(self.response_log_d),
            });
        }
        let level = ct.meta.level;
        let q = ctx.q_primes(level);
        let idx: Vec<usize> = (0..=level).collect();
        let s = self.restricted(&idx);
        let mut acc = Zeroizing::new(
            ct.polys
                .first()
                .ok_or(HeError::CiphertextSize {
                    expected: 2,
                    actual: 0,
                })?
                .clone(),
        );
        let mut s_pow = Zeroizing::new(RnsPoly::clone(&s));
        for (i, c) in ct.polys.iter().enumerate().skip(1) {
            if i > 1 {
                s_pow.mul_assign(&s, &q);
            }
            acc.mul_acc(c, &s_pow, &q);
        }
        Ok(Zeroizing::new(acc.take().backward(&q)))
    }

    /// The phase with fresh flooding noise added to every coefficient (CKKS only).
    fn flooded_phase(
        &self,
        ctx: &Context,
        ct: &Ciphertext,
        flooding: &NoiseFlooding,
    ) -> Result<Zeroizing<RnsPoly<Coeff>>> {
        if ctx.scheme() != Scheme::Ckks {
            return Err(HeError::WrongScheme {
                operation: "flooded decryption",
                scheme: "BFV",
            });
        }
        let mut x = self.phase(ctx, ct)?;
        let q = ctx.q_primes(ct.meta.level);
        flooding.check_level(ctx, ct.meta.level)?;
        let mut rng = os_rng()?;
        let noise = rounded_gaussian(ctx.degree(), flooding.sigma(), &mut rng)?;
        for (c, p) in x.comps_mut().zip(&q) {
            for (v, &e) in c.iter_mut().zip(noise.iter()) {
                *v = p.m.add(*v, p.m.from_i64(e));
            }
        }
        Ok(x)
    }

    /// Decrypts to a plaintext.
    ///
    /// CKKS: the result is the raw `m + e`; together with the ciphertext it reveals the
    /// secret key (IND-CPA-D). Use [`SecretKey::decrypt_flooded`] for anything that may be
    /// shown or sent to someone else.
    pub fn decrypt(&self, ctx: &Context, ct: &Ciphertext) -> Result<Plaintext> {
        let x = self.phase(ctx, ct)?;
        self.plaintext_of_phase(ctx, ct, x)
    }

    /// CKKS: decrypts with noise flooding, adding fresh rounded-Gaussian noise of the
    /// standard deviation of `flooding` to every coefficient before decoding (the
    /// `NOISE_FLOODING_DECRYPT` mode of OpenFHE). See [`NoiseFlooding`] for the security
    /// it buys and the precision it costs. Two flooded decryptions of one ciphertext differ.
    pub fn decrypt_flooded(
        &self,
        ctx: &Context,
        ct: &Ciphertext,
        flooding: &NoiseFlooding,
    ) -> Result<Plaintext> {
        let x = self.flooded_phase(ctx, ct, flooding)?;
        self.plaintext_of_phase(ctx, ct, x)
    }

    fn plaintext_of_phase(
        &self,
        ctx: &Context,
        ct: &Ciphertext,
        mut x: Zeroizing<RnsPoly<Coeff>>,
    ) -> Result<Plaintext> {
        let data = match ctx.scheme() {
            Scheme::Bfv => PlainData::Bfv(bfv_scale_round(ctx, &x, ct.meta.level)?),
            Scheme::Ckks => {
                // moves the residues out; the empty wrapper left behind has nothing to clear
                PlainData::Ckks(x.take().forward(&ctx.q_primes(ct.meta.level)))
            }
        };
        Ok(Plaintext {
            data,
            meta: Meta {
                fingerprint: ctx.params().fingerprint(),
                level: ct.meta.level,
                scale: match ctx.scheme() {
                    Scheme::Bfv => 1.0,
                    Scheme::Ckks => ct.meta.scale,
                },
            },
        })
    }

    /// CKKS: decrypts and decodes the complex slots in one pass (raw `m + e`, see
    /// [`SecretKey::decrypt`]).
    pub fn decrypt_complex(
        &self,
        ctx: &Context,
        encoder: &CkksEncoder,
        ct: &Ciphertext,
    ) -> Result<Vec<Complex>> {
        encoder.check_context(ctx)?;
        let x = self.phase(ctx, ct)?;
        encoder.decode_coefficients(&x, ct.meta.level, ct.meta.scale)
    }

    /// CKKS: decrypts with noise flooding (see [`SecretKey::decrypt_flooded`]) and decodes
    /// the complex slots in one pass. Each slot's real and imaginary part carry an extra
    /// error of standard deviation [`NoiseFlooding::slot_sigma`].
    pub fn decrypt_complex_flooded(
        &self,
        ctx: &Context,
        encoder: &CkksEncoder,
        ct: &Ciphertext,
        flooding: &NoiseFlooding,
    ) -> Result<Vec<Complex>> {
        encoder.check_context(ctx)?;
        let x = self.flooded_phase(ctx, ct, flooding)?;
        encoder.decode_coefficients(&x, ct.meta.level, ct.meta.scale)
    }

    /// BFV: the invariant noise budget in bits (`log2(Q / (2·max|v|))` for the noise `v`);
    /// decryption is correct while it is positive.
    pub fn noise_budget(&self, ctx: &Context, ct: &Ciphertext) -> Result<f64> {
        if ctx.scheme() != Scheme::Bfv {
            return Err(HeError::WrongScheme {
                operation: "noise budget",
                scheme: "CKKS",
            });
        }
        let x = self.phase(ctx, ct)?;
        let level = ct.meta.level;
        let lv = ctx.level(level)?;
        let q = ctx.q_primes(level);
        let t = ctx.params().plain_modulus();
        let mut res = Zeroizing::new(vec![0u64; level + 1]);
        let mut digits = Zeroizing::new(Vec::with_capacity(level + 1));
        let mut max = 0f64;
        for c in 0..ctx.degree() {
            for (i, r) in res.iter_mut().enumerate() {
                *r = q[i].m.mul(x.comp(i)[c], q[i].m.reduce(t));
            }
            max = max.max(lv.crt.to_f64(&res, &mut digits).abs());
        }
        let log_q: f64 = q.iter().map(|p| (p.value() as f64).log2()).sum();
        Ok((log_q - max.max(1.0).log2() - 1.0).max(0.0))
    }
}

/// `round(t·x/Q) mod t` for every coefficient of `x` (coefficient form over `Q_level`).
fn bfv_scale_round(ctx: &Context, x: &RnsPoly<Coeff>, level: usize) -> Result<Vec<u64>> {
    let bfv = ctx.level(level)?.bfv.as_ref().ok_or(HeError::WrongScheme {
        operation: "BFV decrypt",
        scheme: "CKKS",
    })?;
    let tm = bfv_t(ctx)?;
    let q = ctx.q_primes(level);
    let mut y = Zeroizing::new(vec![0u64; level + 1]);
    Ok((0..ctx.degree())
        .map(|c| {
            for (i, yi) in y.iter_mut().enumerate() {
                let (w, ws) = bfv.dec_inv[i];
                *yi = q[i].m.mul_shoup(x.comp(i)[c], w, ws);
            }
            // The rounded sum is at most Σ_i y_i·t/q_i + 1/2 < (level + 1)·t + 1 < 2^64;
            // Barrett instead of `%`, whose timing may depend on the operand.
            tm.reduce(round_fraction_sum(&y, &bfv.dec_frac))
        })
        .collect())
}

impl PublicKey {
    /// Encrypts with the public key.
    pub fn encrypt(&self, ctx: &Context, pt: &Plaintext) -> Result<Ciphertext> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let level = pt.meta.level.min(ctx.max_level());
        let m = message_term(ctx, pt, level)?;
        let q = ctx.q_primes(level);
        let n = ctx.degree();
        let mut rng = os_rng()?;
        let u = Zeroizing::new(RnsPoly::from_small(&ternary(n, &mut rng), &q).forward(&q));
        // c_0, c_1 hold the errors until the products below overwrite them in place
        let mut c0 = RnsPoly::from_small(&centered_binomial(n, &mut rng), &q).forward(&q);
        let mut c1 = RnsPoly::from_small(&centered_binomial(n, &mut rng), &q).forward(&q);
        let mut b = self.pair.b.clone();
        let mut a = self.pair.a.clone();
        b.truncate(level + 1);
        a.truncate(level + 1);
        c0.mul_acc(&b, &u, &q);
        c1.mul_acc(&a, &u, &q);
        c0.add_assign(&m, &q);
        Ok(Ciphertext {
            meta: Meta::new(ctx, level, pt.meta.scale)?,
            polys: vec![c0, c1],
            seed: None,
            rounded: None,
            subring: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bfv::BfvEncoder;
    use crate::ckks::CkksEncoder;
    use crate::math::ntt::scratch_is_clear;

    /// The message term of the old encoding, `⌊Q/t⌋·m` (for comparison only).
    fn floor_message_term(ctx: &Context, pt: &Plaintext, level: usize) -> RnsPoly {
        let mut m = RnsPoly::clone(&plain_poly(ctx, pt, level).unwrap());
        let bfv = ctx.level(level).unwrap().bfv.as_ref().unwrap();
        m.mul_scalar_assign(&bfv.delta, &ctx.q_primes(level));
        m
    }

    fn encrypt_with(ctx: &Context, sk: &SecretKey, m: &RnsPoly, level: usize) -> Ciphertext {
        let idx: Vec<usize> = (0..=level).collect();
        let mut rng = os_rng().unwrap();
        let pair = rlwe_zero(ctx, sk, &idx, &mut rng).unwrap();
        let mut c0 = pair.b;
        c0.add_assign(m, &ctx.q_primes(level));
        Ciphertext {
            polys: vec![c0, pair.a],
            meta: Meta::new(ctx, level, 1.0).unwrap(),
            seed: Some(pair.seed),
            rounded: None,
            subring: None,
        }
    }

    /// Rounded `Δ·m` gains about `log2((Q mod t)·max m / (t·max|e|))` bits of fresh noise
    /// budget over `⌊Q/t⌋·m`: the old encoding's error `(Q mod t)·m/t` dwarfed the fresh
    /// error `e` (CBD, `|e| ≤ 21`).
    #[test]
    fn rounded_bfv_encoding_gains_the_expected_noise_budget() {
        // The 8192 presets have Q ≡ 1 (mod t), where both encodings agree: a custom set with
        // three 50-bit primes shows the gain at that degree.
        let mut used = Vec::new();
        let p = crate::math::primes::ntt_primes(&[50], 8192, &mut used).unwrap();
        let q = crate::math::primes::ntt_primes(&[50, 50, 50], 8192, &mut used).unwrap();
        let custom =
            crate::params::Parameters::bfv(8192, q, p, crate::params::BFV_DOT_PRODUCT_T).unwrap();
        for (preset, ctx) in [
            ("bfv-4096", Context::preset("bfv-4096").unwrap()),
            ("bfv-8192-3x50", Context::new(&custom).unwrap()),
        ] {
            let sk = SecretKey::generate(&ctx).unwrap();
            let enc = BfvEncoder::new(&ctx).unwrap();
            let t = ctx.params().plain_modulus();
            let n = ctx.degree() as u64;
            let values: Vec<u64> = (0..n).map(|i| (i * 0x9E37_79B9 + 12345) % t).collect();
            let pt = enc.encode(&values).unwrap();
            let level = ctx.max_level();
            let bfv = ctx.level(level).unwrap().bfv.as_ref().unwrap();
            let rounded = sk.encrypt(&ctx, &pt).unwrap();
            let floor = encrypt_with(&ctx, &sk, &floor_message_term(&ctx, &pt, level), level);
            for ct in [&rounded, &floor] {
                assert_eq!(enc.decode(&sk.decrypt(&ctx, ct).unwrap()).unwrap(), values);
            }
            let new = sk.noise_budget(&ctx, &rounded).unwrap();
            let old = sk.noise_budget(&ctx, &floor).unwrap();
            // the old noise t·e − (Q mod t)·m reaches (Q mod t)·max m; the new one is
            // t·(e + rounding), at most t·(21 + 1/2)
            let PlainData::Bfv(coeffs) = &pt.data else {
                unreachable!()
            };
            let max_m = *coeffs.iter().max().unwrap() as f64;
            let expected = ((bfv.q_mod_t as f64 * max_m) / (t as f64 * 21.5)).log2();
            let gained = new - old;
            eprintln!(
                "{preset}: fresh budget {old:.1} -> {new:.1} bits (+{gained:.1}, expected ~{expected:.1})"
            );
            assert!(
                gained > expected - 2.0 && gained < expected + 6.0,
                "{preset}: budget {old:.1} -> {new:.1} bits, gained {gained:.1}, expected ~{expected:.1}"
            );
            assert!(gained > 10.0, "{preset}: gained only {gained:.1} bits");
        }
    }

    #[test]
    fn secret_temporaries_are_zeroizing() {
        // The types are the guarantee: these bindings only compile while the helpers return
        // zeroizing wrappers.
        let ctx = Context::preset("ckks-8192").unwrap();
        let sk = SecretKey::generate(&ctx).unwrap();
        let enc = CkksEncoder::new(&ctx).unwrap();
        let pt = enc.encode(&[0.5], enc.default_scale(), 1).unwrap();
        let ct = sk.encrypt(&ctx, &pt).unwrap();
        let _: Zeroizing<RnsPoly<Coeff>> = sk.phase(&ctx, &ct).unwrap();
        let _: Zeroizing<RnsPoly> = sk.restricted(&[0, 1]);
        let _: Zeroizing<RnsPoly> = message_term(&ctx, &pt, 1).unwrap();
        let _: Zeroizing<RnsPoly> = plain_poly(&ctx, &pt, 0).unwrap();
        let mut rng = os_rng().unwrap();
        let _: Zeroizing<Vec<i64>> = ternary(8, &mut rng);
        let _: Zeroizing<Vec<i64>> = centered_binomial(8, &mut rng);
        let _: Zeroizing<Vec<i64>> = rounded_gaussian(8, 1.0, &mut rng).unwrap();
        fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        zeroize_on_drop(&sk);
        zeroize_on_drop(&pt);
        assert!(scratch_is_clear());
    }
}
