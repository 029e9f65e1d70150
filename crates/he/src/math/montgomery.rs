//! Arithmetic modulo a prime below `2^31` on 64-bit lanes using 32×32→64-bit products only
//! (Montgomery reduction with `R = 2^32`): the one integer multiply AVX2 has in vector form
//! (`vpmuludq`), where a general 64-bit modular product costs it four and a Barrett step.
//! Private retrieval's parameters (`pir-4096`) have only such primes; its key switches and
//! external products sum their products lazily here and reduce once per coefficient.
//!
//! Every function is exact: its results equal [`super::modulus::Modulus`]'s (tested).

use super::modulus::csub;
use super::simd::vectorized;

/// Low 32 bits.
const LOW: u64 = 0xffff_ffff;

/// The product of the low 32-bit halves of `a` and `b` (one `vpmuludq` per 4 or 8 lanes).
#[inline(always)]
fn mul32(a: u64, b: u64) -> u64 {
    (a & LOW) * (b & LOW)
}

/// A prime `p < 2^31` with its Montgomery constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Narrow {
    p: u64,
    /// `−p^-1 mod 2^32`.
    neg_inv: u64,
    /// `2^64 mod p` (`R^2`), which turns a Montgomery residue back into a plain one.
    r2: u64,
}

impl Narrow {
    /// The constants of `p`; `None` unless `p` is odd, above 2 and below `2^31`.
    pub fn new(p: u64) -> Option<Self> {
        if p < 3 || p.is_multiple_of(2) || p >= 1 << 31 {
            return None;
        }
        // p^-1 mod 2^32 by Newton's iteration (each step doubles the correct low bits; an
        // odd p is its own inverse mod 8)
        let mut inv = p;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p.wrapping_mul(inv))) & LOW;
        }
        let neg_inv = (1u64 << 32).wrapping_sub(inv) & LOW;
        let r2 = ((1u128 << 64) % u128::from(p)) as u64;
        Some(Self { p, neg_inv, r2 })
    }

    /// The prime.
    pub fn value(&self) -> u64 {
        self.p
    }

    /// How many products of residues a lazy sum may add to a residue before
    /// [`Self::reduce_lazy`]: `1 + terms · (p − 1)^2` must stay below `p · 2^32`, the bound of
    /// a Montgomery reduction's input.
    pub fn lazy_terms(&self) -> usize {
        let p = u128::from(self.p);
        let room = (p << 32) - p;
        (room / ((p - 1) * (p - 1)).max(1)).min(1 << 20) as usize
    }

    /// `x · 2^-32 mod p` for `x < p · 2^32` (the sum `x + m·p` stays below `2^64` as
    /// `p < 2^31`, and is a multiple of `2^32` by the choice of `m`).
    #[inline(always)]
    fn redc(&self, x: u64) -> u64 {
        let m = mul32(x, self.neg_inv) & LOW;
        let t = (x + mul32(m, self.p)) >> 32;
        csub(t, self.p)
    }

    /// `x mod p` for `x < p · 2^32`.
    #[inline(always)]
    pub fn reduce(&self, x: u64) -> u64 {
        // redc(x) < p and r2 < p: their product is below p^2 < p · 2^32
        self.redc(mul32(self.redc(x), self.r2))
    }

    /// `acc[i] += a[i] · b[i]` without reduction (residues below `p`): the caller adds at
    /// most [`Self::lazy_terms`] products to a reduced word before [`Self::reduce_lazy`].
    pub fn mul_add_lazy(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        vectorized(
            #[inline(always)]
            || {
                for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
                    *o = o.wrapping_add(mul32(x, y));
                }
            },
        );
    }

    /// Reduces every word of a lazy sum (see [`Self::mul_add_lazy`]) modulo `p`.
    pub fn reduce_lazy(&self, acc: &mut [u64]) {
        let this = *self;
        vectorized(
            #[inline(always)]
            || {
                for o in acc.iter_mut() {
                    *o = this.reduce(*o);
                }
            },
        );
    }

    /// `acc[i] = (acc[i] + a[i] · b[i]) mod p` for residues below `p`.
    pub fn mul_acc(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        let this = *self;
        vectorized(
            #[inline(always)]
            || {
                for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
                    *o = this.reduce(*o + mul32(x, y));
                }
            },
        );
    }

    /// `a[i] = a[i] · c mod p` for residues and a constant below `p` (the constant taken to
    /// Montgomery form once: one reduction per word).
    pub fn mul_const_assign(&self, a: &mut [u64], c: u64) {
        let this = *self;
        // c · 2^32 mod p: redc(a · c·2^32) = a · c
        let c_mont = ((u128::from(c % self.p) << 32) % u128::from(self.p)) as u64;
        vectorized(
            #[inline(always)]
            || {
                for x in a.iter_mut() {
                    *x = this.redc(mul32(*x, c_mont));
                }
            },
        );
    }

    /// `a[i] = a[i] · b[i] mod p` for residues below `p`.
    pub fn mul_assign(&self, a: &mut [u64], b: &[u64]) {
        let this = *self;
        vectorized(
            #[inline(always)]
            || {
                for (x, &y) in a.iter_mut().zip(b) {
                    *x = this.reduce(mul32(*x, y));
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::modulus::Modulus;
    use proptest::prelude::*;

    /// Primes below 2^31 of `pir-4096`'s size and at the edges of the range.
    const PRIMES: [u64; 5] = [3, 65537, 134_250_497, 268_369_921, 2_147_483_647];

    #[test]
    fn only_odd_primes_below_2_to_31_have_constants() {
        assert!(Narrow::new(2).is_none());
        assert!(Narrow::new(1 << 31).is_none());
        assert!(Narrow::new((1 << 31) + 11).is_none());
        assert!(Narrow::new(1).is_none());
        for p in PRIMES {
            let n = Narrow::new(p).unwrap();
            assert_eq!(n.value(), p);
            assert!(n.lazy_terms() >= 1, "{p}");
        }
        // a 27-bit prime's sums hold 2^32 / p products: enough for a key switch's digits
        assert_eq!(Narrow::new(134_250_497).unwrap().lazy_terms(), 31);
    }

    proptest! {
        #[test]
        fn reduce_matches_the_remainder(x in any::<u64>(), i in 0usize..5) {
            let n = Narrow::new(PRIMES[i]).unwrap();
            let x = x % (PRIMES[i] << 32);
            prop_assert_eq!(n.reduce(x), x % PRIMES[i]);
        }

        #[test]
        fn products_and_lazy_sums_match_modulus(
            seed in any::<u64>(),
            i in 0usize..5,
            terms in 1usize..8,
        ) {
            let p = PRIMES[i];
            let n = Narrow::new(p).unwrap();
            let m = Modulus::new(p);
            let terms = terms.min(n.lazy_terms());
            let len = 37;
            let mut x = seed | 1;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % p
            };
            // at the top of the range too: p − 1 squared is the largest product
            let mut vecs: Vec<Vec<u64>> = (0..2 * terms + 1)
                .map(|_| (0..len).map(|_| next()).collect())
                .collect();
            vecs[0][0] = p - 1;
            vecs[1][0] = p - 1;
            vecs[2][0] = p - 1;
            let base = vecs[2 * terms].clone();
            let mut want = base.clone();
            let mut lazy = base.clone();
            let mut eager = base.clone();
            for t in 0..terms {
                let (a, b) = (&vecs[2 * t], &vecs[2 * t + 1]);
                for k in 0..len {
                    want[k] = m.add(want[k], m.mul(a[k], b[k]));
                }
                n.mul_add_lazy(&mut lazy, a, b);
                n.mul_acc(&mut eager, a, b);
            }
            n.reduce_lazy(&mut lazy);
            prop_assert_eq!(&lazy, &want);
            prop_assert_eq!(&eager, &want);
            let mut prod = vecs[0].clone();
            n.mul_assign(&mut prod, &vecs[1]);
            for k in 0..len {
                prop_assert_eq!(prod[k], m.mul(vecs[0][k], vecs[1][k]));
            }
            let c = vecs[1][1];
            let mut scaled = vecs[0].clone();
            n.mul_const_assign(&mut scaled, c);
            for k in 0..len {
                prop_assert_eq!(scaled[k], m.mul(vecs[0][k], c));
            }
        }
    }
}
