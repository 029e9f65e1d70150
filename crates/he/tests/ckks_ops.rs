//! CKKS: every operation against its plaintext counterpart, within stated error bounds.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
use blindsight_he::*;
use common::{STEPS, ckks};
use proptest::prelude::*;

const SLOTS: usize = 4096;

fn enc(v: &[f64]) -> Ciphertext {
    let f = ckks();
    let e = CkksEncoder::new(&f.ctx).unwrap();
    f.sk.encrypt(
        &f.ctx,
        &e.encode(v, e.default_scale(), f.ctx.max_level()).unwrap(),
    )
    .unwrap()
}

fn dec(ct: &Ciphertext) -> Vec<f64> {
    let f = ckks();
    let e = CkksEncoder::new(&f.ctx).unwrap();
    e.decode(&f.sk.decrypt(&f.ctx, ct).unwrap()).unwrap()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn random_vec(seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..SLOTS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn rotate(v: &[f64], step: i64) -> Vec<f64> {
    let k = step.rem_euclid(v.len() as i64) as usize;
    v[k..].iter().chain(&v[..k]).copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Fresh secret-key encryptions decrypt within 1e-7 of the input for |x| <= 1 at scale 2^40.
    #[test]
    fn encrypt_decrypt_within_bound(seed in any::<u64>()) {
        let f = ckks();
        let v = random_vec(seed);
        prop_assert!(max_err(&dec(&enc(&v)), &v) < 1e-7);
        let e = CkksEncoder::new(&f.ctx).unwrap();
        let pt = e.encode(&v, e.default_scale(), f.ctx.max_level()).unwrap();
        // Public-key encryption adds e·u + e_1 + e_2·s: about 100x the secret-key noise.
        prop_assert!(max_err(&dec(&f.pk.encrypt(&f.ctx, &pt).unwrap()), &v) < 5e-7);
        prop_assert!(max_err(&e.decode(&pt).unwrap(), &v) < 1e-9);
    }

    #[test]
    fn operations_agree_with_plaintext(s1 in any::<u64>(), s2 in any::<u64>()) {
        let f = ckks();
        let e = CkksEncoder::new(&f.ctx).unwrap();
        let (a, b) = (random_vec(s1), random_vec(s2));
        let (ca, cb) = (enc(&a), enc(&b));
        let pb = e.encode(&b, e.default_scale(), f.ctx.max_level()).unwrap();
        let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let prod: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        prop_assert!(max_err(&dec(&f.ev.add(&ca, &cb).unwrap()), &sum) < 1e-7);
        prop_assert!(max_err(&dec(&f.ev.sub(&ca, &cb).unwrap()), &diff) < 1e-7);
        prop_assert!(max_err(&dec(&f.ev.add_plain(&ca, &pb).unwrap()), &sum) < 1e-7);
        prop_assert!(max_err(&dec(&f.ev.negate(&ca).unwrap()), &a.iter().map(|x| -x).collect::<Vec<_>>()) < 1e-7);
        let mp = f.ev.rescale(&f.ev.mul_plain(&ca, &pb).unwrap()).unwrap();
        prop_assert!(max_err(&dec(&mp), &prod) < 1e-6);
        let ct3 = f.ev.multiply(&ca, &cb).unwrap();
        prop_assert!(max_err(&dec(&ct3), &prod) < 1e-6);
        let relin = f.ev.relinearize(&ct3, &f.rk).unwrap();
        prop_assert!(max_err(&dec(&relin), &prod) < 1e-6);
        let rescaled = f.ev.rescale(&relin).unwrap();
        prop_assert_eq!(rescaled.level(), f.ctx.max_level() - 1);
        prop_assert!(max_err(&dec(&rescaled), &prod) < 1e-6);
    }
}

#[test]
fn every_rotation_step_and_conjugation() {
    let f = ckks();
    let e = CkksEncoder::new(&f.ctx).unwrap();
    let v = random_vec(3);
    let ct = enc(&v);
    let h = f.ev.hoist(&ct).unwrap();
    for step in STEPS {
        let want = rotate(&v, step);
        assert!(
            max_err(&dec(&f.ev.rotate(&ct, step, &f.gk).unwrap()), &want) < 1e-6,
            "step {step}"
        );
        assert!(
            max_err(&dec(&f.ev.rotate_hoisted(&h, step, &f.gk).unwrap()), &want) < 1e-6,
            "hoisted {step}"
        );
    }
    let z: Vec<Complex> = (0..SLOTS)
        .map(|i| Complex::new(v[i], v[(i + 1) % SLOTS]))
        .collect();
    let ctz =
        f.sk.encrypt(&f.ctx, &e.encode_complex(&z, e.default_scale(), 2).unwrap())
            .unwrap();
    let conj = f.ev.conjugate(&ctz, &f.gk).unwrap();
    let got = e
        .decode_complex(&f.sk.decrypt(&f.ctx, &conj).unwrap())
        .unwrap();
    for (g, w) in got.iter().zip(&z) {
        assert!((*g - w.conj()).abs() < 1e-6);
    }
}

#[test]
fn depth_one_product_then_4096_slot_inner_sum_on_unit_vectors() {
    let f = ckks();
    let unit = |v: Vec<f64>| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let a = unit(random_vec(11));
    let b = unit(
        a.iter()
            .enumerate()
            .map(|(i, x)| x + 0.01 * ((i % 7) as f64 - 3.0))
            .collect(),
    );
    let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    // Rotations run at scale Δ² before the single rescale, so their key-switching noise is
    // negligible against the scale (this is the order the search engine uses).
    let mut acc = f.ev.multiply_relin(&enc(&a), &enc(&b), &f.rk).unwrap();
    for k in 0..12 {
        let r = f.ev.rotate(&acc, 1 << k, &f.gk).unwrap();
        acc = f.ev.add(&acc, &r).unwrap();
    }
    let got = dec(&f.ev.rescale(&acc).unwrap());
    let rel = (got[0] - want).abs() / want.abs();
    assert!(
        rel <= 1e-6,
        "relative error {rel}: got {} want {want}",
        got[0]
    );
    let worst = got
        .iter()
        .map(|g| (g - want).abs() / want.abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-6, "worst {worst:e}");
}

#[test]
fn multiply_accumulate_equals_sum_of_products() {
    let f = ckks();
    let vs: Vec<Vec<f64>> = (0..6).map(|i| random_vec(500 + i)).collect();
    let ops: Vec<ProductOperand> = vs
        .iter()
        .map(|v| f.ev.prepare_product(&enc(v)).unwrap())
        .collect();
    let mut acc = ProductAccumulator::new(&f.ctx, f.ctx.max_level()).unwrap();
    let mut want = vec![0f64; SLOTS];
    for i in 0..3 {
        acc.add_product(&ops[2 * i], &ops[2 * i + 1]).unwrap();
        for (w, (x, y)) in want.iter_mut().zip(vs[2 * i].iter().zip(&vs[2 * i + 1])) {
            *w += x * y;
        }
    }
    let out = f.ev.rescale(&acc.finish(&f.ev, &f.rk).unwrap()).unwrap();
    assert!(max_err(&dec(&out), &want) < 1e-5);
}

#[test]
fn level_and_scale_mismatches_are_errors() {
    let f = ckks();
    let a = enc(&random_vec(1));
    let low = f.ev.mod_switch_down(&a).unwrap();
    assert!(matches!(
        f.ev.add(&a, &low),
        Err(HeError::LevelMismatch { .. })
    ));
    let sq = f.ev.multiply_relin(&a, &a, &f.rk).unwrap();
    assert!(matches!(
        f.ev.add(&a, &sq),
        Err(HeError::ScaleMismatch { .. })
    ));
    let bottom = f.ev.mod_switch_to(&a, 0).unwrap();
    assert!(matches!(
        f.ev.rescale(&bottom),
        Err(HeError::LevelExhausted)
    ));
    assert!(max_err(&dec(&bottom), &random_vec(1)) < 1e-6);
}

/// Flooded decryption adds noise of exactly the documented size: on each slot's real and
/// imaginary part, a centered error of standard deviation `NoiseFlooding::slot_sigma`
/// (measured over 8192 values: within 4 %, mean within 5 standard errors, no value beyond
/// 7σ), and it is fresh: two flooded decryptions of one ciphertext differ.
#[test]
fn flooded_decryption_noise_matches_its_documented_sigma() {
    let f = ckks();
    let e = CkksEncoder::new(&f.ctx).unwrap();
    let v = random_vec(31);
    // a ciphertext shaped like a search response: product, rescaled, at level 0
    let ct =
        f.ev.rescale(&f.ev.multiply_relin(&enc(&v), &enc(&v), &f.rk).unwrap())
            .unwrap();
    let ct = f.ev.mod_switch_to(&ct, 0).unwrap();
    for slot_sigma in [1.5e-5, 1e-3] {
        let flooding = NoiseFlooding::for_slot_sigma(&f.ctx, ct.scale(), slot_sigma).unwrap();
        assert!((flooding.slot_sigma(&f.ctx, ct.scale()) / slot_sigma - 1.0).abs() < 1e-12);
        let exact = f.sk.decrypt_complex(&f.ctx, &e, &ct).unwrap();
        let a =
            f.sk.decrypt_complex_flooded(&f.ctx, &e, &ct, &flooding)
                .unwrap();
        let b = e
            .decode_complex(&f.sk.decrypt_flooded(&f.ctx, &ct, &flooding).unwrap())
            .unwrap();
        let deviations = |x: &[Complex]| -> Vec<f64> {
            x.iter()
                .zip(&exact)
                .flat_map(|(g, w)| [g.re - w.re, g.im - w.im])
                .collect()
        };
        for (name, d) in [
            ("decrypt_complex_flooded", deviations(&a)),
            ("decrypt_flooded", deviations(&b)),
        ] {
            let k = d.len() as f64;
            let mean = d.iter().sum::<f64>() / k;
            let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k).sqrt();
            let max = d.iter().fold(0f64, |m, x| m.max(x.abs()));
            eprintln!(
                "{name}: documented slot σ {slot_sigma:.2e}, measured {sd:.3e} (mean {mean:.1e}, max {max:.2e})"
            );
            assert_eq!(d.len(), 8192);
            assert!(
                (sd / slot_sigma - 1.0).abs() < 0.04,
                "{name}: σ {sd:e} vs {slot_sigma:e}"
            );
            assert!(
                mean.abs() < 5.0 * slot_sigma / k.sqrt(),
                "{name}: mean {mean:e}"
            );
            assert!(max < 7.0 * slot_sigma, "{name}: max {max:e}");
        }
        // fresh noise every time: two decryptions differ, by about sqrt(2)·σ
        let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x.re - y.re).collect();
        assert!(diff.iter().filter(|d| d.abs() > 0.0).count() > 4000);
        let sd = (diff.iter().map(|x| x * x).sum::<f64>() / diff.len() as f64).sqrt();
        assert!(
            (sd / (slot_sigma * 2f64.sqrt()) - 1.0).abs() < 0.06,
            "{sd:e}"
        );
    }
    // the unflooded decryption is within the fresh error of the product
    let want: Vec<f64> = v.iter().map(|x| x * x).collect();
    assert!(max_err(&dec(&ct), &want) < 1e-6);
    // BFV has no flooded decryption
    let bfv = Context::preset("bfv-4096").unwrap();
    let sk = SecretKey::generate(&bfv).unwrap();
    let pt = BfvEncoder::new(&bfv).unwrap().encode(&[1]).unwrap();
    let flooding = NoiseFlooding::with_sigma(100.0).unwrap();
    assert!(matches!(
        sk.decrypt_flooded(&bfv, &sk.encrypt(&bfv, &pt).unwrap(), &flooding),
        Err(HeError::WrongScheme { .. })
    ));
}

/// Encoding refuses a value whose scaled magnitude reaches half the modulus of the target
/// level instead of wrapping; the same value fits a higher level and decrypts exactly.
#[test]
fn encoding_is_bounded_by_the_level_modulus() {
    let f = ckks();
    let e = CkksEncoder::new(&f.ctx).unwrap();
    let scale = e.default_scale();
    // a constant vector encodes to the single coefficient value·scale
    let half_q0 = e.max_scaled_value(0).unwrap();
    assert!(half_q0 < 2f64.powi(59) && half_q0 > 2f64.powi(58));
    let too_big = vec![2f64.powi(19); SLOTS];
    let err = e.encode(&too_big, scale, 0).unwrap_err();
    assert!(
        matches!(err, HeError::EncodingOverflow { level: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("encode at a higher level"),
        "{err}"
    );
    // just below half of q_0 it still encodes, and decrypts right
    let fits = vec![half_q0 / scale * 0.99; SLOTS];
    let ct =
        f.sk.encrypt(&f.ctx, &e.encode(&fits, scale, 0).unwrap())
            .unwrap();
    assert!(max_err(&dec(&ct), &fits) < 1e-3);
    // at level 1 the big value fits and decrypts exactly
    let ct =
        f.sk.encrypt(&f.ctx, &e.encode(&too_big, scale, 1).unwrap())
            .unwrap();
    assert!(max_err(&dec(&ct), &too_big) < 1e-3);
    assert!(e.max_scaled_value(1).unwrap() > 9e18 * 0.99);
    assert!(e.max_scaled_value(3).is_err());
}
