//! Keys: the ternary secret key, the public key, and key-switching keys (relinearization and
//! Galois) for hybrid key switching with the special primes `P`.

use crate::context::{Context, pow_mod};
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::math::sample::{Csprng, centered_binomial, os_rng, ternary, uniform_from_seed};
use rand_core::RngCore;
use std::collections::BTreeMap;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The secret key: a uniform ternary polynomial. Never leaves the client.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    /// Coefficients in {-1, 0, 1}.
    pub(crate) coeffs: Vec<i64>,
    /// NTT form over every ciphertext and special prime.
    pub(crate) ntt: RnsPoly,
    #[zeroize(skip)]
    pub(crate) fingerprint: [u8; 32],
    /// `None` for the main secret; `Some(k)` for a response secret of the subring
    /// `Z[X^(2^k)]` ([`crate::ring_switch::ResponseSecretKey`]): it decrypts only ciphertexts
    /// ring-switched to it.
    #[zeroize(skip)]
    pub(crate) response_log_d: Option<u32>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh secret key from the OS-seeded CSPRNG.
    pub fn generate(ctx: &Context) -> Result<Self> {
        let mut rng = os_rng()?;
        let mut coeffs = ternary(ctx.degree(), &mut rng);
        // moves the buffer (no copy) out of the wrapper, which is left empty
        Ok(Self::from_coeffs(ctx, std::mem::take(&mut *coeffs)))
    }

    pub(crate) fn from_coeffs(ctx: &Context, coeffs: Vec<i64>) -> Self {
        let all = all_qp(ctx);
        let primes = ctx.primes_at(&all);
        let ntt = RnsPoly::from_small(&coeffs, &primes).forward(&primes);
        Self {
            coeffs,
            ntt,
            fingerprint: ctx.params().fingerprint(),
            response_log_d: None,
        }
    }

    /// `s` restricted to the given prime indices (NTT form), zeroized on drop.
    pub(crate) fn restricted(&self, idx: &[usize]) -> Zeroizing<RnsPoly> {
        let n = self.ntt.degree();
        let mut out = Zeroizing::new(RnsPoly::zero(n, idx.len()));
        for (o, &i) in out.comps_mut().zip(idx) {
            o.copy_from_slice(self.ntt.comp(i));
        }
        out
    }
}

/// Indices of every ciphertext and special prime (the key-switching basis at the top level).
pub(crate) fn all_qp(ctx: &Context) -> Vec<usize> {
    (0..ctx.inner.num_q + ctx.inner.num_p).collect()
}

/// An RLWE sample `(b, a)` with `b = -a s + e (+ message)`, `a` expanded from `seed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeededPair {
    pub b: RnsPoly,
    pub a: RnsPoly,
    pub seed: [u8; 32],
}

/// Encryption of zero (NTT form) over the primes `idx`, with `a` from a fresh seed.
pub(crate) fn rlwe_zero(
    ctx: &Context,
    sk: &SecretKey,
    idx: &[usize],
    rng: &mut Csprng,
) -> Result<SeededPair> {
    Ok(rlwe_zero_under(ctx, &sk.restricted(idx), idx, rng))
}

/// Encryption of zero under the secret polynomial `s` (NTT form over the primes `idx`).
/// The error and `a·s` are secret until combined into `b`; both are zeroized.
pub(crate) fn rlwe_zero_under(
    ctx: &Context,
    s: &RnsPoly,
    idx: &[usize],
    rng: &mut Csprng,
) -> SeededPair {
    let primes = ctx.primes_at(idx);
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let a = uniform_from_seed(&seed, ctx.degree(), &primes);
    let e = centered_binomial(ctx.degree(), rng);
    // b holds e until the subtraction overwrites it in place with -a·s + e (public)
    let mut b = RnsPoly::from_small(&e, &primes).forward(&primes);
    let mut as_ = Zeroizing::new(a.clone());
    as_.mul_assign(s, &primes);
    b.sub_assign(&as_, &primes);
    SeededPair { b, a, seed }
}

/// The public key: an encryption of zero at the top level (modulus `Q`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub(crate) pair: SeededPair,
    pub(crate) fingerprint: [u8; 32],
}

impl PublicKey {
    /// Derives a public key from the secret key.
    pub fn generate(ctx: &Context, sk: &SecretKey) -> Result<Self> {
        let mut rng = os_rng()?;
        let idx: Vec<usize> = (0..ctx.inner.num_q).collect();
        Ok(Self {
            pair: rlwe_zero(ctx, sk, &idx, &mut rng)?,
            fingerprint: ctx.params().fingerprint(),
        })
    }
}

/// A key-switching key from `s'` to a secret `u`: one RLWE sample under `u` over `Q ∪ P`
/// per ciphertext prime `q_i`, encrypting `P · [Q/q_i · (Q/q_i)^-1]_Q · s'` (the RNS gadget).
/// Relinearization: `s' = s²`, `u = s`. Galois element `g`: `s' = s`, `u = σ_g^-1(s)`, so
/// that the automorphism is applied once to the switched result instead of to every digit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySwitchingKey {
    pub(crate) digits: Vec<SeededPair>,
}

impl KeySwitchingKey {
    pub(crate) fn generate(ctx: &Context, under: &RnsPoly, s_prime: &RnsPoly) -> Result<Self> {
        let mut rng = os_rng()?;
        let all = all_qp(ctx);
        let primes = ctx.primes_at(&all);
        let top = ctx.level(ctx.max_level())?;
        let mut digits = Vec::with_capacity(ctx.inner.num_q);
        for i in 0..ctx.inner.num_q {
            let mut pair = rlwe_zero_under(ctx, under, &all, &mut rng);
            let m = &primes[i].m;
            let c = top.p_mod_q[i];
            let cs = m.shoup(c);
            for (b, &sp) in pair.b.comp_mut(i).iter_mut().zip(s_prime.comp(i)) {
                *b = m.add(*b, m.mul_shoup(sp, c, cs));
            }
            digits.push(pair);
        }
        Ok(Self { digits })
    }
}

/// Relinearization key: switches `s^2` to `s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelinKey {
    pub(crate) key: KeySwitchingKey,
    pub(crate) fingerprint: [u8; 32],
}

impl RelinKey {
    /// Derives the relinearization key from the secret key.
    pub fn generate(ctx: &Context, sk: &SecretKey) -> Result<Self> {
        let all = all_qp(ctx);
        let primes = ctx.primes_at(&all);
        let mut s2 = Zeroizing::new(sk.ntt.clone());
        s2.mul_assign(&sk.ntt, &primes);
        let key = KeySwitchingKey::generate(ctx, &sk.ntt, &s2)?;
        Ok(Self {
            key,
            fingerprint: ctx.params().fingerprint(),
        })
    }
}

/// Galois keys: one key-switching key per Galois element (`X -> X^g`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaloisKeys {
    pub(crate) keys: BTreeMap<u64, KeySwitchingKey>,
    pub(crate) fingerprint: [u8; 32],
}

impl GaloisKeys {
    /// Keys for rotations by each of `steps` (left, negative for right) and, if
    /// `conjugation`, for the BFV row swap / CKKS conjugation.
    pub fn generate(
        ctx: &Context,
        sk: &SecretKey,
        steps: &[i64],
        conjugation: bool,
    ) -> Result<Self> {
        let mut elements: Vec<u64> = steps.iter().map(|&s| ctx.galois_element(s)).collect();
        if conjugation {
            elements.push(ctx.conjugation_element());
        }
        Self::for_elements(ctx, sk, &elements)
    }

    /// Keys for explicit Galois elements (odd, `< 2N`).
    pub fn for_elements(ctx: &Context, sk: &SecretKey, elements: &[u64]) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for &g in elements {
            if g % 2 == 0 || g >= 2 * ctx.degree() as u64 {
                return Err(HeError::ValueOutOfRange {
                    what: "Galois element",
                    value: g.to_string(),
                    hint: "Galois elements are odd and below 2N",
                });
            }
            if g == 1 || keys.contains_key(&g) {
                continue;
            }
            // u = σ_g^-1(s): the inverse of g in (Z/2NZ)*, a group of order N.
            let g_inv = pow_mod(g, ctx.degree() as u64 - 1, 2 * ctx.degree() as u64);
            let u = Zeroizing::new(sk.ntt.permuted(&ctx.galois_permutation(g_inv)));
            keys.insert(g, KeySwitchingKey::generate(ctx, &u, &sk.ntt)?);
        }
        Ok(Self {
            keys,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Adds the keys of `other` (same parameter set) that this set lacks.
    pub fn merge(&mut self, other: GaloisKeys) -> Result<()> {
        if other.fingerprint != self.fingerprint {
            return Err(HeError::ParameterMismatch {
                expected: crate::params::short_hex(&self.fingerprint),
                actual: crate::params::short_hex(&other.fingerprint),
            });
        }
        for (g, k) in other.keys {
            self.keys.entry(g).or_insert(k);
        }
        Ok(())
    }

    /// Whether the set holds the key of a rotation by `step`.
    pub fn has_step(&self, ctx: &Context, step: i64) -> bool {
        self.keys.contains_key(&ctx.galois_element(step))
    }

    /// The Galois elements covered.
    pub fn elements(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.keys().copied()
    }

    pub(crate) fn get(&self, g: u64, step: Option<i64>) -> Result<&KeySwitchingKey> {
        self.keys
            .get(&g)
            .ok_or(HeError::MissingGaloisKey { element: g, step })
    }
}
