//! The packing of a gallery segment: generalized diagonals with baby-step/giant-step
//! (Halevi–Shoup), in the hybrid form for short blocks and rows-in-slots for tall ones.
//!
//! A ciphertext has `rows × row_len` slots; an image vector takes `V` of them (a power of
//! two dividing `row_len`), so a ciphertext holds `L = rows·row_len/V` *lanes*. The lanes of
//! a row are interleaved: lane `ℓ` of a row with `S = row_len/V` lanes holds its value `j`
//! in slot `ℓ + S·j`, so that a row rotation by `S·k` rotates every lane by `k` on its own.
//! Images are cut into blocks of `m` (a power of two, `m ≤ V`) and `L` blocks form a
//! *group*, one per lane. For a group, ciphertext `i < m` holds in lane `ℓ` the diagonal
//!
//! ```text
//! diag_i[j] = G[block(ℓ)·m + (j mod m)][(j + i) mod V]      (j < V)
//! ```
//!
//! rotated right (lane-wise) by its giant-step offset `⌊i/B⌋·B`. The server multiplies
//! ciphertext `g·B + b` with the query rotated by `b` (hoisted baby steps), sums each giant
//! step once, rotates it by `g·B`, and, when `m < V`, rotate-and-adds by `m, 2m, …, V/2`.
//! Lane `ℓ`'s value `r` (and every `r + k·m`) then holds `⟨G[block(ℓ)·m + r], q⟩`.
//!
//! The fold is a trace: summing over the rotations by multiples of `m` lane-wise, i.e. row
//! rotations by multiples of `S·m`, a subgroup of order `V/m` of the automorphisms. Its last
//! `log2 d` steps (rotations by multiples of `row_len/d`) can be left to the ring switch of
//! the response ([`blindsight_he::ring_switch`]), which projects onto the subring `Z[X^d]`
//! and so sums over exactly those rotations for free, in a response `d` times smaller: the
//! interleaving is what makes that subgroup act within every lane. When `m = V` (a tall
//! block, every slot an image) there is no fold: that is the rows-in-slots layout with a
//! replicated query. The cost is `⌈n/(L·m)⌉·m` ciphertext products per channel,
//! `B + ⌈m/B⌉ + log2(V/m)` rotations and `⌈m/B⌉` relinearizations per group: never one
//! rotation per image.

use crate::errors::{Result, SearchError};
use crate::slots::SlotShape;

/// The packing of one segment of a gallery. Serializable; the Galois keys a gallery needs
/// are derived from its layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Images in the segment.
    pub count: usize,
    /// Values per image channel.
    pub dim: usize,
    /// Slots per image vector `V`.
    pub vector_slots: usize,
    /// Ciphertext slot shape.
    pub shape: SlotShape,
    /// Images per block `m`.
    pub block: usize,
    /// Baby steps `B`.
    pub baby: usize,
}

/// Most images in one segment.
pub const MAX_COUNT: usize = 1 << 32;
/// Most slots in a ciphertext row (N/2 for the largest ring degree blindsight accepts).
pub const MAX_ROW_LEN: usize = 1 << 16;
/// Most rows of a slot shape.
pub const MAX_ROWS: usize = 2;

const LAYOUT_MAGIC: [u8; 4] = *b"BLSL";
/// Version 2: interleaved lanes (version 1 packed lanes contiguously).
const LAYOUT_VERSION: u8 = 2;
const LAYOUT_BYTES: usize = 4 + 1 + 7 * 8;

/// Most baby steps a layout takes: each is a rotated copy of the query kept in memory for
/// the whole search, and a Galois key.
pub const MAX_BABY: usize = 256;

/// The baby steps `B` (a power of two at most `m` and [`MAX_BABY`]) of blocks of `m` images
/// in `groups` groups: the query's `B − 1` rotations are computed once per search, while
/// every group pays `⌈m/B⌉` giant steps of two key switchings each (relinearization and
/// rotation), so `B − 1 + 2·groups·⌈m/B⌉` is smallest (the smaller `B` on a tie). One
/// group gives `B ≈ √(2m)`; a gallery of many groups takes more baby steps and fewer giant
/// ones (10^5 vectors of 512 values under CKKS: 128 instead of 16, 30 % less scoring
/// time).
pub fn baby_steps_for(block: usize, groups: usize) -> usize {
    let cost = |b: usize| (b - 1).saturating_add(groups.saturating_mul(2 * block.div_ceil(b)));
    (0..=block.clamp(1, MAX_BABY).ilog2())
        .map(|k| 1usize << k)
        .min_by_key(|&b| (cost(b), b))
        .unwrap_or(1)
}

impl Layout {
    /// Chooses the layout of a segment of `count` images of `dim` values in slot vectors of
    /// `vector_slots` slots each.
    pub fn new(count: usize, dim: usize, vector_slots: usize, shape: SlotShape) -> Result<Self> {
        let layout_err = |reason: String| SearchError::Layout { reason };
        if count == 0 {
            return Err(layout_err("a segment needs at least one image".into()));
        }
        if !vector_slots.is_power_of_two()
            || !shape.row_len.is_power_of_two()
            || vector_slots > shape.row_len
        {
            return Err(layout_err(format!(
                "vectors of {dim} values need {vector_slots} slots, more than the {} slots of a \
                 ciphertext row; use smaller images or a larger parameter set",
                shape.row_len
            )));
        }
        let lanes = shape
            .rows
            .checked_mul(shape.row_len)
            .map_or(0, |slots| slots / vector_slots);
        if lanes == 0 || count > MAX_COUNT {
            return Err(layout_err(format!(
                "a segment holds 1 to {MAX_COUNT} images of at most one ciphertext row each; \
                 got {count} images for a {}×{} slot shape",
                shape.rows, shape.row_len
            )));
        }
        let block = count
            .div_ceil(lanes)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .min(vector_slots);
        let groups = count.div_ceil(lanes.saturating_mul(block).max(1));
        let baby = baby_steps_for(block, groups);
        let layout = Self {
            count,
            dim,
            vector_slots,
            shape,
            block,
            baby,
        };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks every invariant the other methods rely on, with checked arithmetic (so that
    /// no field values, however large, can overflow or divide by zero here or later).
    fn validate(&self) -> Result<()> {
        let slots = self.shape.rows.checked_mul(self.shape.row_len);
        let per_group = slots
            .map(|s| s / self.vector_slots.max(1))
            .and_then(|lanes| lanes.checked_mul(self.block))
            .unwrap_or(0);
        let capacity_ok = per_group > 0
            && self
                .count
                .div_ceil(per_group)
                .checked_mul(per_group)
                .is_some_and(|c| c >= self.count);
        let ok = self.count > 0
            && self.count <= MAX_COUNT
            && self.dim > 0
            && self.vector_slots.is_power_of_two()
            && (1..=MAX_ROWS).contains(&self.shape.rows)
            && self.shape.row_len.is_power_of_two()
            && self.shape.row_len <= MAX_ROW_LEN
            && slots.is_some()
            && self.vector_slots <= self.shape.row_len
            && self.vector_slots >= self.dim.div_ceil(2)
            && self.block.is_power_of_two()
            && self.block <= self.vector_slots
            && self.baby.is_power_of_two()
            && self.baby <= self.block
            && capacity_ok;
        if ok {
            Ok(())
        } else {
            Err(SearchError::Layout {
                reason: format!("inconsistent layout {self:?}"),
            })
        }
    }

    /// Lanes per ciphertext `L`.
    pub fn lanes(&self) -> usize {
        self.shape
            .rows
            .saturating_mul(self.shape.row_len)
            .checked_div(self.vector_slots)
            .unwrap_or(0)
    }

    /// Lanes per row `S = row_len/V`: the stride between a lane's consecutive values.
    pub fn stride(&self) -> usize {
        self.shape
            .row_len
            .checked_div(self.vector_slots)
            .unwrap_or(0)
            .max(1)
    }

    /// The slot of value `j` of `lane` (lanes numbered row after row).
    pub fn slot_of(&self, lane: usize, j: usize) -> usize {
        let stride = self.stride();
        let (row, within) = (lane / stride, lane % stride);
        row.saturating_mul(self.shape.row_len)
            .saturating_add(within)
            .saturating_add(stride.saturating_mul(j))
    }

    /// The row rotation that rotates every lane by `k`.
    pub fn lane_step(&self, k: usize) -> i64 {
        (k.saturating_mul(self.stride())) as i64
    }

    /// The largest trace the response may take over (`V/m`, the fold's terms; 1 when tall).
    pub fn max_trace(&self) -> usize {
        self.vector_slots
            .checked_div(self.block)
            .unwrap_or(1)
            .max(1)
    }

    /// Groups of `L` blocks.
    pub fn groups(&self) -> usize {
        let per_group = self.lanes().saturating_mul(self.block);
        if per_group == 0 {
            0
        } else {
            self.count.div_ceil(per_group)
        }
    }

    /// Giant steps per group `⌈m/B⌉`.
    pub fn giant(&self) -> usize {
        self.block.div_ceil(self.baby.max(1))
    }

    /// Ciphertexts per channel (`groups × m`).
    pub fn ciphertexts_per_channel(&self) -> usize {
        self.groups().saturating_mul(self.block)
    }

    /// Whether every slot is an image (rows-in-slots; no final rotate-and-add).
    pub fn is_tall(&self) -> bool {
        self.block == self.vector_slots
    }

    /// Baby-step rotations of the query: lane-wise `1..B`.
    pub fn baby_steps(&self) -> Vec<i64> {
        (1..self.baby).map(|b| self.lane_step(b)).collect()
    }

    /// Giant-step rotations: lane-wise `g·B` for `0 < g < ⌈m/B⌉`.
    pub fn giant_steps(&self) -> Vec<i64> {
        (1..self.giant())
            .map(|g| self.lane_step(g * self.baby))
            .collect()
    }

    /// Final rotate-and-add steps: lane-wise `m, 2m, …, V/2`.
    pub fn fold_steps(&self) -> Vec<i64> {
        self.fold_steps_before_trace(1)
    }

    /// The rotate-and-add steps left to the server when the response takes the trace over
    /// the rotations by multiples of `row_len/trace` (`trace` a power of two at most
    /// [`Self::max_trace`]): the fold's steps below `V/trace` lane-wise.
    pub fn fold_steps_before_trace(&self, trace: usize) -> Vec<i64> {
        let limit = self.vector_slots / trace.max(1);
        let mut steps = Vec::new();
        let mut s = self.block;
        while s < limit {
            steps.push(self.lane_step(s));
            s *= 2;
        }
        steps
    }

    /// Lanes group `g` has blocks in (`L` for every group but the last).
    pub fn group_lanes(&self, g: usize) -> usize {
        let per_group = self.lanes().saturating_mul(self.block);
        let before = g.saturating_mul(per_group);
        self.count
            .saturating_sub(before)
            .min(per_group)
            .div_ceil(self.block.max(1))
    }

    /// The row rotations (to the right by `1, 2, 4, …` lanes, below `S`) that pack this
    /// segment's last group into a response ciphertext shared with other segments
    /// ([`crate::response`]); none when the last group fills its rows.
    pub fn packing_steps(&self) -> Vec<i64> {
        let stride = self.stride();
        let last = self.groups().saturating_sub(1);
        if stride < 2 || self.group_lanes(last) >= stride {
            return Vec::new();
        }
        (0..stride.ilog2()).map(|b| -(1i64 << b)).collect()
    }

    /// Every rotation step the server performs, sorted: the Galois keys this layout needs.
    pub fn galois_steps(&self) -> Vec<i64> {
        let mut steps: Vec<i64> = self
            .baby_steps()
            .into_iter()
            .chain(self.giant_steps())
            .chain(self.fold_steps())
            .chain(self.packing_steps())
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Where the score of image `index` lands: (group, slot).
    pub fn score_slot(&self, index: usize) -> (usize, usize) {
        let (m, lanes) = (self.block.max(1), self.lanes().max(1));
        let (block, r) = (index / m, index % m);
        let (group, lane) = (block / lanes, block % lanes);
        (group, self.slot_of(lane, r))
    }

    /// Serializes the layout (magic, version, fields).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LAYOUT_BYTES);
        out.extend_from_slice(&LAYOUT_MAGIC);
        out.push(LAYOUT_VERSION);
        let fields = [
            self.count,
            self.dim,
            self.vector_slots,
            self.shape.rows,
            self.shape.row_len,
            self.block,
            self.baby,
        ];
        for v in fields {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        out
    }

    /// Reads and validates a serialized layout.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: &str| SearchError::MalformedLayout {
            reason: reason.to_string(),
        };
        if bytes.len() != LAYOUT_BYTES {
            return Err(bad(&format!(
                "expected {LAYOUT_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        if bytes[..4] != LAYOUT_MAGIC {
            return Err(bad("bad magic bytes"));
        }
        if bytes[4] != LAYOUT_VERSION {
            return Err(bad(&format!("unsupported version {}", bytes[4])));
        }
        let mut fields = [0usize; 7];
        for (i, f) in fields.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[5 + 8 * i..13 + 8 * i]);
            *f = usize::try_from(u64::from_le_bytes(w)).map_err(|_| bad("field out of range"))?;
            if *f > 1 << 40 {
                return Err(bad("field out of range"));
            }
        }
        let [count, dim, vector_slots, rows, row_len, block, baby] = fields;
        let layout = Self {
            count,
            dim,
            vector_slots,
            shape: SlotShape { rows, row_len },
            block,
            baby,
        };
        layout.validate().map_err(|_| bad("inconsistent fields"))?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::test_shapes::{BFV, CKKS};

    #[test]
    fn the_demo_gallery_takes_512_products_per_channel() {
        for (shape, v) in [(BFV, 4096), (CKKS, 2048)] {
            let l = Layout::new(1001, 4096, v, shape).unwrap();
            assert_eq!(l.block, 512);
            assert_eq!(l.ciphertexts_per_channel(), 512);
            assert_eq!(l.baby, 32);
            assert_eq!(l.giant(), 16);
            assert!(l.galois_steps().len() < 60);
            assert!(!l.is_tall());
        }
    }

    #[test]
    fn baby_steps_grow_with_the_number_of_groups() {
        // one group: √(2m), as the demo's layouts have always had
        assert_eq!(baby_steps_for(512, 1), 32);
        assert_eq!(baby_steps_for(256, 1), 16);
        assert_eq!(baby_steps_for(1, 1), 1);
        // many groups: fewer giant steps per group, up to the cap
        assert_eq!(baby_steps_for(256, 25), 128);
        assert_eq!(baby_steps_for(256, 245), MAX_BABY);
        assert_eq!(baby_steps_for(4096, 1_000), MAX_BABY);
        for (m, g) in [(1, 1), (64, 3), (256, 10_000), (4096, 1)] {
            let b = baby_steps_for(m, g);
            assert!(b.is_power_of_two() && b <= m.min(MAX_BABY));
        }
        let l = Layout::new(1_000_000, 512, 256, CKKS).unwrap();
        assert_eq!((l.groups(), l.baby, l.giant()), (245, 256, 1));
        // baby steps and the lane shifts that pack its partial last group
        assert_eq!(l.packing_steps(), [-1, -2, -4, -8]);
        assert!(l.galois_steps().len() <= MAX_BABY + 4);
    }

    #[test]
    fn large_galleries_go_tall() {
        let l = Layout::new(16384, 4096, 4096, BFV).unwrap();
        assert!(l.is_tall());
        assert_eq!(l.ciphertexts_per_channel(), 16384 * 4096 / 8192);
        assert!(l.fold_steps().is_empty());
    }

    #[test]
    fn score_slots_are_distinct() {
        for n in [1, 7, 64, 1001, 9000] {
            let l = Layout::new(n, 4096, 4096, BFV).unwrap();
            let mut seen: Vec<(usize, usize)> = (0..n).map(|i| l.score_slot(i)).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), n);
            assert!(seen.iter().all(|&(g, s)| g < l.groups() && s < BFV.len()));
        }
    }

    #[test]
    fn serialization_round_trips_and_rejects_garbage() {
        let l = Layout::new(1001, 4096, 2048, CKKS).unwrap();
        let bytes = l.to_bytes();
        assert_eq!(Layout::from_bytes(&bytes).unwrap(), l);
        for cut in [0, 4, 20, bytes.len() - 1] {
            assert!(Layout::from_bytes(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.clone();
        bad[5 + 8 * 5] = 3; // block = 3, not a power of two
        assert!(Layout::from_bytes(&bad).is_err());
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(Layout::from_bytes(&bad).is_err());
    }

    #[test]
    fn oversized_vectors_are_refused() {
        assert!(Layout::new(10, 16384, 16384, BFV).is_err());
        assert!(Layout::new(0, 4096, 4096, BFV).is_err());
    }
}
