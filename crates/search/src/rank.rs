//! From dot products to cosines and rankings: per-channel cosines, the original demo's rule
//! (the channel triple closest to (1, 1, 1)), whole-vector cosine, top-k. Also the f64
//! brute-force reference engine every encrypted result is checked against.

use crate::encoding::{EncodedVector, VectorEncoding};

/// One image, encoded for the engine, with the norms the client keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedImage {
    /// R, G, B encoded vectors.
    pub channels: [EncodedVector; 3],
}

impl EncodedImage {
    /// Encodes the three channels of an image.
    pub fn new(encoding: &VectorEncoding, pixels: &[Vec<u8>; 3]) -> Self {
        Self {
            channels: [
                encoding.encode(&pixels[0]),
                encoding.encode(&pixels[1]),
                encoding.encode(&pixels[2]),
            ],
        }
    }

    /// The norms the client keeps for this image.
    pub fn norms(&self) -> ImageNorms {
        ImageNorms {
            encoded: [0, 1, 2].map(|c| self.channels[c].norm),
            pixel: [0, 1, 2].map(|c| self.channels[c].pixel_norm),
        }
    }
}

/// The norms of an image the client keeps (or seals) to turn dot products into cosines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageNorms {
    /// Norms of the encoded channel vectors.
    pub encoded: [f64; 3],
    /// Norms of the pixel channel vectors.
    pub pixel: [f64; 3],
}

impl ImageNorms {
    /// Norm of the whole RGB pixel vector.
    pub fn pixel_norm(&self) -> f64 {
        self.pixel.iter().map(|p| p * p).sum::<f64>().sqrt()
    }

    /// Serializes the six norms (48 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encoded
            .iter()
            .chain(&self.pixel)
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Reads six norms.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 48 {
            return None;
        }
        let v: Vec<f64> = b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Some(Self {
            encoded: [v[0], v[1], v[2]],
            pixel: [v[3], v[4], v[5]],
        })
    }
}

/// The ranking rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankRule {
    /// The original demo's: smallest Euclidean distance of the per-channel cosine triple to
    /// (1, 1, 1).
    ChannelTriple,
    /// Largest cosine of the whole RGB vectors.
    WholeCosine,
}

/// The similarity of one gallery image to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    /// Per-channel cosines.
    pub channel_cosines: [f64; 3],
    /// Cosine of the whole RGB vectors.
    pub whole_cosine: f64,
}

impl Similarity {
    /// Distance of the channel triple to (1, 1, 1).
    pub fn triple_distance(&self) -> f64 {
        self.channel_cosines
            .iter()
            .map(|c| (1.0 - c) * (1.0 - c))
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
    dots: &[[f64; 3]],
) -> Vec<Similarity> {
    let norms: Vec<ImageNorms> = gallery.iter().map(EncodedImage::norms).collect();
    similarities_from_norms(encoding, &norms, &query.norms(), dots)
}

/// Similarities from dot products and the norms the client kept.
pub fn similarities_from_norms(
    encoding: &VectorEncoding,
    gallery: &[ImageNorms],
    query: &ImageNorms,
    dots: &[[f64; 3]],
) -> Vec<Similarity> {
    let qn = query.pixel_norm();
    gallery
        .iter()
        .zip(dots)
        .map(|(g, d)| {
            let mut channel_cosines = [0f64; 3];
            let mut raw = 0f64;
            for c in 0..3 {
                channel_cosines[c] = encoding.cosine(d[c], g.encoded[c], query.encoded[c]);
                raw += channel_cosines[c] * g.pixel[c] * query.pixel[c];
            }
            let gn = g.pixel_norm();
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
pub fn reference_dots(gallery: &[EncodedImage], query: &EncodedImage) -> Vec<[f64; 3]> {
    gallery
        .iter()
        .map(|g| {
            let mut d = [0f64; 3];
            for c in 0..3 {
                d[c] = g.channels[c]
                    .values
                    .iter()
                    .zip(&query.channels[c].values)
                    .map(|(a, b)| a * b)
                    .sum();
            }
            d
        })
        .collect()
}
