//! BFV plaintexts prepared once (NTT form at one level) for many products: the query
//! expansion multiplies thousands of ciphertexts by the same monomial
//! ([`crate::Evaluator::mul_plain_operand`]). Private retrieval's first dimension, where
//! records are multiplied by selectors in bulk, has its own packed path
//! ([`crate::narrow_products`]).

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, Plaintext};
use zeroize::Zeroizing;

/// A BFV plaintext in NTT form at one level, prepared once for many products
/// ([`crate::Evaluator::mul_plain_operand`]) and reloadable in place ([`PlainOperand::load`]).
#[derive(Clone, Debug)]
pub struct PlainOperand {
    poly: Zeroizing<RnsPoly>,
    level: usize,
    fingerprint: [u8; 32],
}

impl PlainOperand {
    /// A zero operand at `level`, to [`Self::load`] plaintexts into.
    pub fn zero(ctx: &Context, level: usize) -> Result<Self> {
        if ctx.scheme() != Scheme::Bfv {
            return Err(HeError::WrongScheme {
                operation: "prepared plaintext products",
                scheme: "CKKS",
            });
        }
        ctx.level(level)?;
        Ok(Self {
            poly: Zeroizing::new(RnsPoly::zero(ctx.degree(), level + 1)),
            level,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// `pt`'s coefficients (a BFV plaintext) in NTT form at `level`.
    pub fn new(ctx: &Context, pt: &Plaintext, level: usize) -> Result<Self> {
        let mut op = Self::zero(ctx, level)?;
        op.load(ctx, &crate::BfvEncoder::new(ctx)?.decode_coefficients(pt)?)?;
        Ok(op)
    }

    /// Replaces the operand by the plaintext of coefficients `values` (each below `t`,
    /// lifted centered; missing ones are zero), without allocating.
    pub fn load(&mut self, ctx: &Context, values: &[u64]) -> Result<()> {
        ctx.check_fingerprint(&self.fingerprint)?;
        crate::bfv::check_coefficients(ctx, values)?;
        let t = ctx.params().plain_modulus();
        let q = ctx.q_primes(self.level);
        let half = t / 2;
        for (j, prime) in q.iter().enumerate() {
            let p = prime.value();
            let out = self.poly.comp_mut(j);
            for (o, &v) in out.iter_mut().zip(values) {
                // centered: v > t/2 stands for v − t
                *o = if v > half { p - (t - v) } else { v };
            }
            out[values.len()..].fill(0);
            prime.forward(out);
        }
        Ok(())
    }

    /// The level of the operand.
    pub fn level(&self) -> usize {
        self.level
    }
}

impl crate::Evaluator {
    /// `ct · op` for a plaintext prepared once ([`PlainOperand`]): no NTT per product (query
    /// expansion multiplies thousands of ciphertexts by the same monomial).
    pub fn mul_plain_operand(&self, ct: &Ciphertext, op: &PlainOperand) -> Result<Ciphertext> {
        let mut out = ct.clone();
        self.mul_plain_operand_assign(&mut out, op)?;
        Ok(out)
    }

    /// [`Self::mul_plain_operand`] in place: `ct ← ct · op`.
    pub fn mul_plain_operand_assign(&self, ct: &mut Ciphertext, op: &PlainOperand) -> Result<()> {
        let ctx = self.context();
        ctx.check_ciphertext(ct)?;
        ctx.check_fingerprint(&op.fingerprint)?;
        if ct.meta.level != op.level {
            return Err(HeError::LevelMismatch {
                expected: op.level,
                actual: ct.meta.level,
            });
        }
        let q = ctx.q_primes(op.level);
        for p in &mut ct.polys {
            p.mul_assign(&op.poly, &q);
        }
        ct.clear_forms();
        Ok(())
    }
}
