//! Ciphertexts rounded to a power-of-two modulus for transfer: exact BFV decryption with
//! the noise budget left, CKKS precision kept, compact and stable serialization, misuse
//! refused.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
use blindsight_he::*;
use common::unit_vector;

/// BFV, the search's response: a native product sum relinearized and switched to one
/// prime, then rounded to 32 + 39 bits per coefficient pair: still exact, with budget left,
/// and the bytes shrink from 2·50 to 32 + 39 bits per coefficient.
#[test]
fn bfv_rounded_responses_decrypt_exactly() {
    let ctx = Context::preset("bfv-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let enc = BfvEncoder::new(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let t = ctx.params().plain_modulus();
    let n = ctx.degree();
    let a: Vec<u64> = (0..n as u64).map(|i| (i * 7919 + 3) % t).collect();
    let b: Vec<u64> = (0..n as u64).map(|i| (i * 104_729 + 11) % t).collect();
    let ct = |v: &[u64]| sk.encrypt(&ctx, &enc.encode(v).unwrap()).unwrap();
    let mut acc = ProductAccumulator::native(&ctx, ctx.max_level()).unwrap();
    let (ca, cb) = (ct(&a), ct(&b));
    for _ in 0..64 {
        acc.add_product(
            &ev.prepare_native_product(&ca).unwrap(),
            &ev.prepare_native_product(&cb).unwrap(),
        )
        .unwrap();
    }
    let sum = ev.mod_switch_to(&acc.finish(&ev, &rk).unwrap(), 0).unwrap();
    let want: Vec<u64> = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| (64 * x as u128 * y as u128 % t as u128) as u64)
        .collect();
    let before = sk.noise_budget(&ctx, &sum).unwrap();
    let rounded = ev.round_for_transfer(&sum, [32, 39]).unwrap();
    assert_eq!(rounded.transfer_bits(), Some([32, 39]));
    let after = sk.noise_budget(&ctx, &rounded).unwrap();
    // The rounding error of c_1 is r_1·s·Q/2^39 (r_1·s has σ ≈ 21): decryption fails only
    // past |r_1·s| = 2^39/(2t) = 512, 24σ; the measured worst case leaves ~2 bits of budget.
    eprintln!("noise budget {before:.1} -> {after:.1} bits after rounding to 32 + 39 bits");
    assert!(after > 1.0, "{after}");
    assert!(enc.decode(&sk.decrypt(&ctx, &rounded).unwrap()).unwrap() == want);
    let full = sum.to_bytes(&ctx).unwrap();
    let bytes = rounded.to_bytes(&ctx).unwrap();
    assert!(
        bytes.len() < full.len() * 72 / 100,
        "{} vs {}",
        bytes.len(),
        full.len()
    );
    assert_eq!(
        bytes.len(),
        48 + 4 + 3 + 8 + 2 + (n * 32).div_ceil(8) + (n * 39).div_ceil(8)
    );
    let back = Ciphertext::from_bytes(&ctx, &bytes).unwrap();
    assert_eq!(back, rounded);
    assert_eq!(
        back.to_bytes(&ctx).unwrap(),
        bytes,
        "re-serializes to the same bytes"
    );
    assert!(enc.decode(&sk.decrypt(&ctx, &back).unwrap()).unwrap() == want);
    // an operation on a rounded ciphertext serializes in full again
    let doubled = ev.add(&back, &back).unwrap();
    assert_eq!(doubled.transfer_bits(), None);
}

/// CKKS at the search's operating point: a product of unit vectors at scale 2^64.2, rounded
/// to 32 + 38 bits, gains an error well below the 1e-6 contract (σ ≈ 2.3e-8 per slot).
#[test]
fn ckks_rounding_keeps_the_precision() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let enc = CkksEncoder::new(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let slots = ctx.slots();
    let (a, b) = (unit_vector(3, slots), unit_vector(5, slots));
    let encrypt = |v: &[f64], scale: f64| {
        sk.encrypt(&ctx, &enc.encode(v, scale, ctx.max_level()).unwrap())
            .unwrap()
    };
    let prod = ev
        .multiply_relin(
            &encrypt(&a, 30.7f64.exp2()),
            &encrypt(&b, 33.5f64.exp2()),
            &rk,
        )
        .unwrap();
    let rounded = ev.round_for_transfer(&prod, [32, 38]).unwrap();
    let x = sk.decrypt_complex(&ctx, &enc, &prod).unwrap();
    let y = sk.decrypt_complex(&ctx, &enc, &rounded).unwrap();
    let added = x.iter().zip(&y).fold(0f64, |m, (p, q)| {
        m.max((p.re - q.re).abs()).max((p.im - q.im).abs())
    });
    let worst = y
        .iter()
        .enumerate()
        .fold(0f64, |m, (j, z)| m.max((z.re - a[j] * b[j]).abs()));
    eprintln!("rounding added at most {added:.2e}; slot error {worst:.2e}");
    assert!(added < 2e-7, "{added}");
    assert!(worst < 1e-6, "{worst}");
    let bytes = rounded.to_bytes(&ctx).unwrap();
    assert_eq!(Ciphertext::from_bytes(&ctx, &bytes).unwrap(), rounded);
}

#[test]
fn misuse_is_refused() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let enc = CkksEncoder::new(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let ct = sk
        .encrypt(&ctx, &enc.encode(&[0.5], enc.default_scale(), 1).unwrap())
        .unwrap();
    for bits in [[1, 30], [30, 64], [30, 67]] {
        assert!(matches!(
            ev.round_for_transfer(&ct, bits),
            Err(HeError::ValueOutOfRange { .. })
        ));
    }
    let three = ev.multiply(&ct, &ct).unwrap();
    assert!(matches!(
        ev.round_for_transfer(&three, [30, 30]),
        Err(HeError::CiphertextSize { .. })
    ));
    let _ = rk;
}

/// A fresh seeded ciphertext rounds `c_0` alone (`c_1` width 0): the seed survives, the
/// bytes are `c_0`'s rounded bits plus 32 bytes, and the error is added to `c_0` only.
#[test]
fn seeded_ciphertexts_round_c0_alone() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let enc = CkksEncoder::new(&ctx).unwrap();
    let ev = Evaluator::new(&ctx);
    let v = unit_vector(9, ctx.slots());
    let scale = 31f64.exp2();
    let ct = sk
        .encrypt(&ctx, &enc.encode(&v, scale, ctx.max_level()).unwrap())
        .unwrap();
    assert!(ct.is_seeded());
    let rounded = ev.round_for_transfer(&ct, [63, 0]).unwrap();
    assert!(rounded.is_seeded(), "the seed of c_1 is kept");
    let bytes = rounded.to_bytes(&ctx).unwrap();
    let n = ctx.degree();
    assert_eq!(
        bytes.len(),
        48 + 4 + 3 + 8 + 2 + 1 + 32 + (n * 63).div_ceil(8)
    );
    let back = Ciphertext::from_bytes(&ctx, &bytes).unwrap();
    assert_eq!(back, rounded);
    assert_eq!(back.to_bytes(&ctx).unwrap(), bytes);
    let got = sk.decrypt_complex(&ctx, &enc, &back).unwrap();
    let worst = got
        .iter()
        .zip(&v)
        .fold(0f64, |m, (z, &w)| m.max((z.re - w).abs()));
    // fresh noise (σ 3.24) and the rounding of c_0 (σ 8/√12) per coefficient: ~4·64/2^31
    assert!(worst < 1e-6, "{worst}");
    // a rounded seeded c_1 is refused at a width of 0 for c_0
    assert!(ev.round_for_transfer(&ct, [0, 30]).is_err());
}
