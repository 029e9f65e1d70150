//! Runs one operation in a loop, for profiling: `cargo run --release -p blindsight-he
//! --example profile_ops -- <preset> <op> <iterations>` with op one of rotate_hoisted,
//! relin, mul, rotate.
#![allow(clippy::unwrap_used, clippy::panic, reason = "profiling harness")]

use blindsight_he::*;

/// The allocator of the blindsight binaries: glibc's default returns large freed blocks
/// to the OS, so every fresh 64 KiB-residue buffer page-faults again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map_or("ckks-8192", |s| s.as_str());
    let op = args.get(2).map_or("rotate_hoisted", |s| s.as_str());
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let ctx = Context::preset(preset).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let gk = GaloisKeys::generate(&ctx, &sk, &[1], false).unwrap();
    let ev = Evaluator::new(&ctx);
    let pt = match ctx.scheme() {
        Scheme::Bfv => BfvEncoder::new(&ctx).unwrap().encode(&[1, 2, 3]).unwrap(),
        _ => {
            let e = CkksEncoder::new(&ctx).unwrap();
            e.encode(&[0.5, 0.25], e.default_scale(), ctx.max_level())
                .unwrap()
        }
    };
    let ct = sk.encrypt(&ctx, &pt).unwrap();
    let ct3 = ev.multiply(&ct, &ct).unwrap();
    let h = ev.hoist(&ct).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..iters {
        match op {
            "rotate_hoisted" => drop(ev.rotate_hoisted(&h, 1, &gk).unwrap()),
            "rotate" => drop(ev.rotate(&ct, 1, &gk).unwrap()),
            "hoist" => drop(ev.hoist(&ct).unwrap()),
            "relin" => drop(ev.relinearize(&ct3, &rk).unwrap()),
            "mul" => drop(ev.multiply(&ct, &ct).unwrap()),
            "encrypt" => drop(sk.encrypt(&ctx, &pt).unwrap()),
            other => panic!("unknown op {other}"),
        }
    }
    println!(
        "{op}: {:.1} µs/iter",
        start.elapsed().as_secs_f64() * 1e6 / iters as f64
    );
}
