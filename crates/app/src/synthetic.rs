//! Synthetic galleries for the scale benchmark: random unit vectors with non-negative
//! entries (as the image model's normalized features), each generated from a fixed seed
//! and its index, so that a gallery of a million vectors is never held in memory: the
//! client encodes a batch at a time and the f64 reference regenerates them one by one.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Standard deviation of the noise added to a gallery vector to make its query.
pub const QUERY_NOISE: f64 = 0.02;

/// `count` random unit vectors of `dim` non-negative values from `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticVectors {
    /// How many.
    pub count: usize,
    /// Values per vector.
    pub dim: usize,
    /// The seed.
    pub seed: u64,
}

/// A stream of standard normal values.
struct Gaussian(ChaCha8Rng);

impl Gaussian {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self(rng)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Box–Muller.
    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `v` scaled to unit norm.
fn unit(v: Vec<f64>) -> Vec<f64> {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    v.into_iter().map(|x| x / n).collect()
}

impl SyntheticVectors {
    /// Vector `i` (the same for the same seed, dimension and index).
    pub fn vector(&self, i: usize) -> Vec<f64> {
        let mut g = Gaussian::new(self.seed, i as u64);
        unit((0..self.dim).map(|_| g.next().abs()).collect())
    }

    /// A noisy copy of vector `source` (cosine about 0.9 at dimension 512), a unit vector
    /// with non-negative entries.
    pub fn query(&self, source: usize) -> Vec<f64> {
        // a stream no gallery vector uses
        let mut g = Gaussian::new(self.seed, u64::MAX);
        unit(
            self.vector(source)
                .into_iter()
                .map(|x| (x + QUERY_NOISE * g.next()).max(0.0))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_distinct_non_negative_unit_vectors() {
        let s = SyntheticVectors {
            count: 10,
            dim: 64,
            seed: 7,
        };
        assert_eq!(s.vector(3), s.vector(3));
        assert_ne!(s.vector(3), s.vector(4));
        for i in 0..s.count {
            let v = s.vector(i);
            let norm: f64 = v.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-12 && v.iter().all(|x| *x >= 0.0));
        }
        let q = s.query(5);
        let cos = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let planted = cos(&q, &s.vector(5));
        assert!(planted > 0.9, "{planted}");
        assert!(
            (0..s.count)
                .filter(|&i| i != 5)
                .all(|i| cos(&q, &s.vector(i)) < planted)
        );
    }
}
