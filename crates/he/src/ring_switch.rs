//! Ring switching: compact search responses (Gentry, Halevi, Peikert, Smart, "Field
//! switching in BGV-style homomorphic encryption", 2013).
//!
//! A message that is invariant under the order-`d` subgroup of slot rotations (rotations by
//! multiples of `N/(2d)`, the automorphisms `X → X^(1 + u·2N/d)`) lies in the subring
//! `Z[X^d]`: only every `d`-th coefficient is nonzero. A ciphertext of it under the main
//! secret `s` still has full polynomials, but after a key switch to a secret `s'` of the
//! subring, `c_0 + c_1·s'` has its coefficients at multiples of `d` determined by those of
//! `c_0` and `c_1` alone: the others can be dropped, and the ciphertext shrinks by `d`.
//!
//! Dropping them is the projection `m ↦ Tr(m)/d` (trace over the subgroup): for any
//! message, the projected ciphertext decrypts to the slots summed over the subgroup's
//! rotations, divided by `d` — a rotate-and-add fold of `log2 d` steps done for free.
//!
//! Security. The response secret `s'` is a uniform ternary polynomial of degree `N/d` in
//! `Y = X^d`. The switching key (one RLWE sample under `s'` per digit of the gadget
//! `B^i`, encrypting `B^i·s`) and the switched ciphertext decompose into RLWE samples of
//! degree `N/d` over `Q_ℓ` (no special prime): [`RingSwitchKey::generate`] refuses a level
//! whose modulus exceeds the 128-bit bound of the HomomorphicEncryption.org table for
//! degree `N/d` (54 bits at 2048, 27 at 1024).
//!
//! Noise. The switch adds `Σ_i digit_i·e_i`: with balanced digits of `w` bits, a standard
//! deviation of `√(ℓ·N)·2^w/√12·σ_e` per coefficient (`ℓ = ⌈log2 Q/w⌉` digits, `σ_e ≈ 3.24`):
//! about `2^12.2` for `w = 4` at a 50-bit modulus and `N = 8192`.

use crate::ckks::{CkksEncoder, Complex};
use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::evaluator::Evaluator;
use crate::flooding::NoiseFlooding;
use crate::keys::{SecretKey, SeededPair, rlwe_zero_under};
use crate::math::poly::RnsPoly;
use crate::math::sample::{Csprng, os_rng, ternary};
use crate::params::max_secure_log_q;
use crate::plaintext::{Ciphertext, Plaintext, Rounding};
use crate::transfer::{BigModulus, check_bits, lifted_poly, rounded_coefficients};
use rand_core::RngCore;
use zeroize::Zeroizing;

/// Smallest degree `N/d` of a response subring (the 128-bit table starts at 1024).
pub const MIN_SUBRING_DEGREE: usize = 1024;

/// Most bits of one gadget digit.
pub const MAX_BASE_BITS: u32 = 20;

/// The largest `log2 d` for which the subring `Z[X^d]` of degree `N/d` is 128-bit secure at
/// the modulus of `level` (0 if none is: then responses stay in the full ring).
pub fn max_response_log_d(ctx: &Context, level: usize) -> u32 {
    let log_q = level_bits(ctx, level);
    let n = ctx.degree();
    let mut best = 0;
    let mut log_d = 1;
    while n >> log_d >= MIN_SUBRING_DEGREE {
        if log_q <= max_secure_log_q(n >> log_d) {
            best = log_d;
        }
        log_d += 1;
    }
    best
}

/// `⌈log2 Q_ℓ⌉`, the bits of the modulus at `level`.
pub(crate) fn level_bits(ctx: &Context, level: usize) -> u32 {
    let idx: Vec<usize> = (0..=level.min(ctx.max_level())).collect();
    ctx.primes_at(&idx)
        .iter()
        .map(|p| (p.value() as f64).log2())
        .sum::<f64>()
        .ceil() as u32
}

/// The secret of ring-switched responses: a uniform ternary polynomial of the subring
/// `Z[X^d]`, `d = 2^log_d`. It only decrypts (responses switched to it); it cannot encrypt
/// or make keys, so it is never used at a modulus its small degree does not protect.
/// Zeroized on drop.
pub struct ResponseSecretKey {
    key: SecretKey,
}

impl std::fmt::Debug for ResponseSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseSecretKey(<redacted>)")
    }
}

impl ResponseSecretKey {
    /// A fresh response secret from the OS-seeded CSPRNG.
    pub fn generate(ctx: &Context, log_d: u32) -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        os_rng()?.fill_bytes(&mut seed[..]);
        Self::from_seed(ctx, log_d, &seed)
    }

    /// The response secret expanded from a 32-byte secret seed (deterministic: a client
    /// keeps the seed, or derives it from its secret material, instead of the key).
    pub fn from_seed(ctx: &Context, log_d: u32, seed: &[u8; 32]) -> Result<Self> {
        let n = ctx.degree();
        if log_d == 0 || log_d > 16 || n >> log_d < MIN_SUBRING_DEGREE {
            return Err(HeError::ValueOutOfRange {
                what: "response subring index log2 d",
                value: log_d.to_string(),
                hint: "use 1 ≤ log2 d with N/d ≥ 1024",
            });
        }
        let mut rng = Csprng::from_seed(*seed);
        let small = ternary(n >> log_d, &mut rng);
        let mut coeffs = vec![0i64; n];
        for (c, &v) in coeffs.iter_mut().step_by(1 << log_d).zip(small.iter()) {
            *c = v;
        }
        let mut key = SecretKey::from_coeffs(ctx, coeffs);
        key.response_log_d = Some(log_d);
        Ok(Self { key })
    }

    /// `log2 d` of the subring.
    pub fn log_d(&self) -> u32 {
        self.key.response_log_d.unwrap_or(0)
    }

    /// Decrypts a ring-switched ciphertext (see [`SecretKey::decrypt`]).
    pub fn decrypt(&self, ctx: &Context, ct: &Ciphertext) -> Result<Plaintext> {
        self.key.decrypt(ctx, ct)
    }

    /// CKKS: decrypts and decodes (raw `m + e`, see [`SecretKey::decrypt_complex`]).
    pub fn decrypt_complex(
        &self,
        ctx: &Context,
        encoder: &CkksEncoder,
        ct: &Ciphertext,
    ) -> Result<Vec<Complex>> {
        self.key.decrypt_complex(ctx, encoder, ct)
    }

    /// CKKS: decrypts with noise flooding and decodes (see
    /// [`SecretKey::decrypt_complex_flooded`]).
    pub fn decrypt_complex_flooded(
        &self,
        ctx: &Context,
        encoder: &CkksEncoder,
        ct: &Ciphertext,
        flooding: &NoiseFlooding,
    ) -> Result<Vec<Complex>> {
        self.key.decrypt_complex_flooded(ctx, encoder, ct, flooding)
    }

    /// BFV: the noise budget left in a ring-switched ciphertext (see
    /// [`SecretKey::noise_budget`]).
    pub fn noise_budget(&self, ctx: &Context, ct: &Ciphertext) -> Result<f64> {
        self.key.noise_budget(ctx, ct)
    }
}

/// The public key that switches ciphertexts at one level from the main secret `s` to a
/// response secret `s'`: digit `i` is an RLWE sample `(−a_i·s' + e_i + B^i·s, a_i)` over
/// `Q_ℓ`, `a_i` expanded from a seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSwitchKey {
    pub(crate) log_d: u32,
    pub(crate) level: usize,
    pub(crate) base_bits: u32,
    pub(crate) digits: Vec<SeededPair>,
    pub(crate) fingerprint: [u8; 32],
}

/// Gadget digits for a modulus of `log_q` bits in base `2^base_bits`.
pub(crate) fn digit_count(log_q: u32, base_bits: u32) -> usize {
    log_q.div_ceil(base_bits.max(1)) as usize
}

impl RingSwitchKey {
    /// The key from `sk` to `response` for ciphertexts at `level`, with gadget digits of
    /// `base_bits` bits. Refused when degree `N/d` is not 128-bit secure at `Q_level`.
    pub fn generate(
        ctx: &Context,
        sk: &SecretKey,
        response: &ResponseSecretKey,
        level: usize,
        base_bits: u32,
    ) -> Result<Self> {
        ctx.check_fingerprint(&sk.fingerprint)?;
        ctx.check_fingerprint(&response.key.fingerprint)?;
        if sk.response_log_d.is_some() {
            return Err(HeError::KeyMismatch {
                expected: "the main secret key".into(),
                actual: "a response key".into(),
            });
        }
        let log_d = response.log_d();
        let log_q = level_bits(ctx, ctx.level(level).map(|_| level)?);
        let n_sub = ctx.degree() >> log_d;
        let limit = max_secure_log_q(n_sub);
        if log_q > limit {
            return Err(HeError::InsecureParameters {
                degree: n_sub,
                expected: limit,
                actual: log_q,
            });
        }
        if !(1..=MAX_BASE_BITS).contains(&base_bits) {
            return Err(HeError::ValueOutOfRange {
                what: "ring-switching digit bits",
                value: base_bits.to_string(),
                hint: "use 1 to 20 bits per digit",
            });
        }
        let idx: Vec<usize> = (0..=level).collect();
        let primes = ctx.primes_at(&idx);
        let s_prime = response.key.restricted(&idx);
        let s = sk.restricted(&idx);
        let mut rng = os_rng()?;
        // B^i modulo each prime, advanced digit by digit
        let mut powers: Vec<u64> = primes.iter().map(|p| p.m.reduce(1)).collect();
        let digits = (0..digit_count(log_q, base_bits))
            .map(|_| {
                let mut pair = rlwe_zero_under(ctx, &s_prime, &idx, &mut rng);
                for (j, p) in primes.iter().enumerate() {
                    let c = powers[j];
                    powers[j] = p.m.mul(c, p.m.reduce(1u64 << base_bits));
                    let cs = p.m.shoup(c);
                    for (b, &sv) in pair.b.comp_mut(j).iter_mut().zip(s.comp(j)) {
                        *b = p.m.add(*b, p.m.mul_shoup(sv, c, cs));
                    }
                }
                pair
            })
            .collect();
        Ok(Self {
            log_d,
            level,
            base_bits,
            digits,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// `log2 d` of the response subring.
    pub fn log_d(&self) -> u32 {
        self.log_d
    }

    /// The level of the ciphertexts it switches.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Bits per gadget digit.
    pub fn base_bits(&self) -> u32 {
        self.base_bits
    }
}

impl Evaluator {
    /// Switches `ct` (under the main secret, at the key's level) to the key's response
    /// secret, projects it to the subring `Z[X^(2^log_d)]` (`log_d` at most the key's) and
    /// rounds it for transfer to `bits` per coefficient of `c_0` and `c_1` (see
    /// [`Evaluator::round_for_transfer`]; both at least 2). The result decrypts, under the
    /// response key, to the slots of `ct` summed over the rotations by multiples of
    /// `N/2^(log_d+1)` and divided by `2^log_d`, and serializes in
    /// `(bits[0] + bits[1])·N/2^log_d` bits. It supports no further operation.
    pub fn ring_switch(
        &self,
        ct: &Ciphertext,
        key: &RingSwitchKey,
        log_d: u32,
        bits: [u32; 2],
    ) -> Result<Ciphertext> {
        let ctx = self.context();
        ctx.check_ciphertext(ct)?;
        ctx.check_fingerprint(&key.fingerprint)?;
        if ct.polys.len() != 2 {
            return Err(HeError::CiphertextSize {
                expected: 2,
                actual: ct.polys.len(),
            });
        }
        if ct.meta.level != key.level {
            return Err(HeError::LevelMismatch {
                expected: key.level,
                actual: ct.meta.level,
            });
        }
        if log_d > key.log_d {
            return Err(HeError::ValueOutOfRange {
                what: "subring of a ring switch (log2 d)",
                value: log_d.to_string(),
                hint: "project to the key's subring or a larger one (a smaller log2 d)",
            });
        }
        let q = ctx.q_primes(ct.meta.level);
        let big = BigModulus::new(&q)?;
        check_bits(bits, &big)?;
        if bits[1] == 0 {
            return Err(HeError::ValueOutOfRange {
                what: "bits of c_1 after a ring switch",
                value: "0".into(),
                hint: "c_1 is no longer seeded after a switch: give it 2 to 63 bits",
            });
        }
        let n = ctx.degree();
        // c_1 as centered integers, consumed digit by digit (balanced base-B digits; the
        // last digit keeps whatever is left, so the decomposition is exact).
        let c1 = ct.polys[1].clone().backward(&q);
        let q_value = big.value();
        let mut residues = vec![0u64; q.len()];
        let mut rest: Vec<i128> = (0..n)
            .map(|c| {
                for (i, r) in residues.iter_mut().enumerate() {
                    *r = c1.comp(i)[c];
                }
                let v = big.reconstruct(&residues, &q);
                if v > q_value / 2 {
                    v as i128 - q_value as i128
                } else {
                    v as i128
                }
            })
            .collect();
        let base = 1i128 << key.base_bits;
        let half = base / 2;
        let mut acc0 = ct.polys[0].clone();
        let mut acc1 = RnsPoly::zero(n, q.len());
        let mut digit = vec![0i64; n];
        let last = key.digits.len().saturating_sub(1);
        for (i, pair) in key.digits.iter().enumerate() {
            for (d, r) in digit.iter_mut().zip(rest.iter_mut()) {
                // (r + B/2) mod B − B/2 with B a power of two: a mask in two's complement
                let v = if i == last {
                    *r
                } else {
                    ((*r + half) & (base - 1)) - half
                };
                *r = (*r - v) >> key.base_bits;
                // |v| ≤ B/2 except the last digit, which is below Q/B^(ℓ-1)·2 < 2^63
                *d = v as i64;
            }
            let dp = RnsPoly::from_small(&digit, &q).forward(&q);
            acc0.mul_acc(&dp, &pair.b, &q);
            acc1.mul_acc(&dp, &pair.a, &q);
        }
        let stride = 1usize << log_d;
        let polys = [acc0.backward(&q), acc1.backward(&q)]
            .iter()
            .zip(bits)
            .map(|(poly, k)| {
                let kept = rounded_coefficients(&big, poly, &q, k, stride);
                let mut spread = vec![0u64; n];
                for (s, v) in spread.iter_mut().step_by(stride).zip(kept) {
                    *s = v;
                }
                lifted_poly(&big, &spread, &q, k)
            })
            .collect();
        Ok(Ciphertext {
            polys,
            meta: ct.meta,
            seed: None,
            rounded: Some(Rounding::bits(bits)),
            subring: Some(log_d),
        })
    }
}
