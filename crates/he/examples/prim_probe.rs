//! Micro-timings of the NTT-level primitives (for profiling).
#![allow(clippy::unwrap_used, reason = "profiling harness")]
use blindsight_he::math::ntt::{Prime, permute};
use blindsight_he::math::primes::ntt_primes;
use std::time::Instant;

fn time(label: &str, iters: usize, mut f: impl FnMut()) {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    println!(
        "{label}: {:.2} µs",
        t.elapsed().as_secs_f64() * 1e6 / iters as f64
    );
}

fn main() {
    let n = 8192;
    for bits in [50u32, 60] {
        let p = ntt_primes(&[bits], n, &mut Vec::new()).unwrap()[0];
        let prime = Prime::new(p, n).unwrap();
        let a: Vec<u64> = (0..n as u64)
            .map(|i| (i * 0x9E37_79B9_7F4A_7C15) % p)
            .collect();
        let b: Vec<u64> = (0..n as u64)
            .map(|i| (i * 0x1234_5678_9abc_def1) % p)
            .collect();
        let mut acc = vec![0u64; n];
        let mut buf = a.clone();
        let perm: Vec<u32> = (0..n as u32).map(|i| (i * 3 + 7) % n as u32).collect();
        println!("-- {bits}-bit prime");
        time("forward ntt", 5000, || prime.forward(&mut buf));
        time("backward ntt", 5000, || prime.backward(&mut buf));
        time("mul_acc", 5000, || prime.mul_acc(&mut acc, &a, &b));
        time("mul_assign", 5000, || prime.mul_assign(&mut buf, &b));
        time("mul_const_assign", 5000, || {
            prime.mul_const_assign(&mut buf, 12345)
        });
        time("permute", 5000, || permute(&mut acc, &a, &perm));
        time("scalar add loop", 5000, || {
            for (x, &y) in buf.iter_mut().zip(&b) {
                *x = prime.m.add(*x, y);
            }
        });
    }
}
