//! The running sum of ciphertext tensor products inside a [`crate::ProductAccumulator`]:
//! lazily accumulated per prime with the [`crate::math::kernels`] kernel where every prime is
//! below its bound (AVX-512 IFMA when the CPU has it), fully reduced after every product
//! otherwise.

use crate::errors::Result;
use crate::math::kernels::{LazyTensor, MODULUS_BOUND, TensorPair, detected_path};
use crate::math::ntt::Prime;
use crate::math::poly::RnsPoly;

/// `Σ a ⊗ b` for two-polynomial operands: the three tensor polynomials `d0 = Σ a0·b0`,
/// `d1 = Σ a0·b1 + a1·b0`, `d2 = Σ a1·b1`, residue by residue (NTT form).
#[derive(Clone, Debug)]
pub(crate) enum TensorSum {
    /// Reduced after every product (tfhe-ntt's multiply-accumulate): any prime size.
    Reduced([RnsPoly; 3]),
    /// One lazy accumulator per prime, reduced once when read.
    Lazy(Vec<LazyTensor>),
}

impl TensorSum {
    /// An empty sum over `primes`, degree `n`.
    pub(crate) fn new(primes: &[&Prime], n: usize) -> Result<Self> {
        if primes.iter().all(|p| p.value() < MODULUS_BOUND) && n.is_multiple_of(8) {
            let path = detected_path();
            Ok(Self::Lazy(
                primes
                    .iter()
                    .map(|p| LazyTensor::new(p.value(), n, path))
                    .collect::<Result<Vec<_>>>()?,
            ))
        } else {
            Ok(Self::Reduced(std::array::from_fn(|_| {
                RnsPoly::zero(n, primes.len())
            })))
        }
    }

    /// Adds `a ⊗ b` (shapes checked by the caller: `primes.len()` residues of degree `n`).
    pub(crate) fn add(
        &mut self,
        a: &[RnsPoly; 2],
        b: &[RnsPoly; 2],
        primes: &[&Prime],
    ) -> Result<()> {
        match self {
            Self::Reduced([d0, d1, d2]) => {
                d0.mul_acc(&a[0], &b[0], primes);
                d1.mul_acc(&a[0], &b[1], primes);
                d1.mul_acc(&a[1], &b[0], primes);
                d2.mul_acc(&a[1], &b[1], primes);
                Ok(())
            }
            Self::Lazy(lazy) => {
                for (j, acc) in lazy.iter_mut().enumerate() {
                    acc.add(a[0].comp(j), a[1].comp(j), b[0].comp(j), b[1].comp(j))?;
                }
                Ok(())
            }
        }
    }

    /// Adds `a ⊗ b` for every pair `(a, b)` of `pairs` (shapes checked by the caller, as for
    /// [`add`](Self::add)): the same sum as one `add` per pair. The lazy sum makes one
    /// [`LazyTensor::add_batch`] call per prime, a single pass over its state.
    pub(crate) fn add_batch(
        &mut self,
        pairs: &[(&[RnsPoly; 2], &[RnsPoly; 2])],
        primes: &[&Prime],
    ) -> Result<()> {
        match self {
            Self::Reduced(_) => {
                for (a, b) in pairs {
                    self.add(a, b, primes)?;
                }
                Ok(())
            }
            Self::Lazy(lazy) => {
                let mut residues: Vec<TensorPair<'_>> = Vec::with_capacity(pairs.len());
                for (j, acc) in lazy.iter_mut().enumerate() {
                    residues.clear();
                    residues.extend(pairs.iter().map(|(a, b)| {
                        ([a[0].comp(j), a[1].comp(j)], [b[0].comp(j), b[1].comp(j)])
                    }));
                    acc.add_batch(&residues)?;
                }
                Ok(())
            }
        }
    }

    /// The three reduced tensor polynomials.
    pub(crate) fn polys(&self, n: usize) -> Result<[RnsPoly; 3]> {
        match self {
            Self::Reduced(d) => Ok(d.clone()),
            Self::Lazy(lazy) => {
                let mut out: [RnsPoly; 3] = std::array::from_fn(|_| RnsPoly::zero(n, lazy.len()));
                let [d0, d1, d2] = &mut out;
                for (j, acc) in lazy.iter().enumerate() {
                    acc.finish(d0.comp_mut(j), d1.comp_mut(j), d2.comp_mut(j))?;
                }
                Ok(out)
            }
        }
    }
}
