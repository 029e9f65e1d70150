//! The running sum of ciphertext tensor products inside a [`crate::ProductAccumulator`]:
//! lazily accumulated per prime with the [`crate::math::kernels`] kernel where every prime is
//! below its bound (AVX-512 IFMA when the CPU has it), fully reduced after every product
//! otherwise.

use crate::errors::{HeError, Result};
use crate::evaluator::{ProductOperand, Residues};
use crate::math::kernels::{LazyTensor, MODULUS_BOUND, NarrowPair, TensorPair, detected_path};
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

    /// Adds `a ⊗ b` for every pair `(a, b)` of `pairs` (shapes checked by the caller:
    /// `primes.len()` residues of degree `n` per polynomial). The lazy sum makes one
    /// [`LazyTensor::add_batch`] call per prime (and one
    /// [`LazyTensor::add_batch_narrow`] for the pairs with a compact operand there), a
    /// single pass over its state.
    pub(crate) fn add_batch(
        &mut self,
        pairs: &[(&ProductOperand, &ProductOperand)],
        primes: &[&Prime],
    ) -> Result<()> {
        match self {
            Self::Reduced([d0, d1, d2]) => {
                for (a, b) in pairs {
                    let (a, b) = (a.wide_polys(), b.wide_polys());
                    d0.mul_acc(&a[0], &b[0], primes);
                    d1.mul_acc(&a[0], &b[1], primes);
                    d1.mul_acc(&a[1], &b[0], primes);
                    d2.mul_acc(&a[1], &b[1], primes);
                }
                Ok(())
            }
            Self::Lazy(lazy) => {
                for (j, acc) in lazy.iter_mut().enumerate() {
                    // the rare pair of two compact operands: one side widened
                    let widened: Vec<[Vec<u64>; 2]> = pairs
                        .iter()
                        .filter(|(a, b)| narrow(a, j).is_some() && narrow(b, j).is_some())
                        .map(|(_, b)| [0, 1].map(|poly| widen(b.residues(poly, j))))
                        .collect();
                    let mut widened = widened.iter();
                    let mut wide: Vec<TensorPair<'_>> = Vec::with_capacity(pairs.len());
                    let mut narrowed: Vec<NarrowPair<'_>> = Vec::new();
                    for (a, b) in pairs {
                        match (narrow(a, j), narrow(b, j)) {
                            (None, None) => wide.push((wide_of(a, j)?, wide_of(b, j)?)),
                            (Some(g), None) => narrowed.push((g, wide_of(b, j)?)),
                            // the tensor is symmetric in its two factors
                            (None, Some(g)) => narrowed.push((g, wide_of(a, j)?)),
                            (Some(g), Some(_)) => {
                                let q = widened.next().ok_or(HeError::LengthMismatch {
                                    what: "widened product operands",
                                    expected: 1,
                                    actual: 0,
                                })?;
                                narrowed.push((g, [&q[0][..], &q[1][..]]));
                            }
                        }
                    }
                    acc.add_batch(&wide)?;
                    acc.add_batch_narrow(&narrowed)?;
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

/// Both residue slices of `op` on prime `j` if they are `u32` words (a compact operand).
fn narrow(op: &ProductOperand, j: usize) -> Option<[&[u32]; 2]> {
    match (op.residues(0, j), op.residues(1, j)) {
        (Residues::Narrow(r0), Residues::Narrow(r1)) => Some([r0, r1]),
        _ => None,
    }
}

/// Both residue slices of `op` on prime `j` as `u64` words (an error if they are not).
fn wide_of(op: &ProductOperand, j: usize) -> Result<[&[u64]; 2]> {
    match (op.residues(0, j), op.residues(1, j)) {
        (Residues::Wide(r0), Residues::Wide(r1)) => Ok([r0, r1]),
        _ => Err(HeError::LengthMismatch {
            what: "u64 residues of a product operand",
            expected: 2,
            actual: 0,
        }),
    }
}

/// Residues as `u64` words.
fn widen(r: Residues<'_>) -> Vec<u64> {
    match r {
        Residues::Wide(r) => r.to_vec(),
        Residues::Narrow(r) => r.iter().map(|&x| u64::from(x)).collect(),
    }
}
