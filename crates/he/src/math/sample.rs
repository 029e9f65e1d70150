//! Sampling from the OS-seeded ChaCha20 CSPRNG: uniform ternary secrets, centered binomial
//! errors, rounded Gaussians (decryption noise flooding), uniform residues (also expanded
//! from 32-byte seeds).
//!
//! Timing: the secret and error samplers do not branch on the values they return. Ternary
//! sampling rejects bytes `>= 243`, which reveals how many random bytes were discarded but
//! nothing about the accepted ones; uniform sampling rejects on public values only. The
//! Gaussian sampler uses `f64` `ln`/`sqrt`/`cos`, whose timing may depend on the operand on
//! some platforms (best effort: the flooding noise protects the key only statistically).

use super::poly::RnsPoly;
use crate::errors::{HeError, Result};
use crate::math::basis::Basis;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zeroize::Zeroizing;

/// The cryptographically secure generator used for every random choice: ChaCha20 whose
/// state is overwritten when dropped. Its key, counter and buffered block would let whoever
/// reads the memory regenerate every value drawn from it (secret key, errors, encryption
/// randomness), so it must not outlive its use. The overwrite is best effort: moves of the
/// generator before it is dropped may leave copies on the stack.
pub struct Csprng(ChaCha20Rng);

impl Csprng {
    /// The generator of a 32-byte seed (deterministic).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }
}

impl std::fmt::Debug for Csprng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csprng(<redacted>)")
    }
}

impl RngCore for Csprng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl Csprng {
    /// Overwrites the whole state in place (key, counter and buffered output are inline in
    /// the generator) with that of the all-zero seed; `black_box` keeps the store from
    /// being elided as dead.
    fn wipe(&mut self) {
        self.0 = ChaCha20Rng::from_seed([0; 32]);
        std::hint::black_box(&mut self.0);
    }
}

impl Drop for Csprng {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Centered binomial parameter: variance `ETA / 2 = 10.5`, σ ≈ 3.24.
pub const CBD_ETA: u32 = 21;

/// A fresh generator seeded by the operating system.
pub fn os_rng() -> Result<Csprng> {
    ChaCha20Rng::try_from_os_rng()
        .map(Csprng)
        .map_err(|e| HeError::Randomness {
            reason: e.to_string(),
        })
}

/// `n` coefficients uniform in {-1, 0, 1}.
pub fn ternary(n: usize, rng: &mut Csprng) -> Zeroizing<Vec<i64>> {
    // Capacity `n` up front: the vector never reallocates (no stray copy of the secret).
    let mut out = Zeroizing::new(Vec::with_capacity(n));
    while out.len() < n {
        let mut word = Zeroizing::new(rng.next_u64());
        // 40 trits from 64 bits by rejection on 3^40 < 2^64: take the bytes (each < 243 = 3^5).
        for _ in 0..8 {
            let byte = (*word & 0xff) as u8;
            *word >>= 8;
            if byte >= 243 {
                continue;
            }
            // `% 3` and `/ 3` by a constant compile to multiplications (no division).
            let mut b = byte;
            for _ in 0..5 {
                if out.len() == n {
                    break;
                }
                out.push((b % 3) as i64 - 1);
                b /= 3;
            }
        }
    }
    out
}

/// `n` coefficients from the centered binomial distribution with parameter [`CBD_ETA`]
/// (`count_ones` is a constant-time population count).
pub fn centered_binomial(n: usize, rng: &mut Csprng) -> Zeroizing<Vec<i64>> {
    let mask = (1u64 << CBD_ETA) - 1;
    let mut out = Zeroizing::new(Vec::with_capacity(n));
    for _ in 0..n {
        let w = Zeroizing::new(rng.next_u64());
        out.push((*w & mask).count_ones() as i64 - ((*w >> CBD_ETA) & mask).count_ones() as i64);
    }
    out
}

/// Largest standard deviation [`rounded_gaussian`] accepts: samples stay below `2^52` in
/// magnitude, where every integer is an exact `f64`.
pub const MAX_GAUSSIAN_SIGMA: f64 = (1u64 << 48) as f64;

/// `n` samples of a centered normal distribution of standard deviation `sigma`, rounded to
/// the nearest integer (Box–Muller on 53-bit uniforms: the tails are cut at
/// `sqrt(2·ln 2^53)·σ ≈ 8.57σ`). `sigma` must lie in `[0, MAX_GAUSSIAN_SIGMA]`.
pub fn rounded_gaussian(n: usize, sigma: f64, rng: &mut Csprng) -> Result<Zeroizing<Vec<i64>>> {
    if !(0.0..=MAX_GAUSSIAN_SIGMA).contains(&sigma) {
        return Err(HeError::ValueOutOfRange {
            what: "Gaussian standard deviation",
            value: sigma.to_string(),
            hint: "the standard deviation must be a finite number in [0, 2^48]",
        });
    }
    const UNIT: f64 = 1.0 / (1u64 << 53) as f64;
    let mut out = Zeroizing::new(Vec::with_capacity(n + 1));
    while out.len() < n {
        // u1 in (0, 1], u2 in [0, 1)
        let u1 = Zeroizing::new(((rng.next_u64() >> 11) + 1) as f64 * UNIT);
        let u2 = Zeroizing::new((rng.next_u64() >> 11) as f64 * UNIT);
        let r = Zeroizing::new(sigma * (-2.0 * u1.ln()).sqrt());
        let (sin, cos) = (2.0 * std::f64::consts::PI * *u2).sin_cos();
        out.push((*r * cos).round() as i64);
        out.push((*r * sin).round() as i64);
    }
    out.truncate(n);
    Ok(out)
}

/// A polynomial uniform over the given primes (any representation: the uniform distribution
/// is the same in NTT and coefficient form).
pub fn uniform(n: usize, primes: &Basis<'_>, rng: &mut Csprng) -> RnsPoly {
    let mut out = RnsPoly::zero(n, primes.len());
    for (c, p) in out.comps_mut().zip(primes) {
        let q = p.value();
        let mask = u64::MAX >> q.leading_zeros();
        for x in c.iter_mut() {
            *x = loop {
                let v = rng.next_u64() & mask;
                if v < q {
                    break v;
                }
            };
        }
    }
    out
}

/// The uniform polynomial expanded from a 32-byte seed, deterministic for the seed.
pub fn uniform_from_seed(seed: &[u8; 32], n: usize, primes: &Basis<'_>) -> RnsPoly {
    let mut rng = Csprng::from_seed(*seed);
    uniform(n, primes, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternary_is_balanced() {
        let mut rng = Csprng::from_seed([7; 32]);
        let s = ternary(30000, &mut rng);
        for v in -1..=1 {
            let c = s.iter().filter(|&&x| x == v).count();
            assert!((9000..11000).contains(&c), "{v}: {c}");
        }
    }

    #[test]
    fn gaussian_has_the_right_variance() {
        let mut rng = Csprng::from_seed([3; 32]);
        let sigma = 1000.0;
        let e = rounded_gaussian(100_001, sigma, &mut rng).unwrap();
        assert_eq!(e.len(), 100_001);
        let mean = e.iter().sum::<i64>() as f64 / e.len() as f64;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / e.len() as f64;
        assert!(mean.abs() < 10.0, "{mean}");
        assert!((var.sqrt() / sigma - 1.0).abs() < 0.01, "{}", var.sqrt());
        assert!(e.iter().all(|x| (x.abs() as f64) < 8.6 * sigma));
        assert!(rounded_gaussian(4, f64::NAN, &mut rng).is_err());
        assert!(rounded_gaussian(4, -1.0, &mut rng).is_err());
        assert!(rounded_gaussian(4, 1e300, &mut rng).is_err());
        assert!(
            rounded_gaussian(4, 0.0, &mut rng)
                .unwrap()
                .iter()
                .all(|&x| x == 0)
        );
    }

    #[test]
    fn dropping_the_generator_overwrites_its_state() {
        // `Drop` runs `wipe`: afterwards the state is that of the all-zero seed.
        let mut rng = Csprng::from_seed([5; 32]);
        let zero_seed_first = ChaCha20Rng::from_seed([0; 32]).next_u64();
        assert_ne!(rng.next_u64(), zero_seed_first);
        rng.wipe();
        assert_eq!(rng.next_u64(), zero_seed_first);
        assert_eq!(format!("{rng:?}"), "Csprng(<redacted>)");
    }

    #[test]
    fn binomial_has_the_right_variance() {
        let mut rng = Csprng::from_seed([9; 32]);
        let e = centered_binomial(100_000, &mut rng);
        let mean = e.iter().sum::<i64>() as f64 / e.len() as f64;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / e.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 10.5).abs() < 0.3, "{var}");
        assert!(e.iter().all(|x| x.abs() <= CBD_ETA as i64));
    }
}
