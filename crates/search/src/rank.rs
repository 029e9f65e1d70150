//! From dot products to cosines and rankings: per-channel cosines, the original demo's rule
//! (the triple of squared channel cosines closest to (1, 1, 1)), whole-vector cosine, top-k.
//! Also the f64 brute-force reference engine every encrypted result is checked against.
//!
//! An image is one or more channels: three for pixels (R, G, B), one for an embedding.
//! Per-image, per-channel dot products travel as [`ChannelDots`].

use crate::encoding::{EncodedVector, VectorEncoding};
use crate::errors::{Result, SearchError};

/// Most channels an image may have.
pub const MAX_CHANNELS: usize = 3;

/// One image, encoded for the engine, with the norms the client keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedImage {
    /// Encoded channel vectors (R, G, B for pixels; one for an embedding).
    pub channels: Vec<EncodedVector>,
}

impl EncodedImage {
    /// Encodes the three channels of an image's pixels.
    pub fn new(encoding: &VectorEncoding, pixels: &[Vec<u8>; 3]) -> Self {
        Self {
            channels: pixels.iter().map(|p| encoding.encode(p)).collect(),
        }
    }

    /// Encodes a feature vector (one channel).
    pub fn from_features(encoding: &VectorEncoding, features: &[f64]) -> Self {
        Self {
            channels: vec![encoding.encode_real(features)],
        }
    }

    /// The encoded values of every channel (a query's, to encrypt).
    pub fn values(&self) -> Vec<Vec<f64>> {
        self.channels.iter().map(|c| c.values.clone()).collect()
    }

    /// The norms the client keeps for this image.
    pub fn norms(&self) -> ImageNorms {
        ImageNorms {
            encoded: self.channels.iter().map(|c| c.norm).collect(),
            source: self.channels.iter().map(|c| c.source_norm).collect(),
        }
    }
}

/// The norms of an image the client keeps (or seals) to turn dot products into cosines.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageNorms {
    /// Norms of the encoded channel vectors.
    pub encoded: Vec<f64>,
    /// Norms of the channel vectors before encoding (pixels or features).
    pub source: Vec<f64>,
}

impl ImageNorms {
    /// Norm of the whole vector before encoding (all channels).
    pub fn source_norm(&self) -> f64 {
        self.source.iter().map(|p| p * p).sum::<f64>().sqrt()
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.encoded.len()
    }

    /// Serializes the norms (16 bytes per channel: encoded norms, then source norms).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encoded
            .iter()
            .chain(&self.source)
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Reads the norms of an image of `channels` channels.
    pub fn from_bytes(b: &[u8], channels: usize) -> Option<Self> {
        if channels == 0 || channels > MAX_CHANNELS || b.len() != 16 * channels {
            return None;
        }
        let v: Vec<f64> = b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let (encoded, source) = v.split_at(channels);
        Some(Self {
            encoded: encoded.to_vec(),
            source: source.to_vec(),
        })
    }
}

/// An error unless `1 ≤ channels ≤ MAX_CHANNELS`.
pub fn check_channel_count(channels: usize, what: &'static str) -> Result<()> {
    if (1..=MAX_CHANNELS).contains(&channels) {
        Ok(())
    } else {
        Err(SearchError::Layout {
            reason: format!("{what}: {channels} channels; an image has 1 to {MAX_CHANNELS}"),
        })
    }
}

/// The encoded values of `images`, channel by channel: `out[c][k]` is channel `c` of image
/// `k` (what [`crate::client::encrypt_segment`] takes). An image without channel `c` gives
/// an empty vector there, which encryption refuses.
pub fn channel_values<B: std::borrow::Borrow<EncodedImage>>(
    images: &[B],
    channels: usize,
) -> Vec<Vec<Vec<f64>>> {
    (0..channels)
        .map(|c| {
            images
                .iter()
                .map(|e| {
                    e.borrow()
                        .channels
                        .get(c)
                        .map(|v| v.values.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

/// Per-image, per-channel dot products (image after image, `channels` values each).
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelDots {
    channels: usize,
    values: Vec<f64>,
}

impl ChannelDots {
    /// Zero dot products for `count` images of `channels` channels.
    pub fn zeros(channels: usize, count: usize) -> Result<Self> {
        check_channel_count(channels, "dot products")?;
        let len = count
            .checked_mul(channels)
            .ok_or_else(|| SearchError::Layout {
                reason: format!("{count} images of {channels} channels is too many"),
            })?;
        Ok(Self {
            channels,
            values: vec![0.0; len],
        })
    }

    /// Dot products given image by image.
    pub fn from_images<I>(channels: usize, images: I) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<[f64]>,
    {
        let mut out = Self::zeros(channels, 0)?;
        for image in images {
            out.push(image.as_ref())?;
        }
        Ok(out)
    }

    /// Appends the dot products of one image (one per channel).
    pub fn push(&mut self, image: &[f64]) -> Result<()> {
        if image.len() != self.channels {
            return Err(SearchError::DimensionMismatch {
                what: "dot products per image",
                expected: self.channels,
                actual: image.len(),
            });
        }
        self.values.extend_from_slice(image);
        Ok(())
    }

    /// Channels per image.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Images.
    pub fn len(&self) -> usize {
        self.values.len() / self.channels
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The dot products of image `k`, one per channel.
    pub fn image(&self, k: usize) -> &[f64] {
        &self.values[k * self.channels..(k + 1) * self.channels]
    }

    /// The dot products of image `k`, to fill in.
    pub fn image_mut(&mut self, k: usize) -> &mut [f64] {
        &mut self.values[k * self.channels..(k + 1) * self.channels]
    }

    /// Image after image.
    pub fn iter(&self) -> std::slice::ChunksExact<'_, f64> {
        self.values.chunks_exact(self.channels)
    }

    /// Appends the images of `other` (same channel count).
    pub fn extend(&mut self, other: &ChannelDots) -> Result<()> {
        if other.channels != self.channels {
            return Err(SearchError::DimensionMismatch {
                what: "channels of dot products",
                expected: self.channels,
                actual: other.channels,
            });
        }
        self.values.extend_from_slice(&other.values);
        Ok(())
    }
}

/// The ranking rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankRule {
    /// The original demo's: smallest Euclidean distance of the triple of squared per-channel
    /// cosines to (1, 1, 1). With one channel (an embedding) it orders by `cos²`.
    ChannelTriple,
    /// Largest cosine of the whole vectors (all channels; for an embedding, its cosine).
    WholeCosine,
}

impl RankRule {
    /// The rule's short name: `triple` or `cosine`.
    pub fn name(self) -> &'static str {
        match self {
            RankRule::ChannelTriple => "triple",
            RankRule::WholeCosine => "cosine",
        }
    }
}

/// The similarity of one gallery image to the query.
#[derive(Clone, Debug, PartialEq)]
pub struct Similarity {
    /// Per-channel cosines.
    pub channel_cosines: Vec<f64>,
    /// Cosine of the whole vectors.
    pub whole_cosine: f64,
}

impl Similarity {
    /// Distance of the triple of squared channel cosines to (1, 1, 1) (the original demo
    /// computed squared cosines, numerator and denominator, per channel).
    pub fn triple_distance(&self) -> f64 {
        self.channel_cosines
            .iter()
            .map(|c| (1.0 - c * c).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// The rule's score, oriented so that larger is better.
    pub fn score(&self, rule: RankRule) -> f64 {
        match rule {
            RankRule::ChannelTriple => -self.triple_distance(),
            RankRule::WholeCosine => self.whole_cosine,
        }
    }
}

/// Similarities of every gallery image from the per-channel dot products.
pub fn similarities(
    encoding: &VectorEncoding,
    gallery: &[EncodedImage],
    query: &EncodedImage,
    dots: &ChannelDots,
) -> Vec<Similarity> {
    let norms: Vec<ImageNorms> = gallery.iter().map(EncodedImage::norms).collect();
    similarities_from_norms(encoding, &norms, &query.norms(), dots)
}

/// Similarities from dot products and the norms the client kept. Channels missing on either
/// side count as orthogonal.
pub fn similarities_from_norms(
    encoding: &VectorEncoding,
    gallery: &[ImageNorms],
    query: &ImageNorms,
    dots: &ChannelDots,
) -> Vec<Similarity> {
    let qn = query.source_norm();
    gallery
        .iter()
        .zip(dots.iter())
        .map(|(g, d)| {
            let mut raw = 0f64;
            let channel_cosines: Vec<f64> = d
                .iter()
                .enumerate()
                .map(|(c, &dot)| {
                    let norm = |v: &[f64]| v.get(c).copied().unwrap_or(0.0);
                    let cos = encoding.cosine(dot, norm(&g.encoded), norm(&query.encoded));
                    raw += cos * norm(&g.source) * norm(&query.source);
                    cos
                })
                .collect();
            let gn = g.source_norm();
            let whole_cosine = if gn == 0.0 || qn == 0.0 {
                0.0
            } else {
                raw / (gn * qn)
            };
            Similarity {
                channel_cosines,
                whole_cosine,
            }
        })
        .collect()
}

/// Indices of the `k` best images under `rule` (ties: lower index first).
pub fn top_k(sims: &[Similarity], rule: RankRule, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sims.len()).collect();
    idx.sort_by(|&a, &b| {
        sims[b]
            .score(rule)
            .total_cmp(&sims[a].score(rule))
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

/// The f64 brute-force reference: per-channel dot products of the encoded vectors.
pub fn reference_dots(gallery: &[EncodedImage], query: &EncodedImage) -> ChannelDots {
    let channels = query.channels.len().clamp(1, MAX_CHANNELS);
    let mut out = ChannelDots {
        channels,
        values: Vec::with_capacity(gallery.len() * channels),
    };
    for g in gallery {
        for c in 0..channels {
            let dot = match (g.channels.get(c), query.channels.get(c)) {
                (Some(a), Some(b)) => a.values.iter().zip(&b.values).map(|(x, y)| x * y).sum(),
                _ => 0.0,
            };
            out.values.push(dot);
        }
    }
    out
}
