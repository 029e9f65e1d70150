//! The client's side of a retrieval: queries that select one record per bucket, and the
//! decoding of the answer.
//!
//! A query is a few seeded ciphertexts at level 2 holding raw (protocol-scaled) values,
//! coefficient-encoded (see [`crate::expand`]):
//!
//! - the **row selectors**, `B · rows` values: for each bucket a one-hot row, the one
//!   `q_2 · Δ_1` (so that after the server's switch to level 1 it is a BFV encryption of
//!   1 under `Δ_1 = ⌊q_0 q_1 / t⌋`);
//! - the **column bits**, `B · bits · 2` values: for each bucket and bit `j` of its column,
//!   the two RGSW row-0 digits `bit · q_2 · ĝ_i` ([`blindsight_he::gsw`]).
//!
//! Each value is pre-multiplied by `2^-L` (the expansion multiplies by `2^L`). Buckets that
//! serve no wanted slot select a random position, so every query has the same shape
//! whatever it asks for; the server learns neither the slots nor which buckets matter.

use crate::batch::{Assignment, BatchLayout};
use crate::errors::{PirError, Result};
use crate::expand::levels;
use crate::params::{PirParams, QUERY_LEVEL, Shape, WORK_LEVEL};
use crate::record::from_coefficients;
use crate::wire::{Query, Response};
use blindsight_he::{BfvEncoder, Ciphertext, Context, SecretKey};

/// Digits of an RGSW ciphertext (primes of the work level).
pub const DIGITS: usize = WORK_LEVEL + 1;

/// What the client keeps between sending a query and reading its answer.
#[derive(Clone, Debug)]
pub struct PendingQuery {
    shape: Shape,
    assignment: Assignment,
}

impl PendingQuery {
    /// Which slot each bucket serves.
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// The shape the query was made for.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

/// One retrieved slot's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retrieved {
    /// The record's bytes (not yet authenticated: the caller checks its seal).
    Record(Vec<u8>),
    /// No placement of this batch could serve the slot (ask again in another search).
    Unplaced,
}

/// How many values each query ciphertext holds: first the row selectors (`B · rows`
/// values, `N` per ciphertext), then the column bits (`B · bits · DIGITS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPlan {
    /// Values per row-selector ciphertext.
    pub row_chunks: Vec<usize>,
    /// Values per column-bit ciphertext.
    pub bit_chunks: Vec<usize>,
}

fn chunks(total: usize, n: usize) -> Vec<usize> {
    (0..total.div_ceil(n))
        .map(|i| (total - i * n).min(n))
        .collect()
}

impl QueryPlan {
    /// The plan of a query over `shape` with `buckets` buckets at degree `n`.
    pub fn new(shape: &Shape, buckets: usize, n: usize) -> Self {
        Self {
            row_chunks: chunks(buckets * shape.rows, n),
            bit_chunks: chunks(buckets * shape.bits * DIGITS, n),
        }
    }

    /// Ciphertexts in all.
    pub fn ciphertexts(&self) -> usize {
        self.row_chunks.len() + self.bit_chunks.len()
    }
}

/// A uniform value below `n` (`n ≥ 1`) from the OS CSPRNG (multiply-shift: bias < 2^-38).
fn random_below(n: u64) -> Result<u64> {
    let x = u64::from_le_bytes(blindsight_os::random::bytes::<8>()?);
    Ok(((u128::from(x) * u128::from(n)) >> 64) as u64)
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

/// `x^-1 mod p` for `p` prime (Fermat).
fn inverse_mod(x: u64, p: u64) -> u64 {
    let (mut base, mut e, mut acc) = (x % p, p - 2, 1u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = mul_mod(acc, base, p);
        }
        base = mul_mod(base, base, p);
        e >>= 1;
    }
    acc
}

/// One query ciphertext's values, residue by residue (`[prime][coefficient]`).
struct RawChunk {
    residues: Vec<Vec<u64>>,
    /// `2^-L mod q_j` for the chunk's expansion depth.
    inverse: Vec<u64>,
}

impl RawChunk {
    fn new(primes: &[u64], n: usize, values: usize) -> Self {
        let scale = 1u64 << levels(values);
        Self {
            residues: primes.iter().map(|_| vec![0u64; n]).collect(),
            inverse: primes.iter().map(|&p| inverse_mod(scale, p)).collect(),
        }
    }

    /// Sets coefficient `i` to the value with residues `value[j]` (times `2^-L`).
    fn set(&mut self, i: usize, value: &[u64], primes: &[u64]) {
        for (j, (&v, &p)) in value.iter().zip(primes).enumerate() {
            self.residues[j][i] = mul_mod(v, self.inverse[j], p);
        }
    }
}

/// Builds a query for `slots` (any order, duplicates fetched once) of a database of
/// `capacity` slots.
pub fn build_query(
    ctx: &Context,
    sk: &SecretKey,
    layout: &BatchLayout,
    capacity: u64,
    slots: &[u64],
) -> Result<(Query, PendingQuery)> {
    for &s in slots {
        crate::batch::check_slot(s, capacity)?;
    }
    let shape = Shape::new(layout, capacity)?;
    let assignment = layout.assign(slots);
    let n = ctx.degree();
    let t = ctx.params().plain_modulus();
    let primes: Vec<u64> = ctx.params().moduli()[..=QUERY_LEVEL].to_vec();
    let q2 = primes[2];
    let delta = (u128::from(primes[0]) * u128::from(primes[1])) / u128::from(t);
    // q_2 · Δ_1 and q_2 · ĝ_i, residue by residue (ĝ_i ≡ δ_ij mod q_j; both ≡ 0 mod q_2)
    let one: Vec<u64> = primes
        .iter()
        .map(|&p| mul_mod(q2 % p, (delta % u128::from(p)) as u64, p))
        .collect();
    let gadget: Vec<Vec<u64>> = (0..DIGITS)
        .map(|i| {
            primes
                .iter()
                .enumerate()
                .map(|(j, &p)| if j == i { q2 % p } else { 0 })
                .collect()
        })
        .collect();
    let plan = QueryPlan::new(&shape, layout.buckets(), n);
    let mut rows: Vec<RawChunk> = plan
        .row_chunks
        .iter()
        .map(|&m| RawChunk::new(&primes, n, m))
        .collect();
    let mut bits: Vec<RawChunk> = plan
        .bit_chunks
        .iter()
        .map(|&m| RawChunk::new(&primes, n, m))
        .collect();
    for (bucket, slot) in assignment.by_bucket.iter().enumerate() {
        let position = match slot {
            Some(s) => layout.position(*s),
            None => random_below(shape.bucket_len)?,
        };
        let (row, col) = shape.cell(position);
        let i = bucket * shape.rows + row;
        rows[i / n].set(i % n, &one, &primes);
        for bit in 0..shape.bits {
            if (col >> bit) & 1 == 1 {
                for (d, g) in gadget.iter().enumerate() {
                    let i = (bucket * shape.bits + bit) * DIGITS + d;
                    bits[i / n].set(i % n, g, &primes);
                }
            }
        }
    }
    let ciphertexts = rows
        .iter()
        .chain(&bits)
        .map(|c| Ok(sk.encrypt_raw(ctx, QUERY_LEVEL, &c.residues)?))
        .collect::<Result<Vec<Ciphertext>>>()?;
    Ok((
        Query {
            capacity,
            ciphertexts,
        },
        PendingQuery { shape, assignment },
    ))
}

/// Decodes an answer: for each of `slots` (in their order), its record or
/// [`Retrieved::Unplaced`]. An answer of the wrong shape is an error; a wrong record (a
/// corrupted or swapped answer) decodes to bytes that the record's seal then refuses.
pub fn decode_response(
    ctx: &Context,
    sk: &SecretKey,
    params: &PirParams,
    pending: &PendingQuery,
    response: &Response,
    slots: &[u64],
) -> Result<Vec<Retrieved>> {
    let parts = params.parts(ctx.degree());
    let buckets = pending.assignment.by_bucket.len();
    if response.ciphertexts.len() != buckets * parts {
        return Err(PirError::Answer {
            expected: format!("{} ciphertexts", buckets * parts),
            actual: response.ciphertexts.len().to_string(),
        });
    }
    if let Some(ct) = response
        .ciphertexts
        .iter()
        .find(|ct| ct.level() != 0 || ct.size() != 2)
    {
        return Err(PirError::Answer {
            expected: "answer ciphertexts at level 0".to_string(),
            actual: format!("level {}, {} polynomials", ct.level(), ct.size()),
        });
    }
    let encoder = BfvEncoder::new(ctx)?;
    let mut out = Vec::with_capacity(slots.len());
    for &slot in slots {
        let Some(bucket) = pending
            .assignment
            .by_bucket
            .iter()
            .position(|s| *s == Some(slot))
        else {
            out.push(Retrieved::Unplaced);
            continue;
        };
        let plaintexts = response.ciphertexts[bucket * parts..(bucket + 1) * parts]
            .iter()
            .map(|ct| Ok(encoder.decode_coefficients(&sk.decrypt(ctx, ct)?)?))
            .collect::<Result<Vec<_>>>()?;
        out.push(Retrieved::Record(from_coefficients(
            &plaintexts,
            params.record_bytes,
        )?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverses_mod_p() {
        for x in [1u64, 2, 4, 1024, 4096, 65536] {
            assert_eq!(mul_mod(inverse_mod(x, 65537), x, 65537), 1);
        }
    }
}
