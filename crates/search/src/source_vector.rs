//! The source of an image's vectors (its resized pixels, or the image model's normalized
//! features), kept sealed on the server beside the image so that a merge re-encrypts it
//! without decoding the file or running the model again (17 ms per image on this machine's
//! model): the scheme's encoding of a source is exact and cheap, so a merged segment holds
//! the very vectors the image was first ingested with.
//!
//! Format: one tag byte (1: pixels, 2: features), then the values: for pixels the R, G and B
//! channels of `side × side` bytes each; for features `dim` little-endian `f32`. The length
//! is checked exactly against the collection's kind, and features must be finite.

use crate::VectorKind;
use crate::encoding::VectorEncoding;
use crate::errors::{Result, SearchError};
use crate::rank::EncodedImage;

const PIXELS: u8 = 1;
const FEATURES: u8 = 2;

/// What an image's vectors are encoded from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceVector {
    /// R, G, B channels of the resized image.
    Pixels([Vec<u8>; 3]),
    /// The image model's normalized features.
    Features(Vec<f32>),
}

impl SourceVector {
    /// The encoded vectors, exactly as an ingest of the original file makes them.
    pub fn encode(&self, encoding: &VectorEncoding) -> EncodedImage {
        match self {
            Self::Pixels(channels) => EncodedImage::new(encoding, channels),
            Self::Features(f) => {
                let values: Vec<f64> = f.iter().map(|&v| f64::from(v)).collect();
                EncodedImage::from_features(encoding, &values)
            }
        }
    }

    /// Serializes the source.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Pixels(channels) => {
                let mut out = vec![PIXELS];
                for ch in channels {
                    out.extend_from_slice(ch);
                }
                out
            }
            Self::Features(f) => {
                let mut out = Vec::with_capacity(1 + 4 * f.len());
                out.push(FEATURES);
                for v in f {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out
            }
        }
    }

    /// Reads the source of an image of a collection of `kind`: refuses another kind, another
    /// length, or features that are not finite.
    pub fn from_bytes(bytes: &[u8], kind: &VectorKind) -> Result<Self> {
        let bad = |reason: String| SearchError::MalformedSource { reason };
        let (&tag, body) = bytes.split_first().ok_or_else(|| bad("empty".into()))?;
        let dim = kind.dim();
        let expected = serialized_len(kind);
        if dim == 0 || expected == 0 {
            return Err(bad(format!(
                "the collection's {kind} have no source vectors"
            )));
        }
        if format_of(kind).map(|(t, _)| t) != Some(tag) {
            return Err(bad(format!(
                "tag {tag} is not a source of the collection's {kind}"
            )));
        }
        if bytes.len() != expected {
            return Err(bad(format!(
                "expected {expected} bytes for {kind}, got {}",
                bytes.len()
            )));
        }
        if tag == PIXELS {
            let mut parts = body.chunks_exact(dim).map(<[u8]>::to_vec);
            let mut next = || parts.next().unwrap_or_default();
            return Ok(Self::Pixels([next(), next(), next()]));
        }
        let values: Vec<f32> = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad("a feature is not finite".into()));
        }
        Ok(Self::Features(values))
    }
}

/// The tag of the sources of `kind` and their bytes per value (pixels: the three channels'
/// bytes; features: one `f32`); `None` for a kind without sources.
fn format_of(kind: &VectorKind) -> Option<(u8, usize)> {
    match kind {
        VectorKind::Pixels { .. } => Some((PIXELS, 3)),
        VectorKind::Embedding { .. } | VectorKind::Vectors { .. } => Some((FEATURES, 4)),
    }
}

/// The serialized length of every source of a collection of `kind`, tag byte included (0 for
/// a kind without sources): what the server bounds uploads by and the decoder requires.
pub fn serialized_len(kind: &VectorKind) -> usize {
    format_of(kind).map_or(0, |(_, per_value)| {
        per_value.saturating_mul(kind.dim()).saturating_add(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn embedding(dim: usize) -> VectorKind {
        VectorKind::Embedding {
            dim,
            model: "m".into(),
            normalization: "n".into(),
        }
    }

    #[test]
    fn sources_round_trip_and_encode_as_the_original() {
        let side = 4u32;
        let px = SourceVector::Pixels([vec![1; 16], vec![2; 16], vec![255; 16]]);
        let kind = VectorKind::Pixels { side };
        assert_eq!(SourceVector::from_bytes(&px.to_bytes(), &kind).unwrap(), px);
        let enc = VectorEncoding::Integer { levels: 255 };
        assert_eq!(
            px.encode(&enc),
            EncodedImage::new(&enc, &[vec![1; 16], vec![2; 16], vec![255; 16]])
        );
        let f = SourceVector::Features(vec![0.5, -0.25, 0.125]);
        assert_eq!(
            SourceVector::from_bytes(&f.to_bytes(), &embedding(3)).unwrap(),
            f
        );
        // the other kind, another length, a non-finite feature
        assert!(SourceVector::from_bytes(&f.to_bytes(), &kind).is_err());
        assert!(SourceVector::from_bytes(&f.to_bytes(), &embedding(4)).is_err());
        assert!(SourceVector::from_bytes(&px.to_bytes(), &embedding(16)).is_err());
        assert_eq!(serialized_len(&kind), px.to_bytes().len());
        assert_eq!(serialized_len(&embedding(3)), f.to_bytes().len());
        let nan = SourceVector::Features(vec![f32::NAN, 0.0, 0.0]);
        assert!(SourceVector::from_bytes(&nan.to_bytes(), &embedding(3)).is_err());
        assert!(SourceVector::from_bytes(&[], &kind).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_refused_or_read(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            for kind in [VectorKind::Pixels { side: 2 }, embedding(4)] {
                if let Ok(s) = SourceVector::from_bytes(&bytes, &kind) {
                    prop_assert_eq!(s.to_bytes(), bytes.clone());
                }
            }
        }
    }
}
