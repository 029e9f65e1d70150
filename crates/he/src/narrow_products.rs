//! Many plaintext × ciphertext products on primes below `2^32`, summed lazily and computed
//! tile by tile: private retrieval's first dimension, where every record (a
//! [`NarrowOperand`]) is multiplied by a few selector ciphertexts ([`NarrowCiphertext`])
//! into a few sums ([`NarrowAccumulator`]).
//!
//! - **32-bit words**: selectors and operands hold residues as `u32` (half the bytes of the
//!   `u64` polynomials), operands are transformed by 32-bit NTTs, and a product of two
//!   residues is one 32×32→64-bit multiply per lane.
//! - **Lazy sums**: an accumulator adds products to `u64` words without reducing them until
//!   one more could overflow (after a reduction a word is below `p`, so
//!   `⌊(2^64 − p) / (p − 1)^2⌋` products fit: 1 024 on 27-bit primes).
//! - **Tiles**: [`accumulate_narrow`] runs a whole list of products one tile of
//!   coefficients at a time, so that the tiles of every accumulator, selector and operand
//!   of the list stay in cache while all the list's products are summed (a sum's words are
//!   read and written once per list instead of once per product).

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::math::simd::vectorized;
use crate::meta::Meta;
use crate::params::Scheme;
use crate::plaintext::Ciphertext;

/// Coefficients per tile: a list of a few hundred products over a few hundred distinct
/// polynomials keeps its tiles within a core's L2 cache (1 KiB per operand, 2 KiB per
/// selector, 4 KiB per accumulator).
const TILE: usize = 128;

// the kernel reads whole blocks of words: tiles are made of them
const _: () = assert!(TILE.is_multiple_of(2 * WORDS));

thread_local! {
    /// The 32-bit words an operand is transformed in before it is packed.
    static NTT_SCRATCH: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A zeroed buffer whose first word sits at one of 32 cache-line offsets, taken in turn:
/// the polynomials of a product list are 2^k bytes long, and buffers that all began at the
/// same offset modulo the cache's way size would fight over the same sets when the list
/// reads one tile of each.
#[derive(Clone, Debug)]
struct Staggered<T> {
    buf: Vec<T>,
    start: usize,
}

/// Cache-line offsets buffers are spread over.
const STAGGER: usize = 32;

impl<T: Copy + Default> Staggered<T> {
    fn new(len: usize) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let turn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STAGGER;
        let line = 64 / size_of::<T>().max(1);
        Self {
            buf: vec![T::default(); len + STAGGER * line],
            start: turn * line,
        }
    }

    fn len(&self) -> usize {
        self.buf.len() - STAGGER * (64 / size_of::<T>().max(1))
    }

    fn words(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len()]
    }

    fn words_mut(&mut self) -> &mut [T] {
        let (start, len) = (self.start, self.len());
        &mut self.buf[start..start + len]
    }
}

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
    Ok(q.len())
}

/// A ciphertext of two polynomials, its residues stored as 32-bit words, laid out
/// `[prime][component][coefficient]`.
#[derive(Clone, Debug)]
pub struct NarrowCiphertext {
    data: Staggered<u64>,
    level: usize,
    scale: f64,
    fingerprint: [u8; 32],
}

impl NarrowCiphertext {
    /// `ct` (two polynomials, at a level whose primes are below `2^32`) in 32-bit words.
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
        let mut data = Staggered::new(primes * n);
        let mut comps = data.words_mut().chunks_exact_mut(n / 2);
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

/// A BFV plaintext in NTT form at one level, as 32-bit words laid out
/// `[prime][coefficient]`, reloadable in place ([`Self::load`]).
#[derive(Clone, Debug)]
pub struct NarrowOperand {
    data: Staggered<u64>,
    level: usize,
    fingerprint: [u8; 32],
}

impl NarrowOperand {
    /// A zero operand at `level` (whose primes must be below `2^32`), to load plaintexts
    /// into.
    pub fn zero(ctx: &Context, level: usize) -> Result<Self> {
        let primes = narrow_primes(ctx, level)?;
        Ok(Self {
            data: Staggered::new(primes * ctx.degree() / 2),
            level,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Replaces the operand by the plaintext of coefficients `values` (each below `t`,
    /// lifted centered; missing ones are zero), without allocating.
    pub fn load(&mut self, ctx: &Context, values: &[u64]) -> Result<()> {
        ctx.check_fingerprint(&self.fingerprint)?;
        crate::bfv::check_coefficients(ctx, values)?;
        self.load_with(ctx, values)
    }

    /// [`Self::load`] for coefficients of 16 bits (below `t` whenever `t > 2^16`, as in
    /// `pir-4096`; checked otherwise): no pass to check them.
    pub fn load_u16(&mut self, ctx: &Context, values: &[u16]) -> Result<()> {
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
        self.load_with(ctx, values)
    }

    /// Lifts `values` (checked below `t`) centered into each prime, transforms them and
    /// packs them two per word.
    fn load_with<T: Copy + Into<u64>>(&mut self, ctx: &Context, values: &[T]) -> Result<()> {
        let count = values.len();
        let t = ctx.params().plain_modulus();
        let half = t / 2;
        let n = ctx.degree();
        NTT_SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            scratch.resize(n, 0);
            for (prime, out) in ctx
                .q_primes(self.level)
                .iter()
                .zip(self.data.words_mut().chunks_exact_mut(n / 2))
            {
                // centered: v > t/2 stands for v − t, i.e. p − (t − v); below p < 2^32
                let shift = prime.value().wrapping_sub(t);
                vectorized(
                    #[inline(always)]
                    || {
                        for (o, &v) in scratch[..count].iter_mut().zip(values) {
                            let v: u64 = v.into();
                            let lift = if v > half { shift } else { 0 };
                            *o = v.wrapping_add(lift) as u32;
                        }
                    },
                );
                scratch[count..].fill(0);
                prime.forward_narrow(&mut scratch);
                for (o, pair) in out.iter_mut().zip(scratch.chunks_exact(2)) {
                    *o = u64::from(pair[0]) | (u64::from(pair[1]) << 32);
                }
            }
        });
        Ok(())
    }

    /// The level of the operand.
    pub fn level(&self) -> usize {
        self.level
    }
}

/// A lazy sum of `selector × operand` products at one level (see the module's
/// documentation), laid out like a [`NarrowCiphertext`] in `u64` words.
#[derive(Clone, Debug)]
pub struct NarrowAccumulator {
    data: Staggered<u64>,
    level: usize,
    /// Products since the last reduction.
    pending: usize,
    /// Most products between two reductions.
    limit: usize,
    products: usize,
    scale: Option<f64>,
    fingerprint: [u8; 32],
}

impl NarrowAccumulator {
    /// An empty sum at `level` (whose primes must be below `2^32`).
    pub fn new(ctx: &Context, level: usize) -> Result<Self> {
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
        Ok(Self {
            data: Staggered::new(2 * primes * ctx.degree()),
            level,
            pending: 0,
            limit,
            products: 0,
            scale: None,
            fingerprint: ctx.params().fingerprint(),
        })
    }

    /// Products added so far.
    pub fn products(&self) -> usize {
        self.products
    }

    fn reduce(&mut self, ctx: &Context) {
        let n = ctx.degree();
        for (prime, words) in ctx
            .q_primes(self.level)
            .iter()
            .zip(self.data.words_mut().chunks_exact_mut(2 * n))
        {
            for v in words {
                *v = prime.m.reduce(*v);
            }
        }
        self.pending = 0;
    }

    /// The sum as a ciphertext (zero if nothing was added).
    pub fn finish(mut self, ctx: &Context) -> Result<Ciphertext> {
        ctx.check_fingerprint(&self.fingerprint)?;
        self.reduce(ctx);
        let n = ctx.degree();
        let primes = self.level + 1;
        let mut polys = [RnsPoly::zero(n, primes), RnsPoly::zero(n, primes)];
        for (j, words) in self.data.words().chunks_exact(2 * n).enumerate() {
            for (poly, comp) in polys.iter_mut().zip(words.chunks_exact(n)) {
                // coefficient 2i is word i of the even half, 2i + 1 word i of the odd half
                let (even, odd) = comp.split_at(n / 2);
                for ((pair, &e), &o) in poly.comp_mut(j).chunks_exact_mut(2).zip(even).zip(odd) {
                    pair[0] = e;
                    pair[1] = o;
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
    }
}

/// One product of a list: `accumulators[acc] += selectors[selector] · operands[operand]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NarrowProduct {
    /// Index of the sum.
    pub acc: usize,
    /// Index of the selector ciphertext.
    pub selector: usize,
    /// Index of the plaintext operand.
    pub operand: usize,
}

/// Adds every product of `products`, tile by tile (see the module's documentation). All
/// objects must be at one level of `ctx`; indices out of range are an error (nothing is
/// added then).
pub fn accumulate_narrow(
    ctx: &Context,
    accumulators: &mut [NarrowAccumulator],
    selectors: &[NarrowCiphertext],
    operands: &[NarrowOperand],
    products: &[NarrowProduct],
) -> Result<()> {
    let Some(first) = products.first() else {
        return Ok(());
    };
    let level = accumulators
        .get(first.acc)
        .map(|a| a.level)
        .ok_or(HeError::LengthMismatch {
            what: "narrow product accumulator index",
            expected: accumulators.len(),
            actual: first.acc,
        })?;
    check_list(ctx, level, accumulators, selectors, operands, products)?;
    let limit = accumulators.iter().map(|a| a.limit).min().unwrap_or(1);
    // each chunk adds at most `limit` products to any one sum
    for chunk in products.chunks(limit) {
        let mut count = vec![0usize; accumulators.len()];
        for p in chunk {
            count[p.acc] += 1;
        }
        for (acc, &c) in accumulators.iter_mut().zip(&count) {
            if c > 0 && acc.pending + c > acc.limit {
                acc.reduce(ctx);
            }
        }
        run_tiles(
            ctx.degree(),
            level + 1,
            accumulators,
            selectors,
            operands,
            chunk,
        );
        for (acc, &c) in accumulators.iter_mut().zip(&count) {
            acc.pending += c;
            acc.products += c;
        }
    }
    for p in products {
        accumulators[p.acc].scale = Some(selectors[p.selector].scale);
    }
    Ok(())
}

fn check_list(
    ctx: &Context,
    level: usize,
    accumulators: &[NarrowAccumulator],
    selectors: &[NarrowCiphertext],
    operands: &[NarrowOperand],
    products: &[NarrowProduct],
) -> Result<()> {
    let fingerprints = accumulators
        .iter()
        .map(|a| (&a.fingerprint, a.level))
        .chain(selectors.iter().map(|s| (&s.fingerprint, s.level)))
        .chain(operands.iter().map(|o| (&o.fingerprint, o.level)));
    for (fp, l) in fingerprints {
        ctx.check_fingerprint(fp)?;
        if l != level {
            return Err(HeError::LevelMismatch {
                expected: level,
                actual: l,
            });
        }
    }
    for p in products {
        for (what, index, len) in [
            (
                "narrow product accumulator index",
                p.acc,
                accumulators.len(),
            ),
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

/// Packed words (two coefficients each) a sum keeps in registers while its products are
/// added: two components × even and odd halves × 16 words, eight 512-bit registers.
const WORDS: usize = 16;

/// The products of `chunk`, tile by tile, without reduction (the caller keeps the sums
/// within their lazy bound). Products are grouped by sum: a group's words are loaded once,
/// summed in registers over all its products, and stored once. Selectors and operands pack
/// coefficients `2i` and `2i + 1` in word `i`, so that one 32×32→64-bit multiply of the
/// low halves and one of the high halves (`vpmuludq`, no shuffles) give both products.
fn run_tiles(
    n: usize,
    primes: usize,
    accumulators: &mut [NarrowAccumulator],
    selectors: &[NarrowCiphertext],
    operands: &[NarrowOperand],
    chunk: &[NarrowProduct],
) {
    let mut sorted = chunk.to_vec();
    sorted.sort_by_key(|p| p.acc);
    let groups: Vec<&[NarrowProduct]> = sorted.chunk_by(|a, b| a.acc == b.acc).collect();
    let half = n / 2;
    vectorized(
        #[inline(always)]
        || {
            for j in 0..primes {
                for start in (0..half).step_by(TILE / 2) {
                    let end = (start + TILE / 2).min(half);
                    for group in &groups {
                        let Some(first) = group.first() else { continue };
                        let acc = accumulators[first.acc].data.words_mut();
                        // packed: [prime][component][word]; sums: [prime][component][even | odd]
                        let (p0, p1) = (2 * j * half, (2 * j + 1) * half);
                        let (a0, a1) = (2 * j * n, (2 * j + 1) * n);
                        let ats = [a0, a0 + half, a1, a1 + half];
                        for word in (start..end).step_by(WORDS) {
                            let mut sums = [[0u64; WORDS]; 4];
                            for (sum, at) in sums.iter_mut().zip(ats) {
                                *sum = read_block(acc, at + word);
                            }
                            for p in *group {
                                let op = operands[p.operand].data.words();
                                let sel = selectors[p.selector].data.words();
                                mul_add_packed(
                                    &mut sums,
                                    &read_block(sel, p0 + word),
                                    &read_block(sel, p1 + word),
                                    &read_block(op, j * half + word),
                                );
                            }
                            for (sum, at) in sums.iter().zip(ats) {
                                if let Some(out) = acc.get_mut(at + word..at + word + WORDS) {
                                    out.copy_from_slice(sum);
                                }
                            }
                        }
                    }
                }
            }
        },
    );
}

/// The low and high 32-bit halves of `x` and `y` multiplied (full 64-bit products).
#[inline(always)]
fn halves(x: u64, y: u64) -> (u64, u64) {
    ((x & 0xffff_ffff) * (y & 0xffff_ffff), (x >> 32) * (y >> 32))
}

/// `WORDS` words of `words` from `at` (zeros past its end: never the case for degrees that
/// are multiples of the tile).
#[inline(always)]
fn read_block(words: &[u64], at: usize) -> [u64; WORDS] {
    words
        .get(at..at + WORDS)
        .and_then(|b| <[u64; WORDS]>::try_from(b).ok())
        .unwrap_or([0; WORDS])
}

/// Adds `x0 · y` into `sums[0]` (even) and `sums[1]` (odd), `x1 · y` into `sums[2]`,
/// `sums[3]`, for packed words (wrapping).
#[inline(always)]
fn mul_add_packed(
    sums: &mut [[u64; WORDS]; 4],
    x0: &[u64; WORDS],
    x1: &[u64; WORDS],
    y: &[u64; WORDS],
) {
    let [e0, o0, e1, o1] = sums;
    for i in 0..WORDS {
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
    use crate::{BfvEncoder, Evaluator, PlainAccumulator, PlainOperand, SecretKey};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
        rng.next_u64() % n
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
        let selectors: Vec<_> = cts
            .iter()
            .map(|c| NarrowCiphertext::new(&ctx, c).unwrap())
            .collect();
        let operands: Vec<_> = values
            .iter()
            .map(|v| {
                let mut op = NarrowOperand::zero(&ctx, level).unwrap();
                op.load(&ctx, v).unwrap();
                op
            })
            .collect();
        let mut narrow = vec![
            NarrowAccumulator::new(&ctx, level).unwrap(),
            NarrowAccumulator::new(&ctx, level).unwrap(),
        ];
        let mut wide = vec![
            PlainAccumulator::new(&ctx, level).unwrap(),
            PlainAccumulator::new(&ctx, level).unwrap(),
        ];
        let products: Vec<NarrowProduct> = (0..2500)
            .map(|_| NarrowProduct {
                acc: below(&mut rng, 2) as usize,
                selector: below(&mut rng, 3) as usize,
                operand: below(&mut rng, 4) as usize,
            })
            .collect();
        for list in products.chunks(700) {
            accumulate_narrow(&ctx, &mut narrow, &selectors, &operands, list).unwrap();
        }
        for p in &products {
            let mut op = PlainOperand::zero(&ctx, level).unwrap();
            op.load(&ctx, &values[p.operand]).unwrap();
            wide[p.acc].add(&cts[p.selector], &op).unwrap();
        }
        for (a, b) in narrow.into_iter().zip(wide) {
            assert_eq!(a.products(), b.products());
            let (a, b) = (a.finish(&ctx).unwrap(), b.finish().unwrap());
            assert_eq!(a.polys, b.polys);
        }
    }

    #[test]
    fn sixteen_bit_loads_match_wide_loads() {
        let ctx = Context::preset("pir-4096").unwrap();
        let words: Vec<u16> = (0..3000u32).map(|i| (i * 7919 % 65536) as u16).collect();
        let wide: Vec<u64> = words.iter().map(|&w| u64::from(w)).collect();
        let (mut a, mut b) = (
            NarrowOperand::zero(&ctx, 1).unwrap(),
            NarrowOperand::zero(&ctx, 1).unwrap(),
        );
        a.load_u16(&ctx, &words).unwrap();
        b.load(&ctx, &wide).unwrap();
        assert_eq!(a.data.words(), b.data.words());
        assert!(a.load_u16(&ctx, &vec![0; ctx.degree() + 1]).is_err());
    }

    #[test]
    fn bad_indices_and_levels_are_errors() {
        let ctx = Context::preset("pir-4096").unwrap();
        let mut accs = vec![NarrowAccumulator::new(&ctx, 1).unwrap()];
        let ops = vec![NarrowOperand::zero(&ctx, 0).unwrap()];
        let product = NarrowProduct {
            acc: 0,
            selector: 0,
            operand: 0,
        };
        assert!(accumulate_narrow(&ctx, &mut accs, &[], &ops, &[product]).is_err());
        let other = Context::preset("bfv-8192").unwrap();
        assert!(NarrowAccumulator::new(&other, 0).is_err());
    }
}
