//! Shared fixtures: one context and key set per preset, built once per test binary.
#![allow(dead_code, clippy::unwrap_used, reason = "shared test fixtures")]

use blindsight_he::*;
use std::sync::OnceLock;

pub struct Fixture {
    pub ctx: Context,
    pub sk: SecretKey,
    pub pk: PublicKey,
    pub rk: RelinKey,
    pub gk: GaloisKeys,
    pub ev: Evaluator,
}

/// Rotation steps the tests use: powers of two both ways, a few odd steps.
pub const STEPS: [i64; 18] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, -1, -3, 3, 5, 100, -2048,
];

/// The generic operations are tested on deeper chains than the search presets (which hold
/// two ciphertext primes): three primes, so that rescaling and modulus switching have
/// levels to go through. These are the sets the 8192 presets were before issue 9.
pub fn deep_params(scheme: Scheme) -> Parameters {
    use blindsight_he::math::primes::ntt_primes;
    let mut used = Vec::new();
    match scheme {
        Scheme::Bfv => {
            let p = ntt_primes(&[50], 8192, &mut used).unwrap();
            let q = ntt_primes(&[50, 50, 50], 8192, &mut used).unwrap();
            Parameters::bfv(8192, q, p, params::BFV_DOT_PRODUCT_T).unwrap()
        }
        Scheme::Ckks => {
            let p = ntt_primes(&[60], 8192, &mut used).unwrap();
            let q = ntt_primes(&[60, 40, 40], 8192, &mut used).unwrap();
            Parameters::ckks(8192, q, p, 40).unwrap()
        }
    }
}

fn build(scheme: Scheme) -> Fixture {
    let ctx = Context::new(&deep_params(scheme)).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let pk = PublicKey::generate(&ctx, &sk).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let gk = GaloisKeys::generate(&ctx, &sk, &STEPS, true).unwrap();
    let ev = Evaluator::new(&ctx);
    Fixture {
        ctx,
        sk,
        pk,
        rk,
        gk,
        ev,
    }
}

pub fn bfv() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(Scheme::Bfv))
}

pub fn ckks() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(Scheme::Ckks))
}

/// `n` pseudo-random words (xorshift64, seeded by `seed`): deterministic test data.
pub fn xorshift(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

/// `n` pseudo-random values below `modulus`.
pub fn random_below(seed: u64, n: usize, modulus: u64) -> Vec<u64> {
    xorshift(seed, n).into_iter().map(|x| x % modulus).collect()
}

/// A pseudo-random vector of `n` reals of unit norm.
pub fn unit_vector(seed: u64, n: usize) -> Vec<f64> {
    let v: Vec<f64> = xorshift(seed, n)
        .into_iter()
        .map(|x| (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    v.into_iter().map(|a| a / norm).collect()
}

/// BFV slots rotated: both rows of N/2 columns left by `step`.
pub fn rotate_rows(v: &[u64], step: i64) -> Vec<u64> {
    let half = v.len() / 2;
    let k = step.rem_euclid(half as i64) as usize;
    v.chunks_exact(half)
        .flat_map(|row| row[k..].iter().chain(&row[..k]).copied())
        .collect()
}
