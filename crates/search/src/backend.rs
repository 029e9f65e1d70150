//! The scheme abstraction the engine is written against: a client side that encrypts and
//! decrypts slot vectors (it holds the secret key) and a server side that evaluates (it holds
//! only evaluation keys). The no-op scheme puts plaintext slot vectors in place of
//! ciphertexts, so layout logic is tested fast and exactly; BFV and CKKS implement the same
//! traits in [`crate::he_backend`].

use crate::errors::Result;
use crate::slots::{Slot, SlotShape};
use rayon::prelude::*;
use std::marker::PhantomData;

/// What a slot vector is encrypted as: the two factors of the encrypted products may be
/// encrypted differently (CKKS gives them different scales, see
/// [`crate::he_backend::CkksCipher`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A gallery diagonal: multiplied once, never rotated.
    Gallery,
    /// The query: rotated by the baby steps (key switching), then multiplied.
    Query,
}

/// One giant step: the product pairs summed, and the rotation of their sum.
pub type GiantStep<'a, O> = (Vec<(&'a O, &'a O)>, i64);

/// Client side: encryption and decryption of slot vectors.
pub trait SlotCipher: Send + Sync {
    /// Slot value type.
    type Slot: Slot;
    /// Ciphertext type.
    type Ct: Clone + Send + Sync;
    /// The slot shape of a ciphertext.
    fn shape(&self) -> SlotShape;
    /// Encrypts a full slot vector (`shape().len()` values) in the given role.
    fn encrypt(&self, slots: &[Self::Slot], role: Role) -> Result<Self::Ct>;
    /// Decrypts to the full slot vector.
    fn decrypt(&self, ct: &Self::Ct) -> Result<Vec<Self::Slot>>;
}

/// Server side: the homomorphic operations of the matrix-vector product.
pub trait SlotEvaluator: Send + Sync {
    /// Ciphertext type.
    type Ct: Clone + Send + Sync;
    /// A ciphertext prepared as a factor of products.
    type Operand: Send + Sync;
    /// Rotations of one ciphertext by each of `steps` (hoisted: decomposed once).
    fn rotations(&self, ct: &Self::Ct, steps: &[i64]) -> Result<Vec<Self::Ct>>;
    /// Prepares a factor of products (taking the ciphertext, whose memory it may reuse).
    fn operand(&self, ct: Self::Ct) -> Result<Self::Operand>;
    /// Prepares a gallery ciphertext to be kept in memory as a factor of products: as
    /// [`operand`](Self::operand), in the most compact form the products read (HE schemes:
    /// residues on primes below `2^32` as `u32` words).
    fn gallery_operand(&self, ct: Self::Ct) -> Result<Self::Operand> {
        self.operand(ct)
    }
    /// `Σ a·b`, reduced and relinearized once.
    fn sum_of_products(&self, pairs: &[(&Self::Operand, &Self::Operand)]) -> Result<Self::Ct>;
    /// `Σ_k rotate(Σ pairs_k, step_k)`: the giant steps of a group, in parallel. HE schemes
    /// keep the relinearizations and rotations in `Q ∪ P` and divide by `P` once
    /// (`blindsight_he::rotation_sum`).
    fn sum_of_rotated_products(&self, giants: &[GiantStep<'_, Self::Operand>]) -> Result<Self::Ct> {
        let parts = giants
            .par_iter()
            .map(|(pairs, step)| self.rotate(&self.sum_of_products(pairs)?, *step))
            .collect::<Result<Vec<_>>>()?;
        self.add_all(parts)
    }
    /// The sum of `parts` (at least one).
    fn add_all(&self, parts: Vec<Self::Ct>) -> Result<Self::Ct> {
        let mut it = parts.into_iter();
        let first = it
            .next()
            .ok_or_else(|| crate::errors::SearchError::Layout {
                reason: "a sum of no ciphertexts".into(),
            })?;
        it.try_fold(first, |acc, x| self.add(&acc, &x))
    }
    /// Rotation by `step`.
    fn rotate(&self, ct: &Self::Ct, step: i64) -> Result<Self::Ct>;
    /// Whether [`Self::rotate`] can rotate by `step` (HE schemes: whether its Galois key is
    /// held).
    fn can_rotate(&self, step: i64) -> bool {
        let _ = step;
        true
    }
    /// `a + b`.
    fn add(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct>;
    /// The largest trace [`Self::finish`] can take (a power of two; 1 if none).
    fn max_trace(&self) -> usize;
    /// Makes a result ready to send: rescale (CKKS), switch to the smallest modulus and
    /// sum over the row rotations by multiples of `row_len/trace` (`trace` a power of two at
    /// most [`Self::max_trace`]; HE schemes do it by the ring switch of the response, which
    /// makes it `trace` times smaller).
    fn finish(&self, ct: Self::Ct, trace: usize) -> Result<Self::Ct>;
}

/// The no-op scheme: "ciphertexts" are the slot vectors themselves.
#[derive(Clone, Debug)]
pub struct NoOp<S> {
    shape: SlotShape,
    max_trace: usize,
    _slot: PhantomData<S>,
}

impl<S: Slot> NoOp<S> {
    /// A no-op scheme with the slot shape of a real one, taking no trace in `finish`.
    pub fn new(shape: SlotShape) -> Self {
        Self::with_max_trace(shape, 1)
    }

    /// A no-op scheme whose `finish` sums over up to `max_trace` rotations (a power of two),
    /// as the HE schemes' ring switch does.
    pub fn with_max_trace(shape: SlotShape, max_trace: usize) -> Self {
        Self {
            shape,
            max_trace: max_trace.max(1),
            _slot: PhantomData,
        }
    }
}

impl<S: Slot> SlotCipher for NoOp<S> {
    type Slot = S;
    type Ct = Vec<S>;
    fn shape(&self) -> SlotShape {
        self.shape
    }
    fn encrypt(&self, slots: &[S], _role: Role) -> Result<Vec<S>> {
        Ok(slots.to_vec())
    }
    fn decrypt(&self, ct: &Vec<S>) -> Result<Vec<S>> {
        Ok(ct.clone())
    }
}

impl<S: Slot> SlotEvaluator for NoOp<S> {
    type Ct = Vec<S>;
    type Operand = Vec<S>;
    fn rotations(&self, ct: &Vec<S>, steps: &[i64]) -> Result<Vec<Vec<S>>> {
        Ok(steps.iter().map(|&s| self.shape.rotate(ct, s)).collect())
    }
    fn operand(&self, ct: Vec<S>) -> Result<Vec<S>> {
        Ok(ct)
    }
    fn sum_of_products(&self, pairs: &[(&Vec<S>, &Vec<S>)]) -> Result<Vec<S>> {
        let mut acc = vec![S::default(); self.shape.len()];
        for (a, b) in pairs {
            for ((o, &x), &y) in acc.iter_mut().zip(a.iter()).zip(b.iter()) {
                *o = o.add(x.mul(y));
            }
        }
        Ok(acc)
    }
    fn rotate(&self, ct: &Vec<S>, step: i64) -> Result<Vec<S>> {
        Ok(self.shape.rotate(ct, step))
    }
    fn add(&self, a: &Vec<S>, b: &Vec<S>) -> Result<Vec<S>> {
        Ok(a.iter().zip(b).map(|(&x, &y)| x.add(y)).collect())
    }
    fn max_trace(&self) -> usize {
        self.max_trace
    }
    fn finish(&self, ct: Vec<S>, trace: usize) -> Result<Vec<S>> {
        let mut acc = ct.clone();
        for u in 1..trace.max(1) {
            let step = (u * self.shape.row_len / trace) as i64;
            for (o, x) in acc.iter_mut().zip(self.shape.rotate(&ct, step)) {
                *o = o.add(x);
            }
        }
        Ok(acc)
    }
}
