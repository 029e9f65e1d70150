//! Ciphertexts prepared as factors of many products ([`ProductOperand`]): lifted to the
//! extension basis or native, held in memory or read in place from shared bytes (a
//! memory-mapped segment file), in the compact kernel layout; and what a stored operand
//! records about itself ([`OperandSpec`]).

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::meta::Meta;
use crate::operand_layout::{ProductForm, compact_primes, kernel_bytes_len};

/// Bytes that outlive every operand read from them: a memory-mapped segment file, say
/// ([`crate::Evaluator::shared_product`]).
pub type SharedBytes = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

/// What a stored product operand is, besides its residues: everything
/// [`crate::Evaluator::shared_product`] needs to read one back (a segment file records it once
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
/// ([`crate::Evaluator::compact_product`]) stores its residues on trailing primes below `2^32` as
/// `u32` words: the same products, a quarter less memory (and memory traffic) per such prime.
/// A shared operand ([`crate::Evaluator::shared_product`]) reads its residues, in the compact
/// layout of [`ProductOperand::append_kernel_bytes`], from bytes it shares with others (a
/// memory-mapped file): opening it reads nothing.
#[derive(Clone, Debug)]
pub struct ProductOperand {
    pub(crate) residues: Storage,
    /// Parameter set, level and scale of the prepared ciphertext.
    pub(crate) meta: Meta,
    pub(crate) form: ProductForm,
}

/// Where the residues of a [`ProductOperand`] are.
#[derive(Clone)]
pub(crate) enum Storage {
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
        self.meta.level
    }
    /// How the operand is represented.
    pub fn form(&self) -> ProductForm {
        self.form
    }
    /// What [`crate::Evaluator::shared_product`] needs to read the operand back.
    pub fn spec(&self) -> OperandSpec {
        OperandSpec {
            level: self.meta.level,
            scale: self.meta.scale,
            form: self.form,
        }
    }
    /// Whether some residues are stored as `u32` words ([`crate::Evaluator::compact_product`]).
    pub fn is_compact(&self) -> bool {
        self.residues.shape().2 > 0
    }
    /// Whether the residues live in shared bytes ([`crate::Evaluator::shared_product`]).
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
    /// ([`crate::Evaluator::shared_product`] reads them back): prime by prime, both polynomials,
    /// little-endian, `u64` words on the primes a compact operand keeps wide and `u32` words
    /// on the others (the operand need not be compact: the layout is always the compact
    /// one). `ctx` must be the operand's context.
    pub fn append_kernel_bytes(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<()> {
        ctx.check_fingerprint(&self.meta.fingerprint)?;
        let (wide, narrow) = compact_primes(ctx, self.form, self.meta.level)?;
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
