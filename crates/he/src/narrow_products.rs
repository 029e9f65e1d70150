//! Many plaintext × ciphertext products on primes below `2^32`, summed lazily and computed
//! tile by tile: private retrieval's first dimension, where every record (one of a batch of
//! [`NarrowOperands`]) is multiplied by a few selector ciphertexts (of a table of
//! [`NarrowSelectors`]) into a few sums (of [`NarrowSums`]).
//!
//! - **Packed 32-bit words**: residues are held two per 64-bit word (coefficients `2i` and
//!   `2i + 1` in word `i`), so one 32×32→64-bit multiply of the low halves and one of the
//!   high halves (`vpmuludq`, no shuffles) give two products; operands are transformed by
//!   32-bit NTTs.
//! - **Lazy sums**: a sum adds products to `u64` words (even and odd coefficients apart)
//!   without reducing them until one more could overflow (after a reduction a word is
//!   below `p`, so `⌊(2^64 − p) / (p − 1)^2⌋` products fit: 1 024 on 27-bit primes).
//! - **Tile-major arenas**: selectors and sums are each one buffer laid out
//!   `[prime][tile][object][words]`, so that one tile (32 coefficients) of every object of
//!   a batch is one contiguous run of memory, small enough for a core's L2 cache (operands
//!   are laid out `[object][prime][words]` instead: a record is lifted and transformed in
//!   place, its 32-bit NTT's output read as packed words, with no copy into tiles);
//!   [`accumulate_narrow`] runs a whole list of products one tile at a time, each sum's
//!   words kept in registers over all its products (a sum is read and written once per
//!   list and tile, not once per product), in blocks sized by the vector registers.
//! - **One prime at a time** ([`accumulate_narrow_by_prime`]): operands that hold one
//!   prime are transformed and used prime by prime, so that a batch's transformed records
//!   (four times their bytes for two primes) are still in the cache when their products
//!   read them.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::math::simd::{vectorized, wide_vectors};
use crate::meta::Meta;
use crate::params::Scheme;
use crate::plaintext::Ciphertext;

/// Packed words per tile (32 coefficients): one tile of every object a batch touches (a
/// few hundred selectors, operands and sums) stays within a core's L2 cache while the
/// tile's products run, so that each byte comes from memory once per batch.
const TILE_WORDS: usize = 16;

/// Packed words a sum keeps in registers while its products are added, on AVX-512: two
/// components × even and odd halves × 16 words, eight 512-bit registers.
const WIDE_WORDS: usize = 16;

/// The same on AVX2 (or narrower): 8 words, eight of its sixteen 256-bit registers (16
/// words spilled the sums to the stack: the products ran at half speed).
const WORDS: usize = 8;

// the kernel reads whole blocks of words: tiles are made of them
const _: () = assert!(TILE_WORDS.is_multiple_of(WIDE_WORDS) && TILE_WORDS.is_multiple_of(WORDS));

/// The primes of `level` if all are below `2^32` (the narrow products' condition).
fn narrow_primes(ctx: &Context, level: usize) -> Result<usize> {
    ctx.level(level)?;
    if ctx.scheme() != Scheme::Bfv {
        return Err(HeError::WrongScheme {
            operation: "narrow plaintext products",
            scheme: "CKKS",
        });
    }
    let q = ctx.q_primes(level);
    if q.iter().any(|p| p.value() >= 1 << 32) {
        return Err(HeError::InvalidParameters {
            reason: format!(
                "narrow products need primes below 2^32 at level {level}; use a preset with \
                 narrow primes (pir-4096)"
            ),
        });
    }
    if !ctx.degree().is_multiple_of(2 * TILE_WORDS) {
        return Err(HeError::InvalidParameters {
            reason: format!(
                "narrow products need a degree that is a multiple of {}",
                2 * TILE_WORDS
            ),
        });
    }
    Ok(q.len())
}

/// Where an object's words of one tile begin in a tile-major arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tiles {
    /// Tiles per prime.
    tiles: usize,
    /// Objects in the arena.
    count: usize,
    /// Words per object and tile.
    width: usize,
}

impl Tiles {
    fn new(ctx: &Context, count: usize, per_tile: usize) -> Self {
        Self {
            tiles: ctx.degree() / (2 * TILE_WORDS),
            count,
            width: per_tile * TILE_WORDS,
        }
    }

    fn len(&self, primes: usize) -> usize {
        primes * self.tiles * self.count * self.width
    }

    /// The first word of object `i`'s tile `t` of prime `j`.
    #[inline(always)]
    fn at(&self, j: usize, t: usize, i: usize) -> usize {
        ((j * self.tiles + t) * self.count + i) * self.width
    }
}

/// Where an operand's words of one tile begin in an object-major arena: each operand's
/// residues of each prime it holds are one run of `n / 2` packed words in coefficient
/// order, so that a load lifts and transforms them in place (the 32-bit words of the NTT
/// are the packed words: coefficients `2i` and `2i + 1` in word `i`). Runs are
/// [`RUN_PAD`] words apart: at a power-of-two stride the tiles the products read of a
/// batch's operands would all fall in the same few cache sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Runs {
    /// Tiles per prime.
    tiles: usize,
    /// Operands in the arena.
    count: usize,
    /// Primes held per operand.
    held: usize,
}

/// Words between two operand runs (one cache line).
const RUN_PAD: usize = 8;

impl Runs {
    fn new(ctx: &Context, count: usize, held: usize) -> Self {
        Self {
            tiles: ctx.degree() / (2 * TILE_WORDS),
            count,
            held,
        }
    }

    fn len(&self) -> usize {
        self.count * self.held * self.stride()
    }

    /// Words from one run to the next.
    #[inline(always)]
    fn stride(&self) -> usize {
        self.tiles * TILE_WORDS + RUN_PAD
    }

    /// The first word of operand `i`'s tile `t` of held prime `j`.
    #[inline(always)]
    fn at(&self, j: usize, t: usize, i: usize) -> usize {
        (i * self.held + j) * self.stride() + t * TILE_WORDS
    }

    /// Operand `i`'s words of held prime `j`.
    fn run(&self, j: usize, i: usize) -> std::ops::Range<usize> {
        let first = self.at(j, 0, i);
        first..first + self.tiles * TILE_WORDS
    }
}

/// A ciphertext of two polynomials with its residues packed two per word, laid out
/// `[prime][component][word]`: a selector on its way into a [`NarrowSelectors`] table.
#[derive(Clone, Debug)]
pub struct NarrowCiphertext {
    data: Vec<u64>,
    level: usize,
    scale: f64,
    fingerprint: [u8; 32],
}

impl NarrowCiphertext {
    /// `ct` (two polynomials, at a level whose primes are below `2^32`) in packed words.
    pub fn new(ctx: &Context, ct: &Ciphertext) -> Result<Self> {
        ctx.check_ciphertext(ct)?;
        if ct.polys.len() != 2 {
            return Err(HeError::CiphertextSize {
                expected: 2,
                actual: ct.polys.len(),
            });
        }
        let level = ct.meta.level;
        let primes = narrow_primes(ctx, level)?;
        let n = ctx.degree();
        let mut data = vec![0u64; primes * n];
        let mut comps = data.chunks_exact_mut(n / 2);
        for j in 0..primes {
            for (poly, out) in ct.polys.iter().zip(comps.by_ref()) {
                // residues are below their prime, itself below 2^32
                for (o, pair) in out.iter_mut().zip(poly.comp(j).chunks_exact(2)) {
                    *o = pair[0] | (pair[1] << 32);
                }
            }
        }
        Ok(Self {
            data,
            level,
            scale: ct.meta.scale,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// The level of the ciphertext.
    pub fn level(&self) -> usize {
        self.level
    }
}

/// A table of selector ciphertexts in one tile-major arena (see the module's
/// documentation), indexed in the order they were given.
#[derive(Clone, Debug)]
pub struct NarrowSelectors {
    data: Vec<u64>,
    tiles: Tiles,
    level: usize,
    scale: f64,
    fingerprint: [u8; 32],
}

impl NarrowSelectors {
    /// The table of `selectors` (all at `level`), each dropped as soon as it is copied.
    pub fn new(
        ctx: &Context,
        level: usize,
        selectors: impl ExactSizeIterator<Item = NarrowCiphertext>,
    ) -> Result<Self> {
        let primes = narrow_primes(ctx, level)?;
        let tiles = Tiles::new(ctx, selectors.len(), 2);
        let half = ctx.degree() / 2;
        let mut data = vec![0u64; tiles.len(primes)];
        let mut scale = 1.0;
        let mut copied = 0;
        for (i, sel) in selectors.enumerate() {
            ctx.check_fingerprint(&sel.fingerprint)?;
            if sel.level != level {
                return Err(HeError::LevelMismatch {
                    expected: level,
                    actual: sel.level,
                });
            }
            if i >= tiles.count {
                return Err(HeError::LengthMismatch {
                    what: "selectors of a narrow table",
                    expected: tiles.count,
                    actual: i + 1,
                });
            }
            scale = sel.scale;
            for j in 0..primes {
                for t in 0..tiles.tiles {
                    let dst = tiles.at(j, t, i);
                    for c in 0..2 {
                        let src = (2 * j + c) * half + t * TILE_WORDS;
                        data[dst + c * TILE_WORDS..][..TILE_WORDS]
                            .copy_from_slice(&sel.data[src..src + TILE_WORDS]);
                    }
                }
            }
            copied += 1;
        }
        if copied != tiles.count {
            return Err(HeError::LengthMismatch {
                what: "selectors of a narrow table",
                expected: tiles.count,
                actual: copied,
            });
        }
        Ok(Self {
            data,
            tiles,
            level,
            scale,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Selectors in the table.
    pub fn len(&self) -> usize {
        self.tiles.count
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.tiles.count == 0
    }
}

/// A batch of BFV plaintexts in NTT form at one level, in one object-major arena, each
/// reloadable in place ([`Self::load_u16`]): either every prime of the level
/// ([`Self::new`]), or one prime at a time ([`Self::one_prime`], for
/// [`accumulate_narrow_by_prime`]: half the bytes, so that a batch's operands stay in the
/// cache between their transforms and their products).
#[derive(Clone, Debug)]
pub struct NarrowOperands {
    data: Vec<u64>,
    runs: Runs,
    level: usize,
    /// The primes held: `first..first + held` of the level's.
    first: usize,
    held: usize,
    /// The pass of [`accumulate_narrow_by_prime`] each operand was last loaded in: an
    /// operand of an earlier pass holds another prime's residues.
    loaded_in: Vec<u64>,
    pass: u64,
    fingerprint: [u8; 32],
}

impl NarrowOperands {
    /// `count` zero operands at `level` (whose primes must be below `2^32`), every prime.
    pub fn new(ctx: &Context, level: usize, count: usize) -> Result<Self> {
        let primes = narrow_primes(ctx, level)?;
        Self::holding(ctx, level, count, primes)
    }

    /// `count` operands at `level` holding one prime at a time: loaded by the loader of
    /// [`accumulate_narrow_by_prime`], once per prime.
    pub fn one_prime(ctx: &Context, level: usize, count: usize) -> Result<Self> {
        narrow_primes(ctx, level)?;
        Self::holding(ctx, level, count, 1)
    }

    fn holding(ctx: &Context, level: usize, count: usize, held: usize) -> Result<Self> {
        let runs = Runs::new(ctx, count, held);
        Ok(Self {
            data: vec![0; runs.len()],
            runs,
            level,
            first: 0,
            held,
            loaded_in: vec![0; count],
            pass: 0,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Operands in the batch.
    pub fn len(&self) -> usize {
        self.runs.count
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.runs.count == 0
    }

    /// Replaces operand `i` by the plaintext of coefficients `values` (each below `t`,
    /// lifted centered; missing ones are zero), without allocating.
    pub fn load(&mut self, ctx: &Context, i: usize, values: &[u64]) -> Result<()> {
        ctx.check_fingerprint(&self.fingerprint)?;
        crate::bfv::check_coefficients(ctx, values)?;
        self.load_with(ctx, i, values)
    }

    /// [`Self::load`] for coefficients of 16 bits (below `t` whenever `t > 2^16`, as in
    /// `pir-4096`; checked otherwise): no pass to check them.
    pub fn load_u16(&mut self, ctx: &Context, i: usize, values: &[u16]) -> Result<()> {
        ctx.check_fingerprint(&self.fingerprint)?;
        if ctx.params().plain_modulus() <= u64::from(u16::MAX) {
            let wide: Vec<u64> = values.iter().map(|&v| u64::from(v)).collect();
            crate::bfv::check_coefficients(ctx, &wide)?;
        } else if values.len() > ctx.degree() {
            return Err(HeError::LengthMismatch {
                what: "BFV coefficients",
                expected: ctx.degree(),
                actual: values.len(),
            });
        }
        self.load_with(ctx, i, values)
    }

    /// Lifts `values` (checked below `t`) centered into each prime and transforms them, in
    /// place in operand `i`'s runs.
    fn load_with<T: Copy + Into<u64>>(
        &mut self,
        ctx: &Context,
        i: usize,
        values: &[T],
    ) -> Result<()> {
        if i >= self.runs.count {
            return Err(HeError::LengthMismatch {
                what: "narrow operand index",
                expected: self.runs.count,
                actual: i,
            });
        }
        let t = ctx.params().plain_modulus();
        let held = ctx
            .q_primes(self.level)
            .range(self.first, self.first + self.held);
        self.loaded_in[i] = self.pass;
        for (j, prime) in held.iter().enumerate() {
            let words: &mut [u32] = bytemuck::cast_slice_mut(&mut self.data[self.runs.run(j, i)]);
            // centered: v > t/2 stands for v − t, i.e. p − (t − v). Every value is below
            // t < p < 2^32 (narrow primes), so the lift runs on 32-bit lanes
            let half = (t / 2) as u32;
            let shift = prime.value().wrapping_sub(t) as u32;
            vectorized(
                #[inline(always)]
                || {
                    // branch-free (a mask from the sign of half − v): a branch on the
                    // records' bits mispredicted half the time and kept the loop scalar
                    for (o, &v) in words.iter_mut().zip(values) {
                        let v = Into::<u64>::into(v) as u32;
                        let above = (half.wrapping_sub(v) as i32 >> 31) as u32;
                        *o = v.wrapping_add(shift & above);
                    }
                },
            );
            let filled = values.len().min(words.len());
            words[filled..].fill(0);
            prime.forward_narrow(words);
            // word i is coefficient 2i in its low half: the memory order on little-endian
            #[cfg(target_endian = "big")]
            for pair in words.chunks_exact_mut(2) {
                pair.swap(0, 1);
            }
        }
        Ok(())
    }
}

/// Lazy sums of `selector × operand` products at one level (see the module's
/// documentation), in one tile-major arena: per sum and tile, the even and odd words of
/// component 0, then of component 1.
#[derive(Clone, Debug)]
pub struct NarrowSums {
    data: Vec<u64>,
    tiles: Tiles,
    level: usize,
    /// Products per sum and prime since their last reduction (`i · primes + j`).
    pending: Vec<usize>,
    primes: usize,
    /// Products per sum in all.
    products: Vec<usize>,
    /// Most products between two reductions.
    limit: usize,
    scale: Option<f64>,
    fingerprint: [u8; 32],
}

impl NarrowSums {
    /// `count` empty sums at `level` (whose primes must be below `2^32`).
    pub fn new(ctx: &Context, level: usize, count: usize) -> Result<Self> {
        let primes = narrow_primes(ctx, level)?;
        let limit = ctx
            .q_primes(level)
            .iter()
            .map(|p| {
                let m = u128::from(p.value() - 1);
                ((u128::from(u64::MAX) - m) / (m * m).max(1)).min(1 << 20) as usize
            })
            .min()
            .unwrap_or(1)
            .max(1);
        let tiles = Tiles::new(ctx, count, 4);
        Ok(Self {
            data: vec![0; tiles.len(primes)],
            tiles,
            level,
            pending: vec![0; count * primes],
            primes,
            products: vec![0; count],
            limit,
            scale: None,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Sums in the arena.
    pub fn len(&self) -> usize {
        self.tiles.count
    }

    /// Whether there are no sums.
    pub fn is_empty(&self) -> bool {
        self.tiles.count == 0
    }

    /// Products added to sum `i` so far (0 for an index out of range).
    pub fn products(&self, i: usize) -> usize {
        self.products.get(i).copied().unwrap_or(0)
    }

    /// Reduces sum `i`'s words of prime `j`.
    fn reduce(&mut self, ctx: &Context, i: usize, j: usize) {
        let tiles = self.tiles;
        if let Some(prime) = ctx.q_primes(self.level).iter().nth(j) {
            for t in 0..tiles.tiles {
                for v in &mut self.data[tiles.at(j, t, i)..][..tiles.width] {
                    *v = prime.m.reduce(*v);
                }
            }
        }
        self.pending[i * self.primes + j] = 0;
    }

    /// Makes room for `count` more products in sum `i`'s words of prime `j`.
    fn make_room(&mut self, ctx: &Context, i: usize, j: usize, count: usize) {
        if self.pending[i * self.primes + j] + count > self.limit {
            self.reduce(ctx, i, j);
        }
        self.pending[i * self.primes + j] += count;
    }

    /// The sums as ciphertexts, in order (zeros where nothing was added).
    pub fn finish(mut self, ctx: &Context) -> Result<Vec<Ciphertext>> {
        self.take(ctx, self.tiles.count)
    }

    /// The first `count` sums as ciphertexts, in order (zeros where nothing was added), and
    /// every sum emptied: the arena is ready for another list of products without a fresh
    /// allocation (whose pages the system would have to zero again).
    pub fn take(&mut self, ctx: &Context, count: usize) -> Result<Vec<Ciphertext>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        if count > self.tiles.count {
            return Err(HeError::LengthMismatch {
                what: "narrow sums taken",
                expected: self.tiles.count,
                actual: count,
            });
        }
        let n = ctx.degree();
        let primes = self.level + 1;
        let tiles = self.tiles;
        let out = (0..count)
            .map(|i| {
                for j in 0..primes {
                    self.reduce(ctx, i, j);
                }
                let mut polys = [RnsPoly::zero(n, primes), RnsPoly::zero(n, primes)];
                for j in 0..primes {
                    for t in 0..tiles.tiles {
                        let words = &self.data[tiles.at(j, t, i)..][..tiles.width];
                        for (c, poly) in polys.iter_mut().enumerate() {
                            let even = &words[2 * c * TILE_WORDS..][..TILE_WORDS];
                            let odd = &words[(2 * c + 1) * TILE_WORDS..][..TILE_WORDS];
                            let out = &mut poly.comp_mut(j)[2 * t * TILE_WORDS..][..2 * TILE_WORDS];
                            for ((pair, &e), &o) in out.chunks_exact_mut(2).zip(even).zip(odd) {
                                pair[0] = e;
                                pair[1] = o;
                            }
                        }
                    }
                }
                let [c0, c1] = polys;
                Ok(Ciphertext {
                    meta: Meta::new(ctx, self.level, self.scale.unwrap_or(1.0))?,
                    polys: vec![c0, c1],
                    seed: None,
                    rounded: None,
                    subring: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.data.fill(0);
        self.pending.fill(0);
        self.products.fill(0);
        self.scale = None;
        Ok(out)
    }
}

/// One product of a list: `sums[acc] += selectors[selector] · operands[operand]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NarrowProduct {
    /// Index of the sum.
    pub acc: usize,
    /// Index of the selector ciphertext.
    pub selector: usize,
    /// Index of the plaintext operand.
    pub operand: usize,
}

/// Adds every product of `products`, tile by tile (see the module's documentation). The
/// three arenas must be at one level of `ctx`, the operands holding every prime
/// ([`NarrowOperands::new`]); an index out of range is an error (nothing is added then).
pub fn accumulate_narrow(
    ctx: &Context,
    sums: &mut NarrowSums,
    selectors: &NarrowSelectors,
    operands: &NarrowOperands,
    products: &[NarrowProduct],
) -> Result<()> {
    check_arenas(ctx, sums, selectors, operands, products)?;
    if operands.first != 0 || operands.held != sums.primes {
        return Err(HeError::InvalidParameters {
            reason: "operands holding one prime at a time are summed by \
                     accumulate_narrow_by_prime"
                .to_string(),
        });
    }
    count_products(sums, products);
    for chunk in by_sum(products).chunks(sums.limit) {
        run_chunk(ctx, sums, selectors, operands, chunk, 0..sums.primes);
    }
    sums.scale = Some(selectors.scale);
    Ok(())
}

/// [`accumulate_narrow`] one prime at a time, on operands holding one prime
/// ([`NarrowOperands::one_prime`]): for each prime of the level, `load` fills the operands
/// (by [`NarrowOperands::load_u16`] or [`NarrowOperands::load`], which transform them
/// modulo that prime), then every product is added modulo that prime. An operand a product
/// names but `load` left out in a pass is an error: it would hold another prime's residues.
/// Such an error, or one from `load`, after the first prime leaves the sums partial: drop
/// them.
pub fn accumulate_narrow_by_prime(
    ctx: &Context,
    sums: &mut NarrowSums,
    selectors: &NarrowSelectors,
    operands: &mut NarrowOperands,
    products: &[NarrowProduct],
    mut load: impl FnMut(&mut NarrowOperands) -> Result<()>,
) -> Result<()> {
    check_arenas(ctx, sums, selectors, operands, products)?;
    if operands.held != 1 {
        return Err(HeError::InvalidParameters {
            reason: "accumulate_narrow_by_prime needs operands holding one prime \
                     (NarrowOperands::one_prime)"
                .to_string(),
        });
    }
    let sorted = by_sum(products);
    for j in 0..sums.primes {
        operands.first = j;
        operands.pass += 1;
        load(operands)?;
        if let Some(p) = products
            .iter()
            .find(|p| operands.loaded_in[p.operand] != operands.pass)
        {
            return Err(HeError::InvalidParameters {
                reason: format!(
                    "narrow operand {} was not loaded for prime {j}: the loader must load \
                     every operand a product names, in each pass",
                    p.operand
                ),
            });
        }
        for chunk in sorted.chunks(sums.limit) {
            run_chunk(ctx, sums, selectors, operands, chunk, j..j + 1);
        }
    }
    count_products(sums, products);
    sums.scale = Some(selectors.scale);
    Ok(())
}

/// The checks both accumulations make before adding anything: one context, one level,
/// every index in range.
fn check_arenas(
    ctx: &Context,
    sums: &NarrowSums,
    selectors: &NarrowSelectors,
    operands: &NarrowOperands,
    products: &[NarrowProduct],
) -> Result<()> {
    for (fp, level) in [
        (&sums.fingerprint, sums.level),
        (&selectors.fingerprint, selectors.level),
        (&operands.fingerprint, operands.level),
    ] {
        ctx.check_fingerprint(fp)?;
        if level != sums.level {
            return Err(HeError::LevelMismatch {
                expected: sums.level,
                actual: level,
            });
        }
    }
    for p in products {
        for (what, index, len) in [
            ("narrow product sum index", p.acc, sums.len()),
            ("narrow product selector index", p.selector, selectors.len()),
            ("narrow product operand index", p.operand, operands.len()),
        ] {
            if index >= len {
                return Err(HeError::LengthMismatch {
                    what,
                    expected: len,
                    actual: index,
                });
            }
        }
    }
    Ok(())
}

fn count_products(sums: &mut NarrowSums, products: &[NarrowProduct]) {
    for p in products {
        sums.products[p.acc] += 1;
    }
}

/// The products in order of their sums (stable), so that any run of them groups each sum's
/// products together.
fn by_sum(products: &[NarrowProduct]) -> Vec<NarrowProduct> {
    let mut sorted = products.to_vec();
    sorted.sort_by_key(|p| p.acc);
    sorted
}

/// At most `limit` products sorted by sum ([`by_sum`]), added modulo `primes` (each sum's
/// words of those primes reduced first where they could overflow).
fn run_chunk(
    ctx: &Context,
    sums: &mut NarrowSums,
    selectors: &NarrowSelectors,
    operands: &NarrowOperands,
    sorted: &[NarrowProduct],
    primes: std::ops::Range<usize>,
) {
    let groups: Vec<&[NarrowProduct]> = sorted.chunk_by(|a, b| a.acc == b.acc).collect();
    for group in &groups {
        for j in primes.clone() {
            sums.make_room(ctx, group[0].acc, j, group.len());
        }
    }
    if wide_vectors() {
        run_tiles::<WIDE_WORDS>(primes, sums, selectors, operands, &groups);
    } else {
        run_tiles::<WORDS>(primes, sums, selectors, operands, &groups);
    }
}

/// The products of `groups` (each one sum's), tile by tile, without reduction (the caller
/// keeps the sums within their lazy bound): a group's words are loaded once, summed in
/// registers over all its products, and stored once.
fn run_tiles<const W: usize>(
    primes: std::ops::Range<usize>,
    sums: &mut NarrowSums,
    selectors: &NarrowSelectors,
    operands: &NarrowOperands,
    groups: &[&[NarrowProduct]],
) {
    let (st, sel_t, op_t) = (sums.tiles, selectors.tiles, operands.runs);
    let (acc, sel, op) = (&mut sums.data, &selectors.data, &operands.data);
    let span = |index: fn(&NarrowProduct) -> usize| {
        let all = groups.iter().flat_map(|g| g.iter().map(index));
        let lo = all.clone().min().unwrap_or(0);
        let hi = all.max().map_or(0, |h| h + 1);
        (lo, hi)
    };
    let sel_span = span(|p| p.selector);
    let op_span = span(|p| p.operand);
    let acc_span = span(|p| p.acc);
    // the operands hold primes `first..`: prime j is their tile row j − first
    let op_first = operands.first;
    vectorized(
        #[inline(always)]
        || {
            for j in primes.clone() {
                let op_j = j - op_first;
                for t in 0..st.tiles {
                    // the tile's runs read in order first: the lines come at streaming speed
                    // instead of one miss at a time in the products' order
                    let mut touched = 0u64;
                    for (words, tiles, (lo, hi)) in
                        [(&sel[..], sel_t, sel_span), (&acc[..], st, acc_span)]
                    {
                        if lo < hi {
                            let run = &words[tiles.at(j, t, lo)..tiles.at(j, t, hi)];
                            for line in run.chunks(8) {
                                touched = touched.wrapping_add(line[0]);
                            }
                        }
                    }
                    // an operand's tile is two lines of its own run
                    for i in op_span.0..op_span.1 {
                        let at = op_t.at(op_j, t, i);
                        for line in [at, at + 8] {
                            touched = touched.wrapping_add(op.get(line).copied().unwrap_or(0));
                        }
                    }
                    std::hint::black_box(touched);
                    for group in groups {
                        let Some(first) = group.first() else { continue };
                        let base = st.at(j, t, first.acc);
                        for word in (0..TILE_WORDS).step_by(W) {
                            let mut block = [[0u64; W]; 4];
                            for (h, b) in block.iter_mut().enumerate() {
                                *b = read_block(acc, base + h * TILE_WORDS + word);
                            }
                            for p in *group {
                                let s = sel_t.at(j, t, p.selector) + word;
                                mul_add_packed(
                                    &mut block,
                                    &read_block(sel, s),
                                    &read_block(sel, s + TILE_WORDS),
                                    &read_block(op, op_t.at(op_j, t, p.operand) + word),
                                );
                            }
                            for (h, b) in block.iter().enumerate() {
                                let at = base + h * TILE_WORDS + word;
                                if let Some(out) = acc.get_mut(at..at + W) {
                                    out.copy_from_slice(b);
                                }
                            }
                        }
                    }
                }
            }
        },
    );
}

/// `W` words of `words` from `at` (zeros past its end: never the case in an arena, whose
/// tiles are made of whole blocks).
#[inline(always)]
fn read_block<const W: usize>(words: &[u64], at: usize) -> [u64; W] {
    words
        .get(at..at + W)
        .and_then(|b| <[u64; W]>::try_from(b).ok())
        .unwrap_or([0; W])
}

/// The low and high 32-bit halves of `x` and `y` multiplied (full 64-bit products).
#[inline(always)]
fn halves(x: u64, y: u64) -> (u64, u64) {
    ((x & 0xffff_ffff) * (y & 0xffff_ffff), (x >> 32) * (y >> 32))
}

/// Adds `x0 · y` into `sums[0]` (even) and `sums[1]` (odd), `x1 · y` into `sums[2]`,
/// `sums[3]`, for packed words (wrapping).
#[inline(always)]
fn mul_add_packed<const W: usize>(
    sums: &mut [[u64; W]; 4],
    x0: &[u64; W],
    x1: &[u64; W],
    y: &[u64; W],
) {
    let [e0, o0, e1, o1] = sums;
    for i in 0..W {
        let (e, o) = halves(x0[i], y[i]);
        e0[i] = e0[i].wrapping_add(e);
        o0[i] = o0[i].wrapping_add(o);
        let (e, o) = halves(x1[i], y[i]);
        e1[i] = e1[i].wrapping_add(e);
        o1[i] = o1[i].wrapping_add(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BfvEncoder, Evaluator, PlainOperand, SecretKey};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
        rng.next_u64() % n
    }

    /// `count` products with random indices below `sums`, `selectors` and `operands`.
    fn random_products(
        rng: &mut ChaCha8Rng,
        count: usize,
        [sums, selectors, operands]: [u64; 3],
    ) -> Vec<NarrowProduct> {
        (0..count)
            .map(|_| NarrowProduct {
                acc: below(rng, sums) as usize,
                selector: below(rng, selectors) as usize,
                operand: below(rng, operands) as usize,
            })
            .collect()
    }

    /// The narrow path sums exactly what the 64-bit path sums, over more products than
    /// one lazy run holds, with repeated and interleaved indices.
    #[test]
    fn narrow_sums_match_the_wide_path() {
        let ctx = Context::preset("pir-4096").unwrap();
        let ev = Evaluator::new(&ctx);
        let sk = SecretKey::generate(&ctx).unwrap();
        let enc = BfvEncoder::new(&ctx).unwrap();
        let t = ctx.params().plain_modulus();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let level = 1;
        let cts: Vec<Ciphertext> = (0..3)
            .map(|i| {
                let pt = enc.encode_coefficients(&[i as u64 + 1]).unwrap();
                let ct = sk.encrypt(&ctx, &pt).unwrap();
                ev.mod_switch_to(&ct, level).unwrap()
            })
            .collect();
        let values: Vec<Vec<u64>> = (0..4)
            .map(|_| (0..ctx.degree()).map(|_| below(&mut rng, t)).collect())
            .collect();
        let selectors = NarrowSelectors::new(
            &ctx,
            level,
            cts.iter().map(|c| NarrowCiphertext::new(&ctx, c).unwrap()),
        )
        .unwrap();
        let mut operands = NarrowOperands::new(&ctx, level, values.len()).unwrap();
        for (i, v) in values.iter().enumerate() {
            operands.load(&ctx, i, v).unwrap();
        }
        let mut narrow = NarrowSums::new(&ctx, level, 2).unwrap();
        let products = random_products(&mut rng, 2500, [2, 3, 4]);
        for list in products.chunks(700) {
            accumulate_narrow(&ctx, &mut narrow, &selectors, &operands, list).unwrap();
        }
        // the reference: each product on the 64-bit path, reduced and added one by one
        let mut wide: Vec<(usize, Option<Ciphertext>)> = vec![(0, None), (0, None)];
        for p in &products {
            let mut op = PlainOperand::zero(&ctx, level).unwrap();
            op.load(&ctx, &values[p.operand]).unwrap();
            let product = ev.mul_plain_operand(&cts[p.selector], &op).unwrap();
            let (count, sum) = &mut wide[p.acc];
            *count += 1;
            *sum = Some(match sum.take() {
                None => product,
                Some(s) => ev.add(&s, &product).unwrap(),
            });
        }
        let wide: Vec<(usize, Ciphertext)> = wide
            .into_iter()
            .map(|(count, sum)| (count, sum.unwrap()))
            .collect();
        for (i, (count, _)) in wide.iter().enumerate() {
            assert_eq!(narrow.products(i), *count);
        }
        let narrow = narrow.finish(&ctx).unwrap();
        assert_eq!(narrow.len(), 2);
        for (a, (_, b)) in narrow.iter().zip(&wide) {
            assert_eq!(a.polys, b.polys);
        }
    }

    /// Sums taken from an arena leave it empty: the same products added again give the
    /// same ciphertexts, and a count beyond the arena is an error.
    #[test]
    fn taken_sums_leave_an_empty_arena() {
        let ctx = Context::preset("pir-4096").unwrap();
        let sk = SecretKey::generate(&ctx).unwrap();
        let enc = BfvEncoder::new(&ctx).unwrap();
        let ev = Evaluator::new(&ctx);
        let pt = enc.encode_coefficients(&[3, 1, 4]).unwrap();
        let ct = ev
            .mod_switch_to(&sk.encrypt(&ctx, &pt).unwrap(), 1)
            .unwrap();
        let selectors = NarrowSelectors::new(
            &ctx,
            1,
            std::iter::once(NarrowCiphertext::new(&ctx, &ct).unwrap()),
        )
        .unwrap();
        let mut operands = NarrowOperands::new(&ctx, 1, 1).unwrap();
        operands.load(&ctx, 0, &[1, 5, 9, 2, 6]).unwrap();
        let mut sums = NarrowSums::new(&ctx, 1, 3).unwrap();
        let products = [0, 2, 2].map(|acc| NarrowProduct {
            acc,
            selector: 0,
            operand: 0,
        });
        accumulate_narrow(&ctx, &mut sums, &selectors, &operands, &products).unwrap();
        let first = sums.take(&ctx, 3).unwrap();
        assert_eq!(sums.products(2), 0);
        accumulate_narrow(&ctx, &mut sums, &selectors, &operands, &products).unwrap();
        let second = sums.take(&ctx, 2).unwrap();
        assert_eq!(second.len(), 2);
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.polys, b.polys);
        }
        assert_ne!(first[0].polys, first[1].polys);
        assert!(sums.take(&ctx, 4).is_err());
    }

    /// One prime at a time, the operands reloaded for each, sums exactly what every prime
    /// at once sums; an operand the loader leaves out, or an arena of the other kind, is an
    /// error.
    #[test]
    fn sums_by_prime_match_sums_of_every_prime() {
        let ctx = Context::preset("pir-4096").unwrap();
        let sk = SecretKey::generate(&ctx).unwrap();
        let enc = BfvEncoder::new(&ctx).unwrap();
        let ev = Evaluator::new(&ctx);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let t = ctx.params().plain_modulus();
        let level = 1;
        let selectors = NarrowSelectors::new(
            &ctx,
            level,
            (0..3usize).map(|i| {
                let pt = enc.encode_coefficients(&[i as u64 + 2, 7]).unwrap();
                let ct = ev.mod_switch_to(&sk.encrypt(&ctx, &pt).unwrap(), level);
                NarrowCiphertext::new(&ctx, &ct.unwrap()).unwrap()
            }),
        )
        .unwrap();
        let values: Vec<Vec<u16>> = (0..5)
            .map(|_| {
                (0..ctx.degree())
                    .map(|_| below(&mut rng, t.min(1 << 16)) as u16)
                    .collect()
            })
            .collect();
        let products = random_products(&mut rng, 1500, [3, 3, 5]);
        let mut all = NarrowOperands::new(&ctx, level, values.len()).unwrap();
        for (i, v) in values.iter().enumerate() {
            all.load_u16(&ctx, i, v).unwrap();
        }
        let mut expected = NarrowSums::new(&ctx, level, 3).unwrap();
        let mut got = NarrowSums::new(&ctx, level, 3).unwrap();
        let mut one = NarrowOperands::one_prime(&ctx, level, values.len()).unwrap();
        for list in products.chunks(600) {
            accumulate_narrow(&ctx, &mut expected, &selectors, &all, list).unwrap();
            accumulate_narrow_by_prime(&ctx, &mut got, &selectors, &mut one, list, |ops| {
                for (i, v) in values.iter().enumerate() {
                    ops.load_u16(&ctx, i, v)?;
                }
                Ok(())
            })
            .unwrap();
        }
        for i in 0..3 {
            assert_eq!(got.products(i), expected.products(i));
        }
        let (got, expected) = (got.finish(&ctx).unwrap(), expected.finish(&ctx).unwrap());
        for (a, b) in got.iter().zip(&expected) {
            assert_eq!(a.polys, b.polys);
        }
        // operand 4 is not loaded for the second prime: it would hold the first's residues
        let mut sums = NarrowSums::new(&ctx, level, 3).unwrap();
        let mut pass = 0;
        let partial =
            accumulate_narrow_by_prime(&ctx, &mut sums, &selectors, &mut one, &products, |ops| {
                pass += 1;
                for (i, v) in values
                    .iter()
                    .enumerate()
                    .take(if pass == 1 { 5 } else { 4 })
                {
                    ops.load_u16(&ctx, i, v)?;
                }
                Ok(())
            });
        assert!(partial.is_err());
        // each accumulation wants its own kind of operands
        assert!(accumulate_narrow(&ctx, &mut sums, &selectors, &one, &products).is_err());
        let refused = accumulate_narrow_by_prime(
            &ctx,
            &mut sums,
            &selectors,
            &mut all,
            &products,
            |_| Ok(()),
        );
        assert!(refused.is_err());
    }

    /// Both register blocks (AVX-512's and AVX2's) add the same products, whichever the
    /// CPU running the test dispatches to.
    #[test]
    fn both_block_widths_sum_the_same() {
        let ctx = Context::preset("pir-4096").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let level = 1;
        let mut fill = |words: &mut Vec<u64>| {
            for w in words.iter_mut() {
                *w = (below(&mut rng, 1 << 27)) | (below(&mut rng, 1 << 27) << 32);
            }
        };
        let mut selectors = NarrowSelectors::new(&ctx, level, std::iter::empty()).unwrap();
        selectors.tiles = Tiles::new(&ctx, 4, 2);
        selectors.data = vec![0; selectors.tiles.len(2)];
        fill(&mut selectors.data);
        let mut operands = NarrowOperands::new(&ctx, level, 3).unwrap();
        fill(&mut operands.data);
        let sums = NarrowSums::new(&ctx, level, 2).unwrap();
        let products: Vec<NarrowProduct> = (0..40)
            .map(|i| NarrowProduct {
                acc: i % 2,
                selector: i % 4,
                operand: i % 3,
            })
            .collect();
        let sorted = by_sum(&products);
        let groups: Vec<&[NarrowProduct]> = sorted.chunk_by(|a, b| a.acc == b.acc).collect();
        let (mut wide, mut narrow) = (sums.clone(), sums);
        run_tiles::<WIDE_WORDS>(0..2, &mut wide, &selectors, &operands, &groups);
        run_tiles::<WORDS>(0..2, &mut narrow, &selectors, &operands, &groups);
        assert_eq!(wide.data, narrow.data);
        assert!(wide.data.iter().any(|&w| w != 0));
    }

    /// Operand runs are disjoint, within the arena, one tile row each, and not a power of
    /// two apart.
    #[test]
    fn operand_runs_are_disjoint_and_padded() {
        let ctx = Context::preset("pir-4096").unwrap();
        let ops = NarrowOperands::new(&ctx, 1, 5).unwrap();
        let r = ops.runs;
        let mut seen = vec![false; ops.data.len()];
        for i in 0..5 {
            for j in 0..2 {
                let run = r.run(j, i);
                assert_eq!(run.len(), ctx.degree() / 2);
                assert_eq!(r.at(j, 1, i), run.start + TILE_WORDS);
                for w in run {
                    assert!(!seen[w], "word {w} in two runs");
                    seen[w] = true;
                }
            }
        }
        assert!(!r.stride().is_power_of_two());
    }

    #[test]
    fn sixteen_bit_loads_match_wide_loads() {
        let ctx = Context::preset("pir-4096").unwrap();
        let words: Vec<u16> = (0..3000u32).map(|i| (i * 7919 % 65536) as u16).collect();
        let wide: Vec<u64> = words.iter().map(|&w| u64::from(w)).collect();
        let mut ops = NarrowOperands::new(&ctx, 1, 2).unwrap();
        ops.load_u16(&ctx, 0, &words).unwrap();
        ops.load(&ctx, 1, &wide).unwrap();
        let r = ops.runs;
        for j in 0..2 {
            assert_eq!(ops.data[r.run(j, 0)], ops.data[r.run(j, 1)]);
        }
        assert!(ops.load_u16(&ctx, 0, &vec![0; ctx.degree() + 1]).is_err());
        assert!(ops.load_u16(&ctx, 2, &words).is_err());
    }

    #[test]
    fn bad_indices_and_levels_are_errors() {
        let ctx = Context::preset("pir-4096").unwrap();
        let mut sums = NarrowSums::new(&ctx, 1, 1).unwrap();
        let ops = NarrowOperands::new(&ctx, 0, 1).unwrap();
        let sels = NarrowSelectors::new(&ctx, 1, std::iter::empty()).unwrap();
        let product = NarrowProduct {
            acc: 0,
            selector: 0,
            operand: 0,
        };
        assert!(accumulate_narrow(&ctx, &mut sums, &sels, &ops, &[product]).is_err());
        let other = Context::preset("bfv-8192").unwrap();
        assert!(NarrowSums::new(&other, 0, 1).is_err());
    }
}
