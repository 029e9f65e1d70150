//! Homomorphic operations: addition, plaintext and ciphertext multiplication,
//! relinearization, rescaling / modulus switching, rotations (plain and hoisted), and the
//! lazy multiply-accumulate.

use crate::accumulator::{ProductAccumulator, scales_match};
use crate::bfv_mul::extend;
use crate::context::Context;
use crate::crypt::{message_term, plain_poly};
use crate::errors::{HeError, Result};
use crate::keys::{GaloisKeys, KeySwitchingKey, RelinKey};
use crate::keyswitch::{decompose, drop_last_rounded, inner_product, key_switch, mod_down};
use crate::math::poly::RnsPoly;
use crate::meta::Meta;
use crate::operand_layout::{ProductForm, compact_primes, kernel_bytes_len};
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, Plaintext, Rounding};
use crate::product_operand::{OperandSpec, ProductOperand, SharedBytes, Storage};
use crate::transfer::{BigModulus, check_bits, lifted_poly, rounded_values};
use std::sync::Arc;

/// Performs homomorphic operations for one context.
#[derive(Clone, Debug)]
pub struct Evaluator {
    ctx: Context,
}

/// A ciphertext decomposed once for key switching: rotations from it skip the
/// decomposition (hoisting).
#[derive(Clone, Debug)]
pub struct HoistedCiphertext {
    c0: RnsPoly,
    digits: Vec<RnsPoly>,
    level: usize,
    scale: f64,
    fingerprint: [u8; 32],
}

impl Evaluator {
    /// An evaluator for `ctx`.
    pub fn new(ctx: &Context) -> Self {
        Self { ctx: ctx.clone() }
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    fn check_shape(&self, ct: &Ciphertext) -> Result<()> {
        self.ctx.check_ciphertext(ct)
    }

    fn check_pair(&self, a: &Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check_shape(a)?;
        self.check_shape(b)?;
        if a.meta.level != b.meta.level {
            return Err(HeError::LevelMismatch {
                expected: a.meta.level,
                actual: b.meta.level,
            });
        }
        Ok(())
    }

    fn check_add_scale(&self, a: f64, b: f64) -> Result<()> {
        if self.ctx.scheme() == Scheme::Ckks && !scales_match(a, b) {
            return Err(HeError::ScaleMismatch {
                expected: a.log2(),
                actual: b.log2(),
            });
        }
        Ok(())
    }

    /// `a + b`.
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        let mut out = a.clone();
        self.add_assign(&mut out, b)?;
        Ok(out)
    }

    /// `a += b`.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<()> {
        self.combine(a, b, false)
    }

    /// `a - b`.
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        let mut out = a.clone();
        self.sub_assign(&mut out, b)?;
        Ok(out)
    }

    /// `a -= b`.
    pub fn sub_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<()> {
        self.combine(a, b, true)
    }

    fn combine(&self, a: &mut Ciphertext, b: &Ciphertext, subtract: bool) -> Result<()> {
        self.check_pair(a, b)?;
        self.check_add_scale(a.meta.scale, b.meta.scale)?;
        let q = self.ctx.q_primes(a.meta.level);
        while a.polys.len() < b.polys.len() {
            a.polys
                .push(RnsPoly::zero(self.ctx.degree(), a.meta.level + 1));
        }
        for (x, y) in a.polys.iter_mut().zip(&b.polys) {
            if subtract {
                x.sub_assign(y, &q);
            } else {
                x.add_assign(y, &q);
            }
        }
        a.clear_forms();
        Ok(())
    }

    /// `-a`.
    pub fn negate(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check_shape(a)?;
        let q = self.ctx.q_primes(a.meta.level);
        let mut out = a.clone();
        for p in &mut out.polys {
            p.neg_assign(&q);
        }
        out.clear_forms();
        Ok(out)
    }

    /// `ct + pt`.
    pub fn add_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.plain_combine(ct, pt, false)
    }

    /// `ct - pt`.
    pub fn sub_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.plain_combine(ct, pt, true)
    }

    fn plain_combine(&self, ct: &Ciphertext, pt: &Plaintext, subtract: bool) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        self.check_add_scale(ct.meta.scale, pt.meta.scale)?;
        let m = message_term(&self.ctx, pt, ct.meta.level)?;
        let q = self.ctx.q_primes(ct.meta.level);
        let mut out = ct.clone();
        if subtract {
            out.polys[0].sub_assign(&m, &q);
        } else {
            out.polys[0].add_assign(&m, &q);
        }
        out.clear_forms();
        Ok(out)
    }

    /// `ct · pt` (CKKS: scales multiply).
    pub fn mul_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        let m = plain_poly(&self.ctx, pt, ct.meta.level)?;
        let q = self.ctx.q_primes(ct.meta.level);
        let mut out = ct.clone();
        for p in &mut out.polys {
            p.mul_assign(&m, &q);
        }
        out.meta.scale = ct.meta.scale * pt.meta.scale;
        out.clear_forms();
        Ok(out)
    }

    /// `a · b` without relinearization: a 3-polynomial ciphertext (the tensor product;
    /// BFV includes the scaling by `t/Q`).
    pub fn multiply(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        for ct in [a, b] {
            if ct.polys.len() != 2 {
                return Err(HeError::CiphertextSize {
                    expected: 2,
                    actual: ct.polys.len(),
                });
            }
        }
        let (pa, pb) = (self.prepare_product(a)?, self.prepare_product(b)?);
        let mut acc = ProductAccumulator::new(&self.ctx, a.meta.level)?;
        acc.add_product(&pa, &pb)?;
        acc.tensor_ciphertext()
    }

    /// `a · b` relinearized.
    pub fn multiply_relin(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        rk: &RelinKey,
    ) -> Result<Ciphertext> {
        self.relinearize(&self.multiply(a, b)?, rk)
    }

    /// Relinearizes a 3-polynomial ciphertext to 2 polynomials.
    pub fn relinearize(&self, ct: &Ciphertext, rk: &RelinKey) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        self.ctx.check_fingerprint(&rk.fingerprint)?;
        match ct.polys.len() {
            2 => Ok(ct.clone()),
            3 => {
                let q = self.ctx.q_primes(ct.meta.level);
                let (u0, u1) = key_switch(&self.ctx, ct.meta.level, &ct.polys[2], &rk.key)?;
                let mut c0 = ct.polys[0].clone();
                let mut c1 = ct.polys[1].clone();
                c0.add_assign(&u0, &q);
                c1.add_assign(&u1, &q);
                Ok(Ciphertext {
                    meta: ct.meta,
                    polys: vec![c0, c1],
                    seed: None,
                    rounded: None,
                    subring: None,
                })
            }
            k => Err(HeError::CiphertextSize {
                expected: 3,
                actual: k,
            }),
        }
    }

    /// CKKS: divides by the last modulus `q_ℓ` (scale `/= q_ℓ`), dropping a level.
    pub fn rescale(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        if self.ctx.scheme() != Scheme::Ckks {
            return Err(HeError::WrongScheme {
                operation: "rescale",
                scheme: "BFV",
            });
        }
        let mut out = self.divide_by_last(ct)?;
        out.meta.scale = ct.meta.scale / self.ctx.inner.primes[ct.meta.level].value() as f64;
        Ok(out)
    }

    /// Drops the last modulus. BFV: modulus switching (divide by `q_ℓ` with rounding; the
    /// message is kept). CKKS: the residues of `q_ℓ` are discarded (value and scale kept).
    pub fn mod_switch_down(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        match self.ctx.scheme() {
            Scheme::Bfv => self.divide_by_last(ct),
            Scheme::Ckks => {
                self.check_shape(ct)?;
                if ct.meta.level == 0 {
                    return Err(HeError::LevelExhausted);
                }
                let mut out = ct.clone();
                for p in &mut out.polys {
                    p.truncate(ct.meta.level);
                }
                out.meta.level -= 1;
                out.clear_forms();
                Ok(out)
            }
        }
    }

    /// Switches down to `level`.
    pub fn mod_switch_to(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        if level > ct.meta.level {
            return Err(HeError::LevelMismatch {
                expected: ct.meta.level,
                actual: level,
            });
        }
        let mut out = ct.clone();
        while out.meta.level > level {
            out = self.mod_switch_down(&out)?;
        }
        Ok(out)
    }

    fn divide_by_last(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        if ct.meta.level == 0 {
            return Err(HeError::LevelExhausted);
        }
        let polys = ct
            .polys
            .iter()
            .map(|p| drop_last_rounded(&self.ctx, ct.meta.level, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Ciphertext {
            meta: ct.meta.lowered(ct.meta.level - 1, ct.meta.scale)?,
            polys,
            seed: None,
            rounded: None,
            subring: None,
        })
    }

    /// Rounds a ciphertext to `2^bits[0]` (for `c_0`) and `2^bits[1]` (for `c_1`) per
    /// coefficient for transfer, and back to `Q_ℓ` (see [`crate::transfer`]): the result
    /// decrypts like `ct` plus the rounding error, and serializes in
    /// `(bits[0] + bits[1])·N` bits. `bits[1] = 0` leaves `c_1` as it is (a fresh seeded
    /// ciphertext keeps its seed). The last operation before a ciphertext is sent.
    pub fn round_for_transfer(&self, ct: &Ciphertext, bits: [u32; 2]) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        if ct.polys.len() != 2 {
            return Err(HeError::CiphertextSize {
                expected: 2,
                actual: ct.polys.len(),
            });
        }
        let q = self.ctx.q_primes(ct.meta.level);
        let big = BigModulus::new(&q)?;
        check_bits(bits, &big)?;
        let mut values: [Vec<u64>; 2] = Default::default();
        let mut polys = Vec::with_capacity(2);
        for ((poly, k), kept) in ct.polys.iter().zip(bits).zip(&mut values) {
            polys.push(match k {
                0 => poly.clone(),
                _ => {
                    *kept = rounded_values(&big, poly, &q, k);
                    lifted_poly(&big, kept, &q, k)
                }
            });
        }
        Ok(Ciphertext {
            meta: ct.meta,
            polys,
            seed: if bits[1] == 0 { ct.seed } else { None },
            // the values are what the ciphertext serializes as: kept for `to_bytes`
            rounded: Some(Rounding {
                bits,
                values: Some(Arc::new(values)),
            }),
            subring: None,
        })
    }

    /// Rotates the slots left by `step` (right if negative). BFV rotates both rows.
    pub fn rotate(&self, ct: &Ciphertext, step: i64, keys: &GaloisKeys) -> Result<Ciphertext> {
        let g = self.ctx.galois_element(step);
        self.apply_galois(ct, g, keys.get(g, Some(step))?, keys)
    }

    /// Applies the automorphism `X -> X^g` (any odd `g < 2N` whose key is in `keys`, e.g.
    /// from [`GaloisKeys::for_elements`]): on a coefficient-encoded BFV plaintext it moves
    /// coefficient `i` to `i·g mod 2N`, negated past `N`. Private retrieval's query
    /// expansion substitutes `g = N/2^j + 1`.
    pub fn substitute(&self, ct: &Ciphertext, g: u64, keys: &GaloisKeys) -> Result<Ciphertext> {
        self.apply_galois(ct, g, keys.get(g, None)?, keys)
    }

    /// BFV: swaps the two rows. CKKS: conjugates every slot.
    pub fn conjugate(&self, ct: &Ciphertext, keys: &GaloisKeys) -> Result<Ciphertext> {
        let g = self.ctx.conjugation_element();
        self.apply_galois(ct, g, keys.get(g, None)?, keys)
    }

    fn apply_galois(
        &self,
        ct: &Ciphertext,
        g: u64,
        key: &KeySwitchingKey,
        keys: &GaloisKeys,
    ) -> Result<Ciphertext> {
        self.ctx.check_fingerprint(&keys.fingerprint)?;
        let h = self.hoist(ct)?;
        self.galois_hoisted(&h, g, key)
    }

    /// Decomposes a ciphertext once for many rotations.
    pub fn hoist(&self, ct: &Ciphertext) -> Result<HoistedCiphertext> {
        self.check_shape(ct)?;
        if ct.polys.len() != 2 {
            return Err(HeError::CiphertextSize {
                expected: 2,
                actual: ct.polys.len(),
            });
        }
        Ok(HoistedCiphertext {
            fingerprint: self.ctx.params().fingerprint(),
            c0: ct.polys[0].clone(),
            digits: decompose(&self.ctx, ct.meta.level, &ct.polys[1])?,
            level: ct.meta.level,
            scale: ct.meta.scale,
        })
    }

    /// Rotation by `step` from a hoisted decomposition.
    pub fn rotate_hoisted(
        &self,
        h: &HoistedCiphertext,
        step: i64,
        keys: &GaloisKeys,
    ) -> Result<Ciphertext> {
        self.ctx.check_fingerprint(&keys.fingerprint)?;
        let g = self.ctx.galois_element(step);
        self.galois_hoisted(h, g, keys.get(g, Some(step))?)
    }

    fn galois_hoisted(
        &self,
        h: &HoistedCiphertext,
        g: u64,
        key: &KeySwitchingKey,
    ) -> Result<Ciphertext> {
        self.ctx.check_fingerprint(&h.fingerprint)?;
        let lv = self.ctx.level(h.level)?;
        let n = self.ctx.degree();
        let shape_ok = h.c0.degree() == n
            && h.c0.count() == h.level + 1
            && h.digits.len() == h.level + 1
            && h.digits
                .iter()
                .all(|d| d.degree() == n && d.count() == lv.qp.len());
        if !shape_ok {
            return Err(HeError::LengthMismatch {
                what: "hoisted ciphertext digits",
                expected: h.level + 1,
                actual: h.digits.len(),
            });
        }
        // The Galois key switches from s to σ^-1(s): switch the unpermuted digits, then apply
        // σ once to the result (σ commutes with the rounding of mod-down).
        let q = self.ctx.q_primes(h.level);
        let (a0, a1) = inner_product(&self.ctx, h.level, &h.digits, key)?;
        let mut c0 = mod_down(&self.ctx, h.level, a0)?;
        c0.add_assign(&h.c0, &q);
        let c1 = mod_down(&self.ctx, h.level, a1)?;
        let perm = self.ctx.galois_permutation(g);
        Ok(Ciphertext {
            meta: Meta::new(&self.ctx, h.level, h.scale)?,
            polys: vec![c0.permuted(&perm), c1.permuted(&perm)],
            seed: None,
            rounded: None,
            subring: None,
        })
    }

    /// Prepares a ciphertext as a factor of products (BFV: lifts it to `Q ∪ R` once, for
    /// [`ProductAccumulator::new`]).
    pub fn prepare_product(&self, ct: &Ciphertext) -> Result<ProductOperand> {
        let form = match self.ctx.scheme() {
            Scheme::Bfv => ProductForm::Extended,
            Scheme::Ckks => ProductForm::Native,
        };
        self.prepare(ct, form)
    }

    /// Prepares a ciphertext as a native factor of products, for
    /// [`ProductAccumulator::native`]: its own residues, no extension basis (BFV needs
    /// `Q_ℓ ≡ 1 (mod t)`, see [`Context::native_products`]).
    pub fn prepare_native_product(&self, ct: &Ciphertext) -> Result<ProductOperand> {
        self.prepare(ct, ProductForm::Native)
    }

    /// [`prepare_native_product`](Self::prepare_native_product) taking the ciphertext: its
    /// residues become the operand's, without a copy.
    pub fn into_native_product(&self, ct: Ciphertext) -> Result<ProductOperand> {
        self.check_shape(&ct)?;
        self.ctx.native_products(ct.meta.level)?;
        let meta = ct.meta;
        let polys: [RnsPoly; 2] =
            ct.polys
                .try_into()
                .map_err(|p: Vec<RnsPoly>| HeError::CiphertextSize {
                    expected: 2,
                    actual: p.len(),
                })?;
        Ok(ProductOperand {
            residues: Storage::Owned {
                polys,
                narrow: Vec::new(),
            },
            meta,
            form: ProductForm::Native,
        })
    }

    fn prepare(&self, ct: &Ciphertext, form: ProductForm) -> Result<ProductOperand> {
        self.check_shape(ct)?;
        if ct.polys.len() != 2 {
            return Err(HeError::CiphertextSize {
                expected: 2,
                actual: ct.polys.len(),
            });
        }
        let polys = match form {
            ProductForm::Extended => [
                extend(&self.ctx, ct.meta.level, &ct.polys[0])?,
                extend(&self.ctx, ct.meta.level, &ct.polys[1])?,
            ],
            ProductForm::Native => {
                self.ctx.native_products(ct.meta.level)?;
                [ct.polys[0].clone(), ct.polys[1].clone()]
            }
        };
        Ok(ProductOperand {
            residues: Storage::Owned {
                polys,
                narrow: Vec::new(),
            },
            meta: ct.meta,
            form,
        })
    }

    /// The operand with its residues on trailing primes below `2^32` stored as `u32` words
    /// (for CKKS presets, the small rescaling prime): the same products
    /// ([`ProductAccumulator::add_products`] reads them with
    /// [`crate::math::kernels::LazyTensor::add_batch_narrow`]), a quarter less memory per
    /// such prime. Unchanged if its last prime is `2^32` or more, or if it is compact already.
    pub fn compact_product(&self, op: ProductOperand) -> Result<ProductOperand> {
        op.meta.check_context(&self.ctx)?;
        let ProductOperand {
            residues,
            meta,
            form,
        } = op;
        let level = meta.level;
        let polys = match residues {
            Storage::Owned { polys, narrow } if narrow.is_empty() => polys,
            // compact already, or shared (in the compact layout)
            residues => {
                return Ok(ProductOperand {
                    residues,
                    meta,
                    form,
                });
            }
        };
        let (wide, narrow) = compact_primes(&self.ctx, form, level)?;
        if wide + narrow != polys[0].count() {
            return Err(HeError::LengthMismatch {
                what: "product operand residues",
                expected: wide + narrow,
                actual: polys[0].count(),
            });
        }
        let narrow = (wide..wide + narrow)
            .map(|j| {
                // residues are below their prime, so below 2^32 here
                let words = |poly: &RnsPoly| -> Vec<u32> {
                    poly.comp(j).iter().map(|&x| x as u32).collect()
                };
                [words(&polys[0]), words(&polys[1])]
            })
            .collect();
        // a copy of exactly the wide residues (an allocator may keep a shrunk buffer whole)
        let polys = [polys[0].slice(0, wide), polys[1].slice(0, wide)];
        Ok(ProductOperand {
            residues: Storage::Owned { polys, narrow },
            meta,
            form,
        })
    }

    /// Bytes of one operand of `spec` in the kernel layout
    /// ([`ProductOperand::append_kernel_bytes`]).
    pub fn kernel_bytes_len(&self, spec: &OperandSpec) -> Result<usize> {
        let (wide, narrow) = compact_primes(&self.ctx, spec.form, spec.level)?;
        Ok(kernel_bytes_len(self.ctx.degree(), wide, narrow))
    }

    /// The operand of `spec` whose residues are `bytes[offset..offset + len]` in the kernel
    /// layout ([`ProductOperand::append_kernel_bytes`], `len` from
    /// [`Evaluator::kernel_bytes_len`]), read in place whenever a product needs them:
    /// building it reads nothing. Refused if the range is outside `bytes` or not aligned to
    /// 8 bytes, or on a big-endian machine (the layout is little-endian).
    ///
    /// The residues are trusted to be below their primes, as
    /// [`ProductOperand::append_kernel_bytes`] wrote them: bytes that are not give wrong
    /// products (never a panic or undefined behaviour), so they must come from a file this
    /// process's store wrote and committed, not from the network.
    pub fn shared_product(
        &self,
        bytes: SharedBytes,
        offset: usize,
        spec: &OperandSpec,
    ) -> Result<ProductOperand> {
        if cfg!(target_endian = "big") {
            return Err(HeError::UnusableBytes {
                reason: "shared product operands are little-endian; this machine is not".into(),
            });
        }
        if spec.form == ProductForm::Native {
            self.ctx.native_products(spec.level)?;
        }
        let (wide, narrow) = compact_primes(&self.ctx, spec.form, spec.level)?;
        let n = self.ctx.degree();
        let len = kernel_bytes_len(n, wide, narrow);
        let total = bytes.as_ref().as_ref().len();
        if offset.checked_add(len).is_none_or(|end| end > total) {
            return Err(HeError::LengthMismatch {
                what: "shared operand bytes",
                expected: offset.saturating_add(len),
                actual: total,
            });
        }
        let op = ProductOperand {
            residues: Storage::Shared {
                bytes,
                offset,
                n,
                wide,
                narrow,
            },
            meta: Meta::new(&self.ctx, spec.level, spec.scale)?,
            form: spec.form,
        };
        // every residue slice must be readable as words (in range and aligned)
        for j in 0..wide + narrow {
            for poly in 0..2 {
                if op.residues(poly, j).len() != n {
                    return Err(HeError::UnusableBytes {
                        reason: format!("offset {offset} is not aligned to 8 bytes"),
                    });
                }
            }
        }
        Ok(op)
    }
}

/// Finishing an accumulator takes the evaluator's key switching: it is written beside it, so
/// that the accumulator itself does not depend on the evaluator.
impl ProductAccumulator {
    /// Reduces the sum once: BFV scales the tensor by `t/Q`; then one relinearization; the
    /// plaintext products are added last.
    pub fn finish(&self, ev: &Evaluator, rk: &RelinKey) -> Result<Ciphertext> {
        let q = self.ctx.q_primes(self.level);
        let mut out = match &self.tensor {
            Some(_) => ev.relinearize(&self.tensor_ciphertext()?, rk)?,
            None => {
                let n = self.ctx.degree();
                Ciphertext {
                    meta: Meta::new(&self.ctx, self.level, self.plain_scale.unwrap_or(1.0))?,
                    polys: vec![RnsPoly::zero(n, q.len()), RnsPoly::zero(n, q.len())],
                    seed: None,
                    rounded: None,
                    subring: None,
                }
            }
        };
        if let Some([p0, p1]) = &self.plain {
            let ps = self.plain_scale.unwrap_or(1.0);
            if self.tensor.is_some()
                && self.ctx.scheme() == Scheme::Ckks
                && !scales_match(out.meta.scale, ps)
            {
                return Err(HeError::ScaleMismatch {
                    expected: out.meta.scale.log2(),
                    actual: ps.log2(),
                });
            }
            out.polys[0].add_assign(p0, &q);
            out.polys[1].add_assign(p1, &q);
        }
        Ok(out)
    }
}
