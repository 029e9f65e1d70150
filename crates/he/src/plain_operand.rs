//! Lazy sums of plaintext × ciphertext products on narrow primes, for private retrieval's
//! first dimension: each record (a [`PlainOperand`], transformed once into a reusable
//! buffer) is multiplied into a few accumulators by a selector ciphertext.
//!
//! On primes below `2^32` a product of two residues is below `2^64` and is computed by one
//! 32×32→64-bit vector multiply (`vpmuludq`); the accumulators add products without
//! reducing them until one more could overflow a `u64`: after a reduction a word is below
//! `p`, so `⌊(2^64 − p) / (p − 1)^2⌋` products fit (1 024 on 27-bit primes). Wider primes
//! reduce after every product.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::math::simd::vectorized;
use crate::meta::Meta;
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, Plaintext};
use zeroize::Zeroizing;

/// A BFV plaintext in NTT form at one level, prepared once for many products
/// ([`PlainAccumulator::add`]) and reloadable in place ([`PlainOperand::load`]).
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

/// A lazy sum of `ciphertext × plaintext` products at one level (see the module's
/// documentation).
#[derive(Clone, Debug)]
pub struct PlainAccumulator {
    ctx: Context,
    level: usize,
    /// `[c_0, c_1]`, unreduced `u64` sums.
    acc: [RnsPoly; 2],
    /// Products since the last reduction.
    pending: usize,
    /// Most products between two reductions (1 on primes of 32 bits or more).
    limit: usize,
    /// Whether every prime is below `2^32` (the lazy path).
    narrow: bool,
    products: usize,
    scale: Option<f64>,
}

impl PlainAccumulator {
    /// An empty accumulator at `level`.
    pub fn new(ctx: &Context, level: usize) -> Result<Self> {
        let q = ctx.q_primes(level);
        let narrow = q.iter().all(|p| p.value() < 1 << 32);
        let limit = if narrow {
            q.iter()
                .map(|p| {
                    let m = u128::from(p.value() - 1);
                    ((u128::from(u64::MAX) - m) / (m * m)).min(1 << 20) as usize
                })
                .min()
                .unwrap_or(1)
                .max(1)
        } else {
            1
        };
        let n = ctx.degree();
        Ok(Self {
            ctx: ctx.clone(),
            level,
            acc: [RnsPoly::zero(n, level + 1), RnsPoly::zero(n, level + 1)],
            pending: 0,
            limit,
            narrow,
            products: 0,
            scale: None,
        })
    }

    /// Products added so far.
    pub fn products(&self) -> usize {
        self.products
    }

    fn reduce(&mut self) {
        let q = self.ctx.q_primes(self.level);
        for poly in &mut self.acc {
            for (j, prime) in q.iter().enumerate() {
                for v in poly.comp_mut(j) {
                    *v = prime.m.reduce(*v);
                }
            }
        }
        self.pending = 0;
    }

    /// Adds `ct · op`.
    pub fn add(&mut self, ct: &Ciphertext, op: &PlainOperand) -> Result<()> {
        self.ctx.check_ciphertext(ct)?;
        self.ctx.check_fingerprint(&op.fingerprint)?;
        if ct.meta.level != self.level || op.level != self.level || ct.polys.len() != 2 {
            return Err(HeError::LevelMismatch {
                expected: self.level,
                actual: if op.level == self.level {
                    ct.meta.level
                } else {
                    op.level
                },
            });
        }
        if self.pending == self.limit {
            self.reduce();
        }
        let q = self.ctx.q_primes(self.level);
        for (acc, c) in self.acc.iter_mut().zip(&ct.polys) {
            for (j, prime) in q.iter().enumerate() {
                let (a, b, out) = (c.comp(j), op.poly.comp(j), acc.comp_mut(j));
                if self.narrow {
                    mul_add_narrow(out, a, b);
                } else {
                    prime.mul_acc(out, a, b);
                }
            }
        }
        self.pending += 1;
        self.products += 1;
        self.scale = Some(ct.meta.scale);
        Ok(())
    }

    /// The sum as a ciphertext (zero if nothing was added).
    pub fn finish(mut self) -> Result<Ciphertext> {
        self.reduce();
        let [c0, c1] = self.acc;
        Ok(Ciphertext {
            meta: Meta::new(&self.ctx, self.level, self.scale.unwrap_or(1.0))?,
            polys: vec![c0, c1],
            seed: None,
            rounded: None,
            subring: None,
        })
    }
}

impl crate::Evaluator {
    /// `ct · op` for a plaintext prepared once ([`PlainOperand`]): no NTT per product (query
    /// expansion multiplies thousands of ciphertexts by the same monomial).
    pub fn mul_plain_operand(&self, ct: &Ciphertext, op: &PlainOperand) -> Result<Ciphertext> {
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
        let mut out = ct.clone();
        for p in &mut out.polys {
            p.mul_assign(&op.poly, &q);
        }
        out.clear_forms();
        Ok(out)
    }
}

/// `out[i] += a[i] · b[i]` (wrapping), for `a[i], b[i] < 2^32`: one 32×32→64-bit multiply
/// per lane.
fn mul_add_narrow(out: &mut [u64], a: &[u64], b: &[u64]) {
    vectorized(
        #[inline(always)]
        || {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = o.wrapping_add(u64::from(x as u32) * u64::from(y as u32));
            }
        },
    );
}
