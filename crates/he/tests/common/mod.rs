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

fn build(name: &str) -> Fixture {
    let ctx = Context::preset(name).unwrap();
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
    F.get_or_init(|| build("bfv-8192"))
}

pub fn ckks() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build("ckks-8192"))
}
