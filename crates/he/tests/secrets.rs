//! Nothing secret-derived stays behind in the thread-local NTT scratch buffer: key
//! generation computes `a·s` in it, encryption `a·s` again, decryption `s²`. Each test runs
//! on its own thread, so the buffer inspected is the one those operations used.
#![allow(clippy::unwrap_used, reason = "tests")]

use blindsight_he::math::ntt::{scratch_is_clear, scratch_len};
use blindsight_he::*;

fn assert_clear(step: &str, n: usize) {
    assert!(
        scratch_len() >= n,
        "{step}: the scratch buffer was not used"
    );
    assert!(
        scratch_is_clear(),
        "{step}: secret-derived data left in the scratch buffer"
    );
}

#[test]
fn scratch_is_clear_after_bfv_keygen_encryption_and_decryption() {
    let ctx = Context::preset("bfv-4096").unwrap();
    let n = ctx.degree();
    assert_eq!(scratch_len(), 0, "fresh thread");
    let sk = SecretKey::generate(&ctx).unwrap();
    assert!(scratch_is_clear());
    let pk = PublicKey::generate(&ctx, &sk).unwrap();
    assert_clear("public key", n);
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    assert_clear("relinearization key", n);
    let gk = GaloisKeys::generate(&ctx, &sk, &[1, -1], true).unwrap();
    assert_clear("Galois keys", n);
    let enc = BfvEncoder::new(&ctx).unwrap();
    let pt = enc.encode(&[1, 2, 3]).unwrap();
    let ct = sk.encrypt(&ctx, &pt).unwrap();
    assert_clear("secret-key encryption", n);
    let ct_pk = pk.encrypt(&ctx, &pt).unwrap();
    assert_clear("public-key encryption", n);
    let ev = Evaluator::new(&ctx);
    let prod = ev.multiply(&ct, &ct_pk).unwrap();
    assert_eq!(prod.size(), 3);
    // a 3-polynomial ciphertext: decryption computes s² in the scratch buffer
    let out = enc.decode(&sk.decrypt(&ctx, &prod).unwrap()).unwrap();
    assert_eq!(&out[..3], &[1, 4, 9]);
    assert_clear("decryption", n);
    assert!(sk.noise_budget(&ctx, &prod).unwrap() > 0.0);
    assert_clear("noise budget", n);
    let rotated = ev
        .rotate(&ev.relinearize(&prod, &rk).unwrap(), 1, &gk)
        .unwrap();
    assert_eq!(
        &enc.decode(&sk.decrypt(&ctx, &rotated).unwrap()).unwrap()[..2],
        &[4, 9]
    );
    assert_clear("evaluation and decryption", n);
    let bytes = sk.to_bytes(&ctx).unwrap();
    let _restored = SecretKey::from_bytes(&ctx, &bytes).unwrap();
    assert_clear("secret key round trip", n);
}

#[test]
fn scratch_is_clear_after_ckks_keygen_encryption_and_flooded_decryption() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let n = ctx.degree();
    let sk = SecretKey::generate(&ctx).unwrap();
    let pk = PublicKey::generate(&ctx, &sk).unwrap();
    assert_clear("public key", n);
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    assert_clear("relinearization key", n);
    let enc = CkksEncoder::new(&ctx).unwrap();
    let pt = enc
        .encode(&[0.25, -0.5], enc.default_scale(), ctx.max_level())
        .unwrap();
    let ct = sk.encrypt(&ctx, &pt).unwrap();
    let ct_pk = pk.encrypt(&ctx, &pt).unwrap();
    assert_clear("encryption", n);
    let ev = Evaluator::new(&ctx);
    let prod = ev.multiply(&ct, &ct_pk).unwrap();
    // a 3-polynomial ciphertext: decryption computes s² in the scratch buffer
    let got = sk.decrypt_complex(&ctx, &enc, &prod).unwrap();
    assert!((got[1].re - 0.25).abs() < 1e-4, "{:?}", got[1]);
    assert_clear("decryption", n);
    let _ = enc.decode(&sk.decrypt(&ctx, &prod).unwrap()).unwrap();
    assert_clear("decryption to a plaintext", n);
    let response = ev.rescale(&ev.relinearize(&prod, &rk).unwrap()).unwrap();
    let flooding = NoiseFlooding::for_slot_sigma(&ctx, response.scale(), 1e-6).unwrap();
    let got = sk
        .decrypt_complex_flooded(&ctx, &enc, &response, &flooding)
        .unwrap();
    assert!((got[1].re - 0.25).abs() < 1e-4, "{:?}", got[1]);
    let _ = enc
        .decode(&sk.decrypt_flooded(&ctx, &response, &flooding).unwrap())
        .unwrap();
    assert_clear("flooded decryption", n);
}
