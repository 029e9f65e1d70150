//! The parameters both sides agree on, and the shape of a database they imply.
//!
//! A database of `capacity` slots is laid out ([`crate::batch::BatchLayout`]) in `B`
//! buckets of `bucket_len` records each; a bucket is a grid of `rows × cols` records
//! (position `p` at row `p mod rows`, column `p / rows`), so that a column is a run of
//! consecutive positions, i.e. of consecutive slots. A query selects one row and one column
//! per bucket.

use crate::batch::BatchLayout;
use crate::errors::{PirError, Result};
use crate::record::plaintexts_per_record;

/// The homomorphic-encryption preset private retrieval runs on (`blindsight-he`'s
/// `pir-4096`: N = 4096, t = 65 537, three ciphertext primes of 27 bits, one special
/// prime of 28 bits; log2(QP) = 109, the 128-bit table's bound at N = 4096). Queries are
/// expanded at level 2 (`q_0 q_1 q_2`, key switches with `P`); the first dimension and the
/// RGSW folds run at level 1 (`q_0 q_1`, with `q_2` as the folds' special prime); answers
/// are switched to level 0 (`q_0`) and rounded.
pub const PRESET: &str = "pir-4096";

/// The level queries are encrypted and expanded at.
pub const QUERY_LEVEL: usize = 2;

/// The level of the first dimension and the folds.
pub const WORK_LEVEL: usize = 1;

/// Buckets of the default layout (each search fetches one record from each).
pub const DEFAULT_BUCKETS: usize = 16;

/// Buckets each record is in, by default.
pub const DEFAULT_HASHES: usize = 4;

/// Most records one search retrieves with the default layout (at most this many are
/// placed among the buckets; see [`crate::batch`]).
pub const DEFAULT_MAX_K: usize = 10;

/// What both sides agree on: the record size and the layout's shape (not its seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PirParams {
    /// Bytes of every record.
    pub record_bytes: usize,
    /// Buckets `B`.
    pub buckets: usize,
    /// Buckets per record `w`.
    pub hashes: usize,
}

impl PirParams {
    /// The default layout for records of `record_bytes`.
    pub fn new(record_bytes: usize) -> Self {
        Self {
            record_bytes,
            buckets: DEFAULT_BUCKETS,
            hashes: DEFAULT_HASHES,
        }
    }

    /// The batch layout of these parameters for a client's `seed`.
    pub fn layout(&self, seed: u64) -> Result<BatchLayout> {
        BatchLayout::new(seed, self.buckets, self.hashes)
    }

    /// Plaintexts per record at degree `n`.
    pub fn parts(&self, n: usize) -> usize {
        plaintexts_per_record(self.record_bytes, n)
    }
}

/// The grid a database of `capacity` slots takes in each bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Slots of the database.
    pub capacity: u64,
    /// Records per bucket (`rows · cols` or slightly fewer).
    pub bucket_len: u64,
    /// Rows of a bucket (the first dimension, selected by plaintext products).
    pub rows: usize,
    /// Columns of a bucket (the second dimension, selected by RGSW folds).
    pub cols: usize,
    /// Bits of a column index (`⌈log2 cols⌉`): RGSW ciphertexts per bucket.
    pub bits: usize,
}

/// A bucket is about `RATIO` times taller than wide: a row costs one substitution in the
/// query expansion (≈ 1 core-ms with its switch), a column two external products (≈ 0.6
/// core-ms each, one per plaintext of a record): about as many rows as columns.
const RATIO: u64 = 1;

/// Most records a bucket may hold (2^26: a capacity of 2^26·B/w slots).
pub const MAX_BUCKET_LEN: u64 = 1 << 26;

impl Shape {
    /// The shape of a database of `capacity` slots under `layout`.
    pub fn new(layout: &BatchLayout, capacity: u64) -> Result<Self> {
        let bucket_len = layout.bucket_len(capacity.max(1))?;
        if bucket_len > MAX_BUCKET_LEN {
            return Err(PirError::Parameters {
                what: "records per bucket",
                expected: format!("at most {MAX_BUCKET_LEN}"),
                actual: bucket_len.to_string(),
            });
        }
        // cols ≈ sqrt(len / RATIO), rows = ceil(len / cols)
        let cols = ((bucket_len as f64 / RATIO as f64).sqrt().ceil() as u64).max(1);
        let rows = bucket_len.div_ceil(cols);
        let cols = bucket_len.div_ceil(rows);
        Ok(Self {
            capacity,
            bucket_len,
            rows: rows as usize,
            cols: cols as usize,
            bits: (cols as usize).next_power_of_two().trailing_zeros() as usize,
        })
    }

    /// The (row, column) of bucket position `p`.
    pub fn cell(&self, position: u64) -> (usize, usize) {
        let rows = self.rows as u64;
        ((position % rows) as usize, (position / rows) as usize)
    }

    /// The bucket position at (row, column).
    pub fn position(&self, row: usize, col: usize) -> u64 {
        col as u64 * self.rows as u64 + row as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_every_position_once() {
        let layout = BatchLayout::new(7, 16, 4).unwrap();
        for capacity in [1u64, 2, 3, 5, 17, 100, 1000, 12_345, 100_000, 1_000_000] {
            let s = Shape::new(&layout, capacity).unwrap();
            assert!(s.rows as u64 * s.cols as u64 >= s.bucket_len, "{s:?}");
            assert!(
                (s.rows as u64) * (s.cols as u64 - 1) < s.bucket_len,
                "{s:?}"
            );
            for p in [0, s.bucket_len / 2, s.bucket_len - 1] {
                let (r, c) = s.cell(p);
                assert!(r < s.rows && c < s.cols);
                assert_eq!(s.position(r, c), p);
            }
        }
    }
}
