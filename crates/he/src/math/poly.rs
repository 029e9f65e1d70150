//! Polynomials in RNS form: one residue polynomial of `n` coefficients per prime, stored
//! contiguously. A polynomial does not know its primes; the caller passes them.

use super::ntt::{Prime, permute};
use super::simd::vectorized;
use zeroize::Zeroize;

/// An element of `Z_M[X]/(X^n + 1)` for `M` a product of primes, stored residue by residue.
#[derive(Clone, Debug, PartialEq, Eq, Zeroize)]
pub struct RnsPoly {
    data: Vec<u64>,
    n: usize,
}

impl RnsPoly {
    /// The zero polynomial over `count` primes.
    pub fn zero(n: usize, count: usize) -> Self {
        Self {
            data: vec![0; n * count],
            n,
        }
    }

    /// Degree `n`.
    #[inline]
    pub fn degree(&self) -> usize {
        self.n
    }

    /// Number of residue polynomials.
    #[inline]
    pub fn count(&self) -> usize {
        self.data.len() / self.n
    }

    /// All residues, prime after prime.
    #[inline]
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// All residues, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Residue polynomial `i`.
    #[inline]
    pub fn comp(&self, i: usize) -> &[u64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// Residue polynomial `i`, mutable.
    #[inline]
    pub fn comp_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }

    /// Residue polynomials in order.
    #[inline]
    pub fn comps(&self) -> std::slice::ChunksExact<'_, u64> {
        self.data.chunks_exact(self.n)
    }

    /// Residue polynomials in order, mutable.
    #[inline]
    pub fn comps_mut(&mut self) -> std::slice::ChunksExactMut<'_, u64> {
        self.data.chunks_exact_mut(self.n)
    }

    /// Keeps only the first `count` residues.
    pub fn truncate(&mut self, count: usize) {
        self.data.truncate(count * self.n);
    }

    /// Appends the residues of `other`.
    pub fn extend_from(&mut self, other: &RnsPoly) {
        self.data.extend_from_slice(&other.data);
    }

    /// A copy of residues `range`.
    pub fn slice(&self, start: usize, end: usize) -> RnsPoly {
        RnsPoly {
            data: self.data[start * self.n..end * self.n].to_vec(),
            n: self.n,
        }
    }

    /// Forward NTT of every residue.
    pub fn forward(&mut self, primes: &[&Prime]) {
        for (c, p) in self.comps_mut().zip(primes) {
            p.forward(c);
        }
    }

    /// Inverse NTT of every residue.
    pub fn backward(&mut self, primes: &[&Prime]) {
        for (c, p) in self.comps_mut().zip(primes) {
            p.backward(c);
        }
    }

    /// `self += other`.
    pub fn add_assign(&mut self, other: &RnsPoly, primes: &[&Prime]) {
        vectorized(
            #[inline(always)]
            || {
                for ((a, b), p) in self.comps_mut().zip(other.comps()).zip(primes) {
                    for (x, &y) in a.iter_mut().zip(b) {
                        *x = p.m.add(*x, y);
                    }
                }
            },
        );
    }

    /// `self -= other`.
    pub fn sub_assign(&mut self, other: &RnsPoly, primes: &[&Prime]) {
        vectorized(
            #[inline(always)]
            || {
                for ((a, b), p) in self.comps_mut().zip(other.comps()).zip(primes) {
                    for (x, &y) in a.iter_mut().zip(b) {
                        *x = p.m.sub(*x, y);
                    }
                }
            },
        );
    }

    /// `self = -self`.
    pub fn neg_assign(&mut self, primes: &[&Prime]) {
        vectorized(
            #[inline(always)]
            || {
                for (a, p) in self.comps_mut().zip(primes) {
                    for x in a.iter_mut() {
                        *x = p.m.neg(*x);
                    }
                }
            },
        );
    }

    /// `self *= other` pointwise (NTT form).
    pub fn mul_assign(&mut self, other: &RnsPoly, primes: &[&Prime]) {
        for ((a, b), p) in self.comps_mut().zip(other.comps()).zip(primes) {
            p.mul_assign(a, b);
        }
    }

    /// `self += a * b` pointwise (NTT form).
    pub fn mul_acc(&mut self, a: &RnsPoly, b: &RnsPoly, primes: &[&Prime]) {
        for (((acc, x), y), p) in self.comps_mut().zip(a.comps()).zip(b.comps()).zip(primes) {
            p.mul_acc(acc, x, y);
        }
    }

    /// `self *= c_i` residue by residue, for per-prime constants `c` (each `< p_i`).
    pub fn mul_scalar_assign(&mut self, c: &[u64], primes: &[&Prime]) {
        for ((a, &c), p) in self.comps_mut().zip(c).zip(primes) {
            p.mul_const_assign(a, c);
        }
    }

    /// `self = (self - other) * c_i` residue by residue (mod-down and rescale).
    pub fn sub_mul_scalar_assign(&mut self, other: &RnsPoly, c: &[u64], primes: &[&Prime]) {
        self.sub_assign(other, primes);
        self.mul_scalar_assign(c, primes);
    }

    /// The automorphism with NTT-domain permutation `perm` (NTT form in, NTT form out).
    pub fn permuted(&self, perm: &[u32]) -> RnsPoly {
        // every word is written: no zero fill first
        let mut data = Vec::with_capacity(self.data.len());
        for a in self.comps() {
            permute(&mut data, a, perm);
        }
        RnsPoly { data, n: self.n }
    }

    /// Fills residues with the small signed coefficients `c` (coefficient form).
    pub fn from_small(c: &[i64], primes: &[&Prime]) -> RnsPoly {
        let mut out = RnsPoly::zero(c.len(), primes.len());
        for (o, p) in out.comps_mut().zip(primes) {
            for (x, &v) in o.iter_mut().zip(c) {
                *x = p.m.from_i64(v);
            }
        }
        out
    }
}
