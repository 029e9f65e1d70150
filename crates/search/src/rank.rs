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

    /// Norm of the whole RGB pixel vector.
    pub fn pixel_norm(&self) -> f64 {
        self.channels
            .iter()
            .map(|c| c.pixel_norm * c.pixel_norm)
            .sum::<f64>()
            .sqrt()
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
    let qn = query.pixel_norm();
    gallery
        .iter()
        .zip(dots)
        .map(|(g, d)| {
            let mut channel_cosines = [0f64; 3];
            let mut raw = 0f64;
            for c in 0..3 {
                channel_cosines[c] = encoding.cosine(d[c], &g.channels[c], &query.channels[c]);
                raw += channel_cosines[c] * g.channels[c].pixel_norm * query.channels[c].pixel_norm;
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
