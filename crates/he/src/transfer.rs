//! Rounding a ciphertext to a power-of-two modulus for transfer.
//!
//! A ciphertext over `Q` is sent as `c'_i = round(c_i·2^{k_i}/Q) mod 2^{k_i}`, `k_i` bits per
//! coefficient instead of `log2 Q`, and read back as `c''_i = round(c'_i·Q/2^{k_i})`, a
//! ciphertext over `Q` again. The phase changes by `Σ_i (Q/2^{k_i})·r_i·s^i` with `r_i`
//! uniform in `[−½, ½]`: the error of `c_0` is added as is, that of `c_1` is multiplied by the
//! ternary secret (standard deviation `√(N/18)·Q/2^{k_1}` per coefficient), so `c_1` needs
//! about `log2 √(N/18)` more bits than `c_0` for the same effect. The caller picks `k_0`,
//! `k_1` from the precision its decryption needs. Rounding is a public operation on public
//! data (no secret, no secret-dependent branch). Reading back and rounding again gives the
//! same `c'` (`Q > 2^k`), so a rounded ciphertext re-serializes to the same bytes.
//!
//! A fresh (seeded) ciphertext may round `c_0` alone (`c_1` width 0): `c_1` stays a 32-byte
//! seed, and the error `(Q/2^{k_0})·r_0` adds to the encryption noise directly.
//!
//! Integers modulo `Q` are handled exactly in `u128`, which bounds `Q` by `2^126`: every
//! built-in preset's ciphertexts qualify at every level.

use crate::errors::{HeError, Result};
use crate::math::basis::Basis;
use crate::math::poly::{Coeff, RnsPoly};

/// Largest `log2 Q` a ciphertext may have to be rounded for transfer.
pub const MAX_TRANSFER_MODULUS_BITS: u32 = 126;

/// Largest number of bits per coefficient of a rounded ciphertext.
pub const MAX_TRANSFER_BITS: u32 = 63;

/// The CRT tables of `Q = q_0 ⋯ q_ℓ` in `u128`.
pub(crate) struct BigModulus {
    q: u128,
    /// `⌊2^127/Q⌋`: a fixed-point reciprocal for estimating quotients.
    reciprocal: u128,
    /// `Q/q_i` and `[(Q/q_i)^-1]_{q_i}`.
    punctured: Vec<(u128, u64)>,
}

impl BigModulus {
    /// The tables for `primes`; an error if `Q ≥ 2^126`.
    pub(crate) fn new(primes: &Basis<'_>) -> Result<Self> {
        let bits: f64 = primes.iter().map(|p| (p.value() as f64).log2()).sum();
        let too_large = || HeError::ValueOutOfRange {
            what: "ciphertext modulus for rounding",
            value: format!("2^{bits:.1}"),
            hint: "ciphertexts are rounded for transfer below 2^126; switch to a lower level first",
        };
        if bits >= MAX_TRANSFER_MODULUS_BITS as f64 {
            return Err(too_large());
        }
        let q = primes
            .iter()
            .try_fold(1u128, |acc, p| acc.checked_mul(p.value() as u128))
            .ok_or_else(too_large)?;
        let punctured = primes
            .iter()
            .map(|p| {
                let m = &p.m;
                let rest = q / p.value() as u128;
                let rest_mod = (rest % p.value() as u128) as u64;
                let inv = m.inv(rest_mod).ok_or(HeError::InvalidParameters {
                    reason: "ciphertext primes are not coprime".into(),
                })?;
                Ok((rest, inv))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            q,
            reciprocal: (1u128 << 127) / q,
            punctured,
        })
    }

    /// `Q`.
    pub(crate) fn value(&self) -> u128 {
        self.q
    }

    /// The integer in `[0, Q)` with the given residues.
    pub(crate) fn reconstruct(&self, residues: &[u64], primes: &Basis<'_>) -> u128 {
        let mut x = 0u128;
        for ((&r, &(rest, inv)), p) in residues.iter().zip(&self.punctured).zip(primes) {
            // r·inv mod q_i < q_i, times Q/q_i: below Q < 2^126, no overflow
            let term = p.m.mul(r, inv) as u128 * rest;
            x += term;
            if x >= self.q {
                x -= self.q;
            }
        }
        x
    }

    /// `round(c·2^k/Q) mod 2^k` for `c < Q` (exact).
    ///
    /// The quotient is estimated with the reciprocal, `e = ⌊c·⌊2^127/Q⌋ / 2^(127−k)⌋`, which
    /// falls short of `⌊c·2^k/Q⌋` by less than `Q·2^k/2^127 + 1`; the remainder
    /// `c·2^k − e·Q` is then below `2^128` whenever `log2 Q ≤ 107` and `log2 Q + k ≤ 147`, so
    /// it is computed exactly in wrapping `u128` arithmetic and corrected with one division.
    /// Other sizes take the bit-by-bit long division.
    pub(crate) fn round_down(&self, c: u128, k: u32) -> u64 {
        let q_bits = 128 - self.q.leading_zeros();
        if q_bits > 107 || q_bits + k > 147 {
            return self.round_down_long(c, k);
        }
        // c < 2^q_bits, reciprocal < 2^(128 − q_bits): the product fits
        let mut quotient = (c * self.reciprocal) >> (127 - k);
        let mut rem = (c << k).wrapping_sub(quotient.wrapping_mul(self.q));
        if rem >= self.q {
            quotient += rem / self.q;
            rem %= self.q;
        }
        if rem << 1 >= self.q {
            quotient += 1;
        }
        (quotient as u64) & low_mask(k)
    }

    /// `round(c·2^k/Q) mod 2^k` by binary long division (exact, any size).
    pub(crate) fn round_down_long(&self, c: u128, k: u32) -> u64 {
        let mut rem = c;
        let mut quotient = 0u64;
        for _ in 0..k {
            rem <<= 1; // rem < Q < 2^126: no overflow
            quotient <<= 1;
            if rem >= self.q {
                rem -= self.q;
                quotient |= 1;
            }
        }
        if rem << 1 >= self.q {
            quotient = quotient.wrapping_add(1);
        }
        quotient & low_mask(k)
    }

    /// `round(c'·Q/2^k)` for `c' < 2^k` (exact): `c'·⌊Q/2^k⌋ + round(c'·(Q mod 2^k)/2^k)`
    /// (the reference for [`lifted_poly`], which computes it residue by residue).
    #[cfg(test)]
    pub(crate) fn lift_up(&self, c: u64, k: u32) -> u128 {
        let hi = self.q >> k;
        let lo = self.q & ((1u128 << k) - 1);
        // c < 2^k and hi < 2^(126-k): c·hi < 2^126; c·lo < 2^2k ≤ 2^126
        c as u128 * hi + ((c as u128 * lo + (1u128 << (k - 1))) >> k)
    }
}

/// `round(c·2^k/Q) mod 2^k` for every coefficient of `poly` (NTT form over `primes`).
pub(crate) fn rounded_values(
    big: &BigModulus,
    poly: &RnsPoly,
    primes: &Basis<'_>,
    k: u32,
) -> Vec<u64> {
    let coeff = poly.clone().backward(primes);
    rounded_coefficients(big, &coeff, primes, k, 1)
}

/// `round(c·2^k/Q) mod 2^k` for every `stride`-th coefficient of `coeff` (coefficient form
/// over `primes`).
pub(crate) fn rounded_coefficients(
    big: &BigModulus,
    coeff: &RnsPoly<Coeff>,
    primes: &Basis<'_>,
    k: u32,
    stride: usize,
) -> Vec<u64> {
    let mut residues = vec![0u64; primes.len()];
    (0..coeff.degree())
        .step_by(stride.max(1))
        .map(|c| {
            for (i, r) in residues.iter_mut().enumerate() {
                *r = coeff.comp(i)[c];
            }
            big.round_down(big.reconstruct(&residues, primes), k)
        })
        .collect()
}

/// The polynomial (NTT form over `primes`) with coefficients `round(c'·Q/2^k)`, computed
/// residue by residue: `c'·[⌊Q/2^k⌋]_{q_i} + round(c'·(Q mod 2^k)/2^k)`, the second term
/// below `2^k`.
pub(crate) fn lifted_poly(big: &BigModulus, values: &[u64], primes: &Basis<'_>, k: u32) -> RnsPoly {
    let hi = big.q >> k;
    let lo = big.q & ((1u128 << k) - 1);
    let half = 1u128 << (k - 1);
    let mut poly = RnsPoly::zero(values.len(), primes.len());
    for (i, p) in primes.iter().enumerate() {
        let m = &p.m;
        let hi_mod = m.reduce_u128(hi);
        let hi_shoup = m.shoup(hi_mod);
        for (o, &c) in poly.comp_mut(i).iter_mut().zip(values) {
            // c < 2^k, lo < 2^k: the product is below 2^126 and the shifted sum below 2^k
            let small = ((c as u128 * lo + half) >> k) as u64;
            *o = m.add(m.mul_shoup(c, hi_mod, hi_shoup), m.reduce(small));
        }
        p.forward(poly.comp_mut(i));
    }
    poly
}

/// The low `k` bits set (`k ≤ 64`).
fn low_mask(k: u32) -> u64 {
    if k >= 64 { u64::MAX } else { (1u64 << k) - 1 }
}

/// Checks a pair of bit widths against the modulus they round from (`c_1` may be 0: left as
/// it is, seeded or in full).
pub(crate) fn check_bits(bits: [u32; 2], big: &BigModulus) -> Result<()> {
    let log_q = 127 - big.value().leading_zeros();
    for (i, b) in bits.into_iter().enumerate() {
        if i == 1 && b == 0 {
            continue;
        }
        if !(2..=MAX_TRANSFER_BITS).contains(&b) || b > log_q {
            return Err(HeError::ValueOutOfRange {
                what: "bits per rounded coefficient",
                value: b.to_string(),
                hint: "use 2 to 63 bits, and fewer than the ciphertext modulus has",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::ntt::Prime;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    fn primes(bits: &[u32]) -> Vec<Prime> {
        ntt_primes(bits, 64, &mut Vec::new())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Prime::new(p, 64))
            .collect()
    }

    proptest! {
        #[test]
        fn reconstruction_and_rounding_are_exact(
            a in any::<u128>(), k in 2u32..=63, sizes in 0usize..3,
        ) {
            let bits: &[u32] = [&[33u32, 33][..], &[50, 50], &[40, 45, 38]][sizes];
            let ps = primes(bits);
            let refs = Basis::all(&ps);
            let big = BigModulus::new(&refs).unwrap();
            let q = big.value();
            let c = a % q;
            let residues: Vec<u64> = refs.iter().map(|p| (c % p.value() as u128) as u64).collect();
            prop_assert_eq!(big.reconstruct(&residues, &refs), c);
            // the reciprocal estimate agrees with the long division
            let down = big.round_down(c, k);
            prop_assert_eq!(down, big.round_down_long(c, k));
            prop_assert!(down < 1u64 << k);
            // lifting back and rounding again returns the same value
            let up = big.lift_up(down, k);
            prop_assert!(up < q);
            prop_assert_eq!(big.round_down(up, k), down);
            // the residue-wise lift agrees with the u128 one
            let lifted = lifted_poly(&big, &[down; 64], &refs, k);
            for (i, p) in refs.iter().enumerate() {
                let mut coeff = lifted.comp(i).to_vec();
                p.backward(&mut coeff);
                prop_assert_eq!(coeff[0] as u128, up % p.value() as u128);
            }
            // and |up·2^k/Q − down| ≤ 1/2 (checked in f64 where its 53 bits suffice)
            if k <= 40 {
                let err = (up as f64) * (k as f64).exp2() / q as f64 - down as f64;
                prop_assert!(err.abs() <= 0.5 + 1e-6, "{}", err);
            }
        }
    }

    #[test]
    fn oversized_moduli_and_bits_are_refused() {
        let ps = primes(&[60, 60, 60]);
        let refs = Basis::all(&ps);
        assert!(BigModulus::new(&refs).is_err());
        let ps = primes(&[33, 33]);
        let refs = Basis::all(&ps);
        let big = BigModulus::new(&refs).unwrap();
        assert!(check_bits([30, 37], &big).is_ok());
        assert!(check_bits([1, 37], &big).is_err());
        assert!(check_bits([30, 0], &big).is_ok());
        assert!(check_bits([0, 30], &big).is_err());
        assert!(check_bits([30, 67], &big).is_err());
        assert!(check_bits([63, 0], &big).is_ok());
        assert!(check_bits([64, 0], &big).is_err());
    }
}
