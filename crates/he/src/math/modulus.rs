//! Arithmetic modulo a word-sized prime: Barrett reduction of 128-bit values and
//! Shoup multiplication by precomputed constants.

/// A prime modulus `p < 2^62` with precomputed reduction constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    value: u64,
    /// floor(2^128 / p), low and high words.
    ratio_lo: u64,
    ratio_hi: u64,
}

/// Largest modulus bit size the arithmetic supports.
pub const MAX_MODULUS_BITS: u32 = 61;

impl Modulus {
    /// Builds the reduction constants for `p`. The caller guarantees `2 <= p < 2^62`.
    pub const fn new(p: u64) -> Self {
        let ratio = u128::MAX / p as u128;
        // u128::MAX / p == floor((2^128 - 1)/p) == floor(2^128/p) because p is not a power
        // of two (it is an odd prime > 2).
        Self {
            value: p,
            ratio_lo: ratio as u64,
            ratio_hi: (ratio >> 64) as u64,
        }
    }

    /// The modulus.
    #[inline(always)]
    pub const fn value(&self) -> u64 {
        self.value
    }

    /// Number of bits of the modulus.
    pub const fn bits(&self) -> u32 {
        64 - self.value.leading_zeros()
    }

    /// `(a + b) mod p` for `a, b < p`.
    #[inline(always)]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        csub(a + b, self.value)
    }

    /// `(a - b) mod p` for `a, b < p`.
    #[inline(always)]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        let d = a.wrapping_sub(b);
        d.wrapping_add(self.value & sign_mask(d))
    }

    /// `-a mod p` for `a < p`.
    #[inline(always)]
    pub fn neg(&self, a: u64) -> u64 {
        (self.value - a) & ((a != 0) as u64).wrapping_neg()
    }

    /// Reduces any 128-bit value modulo p (Barrett with a 128-bit ratio).
    #[inline(always)]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let x0 = x as u64;
        let x1 = (x >> 64) as u64;
        // q ~ floor(x * ratio / 2^128), off by at most one.
        let carry = ((x0 as u128 * self.ratio_lo as u128) >> 64) as u64;
        let t = x0 as u128 * self.ratio_hi as u128;
        let (mid, c1) = (t as u64).overflowing_add(carry);
        let hi = ((t >> 64) as u64).wrapping_add(c1 as u64);
        let t2 = x1 as u128 * self.ratio_lo as u128;
        let (_, c2) = mid.overflowing_add(t2 as u64);
        let carry2 = ((t2 >> 64) as u64).wrapping_add(c2 as u64);
        let q = x1
            .wrapping_mul(self.ratio_hi)
            .wrapping_add(hi)
            .wrapping_add(carry2);
        csub(x0.wrapping_sub(q.wrapping_mul(self.value)), self.value)
    }

    /// Reduces a 64-bit value modulo p (one high multiplication: `ratio_hi = ⌊2^64/p⌋`).
    #[inline(always)]
    pub fn reduce(&self, x: u64) -> u64 {
        let q = ((x as u128 * self.ratio_hi as u128) >> 64) as u64;
        csub(x - q * self.value, self.value)
    }

    /// `a * b mod p`.
    #[inline(always)]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(a as u128 * b as u128)
    }

    /// The Shoup companion `floor(w * 2^64 / p)` of a constant `w < p`.
    #[inline(always)]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.value as u128) as u64
    }

    /// `a * w mod p` with `w_shoup = self.shoup(w)`; any `a < 2^64`.
    #[inline(always)]
    pub fn mul_shoup(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let q = ((a as u128 * w_shoup as u128) >> 64) as u64;
        csub(
            a.wrapping_mul(w).wrapping_sub(q.wrapping_mul(self.value)),
            self.value,
        )
    }

    /// `a^e mod p`.
    pub fn pow(&self, mut a: u64, mut e: u64) -> u64 {
        let mut r = 1 % self.value;
        a = self.reduce(a);
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }

    /// `a^-1 mod p` (p prime); `None` for `a ≡ 0`.
    pub fn inv(&self, a: u64) -> Option<u64> {
        let a = self.reduce(a);
        if a == 0 {
            None
        } else {
            Some(self.pow(a, self.value - 2))
        }
    }

    /// Maps a signed value into `[0, p)`, in constant time (no branch on the sign or the
    /// magnitude of `a`: secret coefficients go through here).
    #[inline(always)]
    pub fn from_i64(&self, a: i64) -> u64 {
        // neg = all ones iff a < 0; |a| = (a ^ neg) - neg, as u64 (|i64::MIN| = 2^63 fits).
        let neg = (a >> 63) as u64;
        let magnitude = ((a as u64) ^ neg).wrapping_sub(neg);
        let r = self.reduce(magnitude);
        r ^ ((r ^ self.neg(r)) & neg)
    }

    /// Centered representative of `a < p` in `(-p/2, p/2]`, in constant time.
    #[inline(always)]
    pub fn center(&self, a: u64) -> i64 {
        // `p/2 - a` wraps (top bit set) iff a > p/2; both are below 2^62.
        let above = sign_mask((self.value / 2).wrapping_sub(a));
        (a as i64).wrapping_sub((self.value & above) as i64)
    }

    /// `1/p` as `f64`, the constant of [`Self::reduce_centered_f64`].
    #[inline(always)]
    pub fn reciprocal(&self) -> f64 {
        1.0 / self.value as f64
    }

    /// [`Self::reduce_centered`] for `other < 2^52` and `p < 2^52`, with `inv =
    /// self.reciprocal()`: the quotient is estimated in `f64` (exact operands below 2^53,
    /// off by at most one) and corrected with two masked additions, so that a loop of it
    /// vectorizes (no 128-bit product). Constant time like `reduce_centered`.
    #[inline(always)]
    pub fn reduce_centered_f64(&self, x: u64, other: u64, inv: f64) -> u64 {
        let p = self.value;
        self.centered_with(x, other, |magnitude| {
            // q within one of floor(magnitude / p): r in [-p, 2p)
            let q = (magnitude as f64 * inv) as u64;
            let r = magnitude.wrapping_sub(q.wrapping_mul(p));
            let r = r.wrapping_add(p & sign_mask(r));
            csub(r, p)
        })
    }

    /// Reduces a value `x` known to lie in `[0, other)` (a residue of another prime,
    /// centered around `other/2`) into this modulus, keeping the centered meaning:
    /// values above `other/2` stand for `x - other`.
    #[inline(always)]
    pub fn reduce_centered(&self, x: u64, other: u64) -> u64 {
        self.centered_with(x, other, |magnitude| self.reduce(magnitude))
    }

    /// [`Self::reduce_centered`] for `other / 2 < 2p` (a special prime a bit wider than this
    /// one): the magnitude is below `2p`, one masked subtraction reduces it.
    #[inline(always)]
    pub fn reduce_centered_below_twice(&self, x: u64, other: u64) -> u64 {
        self.centered_with(x, other, |magnitude| csub(magnitude, self.value))
    }

    /// The centered meaning of `x` modulo `other` carried into this modulus, branch-free:
    /// `reduce` takes the magnitude `|x|` (below `other / 2 + 1`) to its residue, which is
    /// negated back for values above `other / 2`.
    #[inline(always)]
    fn centered_with(&self, x: u64, other: u64, reduce: impl FnOnce(u64) -> u64) -> u64 {
        let neg = ((x > other / 2) as u64).wrapping_neg();
        let magnitude = x ^ ((x ^ other.wrapping_sub(x)) & neg);
        let r = reduce(magnitude);
        r ^ ((r ^ self.neg(r)) & neg)
    }
}

/// All ones if the top bit of `d` is set (a wrapped subtraction of values `< 2^63`).
#[inline(always)]
fn sign_mask(d: u64) -> u64 {
    ((d as i64) >> 63) as u64
}

/// `x mod p` for `x < 2p`, `p < 2^63`, without a branch.
#[inline(always)]
pub fn csub(x: u64, p: u64) -> u64 {
    let d = x.wrapping_sub(p);
    d.wrapping_add(p & sign_mask(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRIMES: [u64; 4] = [65537, 1099511480321, 1125899906826241, 1152921504606830593];

    proptest! {
        #[test]
        fn reduce_matches_remainder(x in any::<u128>(), i in 0usize..4) {
            let m = Modulus::new(PRIMES[i]);
            prop_assert_eq!(m.reduce_u128(x) as u128, x % PRIMES[i] as u128);
        }

        #[test]
        fn centered_reduction_matches(x in any::<u64>(), i in 0usize..4, j in 0usize..4) {
            let (p, other) = (PRIMES[i], PRIMES[j]);
            let x = x % other;
            let signed = if x > other / 2 { x as i128 - other as i128 } else { x as i128 };
            let m = Modulus::new(p);
            prop_assert_eq!(m.reduce_centered(x, other) as i128, signed.rem_euclid(p as i128));
            let a = x % p;
            let b = (x >> 7) % p;
            prop_assert_eq!(m.add(a, b) as u128, (a as u128 + b as u128) % p as u128);
            prop_assert_eq!(m.sub(a, b) as i128, (a as i128 - b as i128).rem_euclid(p as i128));
            prop_assert_eq!(m.neg(a) as i128, (-(a as i128)).rem_euclid(p as i128));
        }

        #[test]
        fn f64_centered_reduction_matches(x in any::<u64>(), i in 0usize..3, j in 0usize..3) {
            // the primes below 2^52; x at random and at the edges of the centered range
            let (p, other) = (PRIMES[i], PRIMES[j]);
            let m = Modulus::new(p);
            for x in [x % other, 0, 1, other / 2, other / 2 + 1, other - 1] {
                prop_assert_eq!(
                    m.reduce_centered_f64(x, other, m.reciprocal()),
                    m.reduce_centered(x, other)
                );
            }
        }

        #[test]
        fn reduce_u64_matches_remainder(x in any::<u64>(), i in 0usize..4) {
            prop_assert_eq!(Modulus::new(PRIMES[i]).reduce(x), x % PRIMES[i]);
        }

        #[test]
        fn mul_and_shoup_match(a in any::<u64>(), b in any::<u64>(), i in 0usize..4) {
            let p = PRIMES[i];
            let m = Modulus::new(p);
            let (a, b) = (a % p, b % p);
            let want = (a as u128 * b as u128 % p as u128) as u64;
            prop_assert_eq!(m.mul(a, b), want);
            prop_assert_eq!(m.mul_shoup(a, b, m.shoup(b)), want);
        }

        #[test]
        fn inverse_is_inverse(a in 1u64..u64::MAX, i in 0usize..4) {
            let m = Modulus::new(PRIMES[i]);
            if let Some(inv) = m.inv(a) {
                prop_assert_eq!(m.mul(m.reduce(a), inv), 1);
            }
        }

        #[test]
        fn signed_round_trip(a in -(1i64 << 38)..(1i64 << 38), i in 1usize..4) {
            let m = Modulus::new(PRIMES[i]);
            prop_assert_eq!(m.center(m.from_i64(a)), a);
        }

        #[test]
        fn from_i64_matches_rem_euclid(a in any::<i64>(), i in 0usize..4) {
            let m = Modulus::new(PRIMES[i]);
            prop_assert_eq!(m.from_i64(a) as i128, (a as i128).rem_euclid(PRIMES[i] as i128));
        }

        #[test]
        fn center_matches_the_branching_definition(a in any::<u64>(), i in 0usize..4) {
            let p = PRIMES[i];
            let m = Modulus::new(p);
            let a = a % p;
            let want = if a > p / 2 { a as i64 - p as i64 } else { a as i64 };
            prop_assert_eq!(m.center(a), want);
        }
    }
}
