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
