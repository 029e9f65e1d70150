//! Times the pieces of a query expansion (development aid).
#![allow(clippy::unwrap_used, reason = "example")]
use blindsight_he::{BfvEncoder, Context, Evaluator, SecretKey};
use blindsight_pir::QueryKeys;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let ctx = Context::preset(blindsight_pir::params::PRESET).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let keys = QueryKeys::generate(&ctx, &sk).unwrap();
    let ev = Evaluator::new(&ctx);
    let enc = BfvEncoder::new(&ctx).unwrap();
    let ct = sk
        .encrypt(&ctx, &enc.encode_coefficients(&[1, 2, 3]).unwrap())
        .unwrap();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        ev.substitute(&ct, 4097, &keys.galois).unwrap();
    }
    println!(
        "substitute level 2: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let mut coeffs = vec![0u64; 4096];
    coeffs[4000] = 65536;
    let pt = enc.encode_coefficients(&coeffs).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        ev.mul_plain(&ct, &pt).unwrap();
    }
    println!(
        "mul_plain level 2: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        ev.add(&ct, &ct).unwrap();
    }
    println!(
        "add level 2: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    let m = 1024;
    let leaves = blindsight_pir::expand::expand(&ev, &keys.galois, &ct, m).unwrap();
    println!(
        "expand {m}: {:.1} µs per leaf",
        t.elapsed().as_secs_f64() * 1e6 / m as f64
    );
    let t = Instant::now();
    for l in &leaves[..200] {
        ev.mod_switch_to(l, 1).unwrap();
    }
    println!(
        "mod switch: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / 200.0
    );
    let t = Instant::now();
    for pair in leaves[..200].chunks(2) {
        ev.rgsw_from_rows(pair, &keys.relin).unwrap();
    }
    println!("rgsw: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / 100.0);
}
