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
mod portable {
    use super::{BLOCK, BatchJob, Consts, GalleryWord, LANES, MASK52, for_each_group};

    /// `lo += (a·b) mod 2^52`, `hi += ⌊a·b / 2^52⌋` on the low 52 bits of `a` and `b`,
    /// exactly what `vpmadd52luq` / `vpmadd52huq` compute per lane (wrapping like them:
    /// the flush schedule keeps the sums in range for inputs below `p`).
    #[inline(always)]
    fn mac(lo: &mut u64, hi: &mut u64, a: u64, b: u64) {
        let prod = (a & MASK52) as u128 * (b & MASK52) as u128;
        *lo = lo.wrapping_add(prod as u64 & MASK52);
        *hi = hi.wrapping_add((prod >> 52) as u64);
    }

    /// `lo + hi·2^52 mod p` (exact: the value is below `2^116 + 2^64`).
    #[inline(always)]
    fn reduce(c: &Consts, lo: u64, hi: u64) -> u64 {
        c.m.reduce_u128(((hi as u128) << 52) + lo as u128)
    }

    pub(super) fn add(acc: &mut [u64], g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) {
        let operands = g0
            .chunks_exact(LANES)
            .zip(g1.chunks_exact(LANES))
            .zip(q0.chunks_exact(LANES).zip(q1.chunks_exact(LANES)));
        for (blk, ((g0, g1), (q0, q1))) in acc.chunks_exact_mut(BLOCK).zip(operands) {
            let (lo0, rest) = blk.split_at_mut(LANES);
            let (hi0, rest) = rest.split_at_mut(LANES);
            let (lo1, rest) = rest.split_at_mut(LANES);
            let (hi1, rest) = rest.split_at_mut(LANES);
            let (lo2, hi2) = rest.split_at_mut(LANES);
            for l in 0..LANES {
                mac(&mut lo0[l], &mut hi0[l], g0[l], q0[l]);
                mac(&mut lo1[l], &mut hi1[l], g0[l], q1[l]);
                mac(&mut lo1[l], &mut hi1[l], g1[l], q0[l]);
                mac(&mut lo2[l], &mut hi2[l], g1[l], q1[l]);
            }
        }
    }

    /// Adds every product of `ops` in the order of [`for_each_group`], a group of products
    /// at a time to each block.
    pub(super) fn add_batch<W: GalleryWord>(jobs: &mut [BatchJob<'_, '_, W>]) {
        for_each_group(jobs, |blk, b, group| {
            let [lo0, hi0, lo1, hi1, lo2, hi2] = blk.as_chunks_mut::<LANES>().0 else {
                return;
            };
            for ([g0, g1], [q0, q1]) in group {
                let (g0, g1, q0, q1) = (&g0[b], &g1[b], &q0[b], &q1[b]);
                for l in 0..LANES {
                    let (g0, g1) = (g0[l].into(), g1[l].into());
                    mac(&mut lo0[l], &mut hi0[l], g0, q0[l]);
                    mac(&mut lo1[l], &mut hi1[l], g0, q1[l]);
                    mac(&mut lo1[l], &mut hi1[l], g1, q0[l]);
                    mac(&mut lo2[l], &mut hi2[l], g1, q1[l]);
                }
            }
        });
    }

    pub(super) fn flush(c: &Consts, acc: &mut [u64]) {
        for blk in acc.chunks_exact_mut(BLOCK) {
            for pair in blk.chunks_exact_mut(2 * LANES) {
                let (lo, hi) = pair.split_at_mut(LANES);
                for l in 0..LANES {
                    lo[l] = reduce(c, lo[l], hi[l]);
                    hi[l] = 0;
                }
            }
        }
    }

    pub(super) fn finish(c: &Consts, acc: &[u64], d0: &mut [u64], d1: &mut [u64], d2: &mut [u64]) {
        let outputs = d0
            .chunks_exact_mut(LANES)
            .zip(d1.chunks_exact_mut(LANES))
            .zip(d2.chunks_exact_mut(LANES));
        for (blk, ((d0, d1), d2)) in acc.chunks_exact(BLOCK).zip(outputs) {
            for (pair, d) in blk.chunks_exact(2 * LANES).zip([d0, d1, d2]) {
                let (lo, hi) = pair.split_at(LANES);
                for l in 0..LANES {
                    d[l] = reduce(c, lo[l], hi[l]);
                }
            }
        }
    }
}

/// AVX-512 IFMA kernels, written with `pulp`'s safe intrinsic wrappers: a value of the
/// token type `Ifma` proves the CPU features, and `vectorize` compiles the loop
/// with them enabled.
#[cfg(target_arch = "x86_64")]
mod ifma {
    use super::{BLOCK, BatchJob, Consts, GalleryWord, LANES, MASK52, for_each_group};
    use core::arch::x86_64::__m512i;
    use pulp::{as_arrays, as_arrays_mut, cast};

    pulp::simd_type! {
        /// Proof that the CPU has AVX-512F and AVX-512 IFMA (pulp also requires AVX-512VL
        /// for every AVX-512 token).
        pub struct Ifma {
            pub avx512f: "avx512f",
            pub avx512ifma: "avx512ifma",
        }
    }

    /// The reduction constants broadcast to all lanes.
    #[derive(Clone, Copy)]
    struct VConsts {
        mask: __m512i,
        p: __m512i,
        p2: __m512i,
        p4: __m512i,
        neg_p: __m512i,
        one_shoup: __m512i,
        r1: __m512i,
        r1_shoup: __m512i,
        r2: __m512i,
        r2_shoup: __m512i,
    }

    impl Ifma {
        #[inline(always)]
        fn splat(self, x: u64) -> __m512i {
            self.avx512f._mm512_set1_epi64(x as i64)
        }

        #[inline(always)]
        fn consts(self, c: &Consts) -> VConsts {
            let p = c.m.value();
            VConsts {
                mask: self.splat(MASK52),
                p: self.splat(p),
                p2: self.splat(2 * p),
                p4: self.splat(4 * p),
                neg_p: self.splat(c.neg_p),
                one_shoup: self.splat(c.one_shoup),
                r1: self.splat(c.r1),
                r1_shoup: self.splat(c.r1_shoup),
                r2: self.splat(c.r2),
                r2_shoup: self.splat(c.r2_shoup),
            }
        }

        /// `acc + ((a·b) mod 2^52)` per lane (`vpmadd52luq`; `a`, `b` taken mod `2^52`).
        #[inline(always)]
        fn madd_lo(self, acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            self.avx512ifma._mm512_madd52lo_epu64(acc, a, b)
        }

        /// `acc + ⌊a·b / 2^52⌋` per lane (`vpmadd52huq`; `a`, `b` taken mod `2^52`).
        #[inline(always)]
        fn madd_hi(self, acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            self.avx512ifma._mm512_madd52hi_epu64(acc, a, b)
        }

        /// `a·w mod p` up to one multiple of `p` (a value in `[0, 2p)`), for `a < 2^52`,
        /// `w < p` and `aw = a·w mod 2^52`, `w_shoup = ⌊w·2^52 / p⌋` (Shoup's method in radix
        /// `2^52`): with `q = ⌊a·w_shoup / 2^52⌋`, `a·w/p − 2 < q ≤ a·w/p`, so
        /// `a·w − q·p ∈ [0, 2p)`; as that is below `2^52` it equals
        /// `(aw + q·(2^52 − p)) mod 2^52`.
        #[inline(always)]
        fn shoup(self, v: &VConsts, a: __m512i, aw: __m512i, w_shoup: __m512i) -> __m512i {
            let zero = self.splat(0);
            let q = self.madd_hi(zero, a, w_shoup);
            self.avx512f
                ._mm512_and_si512(self.madd_lo(aw, q, v.neg_p), v.mask)
        }

        /// `min(x, x − k)` as unsigned: `x − k` if `x ≥ k`, else `x` (the difference wraps).
        #[inline(always)]
        fn csub(self, x: __m512i, k: __m512i) -> __m512i {
            let f = self.avx512f;
            f._mm512_min_epu64(x, f._mm512_sub_epi64(x, k))
        }

        /// `(lo + hi·2^52) mod p` exactly, for `hi < 2^60` (the flush schedule guarantees
        /// `hi < 4094·2^48`) and any `lo`.
        ///
        /// Write `lo = a0 + 2^52·(lo >> 52)` and `a1 = (lo >> 52) + hi < 2^61` (no overflow),
        /// `a1 = b0 + 2^52·b1` with `b0 < 2^52`, `b1 < 2^9`. Then
        /// `value = a0 + b0·2^52 + b1·2^104 ≡ a0·1 + b0·r1 + b1·r2 (mod p)`; each term is
        /// brought into `[0, 2p)` by a Shoup product, the sum (`< 6p < 2^53`) into
        /// `[0, p)` by conditional subtractions of `4p`, `2p`, `p`.
        #[inline(always)]
        fn reduce(self, v: &VConsts, lo: __m512i, hi: __m512i) -> __m512i {
            let f = self.avx512f;
            let zero = self.splat(0);
            let a0 = f._mm512_and_si512(lo, v.mask);
            let a1 = f._mm512_add_epi64(f._mm512_srli_epi64::<52>(lo), hi);
            let b0 = f._mm512_and_si512(a1, v.mask);
            let b1 = f._mm512_srli_epi64::<52>(a1);
            // a0·1 mod 2^52 is a0 itself
            let t0 = self.shoup(v, a0, a0, v.one_shoup);
            let t1 = self.shoup(v, b0, self.madd_lo(zero, b0, v.r1), v.r1_shoup);
            let t2 = self.shoup(v, b1, self.madd_lo(zero, b1, v.r2), v.r2_shoup);
            let s = f._mm512_add_epi64(f._mm512_add_epi64(t0, t1), t2);
            let s = self.csub(s, v.p4);
            let s = self.csub(s, v.p2);
            self.csub(s, v.p)
        }
    }

    pub(super) fn add(simd: Ifma, acc: &mut [u64], g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) {
        simd.vectorize(
            #[inline(always)]
            move || {
                let (acc, _) = as_arrays_mut::<BLOCK, u64>(acc);
                let operands = as_arrays::<LANES, u64>(g0)
                    .0
                    .iter()
                    .zip(as_arrays::<LANES, u64>(g1).0)
                    .zip(
                        as_arrays::<LANES, u64>(q0)
                            .0
                            .iter()
                            .zip(as_arrays::<LANES, u64>(q1).0),
                    );
                for (blk, ((g0, g1), (q0, q1))) in acc.iter_mut().zip(operands) {
                    let [lo0, hi0, lo1, hi1, lo2, hi2]: [__m512i; 6] = cast(*blk);
                    let g0: __m512i = cast(*g0);
                    let g1: __m512i = cast(*g1);
                    let q0: __m512i = cast(*q0);
                    let q1: __m512i = cast(*q1);
                    *blk = cast([
                        simd.madd_lo(lo0, g0, q0),
                        simd.madd_hi(hi0, g0, q0),
                        simd.madd_lo(simd.madd_lo(lo1, g0, q1), g1, q0),
                        simd.madd_hi(simd.madd_hi(hi1, g0, q1), g1, q0),
                        simd.madd_lo(lo2, g1, q1),
                        simd.madd_hi(hi2, g1, q1),
                    ]);
                }
            },
        );
    }

    /// Adds every product of `ops` in the order of [`for_each_group`], a block's six vectors
    /// held in registers while a group of products is applied. The two products of `d1` go
    /// to separate accumulators (`lo1`/`hi1` and a second pair started at zero, added in at
    /// the end), so that eight independent IFMA chains hide the instruction latency; as
    /// `u64` addition wraps and is associative, the stored state is bit for bit what one
    /// accumulator (or repeated `add`) gives.
    pub(super) fn add_batch<W: GalleryWord>(simd: Ifma, jobs: &mut [BatchJob<'_, '_, W>]) {
        simd.vectorize(
            #[inline(always)]
            move || {
                let f = simd.avx512f;
                let zero = simd.splat(0);
                for_each_group(
                    jobs,
                    #[inline(always)]
                    |blk, b, group| {
                        let [mut lo0, mut hi0, mut lo1, mut hi1, mut lo2, mut hi2]: [__m512i; 6] =
                            cast(*blk);
                        let (mut lo1b, mut hi1b) = (zero, zero);
                        for ([g0, g1], [q0, q1]) in group {
                            let g0 = W::vector(&g0[b], simd);
                            let g1 = W::vector(&g1[b], simd);
                            let q0: __m512i = cast(q0[b]);
                            let q1: __m512i = cast(q1[b]);
                            lo0 = simd.madd_lo(lo0, g0, q0);
                            hi0 = simd.madd_hi(hi0, g0, q0);
                            lo1 = simd.madd_lo(lo1, g0, q1);
                            hi1 = simd.madd_hi(hi1, g0, q1);
                            lo1b = simd.madd_lo(lo1b, g1, q0);
                            hi1b = simd.madd_hi(hi1b, g1, q0);
                            lo2 = simd.madd_lo(lo2, g1, q1);
                            hi2 = simd.madd_hi(hi2, g1, q1);
                        }
                        *blk = cast([
                            lo0,
                            hi0,
                            f._mm512_add_epi64(lo1, lo1b),
                            f._mm512_add_epi64(hi1, hi1b),
                            lo2,
                            hi2,
                        ]);
                    },
                );
            },
        );
    }

    pub(super) fn flush(simd: Ifma, c: &Consts, acc: &mut [u64]) {
        simd.vectorize(
            #[inline(always)]
            move || {
                let v = simd.consts(c);
                let zero = simd.splat(0);
                for blk in as_arrays_mut::<BLOCK, u64>(acc).0 {
                    let [lo0, hi0, lo1, hi1, lo2, hi2]: [__m512i; 6] = cast(*blk);
                    *blk = cast([
                        simd.reduce(&v, lo0, hi0),
                        zero,
                        simd.reduce(&v, lo1, hi1),
                        zero,
                        simd.reduce(&v, lo2, hi2),
                        zero,
                    ]);
                }
            },
        );
    }

    pub(super) fn finish(
        simd: Ifma,
        c: &Consts,
        acc: &[u64],
        d0: &mut [u64],
        d1: &mut [u64],
        d2: &mut [u64],
    ) {
        simd.vectorize(
            #[inline(always)]
            move || {
                let v = simd.consts(c);
                let outputs = as_arrays_mut::<LANES, u64>(d0)
                    .0
                    .iter_mut()
                    .zip(as_arrays_mut::<LANES, u64>(d1).0.iter_mut())
                    .zip(as_arrays_mut::<LANES, u64>(d2).0.iter_mut());
                for (blk, ((d0, d1), d2)) in as_arrays::<BLOCK, u64>(acc).0.iter().zip(outputs) {
                    let [lo0, hi0, lo1, hi1, lo2, hi2]: [__m512i; 6] = cast(*blk);
                    *d0 = cast(simd.reduce(&v, lo0, hi0));
                    *d1 = cast(simd.reduce(&v, lo1, hi1));
                    *d2 = cast(simd.reduce(&v, lo2, hi2));
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    /// The names length errors give the four operands of a product.
    const OPERAND_NAMES: [&str; 4] = [
        "lazy tensor operand g0",
        "lazy tensor operand g1",
        "lazy tensor operand q0",
        "lazy tensor operand q1",
    ];

    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    /// NTT primes (≡ 1 mod 16384) of 30, 33, 45 and 50 bits.
    fn primes() -> Vec<u64> {
        ntt_primes(&[30, 33, 45, 50], 8192, &mut Vec::new()).unwrap()
    }

    /// Whether the IFMA path can run here. Fails (rather than skipping) if /proc/cpuinfo
    /// lists `avx512ifma` but run-time detection does not pick IFMA, so that an IFMA test
    /// never passes silently without running on an IFMA machine.
    fn ifma_runs(test: &str) -> bool {
        let listed = std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| s.contains("avx512ifma"))
            .unwrap_or(false);
        if listed {
            assert_eq!(
                detected_path(),
                KernelPath::Ifma,
                "/proc/cpuinfo lists avx512ifma but the IFMA path was not detected"
            );
        }
        if detected_path() == KernelPath::Ifma {
            eprintln!("{test}: running the IFMA path");
            true
        } else {
            eprintln!("{test}: SKIPPED the IFMA path (this CPU has no AVX-512 IFMA)");
            false
        }
    }

    /// A property-test runner of `cases` cases that keeps no failure files.
    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Sums by the definition: `u128` products reduced modulo `p` one by one.
    struct Reference {
        p: u64,
        d: [Vec<u64>; 3],
    }

    impl Reference {
        fn new(p: u64, n: usize) -> Self {
            Self {
                p,
                d: [vec![0; n], vec![0; n], vec![0; n]],
            }
        }

        fn add(&mut self, g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) {
            let p = self.p as u128;
            let mul = |a: u64, b: u64| (a as u128 * b as u128 % p) as u64;
            let add = |a: u64, b: u64| ((a as u128 + b as u128) % p) as u64;
            for i in 0..g0.len() {
                self.d[0][i] = add(self.d[0][i], mul(g0[i], q0[i]));
                self.d[1][i] = add(self.d[1][i], add(mul(g0[i], q1[i]), mul(g1[i], q0[i])));
                self.d[2][i] = add(self.d[2][i], mul(g1[i], q1[i]));
            }
        }
    }

    fn finished(t: &LazyTensor) -> [Vec<u64>; 3] {
        let n = t.len();
        let mut d = [vec![0; n], vec![0; n], vec![0; n]];
        let [d0, d1, d2] = &mut d;
        t.finish(d0, d1, d2).unwrap();
        d
    }

    /// Operands of one step: uniform below `p`, or every value `p − 1` (the largest
    /// products), or a mix of both per coefficient.
    fn operands(rng: &mut ChaCha8Rng, p: u64, n: usize, kind: u8) -> [Vec<u64>; 4] {
        let value = |rng: &mut ChaCha8Rng| match kind {
            0 => rng.next_u64() % p,
            1 => p - 1,
            _ if rng.next_u32() & 1 == 0 => p - 1 - rng.next_u64() % 4,
            _ => rng.next_u64() % p,
        };
        std::array::from_fn(|_| (0..n).map(|_| value(rng)).collect())
    }

    /// Runs `steps` random steps on every path given, checking each against the reference
    /// at a midpoint and at the end, and the paths' raw states against each other.
    fn check(paths: &[KernelPath], p: u64, n: usize, steps: usize, kind: u8, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut lazy: Vec<LazyTensor> = paths
            .iter()
            .map(|&path| LazyTensor::new(p, n, path).unwrap())
            .collect();
        let mut reference = Reference::new(p, n);
        let mut flushes = 0;
        for step in 0..steps {
            let [g0, g1, q0, q1] = operands(&mut rng, p, n, kind);
            reference.add(&g0, &g1, &q0, &q1);
            for t in &mut lazy {
                t.add(&g0, &g1, &q0, &q1).unwrap();
            }
            if lazy[0].pending() == 1 && step > 0 {
                flushes += 1;
            }
            if step == steps / 2 {
                for t in &lazy {
                    assert_eq!(finished(t), reference.d, "{:?} p={p} mid-sum", t.path());
                }
            }
            for t in &lazy[1..] {
                assert_eq!(t.acc, lazy[0].acc, "raw states differ (p={p}, step {step})");
                assert_eq!(t.pending(), lazy[0].pending());
            }
        }
        assert_eq!(flushes, steps.saturating_sub(1) / FLUSH_STEPS);
        for t in &lazy {
            assert_eq!(
                finished(t),
                reference.d,
                "{:?} p={p} n={n} K={steps}",
                t.path()
            );
        }
    }

    fn run_random(paths: &[KernelPath], cases: u32) {
        let primes = primes();
        let strategy = (
            0..primes.len(),
            1usize..=8,
            1usize..=4500,
            0u8..3,
            any::<u64>(),
        );
        runner(cases)
            .run(&strategy, |(i, blocks, steps, kind, seed)| {
                check(paths, primes[i], blocks * LANES, steps, kind, seed);
                Ok(())
            })
            .unwrap();
    }

    /// Batch sizes around the flush limit: none, one, a baby-step count and its neighbour,
    /// exactly the limit, one past it, and more than two flushes' worth.
    const BATCH_SIZES: [usize; 7] = [0, 1, 31, 32, FLUSH_STEPS, FLUSH_STEPS + 1, 5000];

    /// Steps before the batch, so that its chunks start anywhere relative to a flush.
    const PENDING_BEFORE: [usize; 5] = [0, 1, 1000, FLUSH_STEPS - 1, FLUSH_STEPS];

    /// `pre` single steps, then `batch` products, once as one `add_batch` and once as
    /// repeated `add`s, on every path given: the raw states (and pending counts) must be
    /// bit-identical across methods and paths, and the sums equal the reference (checked
    /// when `reference` is set). Operands come from a pool of 7 sets, used in turn.
    fn check_batch(
        paths: &[KernelPath],
        p: u64,
        n: usize,
        (pre, batch): (usize, usize),
        kind: u8,
        seed: u64,
        reference: bool,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pool: Vec<[Vec<u64>; 4]> = (0..7).map(|_| operands(&mut rng, p, n, kind)).collect();
        let op = |i: usize| &pool[i % pool.len()];
        let pairs: Vec<TensorPair<'_>> = (pre..pre + batch)
            .map(|i| {
                let [g0, g1, q0, q1] = op(i);
                ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
            })
            .collect();
        let mut states = Vec::new();
        for &path in paths {
            let mut single = LazyTensor::new(p, n, path).unwrap();
            for i in 0..pre {
                let [g0, g1, q0, q1] = op(i);
                single.add(g0, g1, q0, q1).unwrap();
            }
            let mut batched = single.clone();
            batched.add_batch(&pairs).unwrap();
            for i in pre..pre + batch {
                let [g0, g1, q0, q1] = op(i);
                single.add(g0, g1, q0, q1).unwrap();
            }
            let what = format!("{path:?} p={p} n={n} pre={pre} batch={batch} kind={kind}");
            assert_eq!(batched.acc, single.acc, "raw states differ: {what}");
            assert_eq!(batched.pending(), single.pending(), "{what}");
            assert!(batched.pending() <= FLUSH_STEPS);
            if reference {
                let mut r = Reference::new(p, n);
                for i in 0..pre + batch {
                    let [g0, g1, q0, q1] = op(i);
                    r.add(g0, g1, q0, q1);
                }
                assert_eq!(finished(&batched), r.d, "{what}");
            }
            states.push((batched.acc, batched.pending));
        }
        for s in &states[1..] {
            assert_eq!(*s, states[0], "paths differ: p={p} pre={pre} batch={batch}");
        }
    }

    fn batch_paths(test: &str) -> Vec<KernelPath> {
        let mut paths = vec![KernelPath::Portable];
        if ifma_runs(test) {
            paths.push(KernelPath::Ifma);
        }
        paths
    }

    /// `add_batch` against repeated `add` on random primes, inputs (uniform, all `p − 1`,
    /// mixed), lengths, batch sizes and starting points, on both paths.
    #[test]
    fn add_batch_matches_repeated_add() {
        let paths = batch_paths("add_batch_matches_repeated_add");
        let primes = primes();
        let strategy = (
            0..primes.len(),
            prop::sample::select(vec![16usize, 64]),
            prop::sample::select(BATCH_SIZES.to_vec()),
            prop_oneof![prop::sample::select(PENDING_BEFORE.to_vec()), 0usize..4200],
            0u8..3,
            any::<u64>(),
        );
        runner(32)
            .run(&strategy, |(i, n, batch, pre, kind, seed)| {
                check_batch(&paths, primes[i], n, (pre, batch), kind, seed, false);
                Ok(())
            })
            .unwrap();
    }

    /// Each batch's gallery residues `[g0, g1]` paired with the query residues of the shared
    /// operand of their position (as every giant step multiplies the same baby steps).
    fn with_shared<'a, W>(
        gallery: &'a [Vec<[Vec<W>; 2]>],
        shared: &'a [[Vec<u64>; 4]],
    ) -> Vec<Vec<GalleryPair<'a, W>>> {
        gallery
            .iter()
            .map(|ops| {
                ops.iter()
                    .enumerate()
                    .map(|(b, [g0, g1])| {
                        let [_, _, q0, q1] = &shared[b % shared.len()];
                        ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
                    })
                    .collect()
            })
            .collect()
    }

    /// `add_batch_many` against one `add_batch` per accumulator: several sums sharing their
    /// query operands (as the giant steps of a query share its baby steps), with random
    /// batch sizes (empty ones included), starting points (some past the flush point, which
    /// takes the one-by-one fallback), gallery words `u64` and `u32`, on both paths: the
    /// states and pending counts are bit-identical, and equal across paths.
    #[test]
    fn add_batch_many_matches_one_batch_per_accumulator() {
        let paths = batch_paths("add_batch_many_matches_one_batch_per_accumulator");
        let primes = primes();
        let strategy = (
            0..primes.len(),
            prop::sample::select(vec![16usize, 64, 264]),
            prop::collection::vec((0usize..40, prop_oneof![0usize..8, 2000usize..2047]), 1..6),
            0u8..3,
            any::<u64>(),
        );
        runner(24)
            .run(&strategy, |(i, n, jobs, kind, seed)| {
                let p = primes[i];
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let shared: Vec<[Vec<u64>; 4]> =
                    (0..5).map(|_| operands(&mut rng, p, n, kind)).collect();
                let gallery: Vec<Vec<[Vec<u64>; 2]>> = jobs
                    .iter()
                    .map(|&(batch, _)| {
                        (0..batch)
                            .map(|_| {
                                let [g0, g1, ..] = operands(&mut rng, p, n, kind);
                                [g0, g1]
                            })
                            .collect()
                    })
                    .collect();
                let narrow: Vec<Vec<[Vec<u32>; 2]>> = gallery
                    .iter()
                    .map(|ops| {
                        ops.iter()
                            .map(|g| g.each_ref().map(|g| g.iter().map(|&x| x as u32).collect()))
                            .collect()
                    })
                    .collect();
                let small = p < 1 << 32;
                let mut states = Vec::new();
                for &path in &paths {
                    let fresh = |pre: usize| {
                        let mut t = LazyTensor::new(p, n, path).unwrap();
                        let [g0, g1, q0, q1] = &shared[0];
                        for _ in 0..pre {
                            t.add(g0, g1, q0, q1).unwrap();
                        }
                        t
                    };
                    let mut one_by_one: Vec<LazyTensor> =
                        jobs.iter().map(|&(_, pre)| fresh(pre)).collect();
                    let mut joint = one_by_one.clone();
                    let wide: Vec<Vec<TensorPair<'_>>> = with_shared(&gallery, &shared);
                    for (t, pairs) in one_by_one.iter_mut().zip(&wide) {
                        t.add_batch(pairs).unwrap();
                    }
                    let batches: Vec<&[TensorPair<'_>]> = wide.iter().map(Vec::as_slice).collect();
                    let mut refs: Vec<&mut LazyTensor> = joint.iter_mut().collect();
                    LazyTensor::add_batch_many(&mut refs, &batches).unwrap();
                    if small {
                        // the same products with the gallery side as u32 words
                        let narrowed: Vec<Vec<NarrowPair<'_>>> = with_shared(&narrow, &shared);
                        for (t, pairs) in one_by_one.iter_mut().zip(&narrowed) {
                            t.add_batch_narrow(pairs).unwrap();
                        }
                        let batches: Vec<&[NarrowPair<'_>]> =
                            narrowed.iter().map(Vec::as_slice).collect();
                        let mut refs: Vec<&mut LazyTensor> = joint.iter_mut().collect();
                        LazyTensor::add_batch_narrow_many(&mut refs, &batches).unwrap();
                    }
                    for (a, b) in joint.iter().zip(&one_by_one) {
                        prop_assert_eq!(&a.acc, &b.acc, "{:?} p={} n={}", path, p, n);
                        prop_assert_eq!(a.pending(), b.pending());
                    }
                    states.push(
                        joint
                            .into_iter()
                            .map(|t| (t.acc, t.pending))
                            .collect::<Vec<_>>(),
                    );
                }
                for s in &states[1..] {
                    prop_assert_eq!(s, &states[0], "paths differ: p={}", p);
                }
                Ok(())
            })
            .unwrap();
    }

    /// `add_batch_many` checks every operand and the number of batches before changing
    /// anything.
    #[test]
    fn add_batch_many_rejects_bad_shapes_without_change() {
        let p = primes()[0];
        let good = [1u64; 16];
        let short = [1u64; 8];
        let mut a = LazyTensor::new(p, 16, KernelPath::Portable).unwrap();
        let mut b = a.clone();
        let ok: TensorPair<'_> = ([&good[..], &good[..]], [&good[..], &good[..]]);
        let bad: TensorPair<'_> = ([&good[..], &short[..]], [&good[..], &good[..]]);
        let before = (a.acc.clone(), b.acc.clone());
        let err = LazyTensor::add_batch_many(&mut [&mut a, &mut b], &[&[ok][..], &[bad][..]]);
        assert!(
            matches!(err, Err(HeError::LengthMismatch { .. })),
            "{err:?}"
        );
        let err = LazyTensor::add_batch_many(&mut [&mut a, &mut b], &[&[ok][..]]);
        assert!(
            matches!(err, Err(HeError::LengthMismatch { .. })),
            "{err:?}"
        );
        assert_eq!((a.acc.clone(), b.acc.clone()), before);
        assert_eq!((a.pending(), b.pending()), (0, 0));
    }

    /// Every input `p − 1`, every batch size and starting point of the lists, every prime:
    /// `add_batch` is bit-identical to repeated `add` on both paths and equals the
    /// reference sum.
    #[test]
    fn add_batch_worst_case_inputs_every_size() {
        let paths = batch_paths("add_batch_worst_case_inputs_every_size");
        for p in primes() {
            for batch in BATCH_SIZES {
                for pre in PENDING_BEFORE {
                    check_batch(&paths, p, 16, (pre, batch), 1, 9, true);
                }
            }
        }
    }

    /// `add_batch_narrow` (gallery residues as `u32`) leaves the state `add_batch` leaves on
    /// the same values widened to `u64`, bit for bit, on both paths: primes of 20 to 32
    /// bits, uniform, all-`(p − 1)` and mixed inputs, batches across flushes; and equals
    /// the reference sum. A wrong length is refused without change.
    #[test]
    fn add_batch_narrow_matches_add_batch() {
        let paths = batch_paths("add_batch_narrow_matches_add_batch");
        let primes = ntt_primes(&[20, 27, 31, 32], 8192, &mut Vec::new()).unwrap();
        let strategy = (
            0..primes.len(),
            prop::sample::select(vec![16usize, 64]),
            prop::sample::select(vec![1usize, 3, 32, FLUSH_STEPS + 2]),
            0usize..3000,
            0u8..3,
            any::<u64>(),
        );
        runner(24)
            .run(&strategy, |(i, n, batch, pre, kind, seed)| {
                let p = primes[i];
                prop_assert!(p < 1 << 32);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let pool: Vec<[Vec<u64>; 4]> =
                    (0..5).map(|_| operands(&mut rng, p, n, kind)).collect();
                let narrow: Vec<[Vec<u32>; 2]> = pool
                    .iter()
                    .map(|[g0, g1, ..]| {
                        [g0, g1].map(|g| g.iter().map(|&x| u32::try_from(x).unwrap()).collect())
                    })
                    .collect();
                let wide_pairs: Vec<TensorPair<'_>> = (0..batch)
                    .map(|k| {
                        let [g0, g1, q0, q1] = &pool[k % 5];
                        ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
                    })
                    .collect();
                let narrow_pairs: Vec<NarrowPair<'_>> = (0..batch)
                    .map(|k| {
                        let [g0, g1] = &narrow[k % 5];
                        let [_, _, q0, q1] = &pool[k % 5];
                        ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
                    })
                    .collect();
                for &path in &paths {
                    let mut wide = LazyTensor::new(p, n, path).unwrap();
                    let [g0, g1, q0, q1] = &pool[0];
                    for _ in 0..pre {
                        wide.add(g0, g1, q0, q1).unwrap();
                    }
                    let mut narrowed = wide.clone();
                    wide.add_batch(&wide_pairs).unwrap();
                    narrowed.add_batch_narrow(&narrow_pairs).unwrap();
                    prop_assert_eq!(&narrowed.acc, &wide.acc, "{:?} p={}", path, p);
                    prop_assert_eq!(narrowed.pending(), wide.pending());
                    let mut r = Reference::new(p, n);
                    for _ in 0..pre {
                        r.add(g0, g1, q0, q1);
                    }
                    for k in 0..batch {
                        let [g0, g1, q0, q1] = &pool[k % 5];
                        r.add(g0, g1, q0, q1);
                    }
                    prop_assert_eq!(finished(&narrowed), r.d.clone());
                    let before = narrowed.clone();
                    let short = [0u32; 8];
                    let bad = [([&short[..], &narrow[0][1][..]], wide_pairs[0].1)];
                    let refused = matches!(
                        narrowed.add_batch_narrow(&bad),
                        Err(HeError::LengthMismatch { .. })
                    );
                    prop_assert!(refused, "a short g0 must be refused");
                    prop_assert_eq!(&narrowed.acc, &before.acc);
                }
                Ok(())
            })
            .unwrap();
    }

    /// A batch is checked whole before anything is added: a wrong length anywhere (here in
    /// the last pair) is an error and leaves the state as it was; an empty batch changes
    /// nothing, not even a pending flush.
    #[test]
    fn add_batch_rejects_bad_lengths_without_change() {
        let p = primes()[3];
        for path in batch_paths("add_batch_rejects_bad_lengths_without_change") {
            let mut t = LazyTensor::new(p, 16, path).unwrap();
            let (ok, short) = (vec![p - 1; 16], vec![1u64; 8]);
            for _ in 0..FLUSH_STEPS {
                t.add(&ok, &ok, &ok, &ok).unwrap();
            }
            let before = t.clone();
            t.add_batch(&[]).unwrap();
            assert_eq!((&t.acc, t.pending), (&before.acc, FLUSH_STEPS));
            for i in 0..4 {
                let mut args = [&ok[..], &ok[..], &ok[..], &ok[..]];
                args[i] = &short;
                let mut pairs: Vec<TensorPair<'_>> = vec![([&ok, &ok], [&ok, &ok]); 40];
                pairs.push(([args[0], args[1]], [args[2], args[3]]));
                assert_eq!(
                    t.add_batch(&pairs),
                    Err(HeError::LengthMismatch {
                        what: OPERAND_NAMES[i],
                        expected: 16,
                        actual: 8
                    }),
                    "{path:?}"
                );
                assert_eq!(
                    t.acc, before.acc,
                    "{path:?}: a rejected batch changes nothing"
                );
                assert_eq!(t.pending(), FLUSH_STEPS);
            }
        }
        // n = 0: batches of empty operands are valid
        let mut e = LazyTensor::new(p, 0, detected_path()).unwrap();
        let none: &[u64] = &[];
        e.add_batch(&[([none, none], [none, none]); 3]).unwrap();
        assert_eq!(e.pending(), 3);
    }

    #[test]
    fn flush_limit_is_exact() {
        let max_residue = (MODULUS_BOUND - 2) as u128;
        let lo_max = |products: usize| max_residue + products as u128 * MASK52 as u128;
        // d1 takes two products per step
        assert!(lo_max(2 * FLUSH_STEPS) <= u64::MAX as u128);
        assert!(lo_max(2 * FLUSH_STEPS + 1) <= u64::MAX as u128);
        assert!(lo_max(2 * FLUSH_STEPS + 2) > u64::MAX as u128);
        // the high halves stay below the 2^60 the reduction assumes
        let hi_half_max = ((MODULUS_BOUND - 2) as u128).pow(2) >> 52;
        assert!(hi_half_max < 1 << 48);
        assert!(2 * FLUSH_STEPS as u128 * hi_half_max < 1 << 60);
    }

    #[test]
    fn detected_path_matches_cpuinfo() {
        let listed = std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| s.contains("avx512ifma"))
            .unwrap_or(false);
        eprintln!("detected kernel path: {:?}", detected_path());
        if listed {
            assert_eq!(detected_path(), KernelPath::Ifma);
        } else if std::path::Path::new("/proc/cpuinfo").exists() {
            assert_eq!(detected_path(), KernelPath::Portable);
        }
    }

    #[test]
    fn portable_matches_reference() {
        run_random(&[KernelPath::Portable], 24);
    }

    #[test]
    fn ifma_matches_portable_and_reference() {
        if ifma_runs("ifma_matches_portable_and_reference") {
            run_random(&[KernelPath::Ifma, KernelPath::Portable], 24);
        }
    }

    /// Every input `p − 1` (the largest products) across two flushes and around the flush
    /// boundary, on every path available.
    #[test]
    fn worst_case_inputs_across_flushes() {
        let mut paths = vec![KernelPath::Portable];
        if ifma_runs("worst_case_inputs_across_flushes") {
            paths.push(KernelPath::Ifma);
        }
        for p in primes() {
            for steps in [FLUSH_STEPS, FLUSH_STEPS + 1, 2 * FLUSH_STEPS + 3] {
                check(&paths, p, 16, steps, 1, 7);
            }
        }
    }

    /// Inputs that drive `lo` to the bound: every product's low half is `2^52 − 1`
    /// (`b = −a⁻¹ mod 2^52`) and the residue carried by the flush is `p − 1`, so `lo1`
    /// reaches `p − 1 + 4094·(2^52 − 1)`, two low halves short of overflowing. One more
    /// step between flushes would overflow: this test fails if `FLUSH_STEPS` is raised.
    #[test]
    fn adversarial_inputs_reach_the_bound() {
        let mut paths = vec![KernelPath::Portable];
        if ifma_runs("adversarial_inputs_reach_the_bound") {
            paths.push(KernelPath::Ifma);
        }
        let n = 16;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // primes of 45 and 50 bits: b < p is likely enough to search for
        for p in primes().into_iter().skip(2) {
            let inv = |a: u64| {
                let mut x = a; // Newton: correct to 3 bits for odd a, doubling each step
                for _ in 0..6 {
                    x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
                }
                x
            };
            let pair = |rng: &mut ChaCha8Rng| loop {
                let a = (rng.next_u64() % p) | 1;
                let b = inv(a).wrapping_neg() & MASK52;
                if a < p && b < p {
                    assert_eq!((a as u128 * b as u128) as u64 & MASK52, MASK52);
                    break (a, b);
                }
            };
            let (a, b): (Vec<u64>, Vec<u64>) = (0..n).map(|_| pair(&mut rng)).unzip();
            let m = Modulus::new(p);
            // first step: d1 += c with c making the sum at the flush ≡ p − 1
            let c: Vec<u64> = (0..n)
                .map(|i| {
                    let rest = m.mul((2 * (FLUSH_STEPS - 1)) as u64 % p, m.mul(a[i], b[i]));
                    m.sub(p - 1, rest)
                })
                .collect();
            let (zero, one) = (vec![0u64; n], vec![1u64; n]);
            let mut lazy: Vec<LazyTensor> = paths
                .iter()
                .map(|&path| LazyTensor::new(p, n, path).unwrap())
                .collect();
            let mut reference = Reference::new(p, n);
            reference.add(&c, &zero, &zero, &one);
            for _ in 1..2 * FLUSH_STEPS {
                reference.add(&a, &a, &b, &b);
            }
            for t in &mut lazy {
                t.add(&c, &zero, &zero, &one).unwrap();
                for _ in 1..2 * FLUSH_STEPS {
                    t.add(&a, &a, &b, &b).unwrap();
                }
                assert_eq!(finished(t), reference.d, "{:?} p={p}", t.path());
                assert_eq!(t.pending(), FLUSH_STEPS);
                let peak = (p - 1) as u128 + 2 * FLUSH_STEPS as u128 * MASK52 as u128;
                assert!(
                    u64::MAX as u128 - peak < 2 * MASK52 as u128,
                    "two more overflow"
                );
                for blk in t.acc.chunks_exact(BLOCK) {
                    assert!(
                        blk[2 * LANES..3 * LANES]
                            .iter()
                            .all(|&lo1| lo1 as u128 == peak)
                    );
                }
            }
        }
    }

    /// The reduction on accumulator states at the edge of the bounds (largest `lo`,
    /// largest `hi` the schedule allows) and random ones, against `u128` arithmetic.
    #[test]
    fn reduction_of_extreme_states() {
        let mut paths = vec![KernelPath::Portable];
        if ifma_runs("reduction_of_extreme_states") {
            paths.push(KernelPath::Ifma);
        }
        let hi_max = 2 * FLUSH_STEPS as u64 * ((1 << 48) - 1);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for p in primes().into_iter().chain([3, (1 << 50) - 27]) {
            for &path in &paths {
                let mut t = LazyTensor::new(p, 64, path).unwrap();
                let special = [0, 1, p - 1, p, MASK52, 1 << 52, u64::MAX];
                for (i, w) in t.acc.iter_mut().enumerate() {
                    let hi = (i / LANES) % 2 == 1;
                    *w = match (i % 7, hi) {
                        (0, true) => hi_max,
                        (1, true) => hi_max - 1,
                        (2, true) => 0,
                        (_, true) => rng.next_u64() % (hi_max + 1),
                        (0..=3, false) => special[(i / 2) % special.len()],
                        (_, false) => rng.next_u64(),
                    };
                }
                let expect: Vec<u64> = t
                    .acc
                    .chunks_exact(2 * LANES)
                    .flat_map(|pair| {
                        (0..LANES).map(move |l| {
                            let v = ((pair[LANES + l] as u128) << 52) + pair[l] as u128;
                            (v % p as u128) as u64
                        })
                    })
                    .collect();
                let d = finished(&t);
                // expect is ordered block by block: d0, d1, d2 lanes of each block
                for (b, chunk) in expect.chunks_exact(3 * LANES).enumerate() {
                    for k in 0..3 {
                        assert_eq!(
                            &d[k][b * LANES..(b + 1) * LANES],
                            &chunk[k * LANES..(k + 1) * LANES],
                            "{path:?} p={p} block {b} output {k}"
                        );
                    }
                }
                // a flush keeps the value and leaves hi = 0, lo < p
                t.flush();
                assert_eq!(finished(&t), d);
                for pair in t.acc.chunks_exact(2 * LANES) {
                    assert!(pair[..LANES].iter().all(|&lo| lo < p));
                    assert!(pair[LANES..].iter().all(|&hi| hi == 0));
                }
            }
        }
    }

    #[test]
    fn clear_and_continue_after_finish() {
        let p = primes()[3];
        let mut paths = vec![KernelPath::Portable];
        if ifma_runs("clear_and_continue_after_finish") {
            paths.push(KernelPath::Ifma);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for path in paths {
            let mut t = LazyTensor::new(p, 24, path).unwrap();
            let [g0, g1, q0, q1] = operands(&mut rng, p, 24, 0);
            t.add(&g0, &g1, &q0, &q1).unwrap();
            t.clear();
            assert_eq!(t.pending(), 0);
            assert_eq!(finished(&t), [vec![0; 24], vec![0; 24], vec![0; 24]]);
            let mut reference = Reference::new(p, 24);
            for _ in 0..3 {
                t.add(&g0, &g1, &q0, &q1).unwrap();
                reference.add(&g0, &g1, &q0, &q1);
                assert_eq!(finished(&t), reference.d, "{path:?}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let p = primes()[3];
        for bad in [0, 1, 2, 4, 1 << 50, (1 << 50) + 1, u64::MAX] {
            assert!(matches!(
                LazyTensor::new(bad, 8, KernelPath::Portable),
                Err(HeError::InvalidParameters { .. })
            ));
        }
        for n in [1, 7, 12] {
            assert!(matches!(
                LazyTensor::new(p, n, KernelPath::Portable),
                Err(HeError::InvalidParameters { .. })
            ));
        }
        if detected_path() == KernelPath::Portable {
            assert!(LazyTensor::new(p, 8, KernelPath::Ifma).is_err());
        }
        let mut t = LazyTensor::new(p, 16, detected_path()).unwrap();
        let (ok, short) = (vec![1u64; 16], vec![1u64; 8]);
        for i in 0..4 {
            let mut args = [&ok[..], &ok[..], &ok[..], &ok[..]];
            args[i] = &short;
            assert_eq!(
                t.add(args[0], args[1], args[2], args[3]),
                Err(HeError::LengthMismatch {
                    what: OPERAND_NAMES[i],
                    expected: 16,
                    actual: 8
                })
            );
        }
        assert_eq!(t.pending(), 0, "a rejected add changes nothing");
        let (mut a, mut b, mut c) = (vec![0u64; 16], vec![0u64; 16], vec![0u64; 17]);
        assert!(matches!(
            t.finish(&mut a, &mut b, &mut c),
            Err(HeError::LengthMismatch {
                expected: 16,
                actual: 17,
                ..
            })
        ));
        // n = 0 is a valid, empty accumulator
        let mut e = LazyTensor::new(p, 0, detected_path()).unwrap();
        assert!(e.is_empty());
        e.add(&[], &[], &[], &[]).unwrap();
        e.finish(&mut [], &mut [], &mut []).unwrap();
    }
}
