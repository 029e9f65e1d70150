//! Encryption (secret key, seeded; public key), decryption and the BFV noise budget.

use crate::ckks::{CkksEncoder, Complex};
use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::keys::{PublicKey, SecretKey, rlwe_zero};
use crate::math::convert::round_fraction_sum;
use crate::math::poly::RnsPoly;
use crate::math::sample::{centered_binomial, os_rng, ternary};
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, PlainData, Plaintext};

/// The message term added to `c_0`: `Δ·m` for BFV, the encoded polynomial for CKKS (NTT form
/// over `Q_level`).
pub(crate) fn message_term(ctx: &Context, pt: &Plaintext, level: usize) -> Result<RnsPoly> {
    let mut m = plain_poly(ctx, pt, level)?;
    if let Some(bfv) = &ctx.level(level)?.bfv {
        m.mul_scalar_assign(&bfv.delta, &ctx.q_primes(level));
    }
    Ok(m)
}

/// The plaintext as a polynomial over `Q_level` in NTT form (BFV: centered lift of `m`,
/// without `Δ`; CKKS: the encoding, truncated to `level`).
pub(crate) fn plain_poly(ctx: &Context, pt: &Plaintext, level: usize) -> Result<RnsPoly> {
    ctx.check_fingerprint(&pt.fingerprint)?;
    let q = ctx.q_primes(level);
    match &pt.data {
        PlainData::Bfv(coeffs) => {
            let t = ctx.params().plain_modulus();
            if ctx.scheme() != Scheme::Bfv || coeffs.len() != ctx.degree() {
                return Err(HeError::WrongScheme {
                    operation: "BFV plaintext",
                    scheme: "CKKS",
                });
            }
            let centered: Vec<i64> = coeffs
                .iter()
                .map(|&c| {
                    if c > t / 2 {
                        c as i64 - t as i64
                    } else {
                        c as i64
                    }
                })
                .collect();
            let mut m = RnsPoly::from_small(&centered, &q);
            m.forward(&q);
            Ok(m)
        }
        PlainData::Ckks(poly) => {
            if ctx.scheme() != Scheme::Ckks || poly.degree() != ctx.degree() {
                return Err(HeError::WrongScheme {
                    operation: "CKKS plaintext",
                    scheme: "BFV",
                });
            }
            if pt.level < level || poly.count() != pt.level + 1 {
                return Err(HeError::LevelMismatch {
                    expected: level,
                    actual: pt.level,
                });
            }
            let mut m = poly.clone();
            m.truncate(level + 1);
            Ok(m)
        }
    }
}

impl SecretKey {
    /// Encrypts with the secret key. The result is seeded: `c_1` is expanded from a 32-byte
    /// seed, so that it serializes in half the space.
    pub fn encrypt(&self, ctx: &Context, pt: &Plaintext) -> Result<Ciphertext> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let level = pt.level.min(ctx.max_level());
        let idx: Vec<usize> = (0..=level).collect();
        let mut rng = os_rng()?;
        let pair = rlwe_zero(ctx, self, &idx, &mut rng)?;
        let mut c0 = pair.b;
        c0.add_assign(&message_term(ctx, pt, level)?, &ctx.q_primes(level));
        Ok(Ciphertext {
            fingerprint: ctx.params().fingerprint(),
            polys: vec![c0, pair.a],
            level,
            scale: pt.scale,
            seed: Some(pair.seed),
        })
    }

    /// `c_0 + c_1 s + c_2 s^2 + …` in coefficient form over `Q_level`.
    fn phase(&self, ctx: &Context, ct: &Ciphertext) -> Result<RnsPoly> {
        ctx.check_fingerprint(&self.fingerprint)?;
        ctx.check_ciphertext(ct)?;
        let level = ct.level;
        let q = ctx.q_primes(level);
        let idx: Vec<usize> = (0..=level).collect();
        let s = self.restricted(&idx);
        let mut acc = ct
            .polys
            .first()
            .ok_or(HeError::CiphertextSize {
                expected: 2,
                actual: 0,
            })?
            .clone();
        let mut s_pow = s.clone();
        for (i, c) in ct.polys.iter().enumerate().skip(1) {
            if i > 1 {
                s_pow.mul_assign(&s, &q);
            }
            acc.mul_acc(c, &s_pow, &q);
        }
        acc.backward(&q);
        Ok(acc)
    }

    /// Decrypts to a plaintext.
    pub fn decrypt(&self, ctx: &Context, ct: &Ciphertext) -> Result<Plaintext> {
        let x = self.phase(ctx, ct)?;
        match ctx.scheme() {
            Scheme::Bfv => Ok(Plaintext {
                data: PlainData::Bfv(bfv_scale_round(ctx, &x, ct.level)?),
                level: ct.level,
                scale: 1.0,
                fingerprint: ctx.params().fingerprint(),
            }),
            Scheme::Ckks => {
                let mut poly = x;
                poly.forward(&ctx.q_primes(ct.level));
                Ok(Plaintext {
                    data: PlainData::Ckks(poly),
                    level: ct.level,
                    scale: ct.scale,
                    fingerprint: ctx.params().fingerprint(),
                })
            }
        }
    }

    /// CKKS: decrypts and decodes the complex slots in one pass.
    pub fn decrypt_complex(
        &self,
        ctx: &Context,
        encoder: &CkksEncoder,
        ct: &Ciphertext,
    ) -> Result<Vec<Complex>> {
        let x = self.phase(ctx, ct)?;
        encoder.decode_coefficients(&x, ct.level, ct.scale)
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
        let level = ct.level;
        let lv = ctx.level(level)?;
        let q = ctx.q_primes(level);
        let t = ctx.params().plain_modulus();
        let mut res = vec![0u64; level + 1];
        let mut digits = Vec::new();
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
fn bfv_scale_round(ctx: &Context, x: &RnsPoly, level: usize) -> Result<Vec<u64>> {
    let bfv = ctx.level(level)?.bfv.as_ref().ok_or(HeError::WrongScheme {
        operation: "BFV decrypt",
        scheme: "CKKS",
    })?;
    let q = ctx.q_primes(level);
    let t = ctx.params().plain_modulus();
    let mut y = vec![0u64; level + 1];
    Ok((0..ctx.degree())
        .map(|c| {
            for (i, yi) in y.iter_mut().enumerate() {
                let (w, ws) = bfv.dec_inv[i];
                *yi = q[i].m.mul_shoup(x.comp(i)[c], w, ws);
            }
            round_fraction_sum(&y, &bfv.dec_frac) % t
        })
        .collect())
}

impl PublicKey {
    /// Encrypts with the public key.
    pub fn encrypt(&self, ctx: &Context, pt: &Plaintext) -> Result<Ciphertext> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let level = pt.level.min(ctx.max_level());
        let q = ctx.q_primes(level);
        let n = ctx.degree();
        let mut rng = os_rng()?;
        let mut u = RnsPoly::from_small(&ternary(n, &mut rng), &q);
        u.forward(&q);
        let mut c0 = RnsPoly::from_small(&centered_binomial(n, &mut rng), &q);
        let mut c1 = RnsPoly::from_small(&centered_binomial(n, &mut rng), &q);
        c0.forward(&q);
        c1.forward(&q);
        let mut b = self.pair.b.clone();
        let mut a = self.pair.a.clone();
        b.truncate(level + 1);
        a.truncate(level + 1);
        c0.mul_acc(&b, &u, &q);
        c1.mul_acc(&a, &u, &q);
        c0.add_assign(&message_term(ctx, pt, level)?, &q);
        Ok(Ciphertext {
            fingerprint: ctx.params().fingerprint(),
            polys: vec![c0, c1],
            level,
            scale: pt.scale,
            seed: None,
        })
    }
}
