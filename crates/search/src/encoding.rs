//! Numerics: how pixel vectors become the vectors whose dot products are computed under
//! encryption, and how a decrypted dot product becomes a cosine.

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
    Integer {
        /// Largest value after quantization (255: none).
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
    /// Euclidean norm of the original pixel values (for whole-vector cosines).
    pub pixel_norm: f64,
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

    /// Encodes a channel of pixels.
    pub fn encode(&self, pixels: &[u8]) -> EncodedVector {
        let pixel_norm = pixels
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
                let inv = if pixel_norm > 0.0 {
                    1.0 / pixel_norm
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
            pixel_norm,
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
        assert_eq!(e.pixel_norm, 5.0);
        assert_eq!(VectorEncoding::Unit.encode(&[0, 0]).norm, 0.0);
    }
}
