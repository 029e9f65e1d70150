//! Sampling from the OS-seeded ChaCha20 CSPRNG: uniform ternary secrets, centered binomial
//! errors, uniform residues (also expanded from 32-byte seeds).

use super::ntt::Prime;
use super::poly::RnsPoly;
use crate::errors::{HeError, Result};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// The cryptographically secure generator used for every random choice.
pub type Csprng = ChaCha20Rng;

/// Centered binomial parameter: variance `ETA / 2 = 10.5`, σ ≈ 3.24.
pub const CBD_ETA: u32 = 21;

/// A fresh generator seeded by the operating system.
pub fn os_rng() -> Result<Csprng> {
    ChaCha20Rng::try_from_os_rng().map_err(|e| HeError::Randomness {
        reason: e.to_string(),
    })
}

/// `n` coefficients uniform in {-1, 0, 1}.
pub fn ternary(n: usize, rng: &mut Csprng) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut word = rng.next_u64();
        // 40 trits from 64 bits by rejection on 3^40 < 2^64: take the bytes (each < 243 = 3^5).
        for _ in 0..8 {
            let byte = (word & 0xff) as u8;
            word >>= 8;
            if byte >= 243 {
                continue;
            }
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

/// `n` coefficients from the centered binomial distribution with parameter [`CBD_ETA`].
pub fn centered_binomial(n: usize, rng: &mut Csprng) -> Vec<i64> {
    let mask = (1u64 << CBD_ETA) - 1;
    (0..n)
        .map(|_| {
            let w = rng.next_u64();
            (w & mask).count_ones() as i64 - ((w >> CBD_ETA) & mask).count_ones() as i64
        })
        .collect()
}

/// A polynomial uniform over the given primes (any representation: the uniform distribution
/// is the same in NTT and coefficient form).
pub fn uniform(n: usize, primes: &[&Prime], rng: &mut Csprng) -> RnsPoly {
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
pub fn uniform_from_seed(seed: &[u8; 32], n: usize, primes: &[&Prime]) -> RnsPoly {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    uniform(n, primes, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternary_is_balanced() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let s = ternary(30000, &mut rng);
        for v in -1..=1 {
            let c = s.iter().filter(|&&x| x == v).count();
            assert!((9000..11000).contains(&c), "{v}: {c}");
        }
    }

    #[test]
    fn binomial_has_the_right_variance() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let e = centered_binomial(100_000, &mut rng);
        let mean = e.iter().sum::<i64>() as f64 / e.len() as f64;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / e.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 10.5).abs() < 0.3, "{var}");
        assert!(e.iter().all(|x| x.abs() <= CBD_ETA as i64));
    }
}
