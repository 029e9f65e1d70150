//! BFV: every operation against its plaintext counterpart.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
use blindsight_he::*;
use common::{STEPS, bfv, random_below, rotate_rows};
use proptest::prelude::*;

fn t() -> u64 {
    bfv().ctx.params().plain_modulus()
}

fn enc(v: &[u64]) -> Ciphertext {
    let f = bfv();
    let e = BfvEncoder::new(&f.ctx).unwrap();
    f.sk.encrypt(&f.ctx, &e.encode(v).unwrap()).unwrap()
}

fn dec(ct: &Ciphertext) -> Vec<u64> {
    let f = bfv();
    let e = BfvEncoder::new(&f.ctx).unwrap();
    e.decode(&f.sk.decrypt(&f.ctx, ct).unwrap()).unwrap()
}

fn random_vec(seed: u64) -> Vec<u64> {
    random_below(seed, 8192, t())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn encrypt_decrypt_is_identity(seed in any::<u64>()) {
        let v = random_vec(seed);
        prop_assert_eq!(dec(&enc(&v)), v.clone());
        let f = bfv();
        let e = BfvEncoder::new(&f.ctx).unwrap();
        let ct = f.pk.encrypt(&f.ctx, &e.encode(&v).unwrap()).unwrap();
        prop_assert_eq!(dec(&ct), v);
    }

    #[test]
    fn add_sub_mul_agree_with_plaintext(s1 in any::<u64>(), s2 in any::<u64>()) {
        let f = bfv();
        let tm = t() as u128;
        let (a, b) = (random_vec(s1), random_vec(s2));
        let (ca, cb) = (enc(&a), enc(&b));
        let e = BfvEncoder::new(&f.ctx).unwrap();
        let pb = e.encode(&b).unwrap();
        let sum: Vec<u64> = a.iter().zip(&b).map(|(&x, &y)| ((x as u128 + y as u128) % tm) as u64).collect();
        let diff: Vec<u64> = a.iter().zip(&b).map(|(&x, &y)| ((x as u128 + tm - y as u128) % tm) as u64).collect();
        let prod: Vec<u64> = a.iter().zip(&b).map(|(&x, &y)| (x as u128 * y as u128 % tm) as u64).collect();
        prop_assert_eq!(dec(&f.ev.add(&ca, &cb).unwrap()), sum.clone());
        prop_assert_eq!(dec(&f.ev.sub(&ca, &cb).unwrap()), diff.clone());
        prop_assert_eq!(dec(&f.ev.add_plain(&ca, &pb).unwrap()), sum);
        prop_assert_eq!(dec(&f.ev.sub_plain(&ca, &pb).unwrap()), diff);
        prop_assert_eq!(dec(&f.ev.mul_plain(&ca, &pb).unwrap()), prod.clone());
        let ct3 = f.ev.multiply(&ca, &cb).unwrap();
        prop_assert_eq!(ct3.size(), 3);
        prop_assert_eq!(dec(&ct3), prod.clone());
        prop_assert_eq!(dec(&f.ev.relinearize(&ct3, &f.rk).unwrap()), prod);
    }
}

#[test]
fn every_rotation_step_and_the_row_swap() {
    let f = bfv();
    let v = random_vec(42);
    let ct = enc(&v);
    let h = f.ev.hoist(&ct).unwrap();
    for step in STEPS {
        let want = rotate_rows(&v, step);
        let plain = f.ev.rotate(&ct, step, &f.gk).unwrap();
        assert_eq!(dec(&plain), want, "step {step}");
        let hoisted = f.ev.rotate_hoisted(&h, step, &f.gk).unwrap();
        assert_eq!(dec(&hoisted), want, "hoisted step {step}");
    }
    let swapped = f.ev.conjugate(&ct, &f.gk).unwrap();
    let half = v.len() / 2;
    let want: Vec<u64> = v[half..].iter().chain(&v[..half]).copied().collect();
    assert_eq!(dec(&swapped), want);
    assert!(matches!(
        f.ev.rotate(&ct, 7, &f.gk),
        Err(HeError::MissingGaloisKey { .. })
    ));
}

#[test]
fn depth_one_product_then_4096_slot_inner_sum_is_exact() {
    let f = bfv();
    // 8-bit images: the worst case of the search (all 255) and a random one.
    let a: Vec<u64> = (0..8192)
        .map(|i| if i < 4096 { 255 } else { (i * 37 % 256) as u64 })
        .collect();
    let b: Vec<u64> = (0..8192)
        .map(|i| if i < 4096 { 255 } else { (i * 91 % 256) as u64 })
        .collect();
    let prod = f.ev.multiply_relin(&enc(&a), &enc(&b), &f.rk).unwrap();
    let mut acc = prod;
    for k in 0..12 {
        let r = f.ev.rotate(&acc, 1 << k, &f.gk).unwrap();
        acc = f.ev.add(&acc, &r).unwrap();
    }
    let budget = f.sk.noise_budget(&f.ctx, &acc).unwrap();
    assert!(budget > 10.0, "noise budget {budget}");
    let out = dec(&acc);
    let row0: u64 = (0..4096).map(|i| a[i] * b[i]).sum();
    let row1: u64 = (4096..8192).map(|i| a[i] * b[i]).sum();
    assert_eq!(row0, 4096 * 255 * 255);
    assert_eq!(out[0], row0 % t());
    assert_eq!(out[0], row0, "no wrap: t exceeds the largest dot product");
    assert_eq!(out[4096], row1);
    assert!(out[..4096].iter().all(|&x| x == row0));
    // switched down to one modulus, the result still decrypts
    let small = f.ev.mod_switch_to(&acc, 0).unwrap();
    assert_eq!(dec(&small)[0], row0);
}

#[test]
fn multiply_accumulate_equals_sum_of_products() {
    let f = bfv();
    let tm = t() as u128;
    let vs: Vec<Vec<u64>> = (0..6).map(|i| random_vec(1000 + i)).collect();
    let cts: Vec<Ciphertext> = vs.iter().map(|v| enc(v)).collect();
    let ops: Vec<ProductOperand> = cts
        .iter()
        .map(|c| f.ev.prepare_product(c).unwrap())
        .collect();
    let mut acc = ProductAccumulator::new(&f.ctx, f.ctx.max_level()).unwrap();
    let mut want = vec![0u128; 8192];
    for i in 0..3 {
        acc.add_product(&ops[2 * i], &ops[2 * i + 1]).unwrap();
        for (w, (&x, &y)) in want.iter_mut().zip(vs[2 * i].iter().zip(&vs[2 * i + 1])) {
            *w = (*w + x as u128 * y as u128) % tm;
        }
    }
    let e = BfvEncoder::new(&f.ctx).unwrap();
    let pt = e.encode(&vs[1]).unwrap();
    acc.add_plain_product(&cts[0], &pt).unwrap();
    for (w, (&x, &y)) in want.iter_mut().zip(vs[0].iter().zip(&vs[1])) {
        *w = (*w + x as u128 * y as u128) % tm;
    }
    let out = acc.finish(&f.ev, &f.rk).unwrap();
    let want: Vec<u64> = want.into_iter().map(|w| w as u64).collect();
    assert_eq!(dec(&out), want);
}

#[test]
fn signed_encoding_and_modulus_switching() {
    let f = bfv();
    let e = BfvEncoder::new(&f.ctx).unwrap();
    let v: Vec<i64> = (0..8192).map(|i| (i as i64 - 4096) * 1000).collect();
    let ct = f.sk.encrypt(&f.ctx, &e.encode_signed(&v).unwrap()).unwrap();
    let fresh = f.sk.noise_budget(&f.ctx, &ct).unwrap();
    assert!(fresh > 80.0, "fresh budget {fresh}");
    let down = f.ev.mod_switch_down(&ct).unwrap();
    assert_eq!(down.level(), ct.level() - 1);
    assert_eq!(
        e.decode_signed(&f.sk.decrypt(&f.ctx, &down).unwrap())
            .unwrap(),
        v
    );
    assert!(e.encode(&[t()]).is_err());
    assert!(e.encode(&vec![0; 8193]).is_err());
}

#[test]
fn independent_key_generations_differ() {
    let f = bfv();
    let sk2 = SecretKey::generate(&f.ctx).unwrap();
    let e = BfvEncoder::new(&f.ctx).unwrap();
    let v = random_vec(5);
    let ct = sk2.encrypt(&f.ctx, &e.encode(&v).unwrap()).unwrap();
    assert_ne!(
        dec(&ct),
        v,
        "a second secret key must not decrypt the first one's ciphertexts"
    );
    assert_eq!(e.decode(&sk2.decrypt(&f.ctx, &ct).unwrap()).unwrap(), v);
    let pk2 = PublicKey::generate(&f.ctx, &f.sk).unwrap();
    assert_ne!(pk2, f.pk);
}

#[test]
fn accumulator_capacity_is_derived_from_the_primes() {
    // Floors of (R·(1 − |R|·2^-49) − 2) / (t·N·Q_level), the worst case of the inputs (see
    // ProductAccumulator's documentation), checked against an exact big-integer evaluation.
    let f = bfv();
    let top = ProductAccumulator::new(&f.ctx, f.ctx.max_level()).unwrap();
    let bottom = ProductAccumulator::new(&f.ctx, 0).unwrap();
    eprintln!("bfv-8192: capacity {} at the top level", top.capacity());
    assert_eq!(top.capacity(), 257);
    // two primes fewer: 2^100 times more, saturated
    assert_eq!(bottom.capacity(), usize::MAX);
    // the 8192 and 16384 presets sum their products natively (tests/native_products.rs);
    // their extended form keeps a derived capacity
    for (preset, top_capacity) in [("bfv-4096", None), ("bfv-16384", Some(630))] {
        let ctx = Context::preset(preset).unwrap();
        let cap = ProductAccumulator::new(&ctx, ctx.max_level())
            .unwrap()
            .capacity();
        eprintln!(
            "{preset}: capacity 2^{:.2} at the top level",
            (cap as f64).log2()
        );
        match top_capacity {
            Some(c) => assert_eq!(cap, c, "{preset}"),
            None => assert!(cap > 1 << 49, "{preset}: {cap}"),
        }
    }
    let ckks = Context::preset("ckks-8192").unwrap();
    assert_eq!(
        ProductAccumulator::new(&ckks, 1).unwrap().capacity(),
        usize::MAX
    );
}

#[test]
fn accumulator_past_its_capacity_is_an_error() {
    let f = bfv();
    let vs: Vec<Vec<u64>> = (0..2).map(|i| random_vec(77 + i)).collect();
    let ops: Vec<ProductOperand> = vs
        .iter()
        .map(|v| f.ev.prepare_product(&enc(v)).unwrap())
        .collect();
    let mut acc = ProductAccumulator::with_capacity(&f.ctx, f.ctx.max_level(), 3).unwrap();
    assert_eq!(acc.capacity(), 3);
    for _ in 0..3 {
        acc.add_product(&ops[0], &ops[1]).unwrap();
    }
    assert_eq!(acc.products(), 3);
    assert_eq!(
        acc.add_product(&ops[0], &ops[1]),
        Err(HeError::AccumulatorFull { capacity: 3 })
    );
    // the refused product left the sum untouched: 3·a·b
    let tm = t() as u128;
    let want: Vec<u64> = vs[0]
        .iter()
        .zip(&vs[1])
        .map(|(&x, &y)| (3 * (x as u128 * y as u128 % tm) % tm) as u64)
        .collect();
    assert_eq!(dec(&acc.finish(&f.ev, &f.rk).unwrap()), want);
    // a larger request is lowered to the derived bound
    let big = ProductAccumulator::with_capacity(&f.ctx, 0, usize::MAX).unwrap();
    assert_eq!(
        big.capacity(),
        ProductAccumulator::new(&f.ctx, 0).unwrap().capacity()
    );
    let msg = HeError::AccumulatorFull { capacity: 3 }.to_string();
    assert!(msg.contains("start another accumulator"), "{msg}");
}

/// `a · b mod (X^N + 1, t)`, the slow way.
fn negacyclic(a: &[u64], b: &[u64], t: u64) -> Vec<u64> {
    let n = a.len();
    let mut out = vec![0u128; n];
    let tm = t as u128;
    for (i, &x) in a.iter().enumerate() {
        if x == 0 {
            continue;
        }
        for (j, &y) in b.iter().enumerate() {
            let p = x as u128 * y as u128 % tm;
            let k = i + j;
            if k < n {
                out[k] = (out[k] + p) % tm;
            } else {
                out[k - n] = (out[k - n] + tm - p) % tm;
            }
        }
    }
    out.into_iter().map(|v| v as u64).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Coefficient encoding: a round trip through encryption, and a product with a sparse
    /// plaintext (monomials, as private retrieval's selections are) is the negacyclic
    /// convolution.
    #[test]
    fn coefficient_encoding_round_trips_and_multiplies_negacyclically(
        seed in any::<u64>(),
        terms in proptest::collection::vec((0usize..8192, 1u64..65537), 1..4),
    ) {
        let f = bfv();
        let e = BfvEncoder::new(&f.ctx).unwrap();
        let t = t();
        let v = random_vec(seed);
        let pt = e.encode_coefficients(&v).unwrap();
        prop_assert_eq!(e.decode_coefficients(&pt).unwrap(), v.clone());
        let ct = f.sk.encrypt(&f.ctx, &pt).unwrap();
        let back = e.decode_coefficients(&f.sk.decrypt(&f.ctx, &ct).unwrap()).unwrap();
        prop_assert_eq!(&back, &v);
        let mut sparse = vec![0u64; 8192];
        for (i, c) in terms {
            sparse[i] = c % t;
        }
        let product = f.ev.mul_plain(&ct, &e.encode_coefficients(&sparse).unwrap()).unwrap();
        let got = e.decode_coefficients(&f.sk.decrypt(&f.ctx, &product).unwrap()).unwrap();
        prop_assert_eq!(got, negacyclic(&v, &sparse, t));
        // values at or above t, or too many, are refused
        prop_assert!(e.encode_coefficients(&[t]).is_err());
        prop_assert!(e.encode_coefficients(&vec![0; 8193]).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    /// `X -> X^g` on a coefficient-encoded message: coefficient `i` moves to `i·g mod 2N`,
    /// negated when that passes N (as query expansion needs for `g = N/2^j + 1`).
    #[test]
    fn substitution_permutes_coefficients(seed in any::<u64>(), j in 0u32..13) {
        let f = bfv();
        let e = BfvEncoder::new(&f.ctx).unwrap();
        let (n, t) = (8192u64, t());
        let g = n / (1 << j) + 1;
        let keys = GaloisKeys::for_elements(&f.ctx, &f.sk, &[g]).unwrap();
        let v = random_vec(seed);
        let ct = f.sk.encrypt(&f.ctx, &e.encode_coefficients(&v).unwrap()).unwrap();
        let out = f.ev.substitute(&ct, g, &keys).unwrap();
        let got = e.decode_coefficients(&f.sk.decrypt(&f.ctx, &out).unwrap()).unwrap();
        let mut want = vec![0u64; n as usize];
        for (i, &c) in v.iter().enumerate() {
            let k = (i as u64 * g) % (2 * n);
            if k < n {
                want[k as usize] = c;
            } else {
                want[(k - n) as usize] = (t - c) % t;
            }
        }
        prop_assert_eq!(got, want);
        // an element without its key is an error
        prop_assert!(f.ev.substitute(&ct, g + 2, &keys).is_err());
    }
}
