//! Slot vectors: the shape of a ciphertext's plaintext space and how vector values map to
//! slots (BFV: one integer per slot, two rows; CKKS: two reals per complex slot).

use blindsight_he::Complex;

/// The plaintext space of a ciphertext: `rows` independent cyclic rows of `row_len` slots.
/// A rotation by `k` rotates every row left by `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotShape {
    /// Number of rows (BFV: 2, CKKS: 1).
    pub rows: usize,
    /// Slots per row (N/2 for both schemes).
    pub row_len: usize,
}

impl SlotShape {
    /// Total slots.
    pub fn len(&self) -> usize {
        self.rows * self.row_len
    }

    /// Whether the shape has no slots.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rotates every row of `v` left by `step` (negative: right).
    pub fn rotate<T: Copy>(&self, v: &[T], step: i64) -> Vec<T> {
        let k = step.rem_euclid(self.row_len as i64) as usize;
        let mut out = Vec::with_capacity(v.len());
        for row in v.chunks_exact(self.row_len) {
            out.extend_from_slice(&row[k..]);
            out.extend_from_slice(&row[..k]);
        }
        out
    }
}

/// A slot value type and how vector values are packed into it.
pub trait Slot: Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    /// Slots a vector of `dim` values occupies (a power of two).
    fn vector_slots(dim: usize) -> usize;
    /// Packs a gallery vector (`values.len() == dim`) into `out` (`vector_slots(dim)` slots).
    fn pack_gallery(values: &[f64], out: &mut [Self]);
    /// Packs a query vector so that `Σ score(gallery · query)` is the real dot product.
    fn pack_query(values: &[f64], out: &mut [Self]);
    /// The real number a decrypted slot stands for.
    fn score(self) -> f64;
    /// Slot-wise product (plaintext stand-in for the homomorphic one).
    fn mul(self, other: Self) -> Self;
    /// Slot-wise sum.
    fn add(self, other: Self) -> Self;
}

impl Slot for i64 {
    fn vector_slots(dim: usize) -> usize {
        dim.max(1).next_power_of_two()
    }
    fn pack_gallery(values: &[f64], out: &mut [Self]) {
        out.fill(0);
        for (o, &v) in out.iter_mut().zip(values) {
            *o = v.round() as i64;
        }
    }
    fn pack_query(values: &[f64], out: &mut [Self]) {
        Self::pack_gallery(values, out);
    }
    fn score(self) -> f64 {
        self as f64
    }
    fn mul(self, other: Self) -> Self {
        self * other
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// CKKS: value `j` and value `j + V` share complex slot `j` (V = half the padded length).
/// The query is packed conjugated, so `Re(g · conj(q)) = g_j q_j + g_{j+V} q_{j+V}`.
impl Slot for Complex {
    fn vector_slots(dim: usize) -> usize {
        dim.max(2).next_power_of_two() / 2
    }
    fn pack_gallery(values: &[f64], out: &mut [Self]) {
        let half = out.len();
        for (j, o) in out.iter_mut().enumerate() {
            let re = values.get(j).copied().unwrap_or(0.0);
            let im = values.get(j + half).copied().unwrap_or(0.0);
            *o = Complex::new(re, im);
        }
    }
    fn pack_query(values: &[f64], out: &mut [Self]) {
        Self::pack_gallery(values, out);
        for o in out.iter_mut() {
            *o = o.conj();
        }
    }
    fn score(self) -> f64 {
        self.re
    }
    fn mul(self, other: Self) -> Self {
        self * other
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// The slot shapes of the `N = 8192` presets, for unit tests.
#[cfg(test)]
pub(crate) mod test_shapes {
    use super::SlotShape;

    /// BFV: two rows of 4096 integers.
    pub(crate) const BFV: SlotShape = SlotShape {
        rows: 2,
        row_len: 4096,
    };
    /// CKKS: one row of 4096 complex slots.
    pub(crate) const CKKS: SlotShape = SlotShape {
        rows: 1,
        row_len: 4096,
    };
}
