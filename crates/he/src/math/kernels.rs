//! Lazy multiply-accumulate of ciphertext tensor products on one RNS prime.
//!
//! For a prime `p < 2^50` and `K` pairs of degree-1 ciphertexts in the NTT domain, a
//! gallery entry `g = (g0, g1)` and a query `q = (q0, q1)`, [`LazyTensor`] accumulates the
//! tensor products element-wise
//!
//! ```text
//! d0 += g0·q0,   d1 += g0·q1 + g1·q0,   d2 += g1·q1   (mod p)
//! ```
//!
//! without reducing after every product. Each output keeps two `u64` accumulators per
//! coefficient, `lo` and `hi`, and represents the value `lo + hi·2^52`: every product
//! `a·b < 2^100` of two residues is split into its low 52 bits (added to `lo`, `< 2^52`)
//! and the bits from 52 up (added to `hi`, `< 2^48`). On CPUs with AVX-512 IFMA these
//! two halves are exactly what `vpmadd52luq` and `vpmadd52huq` add to an accumulator in
//! one instruction each, so one product costs two IFMA instructions on eight lanes and
//! no reduction. The value is reduced modulo `p` only when the result is asked for
//! ([`LazyTensor::finish`]) or before a `u64` could overflow (an automatic flush, see
//! [`FLUSH_STEPS`]).
//!
//! [`LazyTensor::add_batch`] accumulates many products in one pass over the state: tile by
//! tile of 256 coefficients, whose state stays in the L1 cache while every product of the
//! batch passes over it, two products per load of a block's state into registers, instead
//! of streaming the whole `6n`-word state through the cache hierarchy per product.
//!
//! [`LazyTensor::add_batch_narrow`] reads the gallery side as `u32` words (a prime below
//! `2^32`, such as the 20-bit rescaling prime of the CKKS presets), widened in registers
//! (`vpmovzxdq`): the same state, a quarter less memory traffic per product on that prime.
//!
//! Two implementations compute bit-identical accumulator states and identical results:
//! [`KernelPath::Ifma`] (AVX-512 IFMA through `pulp`'s safe intrinsic wrappers, chosen at
//! run time) and [`KernelPath::Portable`] (plain `u128` integer code, any CPU).
//!
//! # Overflow bound
//!
//! The `lo` accumulator is the binding one. Every product adds at most `2^52 − 1` to it,
//! and after a flush it starts from a carried residue `< p ≤ 2^50 − 1`. With `m` products
//! since the flush, `lo ≤ (2^50 − 2) + m·(2^52 − 1)`, which is `≤ 2^64 − 1` exactly for
//! `m ≤ 4095` (for `m = 4096` it is `2^64 + 2^50 − 4098`). The middle output `d1` takes two
//! products per [`LazyTensor::add`], so at most `⌊4095 / 2⌋ = 2047` steps fit between two
//! flushes: [`FLUSH_STEPS`]. The `hi` accumulators stay below
//! `4094·2^48 < 2^60`, far from overflow; the reduction relies on that bound.

use crate::errors::{HeError, Result};
use crate::math::modulus::Modulus;
use std::sync::OnceLock;

/// The kernels accept odd moduli `3 ≤ p <` this bound (`2^50`): products of two residues
/// are then below `2^100`, their IFMA high halves below `2^48`.
pub const MODULUS_BOUND: u64 = 1 << 50;

/// Number of [`LazyTensor::add`] steps between two reductions of the accumulators: the
/// largest count for which no `u64` accumulator can overflow, whatever the inputs below
/// `p` (see the module documentation for the bound). The 2048th step after a flush flushes
/// first, so callers can add any number of products. A product of
/// [`LazyTensor::add_batch`] counts as one step.
pub const FLUSH_STEPS: usize = 2047;

/// One tensor product's operands for [`LazyTensor::add_batch`]: the gallery residues
/// `[g0, g1]` and the query residues `[q0, q1]`, each of `n` words below `p`.
pub type TensorPair<'a> = ([&'a [u64]; 2], [&'a [u64]; 2]);

/// One tensor product's operands for [`LazyTensor::add_batch_narrow`]: gallery residues
/// `[g0, g1]` stored as `u32` (a prime below `2^32`), query residues `[q0, q1]` as `u64`.
pub type NarrowPair<'a> = GalleryPair<'a, u32>;

/// A product's gallery residues as words `W` and query residues as `u64`.
type GalleryPair<'a, W> = ([&'a [W]; 2], [&'a [u64]; 2]);

/// A word of gallery residues the batch kernels read: `u64`, or `u32` for primes below
/// `2^32` (a quarter less memory traffic per product for such a limb).
trait GalleryWord: Copy + Sync + Into<u64> {
    /// A block of [`LANES`] words widened to one vector of `u64` lanes.
    #[cfg(target_arch = "x86_64")]
    fn vector(block: &[Self; LANES], simd: ifma::Ifma) -> core::arch::x86_64::__m512i;
}

impl GalleryWord for u64 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn vector(block: &[u64; LANES], _simd: ifma::Ifma) -> core::arch::x86_64::__m512i {
        pulp::cast(*block)
    }
}

impl GalleryWord for u32 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn vector(block: &[u32; LANES], simd: ifma::Ifma) -> core::arch::x86_64::__m512i {
        simd.avx512f._mm512_cvtepu32_epi64(pulp::cast(*block))
    }
}

/// A product's operands cut into blocks of [`LANES`] words, as the batch kernels read them:
/// the gallery's `[g0, g1]` (words `W`) and the query's `[q0, q1]`.
type PairBlocks<'a, W> = ([&'a [[W; LANES]]; 2], [&'a [[u64; LANES]]; 2]);

/// One sum for the batch kernels: its state in blocks, and its products.
type BatchJob<'s, 'o, W> = (&'s mut [[u64; BLOCK]], &'o [PairBlocks<'o, W>]);

/// Mask of the low 52 bits.
const MASK52: u64 = (1 << 52) - 1;
/// Coefficients per SIMD vector (and per accumulator block).
const LANES: usize = 8;
/// Words of accumulator state per block of `LANES` coefficients: `lo0, hi0, lo1, hi1, lo2,
/// hi2`, one vector each, so one `add` streams through a single buffer.
const BLOCK: usize = 6 * LANES;

/// Which implementation of the kernels to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Scalar integer code (`u128` products); runs on every CPU.
    Portable,
    /// AVX-512 IFMA (`vpmadd52luq` / `vpmadd52huq` on eight 64-bit lanes); needs a CPU
    /// with the `avx512ifma` (and `avx512f`, `avx512vl`) features.
    Ifma,
}

/// The fastest path this CPU supports: [`KernelPath::Ifma`] when AVX-512 IFMA is available
/// at run time, [`KernelPath::Portable`] otherwise. Detected once and cached.
pub fn detected_path() -> KernelPath {
    static PATH: OnceLock<KernelPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if ifma::Ifma::try_new().is_some() {
            return KernelPath::Ifma;
        }
        KernelPath::Portable
    })
}

/// Per-prime constants of the reduction of `lo + hi·2^52` (see `ifma::Ifma::reduce`).
#[derive(Clone, Copy, Debug)]
struct Consts {
    /// The prime, with Barrett constants for the portable reduction.
    m: Modulus,
    /// `2^52 − p`: adding `q·(2^52 − p)` modulo `2^52` subtracts `q·p`.
    neg_p: u64,
    /// `⌊2^52 / p⌋`, the Shoup companion of 1.
    one_shoup: u64,
    /// `2^52 mod p` and its Shoup companion `⌊r1·2^52 / p⌋`.
    r1: u64,
    r1_shoup: u64,
    /// `2^104 mod p` and its Shoup companion.
    r2: u64,
    r2_shoup: u64,
}

impl Consts {
    fn new(p: u64) -> Self {
        let m = Modulus::new(p);
        let shoup = |w: u64| (((w as u128) << 52) / p as u128) as u64;
        let r1 = ((1u128 << 52) % p as u128) as u64;
        let r2 = ((1u128 << 104) % p as u128) as u64;
        Self {
            m,
            neg_p: (1u64 << 52) - p,
            one_shoup: shoup(1),
            r1,
            r1_shoup: shoup(r1),
            r2,
            r2_shoup: shoup(r2),
        }
    }
}

/// Blocks of [`LANES`] coefficients per tile of [`LazyTensor::add_batch`]: 256
/// coefficients, whose state (12 KiB) stays in the L1 cache while every product of the
/// batch passes over it (instead of streaming the whole `6n`-word state from L2 or memory
/// per product, as [`LazyTensor::add`] does), and whose operands are read in contiguous runs
/// of 2 KiB. Tiles of 8 to 32 blocks measured alike, 128 blocks 8 % and 1024 blocks 18 %
/// slower.
const TILE_BLOCKS: usize = 32;

/// Products [`LazyTensor::add_batch`] applies to a block per load and store of its state.
///
/// Holding a block in registers for a whole batch of `K` products reads `4·K` operand
/// streams at once. Operands are large allocations at equal offsets modulo the cache's set
/// stride (residues of `n = 8192` words are 64 KiB apart), so they compete for the same
/// cache sets and the prefetchers lose track of them: on an AMD EPYC (Zen 4) with IFMA,
/// `n = 8192`, 32 products streamed from L3 (mimalloc, as in the application), one pass
/// with all 32 in registers took 1.2× the time of 32 single `add`s; groups of 2 took 0.67×,
/// of 4 0.8×, of 8 1.0×. Two products per load also halve the state's traffic to L1, which
/// is all the tile ([`TILE_BLOCKS`]) leaves of it.
const GROUP: usize = 2;

/// The loop order of the batch kernels: tile by tile ([`TILE_BLOCKS`]); within a tile, sum
/// by sum (`jobs`: a state and its products), then group by group of products
/// ([`GROUP`]), then block by block within the tile, calling `apply(state, b, group)` with
/// the state of block `b` and the group's operands. Several sums that share operands (the
/// giant steps of one query: every one multiplies the same baby steps) thus read a shared
/// operand's tile while it is still in the L2 cache, instead of once per sum from memory.
#[inline(always)]
fn for_each_group<T>(
    jobs: &mut [(&mut [[u64; BLOCK]], &[T])],
    mut apply: impl FnMut(&mut [u64; BLOCK], usize, &[T]),
) {
    let blocks = jobs.iter().map(|(acc, _)| acc.len()).max().unwrap_or(0);
    for start in (0..blocks).step_by(TILE_BLOCKS) {
        for (acc, ops) in jobs.iter_mut() {
            let end = (start + TILE_BLOCKS).min(acc.len());
            let Some(tile) = acc.get_mut(start..end) else {
                continue;
            };
            for group in ops.chunks(GROUP) {
                for (i, blk) in tile.iter_mut().enumerate() {
                    apply(blk, start + i, group);
                }
            }
        }
    }
}

/// The implementation a [`LazyTensor`] runs, with the proof of CPU support for IFMA.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Ifma(ifma::Ifma),
}

impl Engine {
    fn path(self) -> KernelPath {
        match self {
            Engine::Portable => KernelPath::Portable,
            #[cfg(target_arch = "x86_64")]
            Engine::Ifma(_) => KernelPath::Ifma,
        }
    }
}

/// Lazy accumulator of ciphertext tensor products on one prime `p < 2^50` and `n`
/// coefficients (`n` a multiple of 8): after [`add`](Self::add)ing `K` operand pairs,
/// [`finish`](Self::finish) yields
/// `d0 = Σ g0·q0`, `d1 = Σ (g0·q1 + g1·q0)`, `d2 = Σ g1·q1` element-wise modulo `p`.
///
/// Holds `6n` words of state (`lo`/`hi` per output and coefficient; see the module
/// documentation) and reduces it automatically every [`FLUSH_STEPS`] steps, so any number
/// of products can be added. [`clear`](Self::clear) starts a new sum in the same buffers.
#[derive(Clone, Debug)]
pub struct LazyTensor {
    c: Consts,
    n: usize,
    engine: Engine,
    /// `n / 8` blocks of [`BLOCK`] words: `lo0, hi0, lo1, hi1, lo2, hi2` for 8 coefficients.
    acc: Vec<u64>,
    /// `add` steps since the last flush or clear.
    pending: usize,
}

impl LazyTensor {
    /// An empty accumulator for prime `p` and `n` coefficients, running `path`.
    ///
    /// Errors ([`HeError::InvalidParameters`]) if `p` is not odd with `3 ≤ p < 2^50`
    /// (primality is the caller's guarantee), if `n` is not a multiple of 8, or if `path`
    /// is [`KernelPath::Ifma`] and this CPU lacks AVX-512 IFMA (use [`detected_path`]).
    pub fn new(p: u64, n: usize, path: KernelPath) -> Result<Self> {
        if !(3..MODULUS_BOUND).contains(&p) || p.is_multiple_of(2) {
            return Err(HeError::InvalidParameters {
                reason: format!("the lazy tensor kernel needs an odd prime 3 <= p < 2^50, got {p}"),
            });
        }
        if !n.is_multiple_of(LANES) {
            return Err(HeError::InvalidParameters {
                reason: format!(
                    "the lazy tensor kernel needs a length that is a multiple of {LANES}, got {n}"
                ),
            });
        }
        let engine = match path {
            KernelPath::Portable => Engine::Portable,
            KernelPath::Ifma => ifma_engine()?,
        };
        Ok(Self {
            c: Consts::new(p),
            n,
            engine,
            acc: vec![0; 6 * n],
            pending: 0,
        })
    }

    /// The implementation this accumulator runs.
    pub fn path(&self) -> KernelPath {
        self.engine.path()
    }

    /// The prime.
    pub fn modulus(&self) -> u64 {
        self.c.m.value()
    }

    /// Number of coefficients `n` of every operand and output.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether `n` is 0.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// [`add`](Self::add) steps since the accumulators were last reduced (by an automatic
    /// flush) or cleared; always at most [`FLUSH_STEPS`].
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Accumulates one tensor product: `d0 += g0·q0`, `d1 += g0·q1 + g1·q0`,
    /// `d2 += g1·q1`, element-wise. Every operand must hold `n` residues below `p`
    /// (values at or above `p` are not checked: they give a wrong sum, never a panic).
    ///
    /// Errors ([`HeError::LengthMismatch`]) if an operand's length is not `n`; the
    /// accumulator is then unchanged.
    pub fn add(&mut self, g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) -> Result<()> {
        self.check_operands([g0.len(), g1.len(), q0.len(), q1.len()])?;
        if self.pending == FLUSH_STEPS {
            self.flush();
        }
        match self.engine {
            Engine::Portable => portable::add(&mut self.acc, g0, g1, q0, q1),
            #[cfg(target_arch = "x86_64")]
            Engine::Ifma(simd) => ifma::add(simd, &mut self.acc, g0, g1, q0, q1),
        }
        self.pending += 1;
        Ok(())
    }

    /// Accumulates every product of `pairs` (`([g0, g1], [q0, q1])` each): the same sums,
    /// and bit for bit the same state and [`pending`](Self::pending) count, as calling
    /// [`add`](Self::add) once per pair in order, in one pass over the state: a tile of 256
    /// coefficients takes every product of the batch while its state stays in the L1 cache,
    /// two products per load of a block of eight coefficients into registers (see the
    /// module documentation).
    ///
    /// A batch longer than what the accumulators can take is split into chunks: each chunk
    /// holds at most `FLUSH_STEPS − pending` products (so no chunk takes the state past
    /// [`FLUSH_STEPS`] steps since the last flush, the bound of the module documentation),
    /// and the state is flushed before every chunk that starts at the limit, exactly where
    /// repeated `add` calls flush. An empty batch changes nothing.
    ///
    /// Errors ([`HeError::LengthMismatch`]) if any operand of any pair has a length other
    /// than `n`; every pair is checked before anything is added, so the accumulator is then
    /// unchanged.
    pub fn add_batch(&mut self, pairs: &[TensorPair<'_>]) -> Result<()> {
        self.add_batch_of(pairs)
    }

    /// [`add_batch`](Self::add_batch) with the gallery residues `[g0, g1]` of every pair
    /// stored as `u32` (for a prime below `2^32`; each value must be below `p`): the same
    /// state, bit for bit, as `add_batch` on the same values widened to `u64`.
    ///
    /// Errors ([`HeError::LengthMismatch`]) as `add_batch`, leaving the accumulator unchanged.
    pub fn add_batch_narrow(&mut self, pairs: &[NarrowPair<'_>]) -> Result<()> {
        self.add_batch_of(pairs)
    }

    fn add_batch_of<W: GalleryWord>(&mut self, pairs: &[GalleryPair<'_, W>]) -> Result<()> {
        for &([g0, g1], [q0, q1]) in pairs {
            self.check_operands([g0.len(), g1.len(), q0.len(), q1.len()])?;
        }
        let mut rest = pairs;
        while !rest.is_empty() {
            if self.pending == FLUSH_STEPS {
                self.flush();
            }
            let (chunk, tail) = rest.split_at(rest.len().min(FLUSH_STEPS - self.pending));
            let blocks = pair_blocks(chunk);
            let engine = self.engine;
            run_batch(engine, &mut [(self.state_blocks(), &blocks)]);
            self.pending += chunk.len();
            rest = tail;
        }
        Ok(())
    }

    /// [`add_batch`](Self::add_batch) on several accumulators at once, `batches[i]` into
    /// `tensors[i]`: the same state, bit for bit, as one `add_batch` call per accumulator,
    /// but tile by tile across all of them, so that an operand shared by several batches
    /// (the baby steps every giant step of a query multiplies) is read from the cache
    /// rather than from memory again.
    ///
    /// Errors ([`HeError::LengthMismatch`]) if the two lists differ in length or an operand
    /// has a length other than its accumulator's `n`; nothing is changed then.
    pub fn add_batch_many(
        tensors: &mut [&mut LazyTensor],
        batches: &[&[TensorPair<'_>]],
    ) -> Result<()> {
        Self::add_batch_many_of(tensors, batches)
    }

    /// [`add_batch_many`](Self::add_batch_many) with the gallery residues as `u32`, as
    /// [`add_batch_narrow`](Self::add_batch_narrow).
    pub fn add_batch_narrow_many(
        tensors: &mut [&mut LazyTensor],
        batches: &[&[NarrowPair<'_>]],
    ) -> Result<()> {
        Self::add_batch_many_of(tensors, batches)
    }

    fn add_batch_many_of<W: GalleryWord>(
        tensors: &mut [&mut LazyTensor],
        batches: &[&[GalleryPair<'_, W>]],
    ) -> Result<()> {
        crate::errors::check_length(
            "lazy tensor batches (one per accumulator)",
            tensors.len(),
            batches.len(),
        )?;
        for (t, pairs) in tensors.iter().zip(batches) {
            for &([g0, g1], [q0, q1]) in *pairs {
                t.check_operands([g0.len(), g1.len(), q0.len(), q1.len()])?;
            }
        }
        let first = tensors.first().map(|t| t.engine);
        let joint = tensors.iter().zip(batches).all(|(t, pairs)| {
            t.pending + pairs.len() <= FLUSH_STEPS
                && Some(t.engine.path()) == first.map(Engine::path)
        });
        let Some(engine) = first.filter(|_| joint) else {
            // past a flush point or on different paths: one accumulator at a time
            for (t, pairs) in tensors.iter_mut().zip(batches) {
                t.add_batch_of(pairs)?;
            }
            return Ok(());
        };
        let blocks: Vec<Vec<PairBlocks<'_, W>>> = batches.iter().map(|b| pair_blocks(b)).collect();
        let mut jobs: Vec<BatchJob<'_, '_, W>> = tensors
            .iter_mut()
            .zip(&blocks)
            .map(|(t, b)| {
                t.pending += b.len();
                (t.state_blocks(), &b[..])
            })
            .collect();
        run_batch(engine, &mut jobs);
        Ok(())
    }

    /// The state as blocks of [`BLOCK`] words.
    fn state_blocks(&mut self) -> &mut [[u64; BLOCK]] {
        self.acc.as_chunks_mut::<BLOCK>().0
    }

    /// Writes the sums reduced modulo `p` (values `< p`) to `d0`, `d1`, `d2`, overwriting
    /// them. The accumulator is left as it was: more products can be added and `finish`
    /// called again.
    ///
    /// Errors ([`HeError::LengthMismatch`]) if an output's length is not `n`; nothing is
    /// written then.
    pub fn finish(&self, d0: &mut [u64], d1: &mut [u64], d2: &mut [u64]) -> Result<()> {
        self.check_len("lazy tensor output d0", d0.len())?;
        self.check_len("lazy tensor output d1", d1.len())?;
        self.check_len("lazy tensor output d2", d2.len())?;
        match self.engine {
            Engine::Portable => portable::finish(&self.c, &self.acc, d0, d1, d2),
            #[cfg(target_arch = "x86_64")]
            Engine::Ifma(simd) => ifma::finish(simd, &self.c, &self.acc, d0, d1, d2),
        }
        Ok(())
    }

    /// Resets the sums to zero, keeping the buffers.
    pub fn clear(&mut self) {
        self.acc.fill(0);
        self.pending = 0;
    }

    /// Reduces every accumulator in place: `lo ← (lo + hi·2^52) mod p`, `hi ← 0`.
    fn flush(&mut self) {
        match self.engine {
            Engine::Portable => portable::flush(&self.c, &mut self.acc),
            #[cfg(target_arch = "x86_64")]
            Engine::Ifma(simd) => ifma::flush(simd, &self.c, &mut self.acc),
        }
        self.pending = 0;
    }

    /// Checks the lengths of a product's operands `g0, g1, q0, q1`.
    fn check_operands(&self, lens: [usize; 4]) -> Result<()> {
        for (what, len) in [
            "lazy tensor operand g0",
            "lazy tensor operand g1",
            "lazy tensor operand q0",
            "lazy tensor operand q1",
        ]
        .into_iter()
        .zip(lens)
        {
            self.check_len(what, len)?;
        }
        Ok(())
    }

    fn check_len(&self, what: &'static str, actual: usize) -> Result<()> {
        crate::errors::check_length(what, self.n, actual)
    }
}

/// The IFMA engine if this CPU supports it.
fn ifma_engine() -> Result<Engine> {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = ifma::Ifma::try_new() {
        return Ok(Engine::Ifma(simd));
    }
    Err(HeError::InvalidParameters {
        reason: "the IFMA kernel path needs a CPU with AVX-512 IFMA; use \
                 KernelPath::Portable or kernels::detected_path()"
            .into(),
    })
}

/// The products of `pairs` cut into blocks of [`LANES`] words.
fn pair_blocks<'a, W>(pairs: &[GalleryPair<'a, W>]) -> Vec<PairBlocks<'a, W>> {
    pairs
        .iter()
        .map(|&(g, q)| {
            (
                g.map(|s| s.as_chunks::<LANES>().0),
                q.map(|s| s.as_chunks::<LANES>().0),
            )
        })
        .collect()
}

/// Runs the batch kernel of `engine` on `jobs`.
fn run_batch<W: GalleryWord>(engine: Engine, jobs: &mut [BatchJob<'_, '_, W>]) {
    match engine {
        Engine::Portable => portable::add_batch(jobs),
        #[cfg(target_arch = "x86_64")]
        Engine::Ifma(simd) => ifma::add_batch(simd, jobs),
    }
}

/// Scalar kernels: the same `lo`/`hi` split as IFMA, with `u128` products.
mod portable;

/// AVX-512 IFMA kernels, written with `pulp`'s safe intrinsic wrappers: a value of the
/// token type `Ifma` proves the CPU features, and `vectorize` compiles the loop
/// with them enabled.
#[cfg(target_arch = "x86_64")]
mod ifma;

#[cfg(test)]
mod tests;
