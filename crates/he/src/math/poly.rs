//! Polynomials in RNS form: one residue polynomial of `n` coefficients per prime, stored
//! contiguously. A polynomial does not know its primes; the caller passes them. It knows its
//! domain: [`Ntt`] (evaluation form, the default: ciphertexts, keys, plaintexts) or
//! [`Coeff`] (coefficients: sampling, base conversion, decoding). Only [`RnsPoly::forward`]
//! and [`RnsPoly::backward`] move between them, and the operations that mean something in
//! one domain only (pointwise products, automorphisms as permutations) exist only there.

use super::basis::Basis;
use super::ntt::permute;
use super::simd::vectorized;
use std::marker::PhantomData;
use zeroize::Zeroize;

/// The domain of a polynomial's residues: [`Ntt`] or [`Coeff`].
pub trait Domain: Copy + std::fmt::Debug + PartialEq + Eq + Send + Sync + 'static {}

/// Evaluation (NTT) form: residues are the polynomial's values at the roots of `X^n + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ntt;

/// Coefficient form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coeff;

impl Domain for Ntt {}
impl Domain for Coeff {}

/// An element of `Z_M[X]/(X^n + 1)` for `M` a product of primes, stored residue by residue,
/// in the domain `D` (NTT form unless said otherwise).
///
/// Pointwise products are taken in NTT form:
///
/// ```
/// use blindsight_he::math::basis::Basis;
/// use blindsight_he::math::ntt::Prime;
/// use blindsight_he::math::poly::RnsPoly;
/// let table = [Prime::new(65537, 32).ok_or("not an NTT prime")?];
/// let q = Basis::all(&table);
/// let mut c = vec![0; 32];
/// c[..2].copy_from_slice(&[1, 2]);
/// let x = RnsPoly::from_small(&c, &q).forward(&q);
/// let mut acc = RnsPoly::zero(32, 1);
/// acc.mul_acc(&x, &x, &q);
/// let square = acc.backward(&q);
/// assert_eq!(&square.comp(0)[..3], &[1, 4, 4]);
/// # Ok::<(), &str>(())
/// ```
///
/// and a product of coefficient-form polynomials does not compile:
///
/// ```compile_fail
/// use blindsight_he::math::basis::Basis;
/// use blindsight_he::math::ntt::Prime;
/// use blindsight_he::math::poly::{Coeff, RnsPoly};
/// let table = [Prime::new(65537, 32).ok_or("not an NTT prime")?];
/// let q = Basis::all(&table);
/// let x = RnsPoly::from_small(&[1; 32], &q);
/// let mut acc = RnsPoly::<Coeff>::zero(32, 1);
/// acc.mul_acc(&x, &x, &q);
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Zeroize)]
pub struct RnsPoly<D: Domain = Ntt> {
    data: Vec<u64>,
    n: usize,
    #[zeroize(skip)]
    domain: PhantomData<D>,
}

impl<D: Domain> RnsPoly<D> {
    /// The zero polynomial over `count` primes.
    pub fn zero(n: usize, count: usize) -> Self {
        Self {
            data: vec![0; n * count],
            n,
            domain: PhantomData,
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
    pub fn extend_from(&mut self, other: &RnsPoly<D>) {
        self.data.extend_from_slice(&other.data);
    }

    /// A copy of residues `range`.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        Self {
            data: self.data[start * self.n..end * self.n].to_vec(),
            n: self.n,
            domain: PhantomData,
        }
    }

    /// One prime per residue: checked in debug builds (the tests), where a mismatch would
    /// otherwise pair residues with the wrong primes silently; the release kernels rely on
    /// the checks at the API boundary (a ciphertext's residues against its level).
    #[inline(always)]
    fn check_basis(&self, primes: &Basis<'_>) {
        debug_assert_eq!(self.count(), primes.len(), "one prime per residue");
    }

    /// Moves the residues out, leaving no residues behind (for values inside a
    /// `Zeroizing` wrapper: the residues move without a copy, nothing is left to clear).
    pub(crate) fn take(&mut self) -> Self {
        Self {
            data: std::mem::take(&mut self.data),
            n: self.n,
            domain: PhantomData,
        }
    }

    /// The same residues read in the other domain `E`: for residues written through
    /// [`Self::data_mut`] or [`Self::comps_mut`] by a transform done outside this type.
    pub(crate) fn assume_domain<E: Domain>(self) -> RnsPoly<E> {
        RnsPoly {
            data: self.data,
            n: self.n,
            domain: PhantomData,
        }
    }

    /// `self += other`.
    pub fn add_assign(&mut self, other: &RnsPoly<D>, primes: &Basis<'_>) {
        self.check_basis(primes);
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
    pub fn sub_assign(&mut self, other: &RnsPoly<D>, primes: &Basis<'_>) {
        self.check_basis(primes);
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
    pub fn neg_assign(&mut self, primes: &Basis<'_>) {
        self.check_basis(primes);
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

    /// `self *= c_i` residue by residue, for per-prime constants `c` (each `< p_i`).
    pub fn mul_scalar_assign(&mut self, c: &[u64], primes: &Basis<'_>) {
        self.check_basis(primes);
        for ((a, &c), p) in self.comps_mut().zip(c).zip(primes) {
            p.mul_const_assign(a, c);
        }
    }

    /// `self = (self - other) * c_i` residue by residue (mod-down and rescale).
    pub fn sub_mul_scalar_assign(&mut self, other: &RnsPoly<D>, c: &[u64], primes: &Basis<'_>) {
        self.sub_assign(other, primes);
        self.mul_scalar_assign(c, primes);
    }
}

impl RnsPoly<Coeff> {
    /// Forward NTT of every residue: the polynomial in evaluation form.
    pub fn forward(mut self, primes: &Basis<'_>) -> RnsPoly<Ntt> {
        self.check_basis(primes);
        for (c, p) in self.comps_mut().zip(primes) {
            p.forward(c);
        }
        self.assume_domain()
    }

    /// Fills residues with the small signed coefficients `c` (coefficient form).
    pub fn from_small(c: &[i64], primes: &Basis<'_>) -> Self {
        let mut out = Self::zero(c.len(), primes.len());
        for (o, p) in out.comps_mut().zip(primes) {
            for (x, &v) in o.iter_mut().zip(c) {
                *x = p.m.from_i64(v);
            }
        }
        out
    }
}

impl RnsPoly<Ntt> {
    /// Inverse NTT of every residue: the polynomial's coefficients.
    pub fn backward(mut self, primes: &Basis<'_>) -> RnsPoly<Coeff> {
        self.check_basis(primes);
        for (c, p) in self.comps_mut().zip(primes) {
            p.backward(c);
        }
        self.assume_domain()
    }

    /// `self *= other` pointwise (NTT form).
    pub fn mul_assign(&mut self, other: &Self, primes: &Basis<'_>) {
        self.check_basis(primes);
        for ((a, b), p) in self.comps_mut().zip(other.comps()).zip(primes) {
            p.mul_assign(a, b);
        }
    }

    /// `self += a * b` pointwise (NTT form).
    pub fn mul_acc(&mut self, a: &Self, b: &Self, primes: &Basis<'_>) {
        self.check_basis(primes);
        for (((acc, x), y), p) in self.comps_mut().zip(a.comps()).zip(b.comps()).zip(primes) {
            p.mul_acc(acc, x, y);
        }
    }

    /// The automorphism with NTT-domain permutation `perm` (NTT form in, NTT form out).
    pub fn permuted(&self, perm: &[u32]) -> Self {
        // every word is written: no zero fill first
        let mut data = Vec::with_capacity(self.data.len());
        for a in self.comps() {
            permute(&mut data, a, perm);
        }
        RnsPoly {
            data,
            n: self.n,
            domain: PhantomData,
        }
    }
}
