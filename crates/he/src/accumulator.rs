//! The lazy multiply-accumulate: [`ProductAccumulator`] sums many products in NTT form
//! and reduces, relinearizes (and for BFV scales) once.

use crate::bfv_mul::scale_down;
use crate::context::Context;
use crate::crypt::plain_poly;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::meta::Meta;
use crate::operand_layout::{ProductForm, product_indices};
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, Plaintext};
use crate::product_operand::ProductOperand;
use crate::tensor_sum::TensorSum;

/// Sums many products in NTT form and reduces, relinearizes (and for BFV scales) once.
///
/// # Capacity
///
/// Every residue is fully reduced after each product (`tfhe-ntt`'s multiply-accumulate),
/// so no machine word can overflow however many products are summed. What bounds a BFV
/// accumulator is the extension basis `Q ∪ R` the tensor lives in: the sum of `K`
/// products, scaled by `t/Q`, must stay below `R/2` for the exact lift back to `Q`. For the
/// worst case of the inputs (every coefficient `Q/2`) that is
/// `K ≤ (R·(1 − |R|·2^-49) − 2) / (t·N·Q_ℓ)` ([`ProductAccumulator::capacity`]):
///
/// | preset      | `log2 R` | top level | one level down            |
/// |-------------|----------|-----------|---------------------------|
/// | `bfv-4096`  | 150      | ≈ 2^50    | ≈ 2^86 (`usize::MAX`)     |
/// | `bfv-8192`  | 200      | 257       | ≈ 2^58                    |
/// | `bfv-16384` | 400      | 128       | ≈ 2^57                    |
///
/// (floors; the test `accumulator_capacity_is_derived_from_the_primes` checks them). The
/// search engine sums one product per baby step, at most 128 per accumulator. Adding a product past the capacity returns
/// [`HeError::AccumulatorFull`]; finish the accumulator and add the finished ciphertexts
/// instead. CKKS products live in `Q` itself and need no headroom (the capacity is
/// `usize::MAX`): their sum is bounded by the message and the scale, like any CKKS value.
/// Plaintext products ([`ProductAccumulator::add_plain_product`]) do not count.
#[derive(Clone, Debug)]
pub struct ProductAccumulator {
    pub(crate) ctx: Context,
    pub(crate) level: usize,
    pub(crate) form: ProductForm,
    /// Products summed so far, and the most allowed.
    pub(crate) products: usize,
    pub(crate) capacity: usize,
    pub(crate) tensor: Option<TensorSum>,
    pub(crate) plain: Option<[RnsPoly; 2]>,
    pub(crate) scale: Option<f64>,
    pub(crate) plain_scale: Option<f64>,
}

/// Whether two scales are equal up to rounding.
pub(crate) fn scales_match(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * 1e-9
}

impl ProductAccumulator {
    /// An empty accumulator for products at `level` (BFV: extended products, operands from
    /// [`crate::Evaluator::prepare_product`]).
    pub fn new(ctx: &Context, level: usize) -> Result<Self> {
        let (form, capacity) = match &ctx.level(level)?.bfv {
            Some(b) => (ProductForm::Extended, b.product_capacity),
            None => (ProductForm::Native, usize::MAX),
        };
        Ok(Self::empty(ctx, level, form, capacity))
    }

    /// An empty accumulator of native products at `level` (operands from
    /// [`crate::Evaluator::prepare_native_product`]): the tensor is summed in `Q_ℓ` itself.
    ///
    /// For BFV this needs `Q_ℓ ≡ 1 (mod t)`. With `Δ = (Q_ℓ − 1)/t`, two ciphertexts
    /// decrypting to `Δ·m_a + e_a` and `Δ·m_b + e_b` have a tensor `T` with
    /// `⟨T, (1, s, s²)⟩ ≡ Δ²·m_a m_b + Δ(m_a e_b + e_a m_b) + e_a e_b (mod Q_ℓ)`. As
    /// `t·Δ ≡ −1`, the accumulator's result `−t·Σ T` decrypts to `Δ·[M]_t + ν` for
    /// `M = Σ m_a m_b` with the noise `ν = Σ (m_a e_b + e_a m_b) − t·Σ e_a e_b − ⌊M/t⌋`
    /// (`Δ·M = Δ·[M]_t + tΔ·⌊M/t⌋`): a BFV ciphertext of the exact product. No extension
    /// basis, no base conversion: a product costs what a CKKS product costs. The noise is
    /// BGV-like (it has a `t·e_a·e_b` term), so this is meant for depth-one sums of fresh or
    /// once-rotated ciphertexts, where `|ν| ≈ t·√(K·N)·σ_a·σ_b` stays far below `Δ/2`; there
    /// is no fixed capacity (the noise budget of the result says how much room is left).
    pub fn native(ctx: &Context, level: usize) -> Result<Self> {
        ctx.native_products(level)?;
        Ok(Self::empty(ctx, level, ProductForm::Native, usize::MAX))
    }

    fn empty(ctx: &Context, level: usize, form: ProductForm, capacity: usize) -> Self {
        Self {
            ctx: ctx.clone(),
            level,
            form,
            products: 0,
            capacity,
            tensor: None,
            plain: None,
            scale: None,
            plain_scale: None,
        }
    }

    /// An empty accumulator that sums at most `capacity` products (at most the capacity of
    /// [`ProductAccumulator::new`]: a larger request is lowered to it).
    pub fn with_capacity(ctx: &Context, level: usize, capacity: usize) -> Result<Self> {
        let mut acc = Self::new(ctx, level)?;
        acc.capacity = acc.capacity.min(capacity);
        Ok(acc)
    }

    /// The most products this accumulator sums (see the [type documentation](Self)).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of ciphertext products added so far.
    pub fn products(&self) -> usize {
        self.products
    }

    fn tensor_indices(&self) -> Result<Vec<usize>> {
        product_indices(&self.ctx, self.form, self.level)
    }

    /// Adds `a · b` (both prepared with [`crate::Evaluator::prepare_product`]). Fails with
    /// [`HeError::AccumulatorFull`] once [`ProductAccumulator::capacity`] products are summed.
    /// The same as [`add_products`](Self::add_products) with the one pair.
    pub fn add_product(&mut self, a: &ProductOperand, b: &ProductOperand) -> Result<()> {
        self.add_products(&[(a, b)])
    }

    /// Adds `a · b` for every pair `(a, b)` of `pairs`: the same sum as one
    /// [`add_product`](Self::add_product) per pair in order, but summed in one pass (with the
    /// lazy kernel, one [`crate::math::kernels::LazyTensor::add_batch`] per prime), so the
    /// running sum is read and written once per call rather than once per product.
    ///
    /// Every pair is checked before anything is added (fingerprints, forms, levels, CKKS
    /// scales, residue counts, and the capacity, which must hold all the pairs); on an error
    /// the accumulator is unchanged. Fails with [`HeError::AccumulatorFull`] if the pairs do
    /// not fit in what is left of [`ProductAccumulator::capacity`]. An empty slice adds
    /// nothing.
    pub fn add_products(&mut self, pairs: &[(&ProductOperand, &ProductOperand)]) -> Result<()> {
        Self::add_products_many(&mut [self], &[pairs])
    }

    /// [`add_products`](Self::add_products) of `batches[i]` into `accumulators[i]`, for
    /// every `i`: the same sums, but the lazy kernel passes over all of them tile by tile of
    /// coefficients, so that an operand several batches share (a query's baby step, which
    /// every giant step multiplies) is read from the cache instead of from memory once per
    /// sum. Accumulators of one parameter set, level and form go through one kernel call
    /// per prime; any others are summed one by one.
    ///
    /// Every batch is checked before anything is added, as in `add_products`; on an error
    /// no accumulator is changed.
    pub fn add_products_many(
        accumulators: &mut [&mut ProductAccumulator],
        batches: &[&[(&ProductOperand, &ProductOperand)]],
    ) -> Result<()> {
        crate::errors::check_length(
            "product batches (one per accumulator)",
            accumulators.len(),
            batches.len(),
        )?;
        let checked = accumulators
            .iter()
            .zip(batches)
            .map(|(acc, pairs)| acc.check_products(pairs))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = accumulators.first() else {
            return Ok(());
        };
        let (ctx, level, form) = (first.ctx.clone(), first.level, first.form);
        let joint = accumulators.iter().all(|a| {
            a.level == level
                && a.form == form
                && a.ctx.params().fingerprint() == ctx.params().fingerprint()
        });
        let idx = product_indices(&ctx, form, level)?;
        let primes = ctx.primes_at(&idx);
        let mut sums = Vec::with_capacity(accumulators.len());
        let mut sum_batches = Vec::with_capacity(accumulators.len());
        for ((acc, pairs), scale) in accumulators.iter_mut().zip(batches).zip(checked) {
            if pairs.is_empty() {
                continue;
            }
            if acc.tensor.is_none() {
                let idx = acc.tensor_indices()?;
                acc.tensor = Some(TensorSum::new(&acc.ctx.primes_at(&idx), acc.ctx.degree())?);
            }
            acc.scale = scale;
            acc.products += pairs.len();
            let Some(sum) = acc.tensor.as_mut() else {
                continue;
            };
            if joint {
                sums.push(sum);
                sum_batches.push(*pairs);
            } else {
                let idx = product_indices(&acc.ctx, acc.form, acc.level)?;
                sum.add_batch(pairs, &acc.ctx.primes_at(&idx))?;
            }
        }
        TensorSum::add_batch_many(&mut sums, &sum_batches, &primes)
    }

    /// Checks a batch for [`add_products`](Self::add_products) without adding it: returns
    /// the CKKS scale the sum has after it.
    fn check_products(&self, pairs: &[(&ProductOperand, &ProductOperand)]) -> Result<Option<f64>> {
        if pairs.len() > self.capacity.saturating_sub(self.products) {
            return Err(HeError::AccumulatorFull {
                capacity: self.capacity,
            });
        }
        let mut scale = self.scale;
        for &(a, b) in pairs {
            for op in [a, b] {
                op.meta.check_context(&self.ctx)?;
                if op.form != self.form {
                    return Err(HeError::ProductFormMismatch {
                        expected: self.form.name(),
                        actual: op.form.name(),
                    });
                }
                if op.meta.level != self.level {
                    return Err(HeError::LevelMismatch {
                        expected: self.level,
                        actual: op.meta.level,
                    });
                }
            }
            // as product by product: each CKKS scale must match the previous one's
            let product = a.meta.scale * b.meta.scale;
            match scale {
                Some(s) if self.ctx.scheme() == Scheme::Ckks && !scales_match(s, product) => {
                    return Err(HeError::ScaleMismatch {
                        expected: s.log2(),
                        actual: product.log2(),
                    });
                }
                _ => scale = Some(product),
            }
        }
        if pairs.is_empty() {
            return Ok(self.scale);
        }
        let idx = self.tensor_indices()?;
        let n = self.ctx.degree();
        for &(a, b) in pairs {
            for op in [a, b] {
                if op.limbs() != idx.len() {
                    return Err(HeError::LengthMismatch {
                        what: "product operand residues",
                        expected: idx.len(),
                        actual: op.limbs(),
                    });
                }
                for j in 0..idx.len() {
                    for poly in 0..2 {
                        let len = op.residues(poly, j).len();
                        if len != n {
                            return Err(HeError::LengthMismatch {
                                what: "product operand degree",
                                expected: n,
                                actual: len,
                            });
                        }
                    }
                }
            }
        }
        Ok(scale)
    }

    /// Adds `ct · pt`.
    pub fn add_plain_product(&mut self, ct: &Ciphertext, pt: &Plaintext) -> Result<()> {
        self.ctx.check_ciphertext(ct)?;
        if ct.meta.level != self.level || ct.polys.len() != 2 {
            return Err(HeError::LevelMismatch {
                expected: self.level,
                actual: ct.meta.level,
            });
        }
        let scale = ct.meta.scale * pt.meta.scale;
        match self.plain_scale {
            Some(s) if self.ctx.scheme() == Scheme::Ckks && !scales_match(s, scale) => {
                return Err(HeError::ScaleMismatch {
                    expected: s.log2(),
                    actual: scale.log2(),
                });
            }
            _ => self.plain_scale = Some(scale),
        }
        let m = plain_poly(&self.ctx, pt, self.level)?;
        let q = self.ctx.q_primes(self.level);
        let n = self.ctx.degree();
        let acc = self
            .plain
            .get_or_insert_with(|| std::array::from_fn(|_| RnsPoly::zero(n, q.len())));
        acc[0].mul_acc(&ct.polys[0], &m, &q);
        acc[1].mul_acc(&ct.polys[1], &m, &q);
        Ok(())
    }

    /// The sum of the ciphertext products as a 3-polynomial ciphertext (no relinearization).
    pub(crate) fn tensor_ciphertext(&self) -> Result<Ciphertext> {
        let Some(sum) = &self.tensor else {
            return Err(HeError::CiphertextSize {
                expected: 3,
                actual: 0,
            });
        };
        let t = sum.polys(self.ctx.degree())?;
        let polys = match (self.ctx.scheme(), self.form) {
            (Scheme::Bfv, ProductForm::Extended) => t
                .iter()
                .map(|p| scale_down(&self.ctx, self.level, p))
                .collect::<Result<Vec<_>>>()?,
            (Scheme::Bfv, ProductForm::Native) => {
                let mut polys = Vec::from(t);
                if let Some(factor) = self.ctx.native_product_factor(self.level)? {
                    let q = self.ctx.q_primes(self.level);
                    for p in &mut polys {
                        p.mul_scalar_assign(factor, &q);
                    }
                }
                polys
            }
            (Scheme::Ckks, _) => Vec::from(t),
        };
        Ok(Ciphertext {
            meta: Meta::new(&self.ctx, self.level, self.scale.unwrap_or(1.0))?,
            polys,
            seed: None,
            rounded: None,
            subring: None,
        })
    }

    /// The sum without its relinearization: three polynomials (BFV: the tensor scaled by
    /// `t/Q`, or by `−t` for native products), for [`crate::Evaluator::rotated_term`]. Plaintext
    /// products are refused here (finish those with [`Self::finish`]).
    pub fn finish_unrelinearized(&self) -> Result<Ciphertext> {
        if self.plain.is_some() {
            return Err(HeError::CiphertextSize {
                expected: 3,
                actual: 2,
            });
        }
        self.tensor_ciphertext()
    }
}
