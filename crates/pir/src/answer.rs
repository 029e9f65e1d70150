//! The server's side: answering a query over a database of fixed-size records.
//!
//! 1. **Expand** the query ([`crate::expand`]): the row selectors are switched down to the
//!    work level (BFV encryptions of 0 or 1), the column bits become RGSW ciphertexts
//!    ([`blindsight_he::gsw`]).
//! 2. **First dimension**, by blocks of columns: every record of the columns' slots is
//!    transformed once per plaintext and prime and multiplied into each of its buckets'
//!    accumulators by that bucket's row selector (plaintext products, summed lazily); the
//!    block is then folded by the bucket's first column bits, so that only a fraction of
//!    the column results are ever held.
//! 3. **Second dimension**: each bucket's remaining columns are folded pairwise by its other
//!    column bits, least significant first (`a + bit ⊡ (b − a)`): the selected column
//!    remains.
//! 4. The result is switched to level 0 and rounded for transfer.
//!
//! The server sees only ciphertexts and does the same work whatever the query selects.

use crate::batch::BatchLayout;
use crate::errors::{PirError, Result};
use crate::expand::{expand, expand_map};
use crate::keys::QueryKeys;
use crate::params::{PirParams, QUERY_LEVEL, Shape, WORK_LEVEL};
use crate::query::{DIGITS, QueryPlan};
use crate::record::part_coefficients;
use crate::wire::{Query, Response};
use blindsight_he::{
    Ciphertext, Context, Evaluator, NarrowCiphertext, NarrowOperands, NarrowProduct,
    NarrowSelectors, NarrowSums, Rgsw, accumulate_narrow_by_prime,
};
use rayon::prelude::*;

/// Bits per coefficient of `c_0` and `c_1` in an answer (at `q_0 ≈ 2^27`, `Δ_0 ≈ 2^11`:
/// the rounding adds errors of standard deviation ≈ 2^2 and ≈ 2^6 to a noise of ≈ 2^5,
/// against `Δ_0 / 2 = 2^10`: about 11 standard deviations).
pub const ANSWER_BITS: [u32; 2] = [22, 25];

/// The records a server answers from.
pub trait Records: Sync {
    /// Slots laid out (records beyond are absent).
    fn capacity(&self) -> u64;
    /// The record at `slot` (exactly the parameters' record size), `None` if the slot is
    /// empty (a purged image): it reads as zeros.
    fn record(&self, slot: u64) -> Option<&[u8]>;
}

/// The expanded query: row selectors per bucket and RGSW column bits per bucket.
struct Selectors {
    /// Row selectors, row-major: index `row · B + bucket` (a batch of rows is one run).
    rows: NarrowSelectors,
    bits: Vec<Rgsw>,
}

fn expand_query(
    ev: &Evaluator,
    keys: &QueryKeys,
    shape: &Shape,
    plan: &QueryPlan,
    query: &Query,
) -> Result<Selectors> {
    let ctx = ev.context();
    let (row_queries, bit_queries) = query.ciphertexts.split_at(plan.row_chunks.len());
    // row selectors: switched to the work level and narrowed as soon as they are expanded
    let expand_rows = || {
        row_queries
            .par_iter()
            .zip(plan.row_chunks.par_iter())
            .map(|(ct, &m)| {
                expand_map(ev, &keys.galois, ct, m, |leaf| {
                    let low = ev.mod_switch_to(&leaf, WORK_LEVEL)?;
                    Ok(NarrowCiphertext::new(ctx, &low)?)
                })
            })
            .collect::<Result<Vec<_>>>()
    };
    let expand_bits = || {
        bit_queries
            .par_iter()
            .zip(plan.bit_chunks.par_iter())
            .map(|(ct, &m)| expand(ev, &keys.galois, ct, m))
            .collect::<Result<Vec<_>>>()
    };
    let (rows, bit_leaves) = rayon::join(expand_rows, expand_bits);
    // expanded bucket-major (b · rows + row), tabled row-major (row · B + b)
    let height = shape.rows.max(1);
    let mut row_major: Vec<(usize, NarrowCiphertext)> = rows?
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| (i % height, s))
        .collect();
    if !row_major.len().is_multiple_of(height) {
        return Err(PirError::Answer {
            expected: format!("row selectors in whole buckets of {height}"),
            actual: row_major.len().to_string(),
        });
    }
    // stable: within a row, buckets stay in order
    row_major.sort_by_key(|(row, _)| *row);
    let rows = NarrowSelectors::new(ctx, WORK_LEVEL, row_major.into_iter().map(|(_, s)| s))?;
    let bit_leaves: Vec<Ciphertext> = bit_leaves?.into_iter().flatten().collect();
    let bits = bit_leaves
        .par_chunks(DIGITS)
        .map(|digits| Ok(ev.rgsw_from_rows(digits, &keys.relin)?))
        .collect::<Result<Vec<_>>>()?;
    debug_assert_eq!(bits.len(), shape.bits * rows.len() / shape.rows.max(1));
    Ok(Selectors { rows, bits })
}

/// Where an answer's time went (seconds, wall clock).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AnswerTimes {
    /// Query expansion, row switches and RGSW rows.
    pub expand_s: f64,
    /// The first dimension (records transformed and multiplied) and the first fold.
    pub first_s: f64,
    /// The other folds, switches and rounding.
    pub fold_s: f64,
}

/// Answers `query` over `records` laid out by `layout`.
pub fn answer(
    ev: &Evaluator,
    keys: &QueryKeys,
    params: &PirParams,
    layout: &BatchLayout,
    records: &dyn Records,
    query: &Query,
) -> Result<Response> {
    answer_timed(ev, keys, params, layout, records, query).map(|(r, _)| r)
}

/// [`answer`], with the time each stage took.
pub fn answer_timed(
    ev: &Evaluator,
    keys: &QueryKeys,
    params: &PirParams,
    layout: &BatchLayout,
    records: &dyn Records,
    query: &Query,
) -> Result<(Response, AnswerTimes)> {
    let mut times = AnswerTimes::default();
    let clock = std::time::Instant::now();
    let ctx = ev.context();
    let n = ctx.degree();
    if query.capacity > records.capacity() {
        return Err(PirError::Parameters {
            what: "the query's database size",
            expected: format!("at most the {} slots laid out", records.capacity()),
            actual: query.capacity.to_string(),
        });
    }
    let shape = Shape::new(layout, query.capacity)?;
    let plan = QueryPlan::new(&shape, layout.buckets(), n);
    if query.ciphertexts.len() != plan.ciphertexts() {
        return Err(PirError::Answer {
            expected: format!("a query of {} ciphertexts", plan.ciphertexts()),
            actual: query.ciphertexts.len().to_string(),
        });
    }
    for ct in &query.ciphertexts {
        if ct.level() != QUERY_LEVEL || ct.size() != 2 {
            return Err(PirError::Answer {
                expected: format!("fresh query ciphertexts at level {QUERY_LEVEL}"),
                actual: format!("level {}, {} polynomials", ct.level(), ct.size()),
            });
        }
    }
    let selectors = expand_query(ev, keys, &shape, &plan, query)?;
    times.expand_s = clock.elapsed().as_secs_f64();
    // columns[c][b][part] after the first folds, COLUMN_BLOCK columns per task, each task
    // on arenas of the pool
    let pool = std::sync::Mutex::new(Vec::new());
    // the bits each task folds its columns by (the block's, fewer if the grid is narrower)
    let first_levels = (COLUMN_BLOCK.trailing_zeros() as usize).min(shape.bits);
    let task = FirstDimension {
        ctx,
        params,
        layout,
        shape: &shape,
        records,
        row_selectors: &selectors.rows,
    };
    let columns = (0..shape.cols)
        .step_by(COLUMN_BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|c| {
            let block = c..(c + COLUMN_BLOCK).min(shape.cols);
            let taken = pool.lock().ok().and_then(|mut p| p.pop());
            let mut arenas = match taken {
                Some(arenas) => arenas,
                None => Arenas::new(ctx, params, layout)?,
            };
            let out = task.columns(block, &mut arenas);
            // a failed task's sums may be partial: its arenas are dropped
            if out.is_ok()
                && let Ok(mut p) = pool.lock()
            {
                p.push(arenas);
            }
            // folded here by each bucket's first bits: 1 / COLUMN_BLOCK of the column results
            // are ever held
            fold_first(ev, out?, &selectors.bits, shape.bits, first_levels)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    times.first_s = clock.elapsed().as_secs_f64() - times.expand_s;
    // moved from column-major to bucket-major, not copied
    let mut by_bucket: Vec<Vec<Vec<Ciphertext>>> = (0..layout.buckets())
        .map(|_| Vec::with_capacity(shape.cols))
        .collect();
    for column in columns {
        for (bucket, parts) in by_bucket.iter_mut().zip(column) {
            bucket.push(parts);
        }
    }
    let buckets = by_bucket
        .into_par_iter()
        .enumerate()
        .map(|(b, mut level)| {
            // the first bits were folded with the first dimension (blocks of columns)
            let bits = &selectors.bits[b * shape.bits..(b + 1) * shape.bits];
            for bit in bits.iter().skip(first_levels) {
                level = fold(ev, level, bit)?;
            }
            let Some(parts) = level.pop() else {
                return Err(PirError::Answer {
                    expected: "a column".to_string(),
                    actual: "none".to_string(),
                });
            };
            parts
                .iter()
                .map(|ct| {
                    let low = ev.mod_switch_to(ct, 0)?;
                    Ok(ev.round_for_transfer(&low, ANSWER_BITS)?)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    times.fold_s = clock.elapsed().as_secs_f64() - times.expand_s - times.first_s;
    Ok((
        Response {
            ciphertexts: buckets.into_iter().flatten().collect(),
        },
        times,
    ))
}

/// One level of the folding tree: `out[i] = merge(cols[2i], cols[2i + 1])`, a lone last
/// column as it is.
fn pairwise<T>(cols: Vec<T>, mut merge: impl FnMut(T, T) -> Result<T>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(cols.len().div_ceil(2));
    let mut it = cols.into_iter();
    while let Some(a) = it.next() {
        match it.next() {
            None => out.push(a),
            Some(b) => out.push(merge(a, b)?),
        }
    }
    Ok(out)
}

/// One fold: `out[i] = col[2i] + bit ⊡ (col[2i+1] − col[2i])` (a lone last column stays).
fn fold(ev: &Evaluator, cols: Vec<Vec<Ciphertext>>, bit: &Rgsw) -> Result<Vec<Vec<Ciphertext>>> {
    pairwise(cols, |a, b| fold_pair(ev, a, b, bit))
}

/// A task's columns `[c][b][part]` (starting at a multiple of `COLUMN_BLOCK`) folded by
/// each bucket's first `levels` bits (`bits[b · per_bucket + level]`), as the later folds
/// would have: pairs at each level, a lone last column as it is.
fn fold_first(
    ev: &Evaluator,
    mut cols: Vec<Vec<Vec<Ciphertext>>>,
    bits: &[Rgsw],
    per_bucket: usize,
    levels: usize,
) -> Result<Vec<Vec<Vec<Ciphertext>>>> {
    for level in 0..levels {
        cols = pairwise(cols, |a, b| {
            a.into_iter()
                .zip(b)
                .enumerate()
                .map(|(bucket, (a, b))| {
                    let bit =
                        bits.get(bucket * per_bucket + level)
                            .ok_or_else(|| PirError::Answer {
                                expected: "a column bit per bucket and level".to_string(),
                                actual: format!("{} bits", bits.len()),
                            })?;
                    fold_pair(ev, a, b, bit)
                })
                .collect()
        })?;
    }
    Ok(cols)
}

/// `a + bit ⊡ (b − a)` for each plaintext's ciphertexts of two columns, in place (`b − a`
/// in `b`'s polynomials, the sum in `a`'s).
fn fold_pair(
    ev: &Evaluator,
    mut a: Vec<Ciphertext>,
    b: Vec<Ciphertext>,
    bit: &Rgsw,
) -> Result<Vec<Ciphertext>> {
    for (a, mut b) in a.iter_mut().zip(b) {
        ev.sub_assign(&mut b, a)?;
        let step = ev.external_product(&b, bit)?;
        ev.add_assign(a, &step)?;
    }
    Ok(a)
}

/// Columns one first-dimension task computes (a power of two: the task folds them by the
/// first bits), and rows whose records are transformed before their products are summed,
/// one prime at a time and tile by tile ([`accumulate_narrow_by_prime`]): a batch's sums
/// are read and written once per `ROW_BATCH` rows, a row's selectors once per
/// `COLUMN_BLOCK` columns (2 × 16 rows × 4 slots × 2 plaintexts: 256 operands, 4 MiB per
/// prime). Larger batches measured no faster: their operands leave the cache.
const COLUMN_BLOCK: usize = 2;
const ROW_BATCH: usize = 16;

/// A first-dimension task's buffers, sized for `COLUMN_BLOCK` columns and reused from task
/// to task (fresh ones would cost the system a zeroed page per 4 KiB, twice per task).
struct Arenas {
    acc: NarrowSums,
    operands: NarrowOperands,
    products: Vec<NarrowProduct>,
    coefficients: Vec<u16>,
}

impl Arenas {
    fn new(ctx: &Context, params: &PirParams, layout: &BatchLayout) -> Result<Self> {
        let n = ctx.degree();
        let parts = params.parts(n);
        let cell = layout.cell_slots() as usize;
        let operands = ROW_BATCH * COLUMN_BLOCK * cell * parts;
        Ok(Self {
            acc: NarrowSums::new(ctx, WORK_LEVEL, COLUMN_BLOCK * layout.buckets() * parts)?,
            operands: NarrowOperands::one_prime(ctx, WORK_LEVEL, operands)?,
            products: Vec::with_capacity(operands * layout.hashes()),
            coefficients: vec![0u16; n],
        })
    }
}

/// What every first-dimension task reads.
struct FirstDimension<'a> {
    ctx: &'a Context,
    params: &'a PirParams,
    layout: &'a BatchLayout,
    shape: &'a Shape,
    records: &'a dyn Records,
    row_selectors: &'a NarrowSelectors,
}

impl FirstDimension<'_> {
    /// Columns `cols` (at most `COLUMN_BLOCK`) of every bucket:
    /// `out[c][b][part] = Σ_row row_selector[b][row] · record`.
    fn columns(
        &self,
        cols: std::ops::Range<usize>,
        arenas: &mut Arenas,
    ) -> Result<Vec<Vec<Vec<Ciphertext>>>> {
        let Self {
            ctx,
            params,
            layout,
            shape,
            records,
            row_selectors,
        } = *self;
        let n = ctx.degree();
        let parts = params.parts(n);
        let buckets = layout.buckets();
        let Arenas {
            acc,
            operands,
            products,
            coefficients,
        } = arenas;
        let mut batch_records: Vec<&[u8]> = Vec::new();
        for batch in (0..shape.rows).step_by(ROW_BATCH) {
            products.clear();
            batch_records.clear();
            let mut loaded = 0;
            for row in batch..(batch + ROW_BATCH).min(shape.rows) {
                for (ci, col) in cols.clone().enumerate() {
                    let position = shape.position(row, col);
                    if position >= shape.bucket_len {
                        continue;
                    }
                    let first = position * layout.cell_slots();
                    let end = (first + layout.cell_slots()).min(shape.capacity);
                    for slot in first..end {
                        let Some(record) = records.record(slot) else {
                            continue;
                        };
                        if record.len() != params.record_bytes {
                            return Err(PirError::Parameters {
                                what: "a stored record's length",
                                expected: params.record_bytes.to_string(),
                                actual: record.len().to_string(),
                            });
                        }
                        batch_records.push(record);
                        for b in layout.candidates(slot) {
                            for part in 0..parts {
                                products.push(NarrowProduct {
                                    acc: (ci * buckets + b) * parts + part,
                                    selector: row * buckets + b,
                                    operand: loaded * parts + part,
                                });
                            }
                        }
                        loaded += 1;
                    }
                }
            }
            // one prime at a time: a batch's transformed records (4 MiB per prime) stay
            // in the cache from their transforms to their products
            accumulate_narrow_by_prime(ctx, acc, row_selectors, operands, products, |ops| {
                for (k, record) in batch_records.iter().enumerate() {
                    for part in 0..parts {
                        part_coefficients(record, part, coefficients);
                        ops.load_u16(ctx, k * parts + part, coefficients)?;
                    }
                }
                Ok(())
            })?;
        }
        let mut sums = acc.take(ctx, cols.len() * buckets * parts)?.into_iter();
        cols.map(|_| {
            (0..buckets)
                .map(|_| {
                    let got: Vec<Ciphertext> = sums.by_ref().take(parts).collect();
                    if got.len() != parts {
                        return Err(PirError::Answer {
                            expected: "a sum per column, bucket and plaintext".to_string(),
                            actual: "fewer".to_string(),
                        });
                    }
                    Ok(got)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect()
    }
}
