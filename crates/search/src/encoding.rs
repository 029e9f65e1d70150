//! Numerics: how pixel vectors and feature vectors become the vectors whose dot products are
//! computed under encryption, and how a decrypted dot product becomes a cosine.
//!
//! Two sources: pixel channels (bytes `0..=255`, [`VectorEncoding::encode`]) and real
//! feature vectors (an image model's embedding, [`VectorEncoding::encode_real`]). CKKS takes
//! both as unit vectors; BFV takes both as integers whose every dot product provably fits
//! the plaintext modulus (the bounds are written on [`VectorEncoding::for_bfv`] and
//! [`VectorEncoding::for_bfv_unit_vectors`]).

/// The encoding of one scheme.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VectorEncoding {
    /// BFV: integers `0..=levels`. Dot products are exact.
    ///
    /// Bound: for vectors of `d` values in `[0, levels]`, every dot product lies in
    /// `[0, d·levels²]`. Decryption reads slots as centered residues in `(-t/2, t/2]`, so the
    /// result is exact when `d·levels² ≤ (t-1)/2`; [`VectorEncoding::for_bfv`] picks the
    /// largest `levels ≤ 255` satisfying it. With `t = 532 709 377` and `d = 4096`:
    /// `4096·255² = 266 342 400 ≤ 266 354 688 = (t-1)/2`, so 8-bit pixels are kept whole.
    ///
    /// Real vectors are scaled to unit norm and rounded to integers of magnitude at most
    /// `levels` (see [`VectorEncoding::for_bfv_unit_vectors`] for their bound).
    Integer {
        /// Largest magnitude after quantization (for pixels, 255: none).
        levels: u32,
    },
    /// CKKS: unit-norm reals. The dot product is the cosine itself, `|x| ≤ 1`.
    Unit,
}

/// A vector prepared for the engine, with the norms the client keeps to itself.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedVector {
    /// The values whose dot product is computed.
    pub values: Vec<f64>,
    /// Euclidean norm of `values`.
    pub norm: f64,
    /// Euclidean norm of the values before encoding (pixels or features), for whole-vector
    /// cosines across channels.
    pub source_norm: f64,
}

impl VectorEncoding {
    /// The exact integer encoding for plaintext modulus `t` and `dim` values per vector.
    pub fn for_bfv(t: u64, dim: usize) -> Self {
        let half = (t.saturating_sub(1) / 2) as f64;
        let mut levels = (half / dim.max(1) as f64).sqrt().floor() as u32;
        while levels > 0
            && (dim as u128) * (levels as u128).pow(2) > (t.saturating_sub(1) / 2) as u128
        {
            levels -= 1;
        }
        Self::Integer {
            levels: levels.min(255),
        }
    }

    /// The integer encoding of unit vectors of `dim` values for plaintext modulus `t`.
    ///
    /// Bound: a unit vector `x` is encoded as `q = round(L·x)`, so `|q_i − L·x_i| ≤ 1/2` and
    /// `‖q‖ ≤ L + √dim/2`; by Cauchy–Schwarz every dot product of two encoded vectors has
    /// `|⟨q, q'⟩| ≤ (L + √dim/2)²`. Decryption reads centered residues in `(-t/2, t/2]`, so
    /// the scores are exact when `(L + √dim/2)² ≤ (t-1)/2`: `L` is the largest such integer.
    /// With `t = 532 709 377` and `dim = 1280`: `L = 16 302`, `(16 302 + 17.89)² ≤
    /// 266 354 688`; the cosine of the quantized vectors is then exact, and it differs from
    /// the real cosine by the rounding alone (about `√dim / L` at worst).
    pub fn for_bfv_unit_vectors(t: u64, dim: usize) -> Self {
        let half = (t.saturating_sub(1) / 2) as u128;
        let fits = |levels: u64| {
            // (L + √d/2)² ≤ half  ⇔  (2L + √d)² ≤ 4·half, checked in integers with
            // √d rounded up so that the check is never optimistic
            let root_d = (dim as f64).sqrt().ceil() as u128;
            (2 * levels as u128 + root_d).pow(2) <= 4 * half
        };
        let mut levels = ((half as f64).sqrt() as u64).min(u32::MAX as u64);
        while levels > 0 && !fits(levels) {
            levels -= 1;
        }
        Self::Integer {
            levels: levels as u32,
        }
    }

    /// Encodes a real vector (an image model's features): scaled to unit norm, and for BFV
    /// rounded to integers of magnitude at most `levels`.
    pub fn encode_real(&self, values: &[f64]) -> EncodedVector {
        let source_norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        let inv = if source_norm > 0.0 && source_norm.is_finite() {
            1.0 / source_norm
        } else {
            0.0
        };
        let values: Vec<f64> = match *self {
            _ if inv == 0.0 => vec![0.0; values.len()],
            Self::Integer { levels } => {
                let l = levels as f64;
                values
                    .iter()
                    .map(|&v| (v * inv * l).round().clamp(-l, l))
                    .collect()
            }
            Self::Unit => values.iter().map(|&v| v * inv).collect(),
        };
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        EncodedVector {
            values,
            norm,
            source_norm,
        }
    }

    /// Encodes a channel of pixels.
    pub fn encode(&self, pixels: &[u8]) -> EncodedVector {
        let source_norm = pixels
            .iter()
            .map(|&p| (p as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let values: Vec<f64> = match *self {
            Self::Integer { levels } => pixels
                .iter()
                .map(|&p| {
                    if levels >= 255 {
                        p as f64
                    } else {
                        (p as u32 * levels / 255) as f64
                    }
                })
                .collect(),
            Self::Unit => {
                let inv = if source_norm > 0.0 {
                    1.0 / source_norm
                } else {
                    0.0
                };
                pixels.iter().map(|&p| p as f64 * inv).collect()
            }
        };
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        EncodedVector {
            values,
            norm,
            source_norm,
        }
    }

    /// The cosine of two encoded vectors from their (decrypted) dot product and their norms.
    pub fn cosine(&self, dot: f64, a_norm: f64, b_norm: f64) -> f64 {
        match self {
            Self::Integer { .. } => {
                if a_norm == 0.0 || b_norm == 0.0 {
                    0.0
                } else {
                    dot / (a_norm * b_norm)
                }
            }
            Self::Unit => dot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfv_preset_keeps_8_bit_pixels_for_64x64() {
        assert_eq!(
            VectorEncoding::for_bfv(532_709_377, 4096),
            VectorEncoding::Integer { levels: 255 }
        );
        // larger vectors are quantized so that the bound still holds
        let VectorEncoding::Integer { levels } = VectorEncoding::for_bfv(532_709_377, 16384) else {
            unreachable!()
        };
        assert!(16384u64 * (levels as u64).pow(2) <= (532_709_377 - 1) / 2);
        assert!(16384u64 * (levels as u64 + 1).pow(2) > (532_709_377 - 1) / 2);
    }

    #[test]
    fn unit_encoding_has_unit_norm() {
        let e = VectorEncoding::Unit.encode(&[3, 4, 0]);
        assert!((e.norm - 1.0).abs() < 1e-12);
        assert_eq!(e.source_norm, 5.0);
        assert_eq!(VectorEncoding::Unit.encode(&[0, 0]).norm, 0.0);
    }

    #[test]
    fn unit_vector_quantization_keeps_every_dot_product_below_half_t() {
        let t = 532_709_377u64;
        for dim in [1, 64, 320, 1280, 4096] {
            let VectorEncoding::Integer { levels } = VectorEncoding::for_bfv_unit_vectors(t, dim)
            else {
                unreachable!()
            };
            let bound = |l: f64| (l + (dim as f64).sqrt() / 2.0).powi(2);
            assert!(bound(levels as f64) <= ((t - 1) / 2) as f64, "dim {dim}");
            // the largest: one more level breaks the bound (up to √d's rounding)
            assert!(
                bound(levels as f64 + 2.0) > ((t - 1) / 2) as f64,
                "dim {dim}"
            );
        }
        assert_eq!(
            VectorEncoding::for_bfv_unit_vectors(t, 1280),
            VectorEncoding::Integer { levels: 16_302 }
        );
    }

    #[test]
    fn real_vectors_are_scaled_to_unit_norm_and_rounded() {
        let x = [3.0, -4.0, 0.0];
        let unit = VectorEncoding::Unit.encode_real(&x);
        for (got, want) in unit.values.iter().zip([0.6, -0.8, 0.0]) {
            assert!((got - want).abs() < 1e-15);
        }
        assert_eq!(unit.source_norm, 5.0);
        let int = VectorEncoding::Integer { levels: 100 }.encode_real(&x);
        assert_eq!(int.values, vec![60.0, -80.0, 0.0]);
        assert_eq!(int.norm, 100.0);
        // zero and non-finite norms encode to zero, never NaN
        assert_eq!(
            VectorEncoding::Unit.encode_real(&[0.0; 4]).values,
            vec![0.0; 4]
        );
        let inf = VectorEncoding::Unit.encode_real(&[f64::INFINITY, 1.0]);
        assert!(inf.values.iter().all(|v| v.is_finite()));
    }
}
