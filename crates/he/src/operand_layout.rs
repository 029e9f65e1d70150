//! The shape of a product operand, from the parameters alone: which primes it has
//! residues on ([`ProductForm`], [`product_indices`]), which of them it keeps as `u64` or
//! `u32` words ([`compact_primes`]), and how many bytes its kernel layout takes
//! ([`kernel_bytes_len`]). The context sizes operands from here and the evaluator lays them
//! out from here, so neither reaches into the other. ([`Context::product_operand_bytes`] is
//! defined here for that reason: the context itself knows nothing of operands.)

use crate::context::Context;
use crate::errors::Result;
use crate::math::basis::Basis;

/// How the factors of a ciphertext product are represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductForm {
    /// In `Q_ℓ` itself, as the ciphertext is: CKKS, and BFV where `Q_ℓ ≡ 1 (mod t)`
    /// ([`crate::ProductAccumulator::native`]).
    Native,
    /// BFV lifted to the extension basis `Q_ℓ ∪ R` (HPS multiplication).
    Extended,
}

impl ProductForm {
    /// Its name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProductForm::Native => "native",
            ProductForm::Extended => "extended",
        }
    }
}

/// Bytes of the kernel layout of one operand: `wide` primes of `u64` and `narrow` primes of
/// `u32` residues, two polynomials of degree `n` each.
pub(crate) fn kernel_bytes_len(n: usize, wide: usize, narrow: usize) -> usize {
    2 * n * (wide * size_of::<u64>() + narrow * size_of::<u32>())
}

/// The primes (as indices) a product operand of `form` at `level` has residues on: `Q_ℓ`
/// (native) or `Q_ℓ ∪ R` (extended).
pub(crate) fn product_indices(
    ctx: &Context,
    form: ProductForm,
    level: usize,
) -> Result<Vec<usize>> {
    match form {
        ProductForm::Extended => ctx.extended_indices(level).map(<[usize]>::to_vec),
        ProductForm::Native => Ok((0..=level).collect()),
    }
}

/// The primes a compact product operand of `form` at `level` has residues on, as (held as
/// `u64` words, held as `u32` words): the kernel layout's shape.
pub(crate) fn compact_primes(
    ctx: &Context,
    form: ProductForm,
    level: usize,
) -> Result<(usize, usize)> {
    let indices = product_indices(ctx, form, level)?;
    let primes = ctx.primes_at(&indices);
    let wide = wide_prime_count(&primes);
    Ok((wide, primes.len() - wide))
}

/// How many of `primes` precede their trailing run of primes below `2^32`: the residues a
/// compact operand keeps as `u64` words (the rest it stores as `u32`).
pub(crate) fn wide_prime_count(primes: &Basis<'_>) -> usize {
    primes
        .iter()
        .rposition(|p| p.value() >= 1 << 32)
        .map_or(0, |last_wide| last_wide + 1)
}

impl Context {
    /// Bytes of a ciphertext prepared as a gallery product operand at `level` the way the
    /// search engine prepares it: native where the level allows (see
    /// [`Context::native_products`]), else lifted to the extension basis `Q ∪ R`; compact
    /// ([`crate::Evaluator::compact_product`]: `u32` words on trailing primes below `2^32`).
    pub fn product_operand_bytes(&self, level: usize) -> usize {
        let form = match self.native_products(level) {
            Ok(()) => ProductForm::Native,
            Err(_) => ProductForm::Extended,
        };
        let (wide, narrow) = compact_primes(self, form, level).unwrap_or_default();
        kernel_bytes_len(self.inner.n, wide, narrow)
    }
}
