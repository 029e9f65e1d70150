//! Homomorphic operations: addition, plaintext and ciphertext multiplication,
//! relinearization, rescaling / modulus switching, rotations (plain and hoisted), and the
//! lazy multiply-accumulate.

use crate::bfv_mul::{extend, scale_down};
use crate::context::Context;
use crate::crypt::{message_term, plain_poly};
use crate::errors::{HeError, Result};
use crate::keys::{GaloisKeys, KeySwitchingKey, RelinKey};
use crate::keyswitch::{decompose, drop_last_rounded, inner_product, key_switch, mod_down};
use crate::math::poly::RnsPoly;
pub use crate::operand_layout::ProductForm;
pub(crate) use crate::operand_layout::{compact_primes, kernel_bytes_len, product_indices};
use crate::params::Scheme;
use crate::plaintext::{Ciphertext, Plaintext};
use crate::tensor_sum::TensorSum;
use crate::transfer::{BigModulus, check_bits, lifted_poly, rounded_values};

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

/// Bytes that outlive every operand read from them: a memory-mapped segment file, say
/// ([`Evaluator::shared_product`]).
pub type SharedBytes = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

/// What a stored product operand is, besides its residues: everything
/// [`Evaluator::shared_product`] needs to read one back (a segment file records it once
/// for all its operands).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperandSpec {
    /// Level of the prepared ciphertext.
    pub level: usize,
    /// Its scale (CKKS; 1 for BFV).
    pub scale: f64,
    /// Its form.
    pub form: ProductForm,
}

/// A ciphertext prepared as a factor of many products (BFV extended: lifted to `Q ∪ R`;
/// native: the ciphertext's own residues). A compact operand
/// ([`Evaluator::compact_product`]) stores its residues on trailing primes below `2^32` as
/// `u32` words: the same products, a quarter less memory (and memory traffic) per such prime.
/// A shared operand ([`Evaluator::shared_product`]) reads its residues, in the compact
/// layout of [`ProductOperand::append_kernel_bytes`], from bytes it shares with others (a
/// memory-mapped file): opening it reads nothing.
#[derive(Clone, Debug)]
pub struct ProductOperand {
    residues: Storage,
    level: usize,
    scale: f64,
    form: ProductForm,
    fingerprint: [u8; 32],
}

/// Where the residues of a [`ProductOperand`] are.
#[derive(Clone)]
enum Storage {
    /// In memory of its own.
    Owned {
        /// Residues of both polynomials on the primes held as `u64` words (all of them
        /// unless compact).
        polys: [RnsPoly; 2],
        /// A compact operand's residues on the remaining primes (each below `2^32`), prime
        /// by prime, as `u32` words.
        narrow: Vec<[Vec<u32>; 2]>,
    },
    /// In shared bytes, from `offset` on, prime by prime, both polynomials of each: `wide`
    /// primes of `2·n` little-endian `u64` words, then `narrow` primes of `2·n` `u32` words
    /// (checked at construction to lie inside the bytes, aligned).
    Shared {
        bytes: SharedBytes,
        offset: usize,
        n: usize,
        wide: usize,
        narrow: usize,
    },
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Owned { polys, narrow } => f
                .debug_struct("Owned")
                .field("wide", &polys[0].count())
                .field("narrow", &narrow.len())
                .finish(),
            Storage::Shared {
                offset,
                wide,
                narrow,
                ..
            } => f
                .debug_struct("Shared")
                .field("offset", offset)
                .field("wide", wide)
                .field("narrow", narrow)
                .finish(),
        }
    }
}

impl Storage {
    /// (degree, primes as `u64` words, primes as `u32` words).
    fn shape(&self) -> (usize, usize, usize) {
        match self {
            Storage::Owned { polys, narrow } => (polys[0].degree(), polys[0].count(), narrow.len()),
            Storage::Shared {
                n, wide, narrow, ..
            } => (*n, *wide, *narrow),
        }
    }
}

/// The residues of one polynomial of a [`ProductOperand`] on one prime.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Residues<'a> {
    /// As `u64` words.
    Wide(&'a [u64]),
    /// As `u32` words (a compact operand, a prime below `2^32`).
    Narrow(&'a [u32]),
}

impl Residues<'_> {
    /// Number of residues.
    pub(crate) fn len(self) -> usize {
        match self {
            Residues::Wide(r) => r.len(),
            Residues::Narrow(r) => r.len(),
        }
    }
}

impl ProductOperand {
    /// Level of the prepared ciphertext.
    pub fn level(&self) -> usize {
        self.level
    }
    /// How the operand is represented.
    pub fn form(&self) -> ProductForm {
        self.form
    }
    /// What [`Evaluator::shared_product`] needs to read the operand back.
    pub fn spec(&self) -> OperandSpec {
        OperandSpec {
            level: self.level,
            scale: self.scale,
            form: self.form,
        }
    }
    /// Whether some residues are stored as `u32` words ([`Evaluator::compact_product`]).
    pub fn is_compact(&self) -> bool {
        self.residues.shape().2 > 0
    }
    /// Whether the residues live in shared bytes ([`Evaluator::shared_product`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.residues, Storage::Shared { .. })
    }
    /// Bytes of residues held (or read from shared bytes).
    pub fn residue_bytes(&self) -> usize {
        let (n, wide, narrow) = self.residues.shape();
        kernel_bytes_len(n, wide, narrow)
    }
    /// Primes the residues cover.
    pub(crate) fn limbs(&self) -> usize {
        let (_, wide, narrow) = self.residues.shape();
        wide + narrow
    }
    /// The residues of polynomial `poly` (0 or 1) on prime `j < limbs()` (empty, which every
    /// kernel refuses as a length mismatch, if they are out of range).
    pub(crate) fn residues(&self, poly: usize, j: usize) -> Residues<'_> {
        match &self.residues {
            Storage::Owned { polys, narrow } => {
                let wide = polys[poly].count();
                if j < wide {
                    Residues::Wide(polys[poly].comp(j))
                } else {
                    Residues::Narrow(narrow.get(j - wide).map_or(&[], |r| &r[poly][..]))
                }
            }
            Storage::Shared {
                bytes,
                offset,
                n,
                wide,
                ..
            } => {
                let (start, words, size) = if j < *wide {
                    (offset + (2 * j + poly) * n * 8, *n, 8)
                } else {
                    let base = offset + wide * 2 * n * 8;
                    (base + (2 * (j - wide) + poly) * n * 4, *n, 4)
                };
                let raw = bytes
                    .as_ref()
                    .as_ref()
                    .get(start..start + words * size)
                    .unwrap_or(&[]);
                if size == 8 {
                    Residues::Wide(bytemuck::try_cast_slice(raw).unwrap_or(&[]))
                } else {
                    Residues::Narrow(bytemuck::try_cast_slice(raw).unwrap_or(&[]))
                }
            }
        }
    }
    /// Both polynomials with every residue as `u64` words (a copy unless the operand holds
    /// exactly that).
    pub(crate) fn wide_polys(&self) -> std::borrow::Cow<'_, [RnsPoly; 2]> {
        if let Storage::Owned { polys, narrow } = &self.residues
            && narrow.is_empty()
        {
            return std::borrow::Cow::Borrowed(polys);
        }
        let (n, _, _) = self.residues.shape();
        std::borrow::Cow::Owned(std::array::from_fn(|poly| {
            let mut out = RnsPoly::zero(n, self.limbs());
            for (j, o) in out.comps_mut().enumerate() {
                match self.residues(poly, j) {
                    Residues::Wide(r) => {
                        for (o, &x) in o.iter_mut().zip(r) {
                            *o = x;
                        }
                    }
                    Residues::Narrow(r) => {
                        for (o, &x) in o.iter_mut().zip(r) {
                            *o = u64::from(x);
                        }
                    }
                }
            }
            out
        }))
    }

    /// Appends the residues in the layout the product kernels read
    /// ([`Evaluator::shared_product`] reads them back): prime by prime, both polynomials,
    /// little-endian, `u64` words on the primes a compact operand keeps wide and `u32` words
    /// on the others (the operand need not be compact: the layout is always the compact
    /// one). `ctx` must be the operand's context.
    pub fn append_kernel_bytes(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<()> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let (wide, narrow) = compact_primes(ctx, self.form, self.level)?;
        if wide + narrow != self.limbs() {
            return Err(HeError::LengthMismatch {
                what: "product operand residues",
                expected: wide + narrow,
                actual: self.limbs(),
            });
        }
        let (n, _, _) = self.residues.shape();
        out.reserve(kernel_bytes_len(n, wide, narrow));
        for j in 0..wide + narrow {
            for poly in 0..2 {
                let r = self.residues(poly, j);
                if r.len() != n {
                    return Err(HeError::LengthMismatch {
                        what: "product operand residues",
                        expected: n,
                        actual: r.len(),
                    });
                }
                match (r, j < wide) {
                    (Residues::Wide(r), true) => {
                        r.iter()
                            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                    }
                    // a prime below 2^32: its residues fit in u32 words
                    (Residues::Wide(r), false) => r
                        .iter()
                        .for_each(|&x| out.extend_from_slice(&(x as u32).to_le_bytes())),
                    (Residues::Narrow(r), false) => {
                        r.iter()
                            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                    }
                    (Residues::Narrow(r), true) => r
                        .iter()
                        .for_each(|&x| out.extend_from_slice(&u64::from(x).to_le_bytes())),
                }
            }
        }
        Ok(())
    }
}

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
    ctx: Context,
    level: usize,
    form: ProductForm,
    /// Products summed so far, and the most allowed.
    products: usize,
    capacity: usize,
    tensor: Option<TensorSum>,
    plain: Option<[RnsPoly; 2]>,
    scale: Option<f64>,
    plain_scale: Option<f64>,
}

fn scales_match(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * 1e-9
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
        if a.level != b.level {
            return Err(HeError::LevelMismatch {
                expected: a.level,
                actual: b.level,
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
        self.combine(&mut out, b, true)?;
        Ok(out)
    }

    fn combine(&self, a: &mut Ciphertext, b: &Ciphertext, subtract: bool) -> Result<()> {
        self.check_pair(a, b)?;
        self.check_add_scale(a.scale, b.scale)?;
        let q = self.ctx.q_primes(a.level);
        while a.polys.len() < b.polys.len() {
            a.polys.push(RnsPoly::zero(self.ctx.degree(), a.level + 1));
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
        let q = self.ctx.q_primes(a.level);
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
        self.check_add_scale(ct.scale, pt.scale)?;
        let m = message_term(&self.ctx, pt, ct.level)?;
        let q = self.ctx.q_primes(ct.level);
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
        let m = plain_poly(&self.ctx, pt, ct.level)?;
        let q = self.ctx.q_primes(ct.level);
        let mut out = ct.clone();
        for p in &mut out.polys {
            p.mul_assign(&m, &q);
        }
        out.scale = ct.scale * pt.scale;
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
        let mut acc = ProductAccumulator::new(&self.ctx, a.level)?;
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
                let q = self.ctx.q_primes(ct.level);
                let (u0, u1) = key_switch(&self.ctx, ct.level, &ct.polys[2], &rk.key)?;
                let mut c0 = ct.polys[0].clone();
                let mut c1 = ct.polys[1].clone();
                c0.add_assign(&u0, &q);
                c1.add_assign(&u1, &q);
                Ok(Ciphertext {
                    fingerprint: self.ctx.params().fingerprint(),
                    polys: vec![c0, c1],
                    level: ct.level,
                    scale: ct.scale,
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
        out.scale = ct.scale / self.ctx.inner.primes[ct.level].value() as f64;
        Ok(out)
    }

    /// Drops the last modulus. BFV: modulus switching (divide by `q_ℓ` with rounding; the
    /// message is kept). CKKS: the residues of `q_ℓ` are discarded (value and scale kept).
    pub fn mod_switch_down(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        match self.ctx.scheme() {
            Scheme::Bfv => self.divide_by_last(ct),
            Scheme::Ckks => {
                self.check_shape(ct)?;
                if ct.level == 0 {
                    return Err(HeError::LevelExhausted);
                }
                let mut out = ct.clone();
                for p in &mut out.polys {
                    p.truncate(ct.level);
                }
                out.level -= 1;
                out.clear_forms();
                Ok(out)
            }
        }
    }

    /// Switches down to `level`.
    pub fn mod_switch_to(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        if level > ct.level {
            return Err(HeError::LevelMismatch {
                expected: ct.level,
                actual: level,
            });
        }
        let mut out = ct.clone();
        while out.level > level {
            out = self.mod_switch_down(&out)?;
        }
        Ok(out)
    }

    fn divide_by_last(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.check_shape(ct)?;
        if ct.level == 0 {
            return Err(HeError::LevelExhausted);
        }
        let polys = ct
            .polys
            .iter()
            .map(|p| drop_last_rounded(&self.ctx, ct.level, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Ciphertext {
            fingerprint: self.ctx.params().fingerprint(),
            polys,
            level: ct.level - 1,
            scale: ct.scale,
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
        let q = self.ctx.q_primes(ct.level);
        let big = BigModulus::new(&q)?;
        check_bits(bits, &big)?;
        let polys = ct
            .polys
            .iter()
            .zip(bits)
            .map(|(poly, k)| match k {
                0 => poly.clone(),
                _ => lifted_poly(&big, &rounded_values(&big, poly, &q, k), &q, k),
            })
            .collect();
        Ok(Ciphertext {
            fingerprint: self.ctx.params().fingerprint(),
            polys,
            level: ct.level,
            scale: ct.scale,
            seed: if bits[1] == 0 { ct.seed } else { None },
            rounded: Some(bits),
            subring: None,
        })
    }

    /// Rotates the slots left by `step` (right if negative). BFV rotates both rows.
    pub fn rotate(&self, ct: &Ciphertext, step: i64, keys: &GaloisKeys) -> Result<Ciphertext> {
        let g = self.ctx.galois_element(step);
        self.apply_galois(ct, g, keys.get(g, Some(step))?, keys)
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
            digits: decompose(&self.ctx, ct.level, &ct.polys[1])?,
            level: ct.level,
            scale: ct.scale,
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
            fingerprint: self.ctx.params().fingerprint(),
            polys: vec![c0.permuted(&perm), c1.permuted(&perm)],
            level: h.level,
            scale: h.scale,
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
        self.ctx.native_products(ct.level)?;
        let (level, scale, fingerprint) = (ct.level, ct.scale, ct.fingerprint);
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
            level,
            scale,
            form: ProductForm::Native,
            fingerprint,
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
                extend(&self.ctx, ct.level, &ct.polys[0])?,
                extend(&self.ctx, ct.level, &ct.polys[1])?,
            ],
            ProductForm::Native => {
                self.ctx.native_products(ct.level)?;
                [ct.polys[0].clone(), ct.polys[1].clone()]
            }
        };
        Ok(ProductOperand {
            residues: Storage::Owned {
                polys,
                narrow: Vec::new(),
            },
            level: ct.level,
            scale: ct.scale,
            form,
            fingerprint: ct.fingerprint,
        })
    }

    /// The operand with its residues on trailing primes below `2^32` stored as `u32` words
    /// (for CKKS presets, the small rescaling prime): the same products
    /// ([`ProductAccumulator::add_products`] reads them with
    /// [`crate::math::kernels::LazyTensor::add_batch_narrow`]), a quarter less memory per
    /// such prime. Unchanged if its last prime is `2^32` or more, or if it is compact already.
    pub fn compact_product(&self, op: ProductOperand) -> Result<ProductOperand> {
        self.ctx.check_fingerprint(&op.fingerprint)?;
        let ProductOperand {
            residues,
            level,
            scale,
            form,
            fingerprint,
        } = op;
        let polys = match residues {
            Storage::Owned { polys, narrow } if narrow.is_empty() => polys,
            // compact already, or shared (in the compact layout)
            residues => {
                return Ok(ProductOperand {
                    residues,
                    level,
                    scale,
                    form,
                    fingerprint,
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
            level,
            scale,
            form,
            fingerprint,
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
            level: spec.level,
            scale: spec.scale,
            form: spec.form,
            fingerprint: self.ctx.params().fingerprint(),
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

impl ProductAccumulator {
    /// An empty accumulator for products at `level` (BFV: extended products, operands from
    /// [`Evaluator::prepare_product`]).
    pub fn new(ctx: &Context, level: usize) -> Result<Self> {
        let (form, capacity) = match &ctx.level(level)?.bfv {
            Some(b) => (ProductForm::Extended, b.product_capacity),
            None => (ProductForm::Native, usize::MAX),
        };
        Ok(Self::empty(ctx, level, form, capacity))
    }

    /// An empty accumulator of native products at `level` (operands from
    /// [`Evaluator::prepare_native_product`]): the tensor is summed in `Q_ℓ` itself.
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

    /// Adds `a · b` (both prepared with [`Evaluator::prepare_product`]). Fails with
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
                self.ctx.check_fingerprint(&op.fingerprint)?;
                if op.form != self.form {
                    return Err(HeError::ProductFormMismatch {
                        expected: self.form.name(),
                        actual: op.form.name(),
                    });
                }
                if op.level != self.level {
                    return Err(HeError::LevelMismatch {
                        expected: self.level,
                        actual: op.level,
                    });
                }
            }
            // as product by product: each CKKS scale must match the previous one's
            let product = a.scale * b.scale;
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
        if ct.level != self.level || ct.polys.len() != 2 {
            return Err(HeError::LevelMismatch {
                expected: self.level,
                actual: ct.level,
            });
        }
        let scale = ct.scale * pt.scale;
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
    fn tensor_ciphertext(&self) -> Result<Ciphertext> {
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
            fingerprint: self.ctx.params().fingerprint(),
            polys,
            level: self.level,
            scale: self.scale.unwrap_or(1.0),
            seed: None,
            rounded: None,
            subring: None,
        })
    }

    /// The sum without its relinearization: three polynomials (BFV: the tensor scaled by
    /// `t/Q`, or by `−t` for native products), for [`Evaluator::rotated_term`]. Plaintext
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

    /// Reduces the sum once: BFV scales the tensor by `t/Q`; then one relinearization; the
    /// plaintext products are added last.
    pub fn finish(&self, ev: &Evaluator, rk: &RelinKey) -> Result<Ciphertext> {
        let q = self.ctx.q_primes(self.level);
        let mut out = match &self.tensor {
            Some(_) => ev.relinearize(&self.tensor_ciphertext()?, rk)?,
            None => {
                let n = self.ctx.degree();
                Ciphertext {
                    fingerprint: self.ctx.params().fingerprint(),
                    polys: vec![RnsPoly::zero(n, q.len()), RnsPoly::zero(n, q.len())],
                    level: self.level,
                    scale: self.plain_scale.unwrap_or(1.0),
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
                && !scales_match(out.scale, ps)
            {
                return Err(HeError::ScaleMismatch {
                    expected: out.scale.log2(),
                    actual: ps.log2(),
                });
            }
            out.polys[0].add_assign(p0, &q);
            out.polys[1].add_assign(p1, &q);
        }
        Ok(out)
    }
}
