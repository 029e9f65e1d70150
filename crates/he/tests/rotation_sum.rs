//! Lazy mod-down (`he::rotation_sum`): a sum of relinearized, rotated products divided by
//! `P` once decrypts like the same sum computed one key switch at a time — exactly for BFV,
//! within the key-switching noise for CKKS — for 3-polynomial products and 2-polynomial
//! ciphertexts, with and without rotation; mismatched terms are refused.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use blindsight_he::*;
use common::{random_below, unit_vector};

const STEPS: [i64; 4] = [0, 1, 4, -3];

fn eager_and_lazy(f: &common::Fixture, terms: &[Ciphertext]) -> (Ciphertext, Ciphertext) {
    let ev = &f.ev;
    let mut eager: Option<Ciphertext> = None;
    let mut lazy: Option<RotationSum> = None;
    for (ct, &step) in terms.iter().zip(STEPS.iter().cycle()) {
        let relin = ev.relinearize(ct, &f.rk).unwrap();
        let rotated = if step == 0 {
            relin
        } else {
            ev.rotate(&relin, step, &f.gk).unwrap()
        };
        eager = Some(match eager {
            None => rotated,
            Some(acc) => ev.add(&acc, &rotated).unwrap(),
        });
        let term = ev.rotated_term(ct, step, &f.rk, &f.gk).unwrap();
        match &mut lazy {
            None => lazy = Some(term),
            Some(sum) => sum.add(&term, ev).unwrap(),
        }
    }
    (
        eager.unwrap(),
        ev.finish_rotation_sum(lazy.unwrap()).unwrap(),
    )
}

#[test]
fn bfv_lazy_sums_decrypt_exactly_like_eager_ones() {
    let f = common::bfv();
    let t = f.ctx.params().plain_modulus();
    let encoder = BfvEncoder::new(&f.ctx).unwrap();
    let n = f.ctx.degree();
    let enc = |seed| {
        f.sk.encrypt(
            &f.ctx,
            &encoder.encode(&random_below(seed, n, 256)).unwrap(),
        )
        .unwrap()
    };
    let mut terms: Vec<Ciphertext> = (0..4)
        .map(|i| f.ev.multiply(&enc(2 * i + 1), &enc(2 * i + 2)).unwrap())
        .collect();
    terms.push(enc(99)); // a 2-polynomial term
    let (eager, lazy) = eager_and_lazy(f, &terms);
    let a = encoder
        .decode(&f.sk.decrypt(&f.ctx, &eager).unwrap())
        .unwrap();
    let b = encoder
        .decode(&f.sk.decrypt(&f.ctx, &lazy).unwrap())
        .unwrap();
    assert_eq!(a, b);
    assert!(a.iter().all(|&x| x < t));
    let (be, bl) = (
        f.sk.noise_budget(&f.ctx, &eager).unwrap(),
        f.sk.noise_budget(&f.ctx, &lazy).unwrap(),
    );
    assert!(bl >= be - 1.0, "lazy budget {bl:.1} bits, eager {be:.1}");
}

#[test]
fn ckks_lazy_sums_match_eager_ones() {
    let f = common::ckks();
    let encoder = CkksEncoder::new(&f.ctx).unwrap();
    let slots = f.ctx.slots();
    let enc = |seed| {
        let v = unit_vector(seed, slots);
        f.sk.encrypt(
            &f.ctx,
            &encoder
                .encode(&v, encoder.default_scale(), f.ctx.max_level())
                .unwrap(),
        )
        .unwrap()
    };
    let terms: Vec<Ciphertext> = (0..4)
        .map(|i| f.ev.multiply(&enc(2 * i + 1), &enc(2 * i + 2)).unwrap())
        .collect();
    let (eager, lazy) = eager_and_lazy(f, &terms);
    let a = encoder
        .decode(&f.sk.decrypt(&f.ctx, &eager).unwrap())
        .unwrap();
    let b = encoder
        .decode(&f.sk.decrypt(&f.ctx, &lazy).unwrap())
        .unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    // both are the same sum up to key-switching roundings, far below the values (~1e-4)
    assert!(worst < 1e-9, "worst difference {worst:e}");
}

#[test]
fn mismatched_terms_are_refused() {
    let f = common::bfv();
    let encoder = BfvEncoder::new(&f.ctx).unwrap();
    let ct =
        f.sk.encrypt(&f.ctx, &encoder.encode(&[1; 8192]).unwrap())
            .unwrap();
    let low = f.ev.mod_switch_down(&ct).unwrap();
    let mut sum = f.ev.rotated_term(&ct, 1, &f.rk, &f.gk).unwrap();
    let other = f.ev.rotated_term(&low, 1, &f.rk, &f.gk).unwrap();
    assert!(matches!(
        sum.add(&other, &f.ev).unwrap_err(),
        HeError::LevelMismatch { .. }
    ));
    // a step without a key
    assert!(matches!(
        f.ev.rotated_term(&ct, 7, &f.rk, &f.gk).unwrap_err(),
        HeError::MissingGaloisKey { .. }
    ));
}
