//! Ring switching (`he::ring_switch`): a ciphertext switched to a response key of the
//! subring `Z[X^d]` and projected decrypts to its slots summed over the order-`d` rotation
//! subgroup, divided by `d` — exactly for BFV (worst-case slot values), within the stated
//! noise for CKKS — in `1/d` of the bytes. Wrong keys, further operations and insecure
//! levels are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use blindsight_he::ring_switch::max_response_log_d;
use blindsight_he::*;
use common::{random_below, rotate_rows};

/// `Σ_u rotate(v, u·row/d)` for `u < d`, modulo `t`: the trace the projection divides by `d`.
fn trace(v: &[u64], d: usize, t: u64) -> Vec<u64> {
    let row = v.len() / 2;
    let mut out = vec![0u64; v.len()];
    for u in 0..d {
        let r = rotate_rows(v, (u * row / d) as i64);
        for (o, x) in out.iter_mut().zip(r) {
            *o = (*o + x) % t;
        }
    }
    out
}

fn inverse_mod(a: u64, m: u64) -> u64 {
    // m prime: a^(m-2)
    let (mut base, mut e, mut acc) = (a as u128 % m as u128, m - 2, 1u128);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * base % m as u128;
        }
        base = base * base % m as u128;
        e >>= 1;
    }
    acc as u64
}

#[test]
fn bfv_responses_shrink_by_d_and_decrypt_exactly() {
    let ctx = Context::preset("bfv-8192").unwrap();
    let t = ctx.params().plain_modulus();
    let sk = SecretKey::generate(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let encoder = BfvEncoder::new(&ctx).unwrap();
    // 50-bit q_0: degree 2048 is the smallest secure subring (54 bits), so d = 4
    let log_d = max_response_log_d(&ctx, 0);
    assert_eq!(log_d, 2);
    let response = ResponseSecretKey::generate(&ctx, log_d).unwrap();
    let key = RingSwitchKey::generate(&ctx, &sk, &response, 0, 4).unwrap();
    // worst case: uniformly random slots over all of Z_t, and all t-1
    for (seed, values) in [
        (1, random_below(11, ctx.degree(), t)),
        (2, vec![t - 1; ctx.degree()]),
    ] {
        let ct = sk.encrypt(&ctx, &encoder.encode(&values).unwrap()).unwrap();
        let low = ev.mod_switch_to(&ct, 0).unwrap();
        for target in 0..=log_d {
            let d = 1usize << target;
            let switched = ev.ring_switch(&low, &key, target, [32, 39]).unwrap();
            assert_eq!(switched.subring(), Some(target));
            // the transfer rounding takes all but ~3 bits by design (c_0's part is ≤ Δ/16)
            let budget = response.noise_budget(&ctx, &switched).unwrap();
            assert!(budget > 1.5, "seed {seed}, d {d}: budget {budget:.1} bits");
            // without it, what the switch leaves: 50 − 29 − 1 bits minus its ~2^14 noise
            let exact = ev.ring_switch(&low, &key, target, [49, 49]).unwrap();
            let budget = response.noise_budget(&ctx, &exact).unwrap();
            assert!(
                budget > 4.0,
                "seed {seed}, d {d}: switch budget {budget:.1} bits"
            );
            let got = encoder
                .decode(&response.decrypt(&ctx, &switched).unwrap())
                .unwrap();
            let d_mod_t = d as u64 % t;
            let scaled: Vec<u64> = got
                .iter()
                .map(|&x| (x as u128 * d_mod_t as u128 % t as u128) as u64)
                .collect();
            assert_eq!(scaled, trace(&values, d, t), "seed {seed}, d {d}");
            // and the projection itself is Tr/d
            let inv = inverse_mod(d as u64, t);
            let expected: Vec<u64> = trace(&values, d, t)
                .iter()
                .map(|&x| (x as u128 * inv as u128 % t as u128) as u64)
                .collect();
            assert_eq!(got, expected);
            // serialized: (32 + 39) bits for each of N/d coefficients, plus framing
            let bytes = switched.to_bytes(&ctx).unwrap();
            let payload = (ctx.degree() / d) * (32 + 39) / 8;
            assert!(
                bytes.len() >= payload && bytes.len() < payload + 100,
                "{} bytes for d = {d}",
                bytes.len()
            );
            let back = Ciphertext::from_bytes(&ctx, &bytes).unwrap();
            assert_eq!(back, switched);
            for cut in [0, 60, bytes.len() / 2, bytes.len() - 1] {
                assert!(Ciphertext::from_bytes(&ctx, &bytes[..cut]).is_err());
            }
        }
        let budget = |bits| {
            let ct = ev.ring_switch(&low, &key, log_d, bits).unwrap();
            response.noise_budget(&ctx, &ct).unwrap()
        };
        eprintln!(
            "bfv-8192, d = 4: noise budget {:.1} bits after the switch, {:.1} after rounding to 32 + 39 bits",
            budget([49, 49]),
            budget([32, 39])
        );
    }
}

#[test]
fn ckks_responses_keep_their_precision() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let encoder = CkksEncoder::new(&ctx).unwrap();
    let log_d = max_response_log_d(&ctx, 0);
    assert!(log_d >= 1);
    let response = ResponseSecretKey::generate(&ctx, log_d).unwrap();
    let key = RingSwitchKey::generate(&ctx, &sk, &response, 0, 4).unwrap();
    let slots = ctx.slots();
    let values: Vec<Complex> = common::unit_vector(5, 2 * slots)
        .chunks_exact(2)
        .map(|c| Complex::new(c[0] * 30.0, c[1] * 30.0))
        .collect();
    // the largest scale level 0 holds for values below 1
    let q0 = ctx.params().moduli()[0] as f64;
    let scale = q0 / 8.0;
    let pt = encoder.encode_complex(&values, scale, 0).unwrap();
    let ct = sk.encrypt(&ctx, &pt).unwrap();
    let d = 1usize << log_d;
    let switched = ev.ring_switch(&ct, &key, log_d, [40, 44]).unwrap();
    let got = response.decrypt_complex(&ctx, &encoder, &switched).unwrap();
    let mut worst = 0f64;
    for j in 0..slots {
        let mut sum = Complex::new(0.0, 0.0);
        for u in 0..d {
            sum = sum + values[(j + u * slots / d) % slots];
        }
        worst = worst.max((got[j] * Complex::new(d as f64, 0.0) - sum).abs());
    }
    // the switch's noise per real slot part: √(ℓN)·2^w/√12·σ_e·√(N/2), times d / scale
    let n = ctx.degree() as f64;
    let digits = (q0.log2().ceil() / 4.0).ceil();
    let sigma =
        (digits * n).sqrt() * 16.0 / 12f64.sqrt() * 3.24 * (n / 2.0).sqrt() * d as f64 / scale;
    assert!(
        worst < 7.0 * sigma,
        "worst slot error {worst:e}, σ {sigma:e}"
    );
    eprintln!(
        "ckks-8192 level 0, d = {d}: worst slot error {worst:.2e} at scale 2^{:.1}",
        scale.log2()
    );
}

#[test]
fn keys_and_operations_are_checked() {
    let ctx = Context::preset("bfv-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let encoder = BfvEncoder::new(&ctx).unwrap();
    let response = ResponseSecretKey::generate(&ctx, 2).unwrap();
    // level 1 holds 100 bits: degree 2048 allows 54
    let err = RingSwitchKey::generate(&ctx, &sk, &response, 1, 4).unwrap_err();
    assert!(
        matches!(err, HeError::InsecureParameters { degree: 2048, .. }),
        "{err}"
    );
    assert!(
        ResponseSecretKey::generate(&ctx, 4).is_err(),
        "degree 512 is below the table"
    );
    let key = RingSwitchKey::generate(&ctx, &sk, &response, 0, 4).unwrap();
    let bytes = key.to_bytes(&ctx).unwrap();
    assert_eq!(RingSwitchKey::from_bytes(&ctx, &bytes).unwrap(), key);

    let ct = sk
        .encrypt(&ctx, &encoder.encode(&[7; 8192]).unwrap())
        .unwrap();
    // wrong level, too large a subring, c_1 left unrounded
    assert!(matches!(
        ev.ring_switch(&ct, &key, 2, [32, 39]).unwrap_err(),
        HeError::LevelMismatch { .. }
    ));
    let low = ev.mod_switch_to(&ct, 0).unwrap();
    assert!(ev.ring_switch(&low, &key, 3, [32, 39]).is_err());
    assert!(ev.ring_switch(&low, &key, 2, [32, 0]).is_err());
    let switched = ev.ring_switch(&low, &key, 2, [32, 39]).unwrap();
    // the main key does not decrypt it, the response key nothing else
    assert!(matches!(
        sk.decrypt(&ctx, &switched).unwrap_err(),
        HeError::KeyMismatch { .. }
    ));
    assert!(matches!(
        response.decrypt(&ctx, &low).unwrap_err(),
        HeError::KeyMismatch { .. }
    ));
    // another response key decrypts it to garbage, not to the message
    let other = ResponseSecretKey::generate(&ctx, 2).unwrap();
    let garbage = encoder
        .decode(&other.decrypt(&ctx, &switched).unwrap())
        .unwrap();
    assert!(garbage.iter().filter(|&&x| x == 7).count() < 100);
    // no further operation
    for result in [
        ev.add(&switched, &switched),
        ev.round_for_transfer(&switched, [30, 30]),
        ev.mod_switch_to(&switched, 0),
    ] {
        assert!(matches!(
            result.unwrap_err(),
            HeError::RingSwitched { log_d: 2 }
        ));
    }
    // the response secret is the same for the same seed, and differs otherwise
    let a = ResponseSecretKey::from_seed(&ctx, 2, &[9; 32]).unwrap();
    let b = ResponseSecretKey::from_seed(&ctx, 2, &[9; 32]).unwrap();
    let key_a = RingSwitchKey::generate(&ctx, &sk, &a, 0, 4).unwrap();
    let via_a = ev.ring_switch(&low, &key_a, 2, [32, 39]).unwrap();
    assert_eq!(
        encoder.decode(&b.decrypt(&ctx, &via_a).unwrap()).unwrap()[0],
        encoder.decode(&a.decrypt(&ctx, &via_a).unwrap()).unwrap()[0]
    );
    assert_eq!(format!("{a:?}"), "ResponseSecretKey(<redacted>)");
}
