//! Generation of NTT-friendly primes.

/// Deterministic primality test for 64-bit integers.
pub fn is_prime(n: u64) -> bool {
    tfhe_ntt::prime::is_prime64(n)
}

/// The largest primes `p < 2^bits` with `p ≡ 1 (mod 2n)`, skipping those in `used`, one per
/// requested size, in order. Returns `None` if a size is too small to hold such a prime.
pub fn ntt_primes(bit_sizes: &[u32], n: usize, used: &mut Vec<u64>) -> Option<Vec<u64>> {
    primes_congruent_to_one(bit_sizes, 2 * n as u64, used)
}

/// The largest primes `p < 2^bits` with `p ≡ 1 (mod step)`, skipping those in `used`, one per
/// requested size, in order (`step` a multiple of `2n` gives NTT primes that are also
/// `≡ 1` modulo the rest of `step`, e.g. a BFV plaintext modulus). Returns `None` if a size
/// is too small to hold such a prime or `step` is 0.
pub fn primes_congruent_to_one(
    bit_sizes: &[u32],
    step: u64,
    used: &mut Vec<u64>,
) -> Option<Vec<u64>> {
    let mut out = Vec::with_capacity(bit_sizes.len());
    for &bits in bit_sizes {
        if !(2..=62).contains(&bits) || step == 0 {
            return None;
        }
        let top = 1u64 << bits;
        let low = 1u64 << (bits - 1);
        // Largest candidate < 2^bits congruent to 1 mod step.
        let mut p = (top - 1) / step * step + 1;
        loop {
            if p < low || p < step {
                return None;
            }
            if is_prime(p) && !used.contains(&p) {
                break;
            }
            p -= step;
        }
        used.push(p);
        out.push(p);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_ntt_friendly_and_distinct() {
        let mut used = Vec::new();
        let ps = ntt_primes(&[60, 40, 40, 60], 8192, &mut used).unwrap();
        assert_eq!(ps.len(), 4);
        for &p in &ps {
            assert!(is_prime(p));
            assert_eq!(p % 16384, 1);
        }
        assert_ne!(ps[0], ps[3]);
        assert_ne!(ps[1], ps[2]);
        assert_eq!(64 - ps[0].leading_zeros(), 60);
        assert_eq!(64 - ps[1].leading_zeros(), 40);
    }

    #[test]
    fn too_small_sizes_are_refused() {
        assert!(ntt_primes(&[10], 8192, &mut Vec::new()).is_none());
        assert!(ntt_primes(&[63], 8192, &mut Vec::new()).is_none());
    }
}
