//! Objects from another context, or of the wrong shape, give errors instead of panics.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
use blindsight_he::*;
use common::{bfv, ckks};

#[test]
fn foreign_ciphertexts_are_refused_everywhere() {
    let (b, c) = (bfv(), ckks());
    let other = Context::preset("ckks-16384").unwrap();
    let other_sk = SecretKey::generate(&other).unwrap();
    let enc = CkksEncoder::new(&other).unwrap();
    let big = other_sk
        .encrypt(
            &other,
            &enc.encode(&[1.0], enc.default_scale(), other.max_level())
                .unwrap(),
        )
        .unwrap();
    let small = {
        let e = CkksEncoder::new(&c.ctx).unwrap();
        c.sk.encrypt(&c.ctx, &e.encode(&[1.0], e.default_scale(), 2).unwrap())
            .unwrap()
    };
    let bfv_ct = {
        let e = BfvEncoder::new(&b.ctx).unwrap();
        b.sk.encrypt(&b.ctx, &e.encode(&[1]).unwrap()).unwrap()
    };
    for foreign in [&big, &bfv_ct] {
        assert!(c.sk.decrypt(&c.ctx, foreign).is_err());
        assert!(c.ev.add(&small, foreign).is_err());
        assert!(c.ev.multiply(&small, foreign).is_err());
        assert!(c.ev.rotate(foreign, 1, &c.gk).is_err());
        assert!(c.ev.hoist(foreign).is_err());
        assert!(c.ev.prepare_product(foreign).is_err());
        assert!(c.ev.rescale(foreign).is_err());
        assert!(c.ev.relinearize(foreign, &c.rk).is_err());
    }
    // a hoisted decomposition and a product operand from another context
    let other_ev = Evaluator::new(&other);
    let h = other_ev.hoist(&big).unwrap();
    let other_gk = GaloisKeys::generate(&other, &other_sk, &[1], false).unwrap();
    assert!(c.ev.rotate_hoisted(&h, 1, &c.gk).is_err());
    assert!(
        c.ev.rotate_hoisted(&c.ev.hoist(&small).unwrap(), 1, &other_gk)
            .is_err()
    );
    let op_big = other_ev.prepare_product(&big).unwrap();
    let op_small = c.ev.prepare_product(&small).unwrap();
    let mut acc = ProductAccumulator::new(&c.ctx, 2).unwrap();
    assert!(acc.add_product(&op_small, &op_big).is_err());
    assert!(ProductAccumulator::new(&c.ctx, 9).is_err());
    // keys of another context
    let pt = BfvEncoder::new(&b.ctx).unwrap().encode(&[1]).unwrap();
    assert!(c.sk.encrypt(&b.ctx, &pt).is_err());
    assert!(c.pk.encrypt(&b.ctx, &pt).is_err());
    // encoders of the other scheme
    assert!(BfvEncoder::new(&c.ctx).is_err());
    assert!(CkksEncoder::new(&b.ctx).is_err());
    assert!(b.ev.rescale(&bfv_ct).is_err());
    assert!(c.sk.noise_budget(&c.ctx, &small).is_err());
}

#[test]
fn bad_encoder_input_is_an_error() {
    let c = ckks();
    let e = CkksEncoder::new(&c.ctx).unwrap();
    assert!(e.encode(&[f64::NAN], e.default_scale(), 2).is_err());
    assert!(e.encode(&[1e30], e.default_scale(), 2).is_err());
    assert!(e.encode(&[1.0], 0.5, 2).is_err());
    assert!(e.encode(&[1.0], e.default_scale(), 3).is_err());
    assert!(e.encode(&vec![0.0; 4097], e.default_scale(), 2).is_err());
    assert!(GaloisKeys::for_elements(&c.ctx, &c.sk, &[4]).is_err());
    assert!(GaloisKeys::for_elements(&c.ctx, &c.sk, &[1 << 20]).is_err());
}

#[test]
fn plaintexts_of_another_parameter_set_are_refused() {
    let (b, c) = (bfv(), ckks());
    let other = Context::preset("bfv-4096").unwrap();
    let other_sk = SecretKey::generate(&other).unwrap();
    let foreign = BfvEncoder::new(&other).unwrap().encode(&[1, 2, 3]).unwrap();
    let mine = BfvEncoder::new(&b.ctx).unwrap().encode(&[1, 2, 3]).unwrap();
    assert_eq!(foreign.fingerprint(), other.params().fingerprint());
    let ct = b.sk.encrypt(&b.ctx, &mine).unwrap();
    let mismatch = |r: Result<Ciphertext>| matches!(r, Err(HeError::ParameterMismatch { .. }));
    assert!(mismatch(b.sk.encrypt(&b.ctx, &foreign)));
    assert!(mismatch(b.pk.encrypt(&b.ctx, &foreign)));
    assert!(mismatch(b.ev.add_plain(&ct, &foreign)));
    assert!(mismatch(b.ev.sub_plain(&ct, &foreign)));
    assert!(mismatch(b.ev.mul_plain(&ct, &foreign)));
    let mut acc = ProductAccumulator::new(&b.ctx, b.ctx.max_level()).unwrap();
    assert!(matches!(
        acc.add_plain_product(&ct, &foreign),
        Err(HeError::ParameterMismatch { .. })
    ));
    assert!(matches!(
        BfvEncoder::new(&b.ctx).unwrap().decode(&foreign),
        Err(HeError::ParameterMismatch { .. })
    ));
    // the other context's own objects still work together
    let other_ct = other_sk.encrypt(&other, &foreign).unwrap();
    let back = other_sk.decrypt(&other, &other_ct).unwrap();
    assert_eq!(
        &BfvEncoder::new(&other).unwrap().decode(&back).unwrap()[..3],
        &[1, 2, 3]
    );
    // CKKS: a plaintext of ckks-16384 on ckks-8192
    let big = Context::preset("ckks-16384").unwrap();
    let e_big = CkksEncoder::new(&big).unwrap();
    let pt_big = e_big.encode(&[0.5], e_big.default_scale(), 1).unwrap();
    let e = CkksEncoder::new(&c.ctx).unwrap();
    assert!(matches!(
        e.decode(&pt_big),
        Err(HeError::ParameterMismatch { .. })
    ));
    assert!(c.sk.encrypt(&c.ctx, &pt_big).is_err());
}

#[test]
fn to_bytes_with_another_context_is_an_error() {
    let (b, c) = (bfv(), ckks());
    let mismatch = |r: Result<Vec<u8>>| matches!(r, Err(HeError::ParameterMismatch { .. }));
    let pt = BfvEncoder::new(&b.ctx).unwrap().encode(&[7]).unwrap();
    let ct = b.sk.encrypt(&b.ctx, &pt).unwrap();
    assert!(mismatch(ct.to_bytes(&c.ctx)));
    assert!(mismatch(pt.to_bytes(&c.ctx)));
    assert!(mismatch(b.pk.to_bytes(&c.ctx)));
    assert!(mismatch(b.rk.to_bytes(&c.ctx)));
    assert!(mismatch(b.gk.to_bytes(&c.ctx)));
    assert!(mismatch(b.ctx.params().to_bytes(&c.ctx)));
    assert!(matches!(
        b.sk.to_bytes(&c.ctx),
        Err(HeError::ParameterMismatch { .. })
    ));
    let err = ct.to_bytes(&c.ctx).unwrap_err().to_string();
    assert!(err.contains("use the context"), "{err}");
    // and with the right one, everything serializes
    assert!(ct.to_bytes(&b.ctx).is_ok());
    assert!(b.sk.to_bytes(&b.ctx).is_ok());
}
