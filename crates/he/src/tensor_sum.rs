//! The running sum of ciphertext tensor products inside a [`crate::ProductAccumulator`]:
//! lazily accumulated per prime with the [`crate::math::kernels`] kernel where every prime is
//! below its bound (AVX-512 IFMA when the CPU has it), fully reduced after every product
//! otherwise.

use crate::errors::{HeError, Result};
use crate::math::basis::Basis;
use crate::math::kernels::{LazyTensor, MODULUS_BOUND, NarrowPair, TensorPair, detected_path};
use crate::math::poly::RnsPoly;
use crate::product_operand::{ProductOperand, Residues};

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
    pub(crate) fn new(primes: &Basis<'_>, n: usize) -> Result<Self> {
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
        primes: &Basis<'_>,
    ) -> Result<()> {
        Self::add_batch_many(&mut [self], &[pairs], primes)
    }

    /// [`add_batch`](Self::add_batch) of `batches[i]` into `sums[i]`, for every `i`: lazy
    /// sums go through [`LazyTensor::add_batch_many`] prime by prime, so that operands the
    /// batches share are read once per tile of coefficients rather than once per sum.
    pub(crate) fn add_batch_many(
        sums: &mut [&mut TensorSum],
        batches: &[&[(&ProductOperand, &ProductOperand)]],
        primes: &Basis<'_>,
    ) -> Result<()> {
        crate::errors::check_length(
            "tensor sum batches (one per sum)",
            sums.len(),
            batches.len(),
        )?;
        let mut lazy: Vec<&mut Vec<LazyTensor>> = Vec::with_capacity(sums.len());
        let mut lazy_batches = Vec::with_capacity(sums.len());
        for (sum, pairs) in sums.iter_mut().zip(batches) {
            match &mut **sum {
                Self::Reduced([d0, d1, d2]) => {
                    for (a, b) in *pairs {
                        let (a, b) = (a.wide_polys(), b.wide_polys());
                        d0.mul_acc(&a[0], &b[0], primes);
                        d1.mul_acc(&a[0], &b[1], primes);
                        d1.mul_acc(&a[1], &b[0], primes);
                        d2.mul_acc(&a[1], &b[1], primes);
                    }
                }
                Self::Lazy(accs) => {
                    lazy.push(accs);
                    lazy_batches.push(*pairs);
                }
            }
        }
        let batches = lazy_batches;
        for j in 0..primes.len() {
            // the rare pair of two compact operands: one side widened
            let widened: Vec<Vec<[Vec<u64>; 2]>> = batches
                .iter()
                .map(|pairs| {
                    pairs
                        .iter()
                        .filter(|(a, b)| narrow(a, j).is_some() && narrow(b, j).is_some())
                        .map(|(_, b)| [0, 1].map(|poly| widen(b.residues(poly, j))))
                        .collect()
                })
                .collect();
            let mut wide: Vec<Vec<TensorPair<'_>>> = Vec::with_capacity(batches.len());
            let mut narrowed: Vec<Vec<NarrowPair<'_>>> = Vec::with_capacity(batches.len());
            for (pairs, widened) in batches.iter().zip(&widened) {
                let (w, n) = split_by_width(pairs, j, widened)?;
                wide.push(w);
                narrowed.push(n);
            }
            let mut accs = lazy
                .iter_mut()
                .map(|accs| {
                    accs.get_mut(j).ok_or(HeError::LengthMismatch {
                        what: "lazy tensor primes",
                        expected: primes.len(),
                        actual: j,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let wide: Vec<&[TensorPair<'_>]> = wide.iter().map(Vec::as_slice).collect();
            let narrowed: Vec<&[NarrowPair<'_>]> = narrowed.iter().map(Vec::as_slice).collect();
            LazyTensor::add_batch_many(&mut accs, &wide)?;
            LazyTensor::add_batch_narrow_many(&mut accs, &narrowed)?;
        }
        Ok(())
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

/// The pairs of one batch on prime `j`, split into those with `u64` residues on both sides
/// and those with a compact (`u32`) side; `widened` holds, in order, the query side of
/// each pair compact on both sides, widened to `u64`.
fn split_by_width<'a>(
    pairs: &[(&'a ProductOperand, &'a ProductOperand)],
    j: usize,
    widened: &'a [[Vec<u64>; 2]],
) -> Result<(Vec<TensorPair<'a>>, Vec<NarrowPair<'a>>)> {
    let mut widened = widened.iter();
    let mut wide: Vec<TensorPair<'a>> = Vec::with_capacity(pairs.len());
    let mut narrowed: Vec<NarrowPair<'a>> = Vec::new();
    for &(a, b) in pairs {
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
    Ok((wide, narrowed))
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
