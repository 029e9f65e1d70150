//! Criterion benchmarks of every core operation at N = 8192, single thread, both schemes.
//! Run: `cargo bench -p blindsight-he --bench ops` (`BLINDSIGHT_BENCH_PRESETS=bfv-4096` for
//! other presets). Serialized sizes are printed first.
#![allow(clippy::unwrap_used, missing_docs, reason = "benchmark harness")]

use blindsight_he::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

/// The allocator of the blindsight binaries: glibc's default returns large freed blocks
/// to the OS, so every fresh 64 KiB-residue buffer page-faults again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Setup {
    name: &'static str,
    ctx: Context,
    sk: SecretKey,
    pk: PublicKey,
    rk: RelinKey,
    gk: GaloisKeys,
    ev: Evaluator,
    pt: Plaintext,
    ct: Ciphertext,
    ct2: Ciphertext,
}

fn setup(name: &'static str) -> Setup {
    let ctx = Context::preset(name).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let pk = PublicKey::generate(&ctx, &sk).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let steps: Vec<i64> = (1..=64).collect();
    let gk = GaloisKeys::generate(&ctx, &sk, &steps, true).unwrap();
    let ev = Evaluator::new(&ctx);
    let pt = encode(&ctx, 1);
    let ct = sk.encrypt(&ctx, &pt).unwrap();
    let ct2 = sk.encrypt(&ctx, &encode(&ctx, 2)).unwrap();
    Setup {
        name,
        ctx,
        sk,
        pk,
        rk,
        gk,
        ev,
        pt,
        ct,
        ct2,
    }
}

fn encode(ctx: &Context, seed: u64) -> Plaintext {
    match ctx.scheme() {
        Scheme::Bfv => {
            let v: Vec<u64> = (0..ctx.degree() as u64).map(|i| (i * seed) % 256).collect();
            BfvEncoder::new(ctx).unwrap().encode(&v).unwrap()
        }
        _ => {
            let e = CkksEncoder::new(ctx).unwrap();
            let v: Vec<f64> = (0..ctx.slots())
                .map(|i| ((i as u64 * seed) % 256) as f64 / 256.0)
                .collect();
            e.encode(&v, e.default_scale(), ctx.max_level()).unwrap()
        }
    }
}

fn print_sizes(s: &Setup) {
    let mut full = s.ct.clone();
    full.drop_seed();
    let seeded = s.ct.to_bytes(&s.ctx).unwrap().len();
    let full_len = full.to_bytes(&s.ctx).unwrap().len();
    let one_galois = GaloisKeys::generate(&s.ctx, &s.sk, &[1], false).unwrap();
    println!(
        "sizes {}: ciphertext seeded {} B, full {} B (ratio {:.4}); public key {} B; \
         relin key {} B; one Galois key {} B; secret key {} B",
        s.name,
        seeded,
        full_len,
        seeded as f64 / full_len as f64,
        s.pk.to_bytes(&s.ctx).unwrap().len(),
        s.rk.to_bytes(&s.ctx).unwrap().len(),
        one_galois.to_bytes(&s.ctx).unwrap().len(),
        s.sk.to_bytes(&s.ctx).unwrap().len(),
    );
}

fn bench_scheme(c: &mut Criterion, s: &Setup) {
    print_sizes(s);
    let mut g = c.benchmark_group(s.name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let ctx = &s.ctx;
    g.bench_function("keygen_public", |b| {
        b.iter(|| PublicKey::generate(ctx, &s.sk).unwrap())
    });
    g.bench_function("keygen_relin", |b| {
        b.iter(|| RelinKey::generate(ctx, &s.sk).unwrap())
    });
    g.bench_function("keygen_one_galois", |b| {
        b.iter(|| GaloisKeys::generate(ctx, &s.sk, &[1], false).unwrap())
    });
    match ctx.scheme() {
        Scheme::Bfv => {
            let e = BfvEncoder::new(ctx).unwrap();
            let v: Vec<u64> = (0..ctx.degree() as u64).map(|i| (i * 3) % 256).collect();
            g.bench_function("encode", |b| b.iter(|| e.encode(black_box(&v)).unwrap()));
        }
        _ => {
            let e = CkksEncoder::new(ctx).unwrap();
            let v: Vec<f64> = (0..ctx.slots())
                .map(|i| ((i * 3) % 256) as f64 / 256.0)
                .collect();
            g.bench_function("encode", |b| {
                b.iter(|| {
                    e.encode(black_box(&v), e.default_scale(), ctx.max_level())
                        .unwrap()
                })
            });
        }
    }
    g.bench_function("encrypt_sk", |b| {
        b.iter(|| s.sk.encrypt(ctx, &s.pt).unwrap())
    });
    g.bench_function("encrypt_pk", |b| {
        b.iter(|| s.pk.encrypt(ctx, &s.pt).unwrap())
    });
    match ctx.scheme() {
        Scheme::Bfv => {
            let e = BfvEncoder::new(ctx).unwrap();
            g.bench_function("decrypt_decode", |b| {
                b.iter(|| e.decode(&s.sk.decrypt(ctx, &s.ct).unwrap()).unwrap())
            });
        }
        _ => {
            let e = CkksEncoder::new(ctx).unwrap();
            g.bench_function("decrypt_decode", |b| {
                b.iter(|| s.sk.decrypt_complex(ctx, &e, &s.ct).unwrap())
            });
        }
    }
    g.bench_function("add", |b| b.iter(|| s.ev.add(&s.ct, &s.ct2).unwrap()));
    g.bench_function("mul_plain", |b| {
        b.iter(|| s.ev.mul_plain(&s.ct, &s.pt).unwrap())
    });
    g.bench_function("mul_ct_tensor", |b| {
        b.iter(|| s.ev.multiply(&s.ct, &s.ct2).unwrap())
    });
    let ct3 = s.ev.multiply(&s.ct, &s.ct2).unwrap();
    g.bench_function("relinearize", |b| {
        b.iter(|| s.ev.relinearize(&ct3, &s.rk).unwrap())
    });
    let prod = s.ev.relinearize(&ct3, &s.rk).unwrap();
    match ctx.scheme() {
        Scheme::Ckks => g.bench_function("rescale", |b| b.iter(|| s.ev.rescale(&prod).unwrap())),
        _ => g.bench_function("mod_switch_down", |b| {
            b.iter(|| s.ev.mod_switch_down(&prod).unwrap())
        }),
    };
    g.bench_function("rotate", |b| {
        b.iter(|| s.ev.rotate(&s.ct, 1, &s.gk).unwrap())
    });
    // private retrieval's fold: an RGSW ciphertext (of zero; the cost is the same) for
    // ciphertexts one level below the top, its row 1 derived with the relinearization key
    if ctx.scheme() == Scheme::Bfv && ctx.max_level() >= 1 {
        let top = ctx.max_level();
        let zeros: Vec<Vec<u64>> = (0..=top).map(|_| vec![0; ctx.degree()]).collect();
        let row0: Vec<_> = (0..top)
            .map(|_| s.sk.encrypt_raw(ctx, top, &zeros).unwrap())
            .collect();
        let rgsw = s.ev.rgsw_from_rows(&row0, &s.rk).unwrap();
        let low = s.ev.mod_switch_to(&s.ct, top - 1).unwrap();
        g.bench_function("external_product", |b| {
            b.iter(|| s.ev.external_product(&low, &rgsw).unwrap())
        });
    }
    g.bench_function("hoist_decompose", |b| b.iter(|| s.ev.hoist(&s.ct).unwrap()));
    let h = s.ev.hoist(&s.ct).unwrap();
    g.bench_function("rotate_from_hoisted", |b| {
        b.iter(|| s.ev.rotate_hoisted(&h, 1, &s.gk).unwrap())
    });
    g.bench_function("rotate_64_hoisted", |b| {
        b.iter(|| {
            let h = s.ev.hoist(&s.ct).unwrap();
            (1..=64)
                .map(|k| s.ev.rotate_hoisted(&h, k, &s.gk).unwrap())
                .collect::<Vec<_>>()
        })
    });
    // the response's last step: switch to the subring's secret, project, round
    let log_d = ring_switch::max_response_log_d(ctx, 0);
    let response = ResponseSecretKey::generate(ctx, log_d).unwrap();
    let rsk = RingSwitchKey::generate(ctx, &s.sk, &response, 0, 4).unwrap();
    let low = s.ev.mod_switch_to(&s.ct, 0).unwrap();
    // the search's rounding (32 and 38 bits) needs its presets' q_0; others skip it
    if s.ev.ring_switch(&low, &rsk, log_d, [32, 38]).is_ok() {
        g.bench_function("ring_switch_to_subring", |b| {
            b.iter(|| s.ev.ring_switch(&low, &rsk, log_d, [32, 38]).unwrap())
        });
    }
    let bytes = s.ct.to_bytes(ctx).unwrap();
    g.bench_function("serialize_ct", |b| b.iter(|| s.ct.to_bytes(ctx).unwrap()));
    g.bench_function("deserialize_ct_seeded", |b| {
        b.iter(|| Ciphertext::from_bytes(ctx, &bytes).unwrap())
    });
    g.bench_function("prepare_product_operand", |b| {
        b.iter(|| s.ev.prepare_product(&s.ct).unwrap())
    });
    let (pa, pb) = (
        s.ev.prepare_product(&s.ct).unwrap(),
        s.ev.prepare_product(&s.ct2).unwrap(),
    );
    g.bench_function("accumulate_one_product", |b| {
        b.iter_batched(
            || ProductAccumulator::new(ctx, ctx.max_level()).unwrap(),
            |mut acc| {
                acc.add_product(&pa, &pb).unwrap();
                acc
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The presets measured: `BLINDSIGHT_BENCH_PRESETS` (comma-separated), else the search's
/// two (e.g. `BLINDSIGHT_BENCH_PRESETS=bfv-4096` for private retrieval's ring).
fn benches(c: &mut Criterion) {
    let names =
        std::env::var("BLINDSIGHT_BENCH_PRESETS").unwrap_or_else(|_| "ckks-8192,bfv-8192".into());
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let s = setup(name);
        bench_scheme(c, &s);
    }
}

criterion_group!(ops, benches);
criterion_main!(ops);
