//! Criterion benchmark of the lazy tensor-product kernel (`he::math::kernels`) at
//! N = 8192 on one 50-bit prime: 32 tensor products (4 multiply-accumulates each) then the
//! reduction, on the portable path and the IFMA path (if the CPU has it), each both as 32
//! `LazyTensor::add` calls (`lazy_*`) and as one `LazyTensor::add_batch` of the 32 products
//! (`lazy_batch_*`), and for comparison tfhe-ntt's per-product `mul_accumulate`
//! (`Prime::mul_acc`, reduced after every product); and on a 20-bit prime, `add_batch`
//! against `add_batch_narrow` (gallery residues as `u32`).
//! Private retrieval's first dimension (`narrow_products`, `pir-4096`): one batch of 1 024
//! products as `answer` issues them (128 records × 4 buckets × 2 plaintexts, 256 selectors,
//! 64 sums), one record plaintext loaded (lift, two 32-bit NTTs, packing; random words, as
//! sealed records are), and a whole batch (its 256 plaintexts loaded, then its products).
//! Run: `cargo bench -p blindsight-he --bench kernels`.
#![allow(clippy::unwrap_used, missing_docs, reason = "benchmark harness")]

use blindsight_he::math::kernels::{KernelPath, LazyTensor, NarrowPair, TensorPair, detected_path};
use blindsight_he::math::ntt::Prime;
use blindsight_he::math::primes::ntt_primes;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 8192;
const PRODUCTS: usize = 32;

/// 32 distinct operand sets (g0, g1, q0, q1) below `p`, so the kernel streams its inputs
/// (8 MiB in all) as it would over a gallery.
fn operands(p: u64) -> Vec<[Vec<u64>; 4]> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % p
    };
    (0..PRODUCTS)
        .map(|_| std::array::from_fn(|_| (0..N).map(|_| next()).collect()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let p = ntt_primes(&[50], N, &mut Vec::new()).unwrap()[0];
    let ops = operands(p);
    let mut d0 = vec![0u64; N];
    let mut d1 = vec![0u64; N];
    let mut d2 = vec![0u64; N];

    let mut group = c.benchmark_group("tensor_acc_32_n8192_p50");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut paths = vec![KernelPath::Portable];
    if detected_path() == KernelPath::Ifma {
        paths.push(KernelPath::Ifma);
    } else {
        println!("no AVX-512 IFMA on this CPU: the Ifma variant is not measured");
    }
    for &path in &paths {
        let mut lazy = LazyTensor::new(p, N, path).unwrap();
        group.bench_function(format!("lazy_{path:?}"), |b| {
            b.iter(|| {
                lazy.clear();
                for [g0, g1, q0, q1] in &ops {
                    lazy.add(g0, g1, q0, q1).unwrap();
                }
                lazy.finish(&mut d0, &mut d1, &mut d2).unwrap();
                black_box((&d0, &d1, &d2));
            })
        });
    }
    let pairs: Vec<TensorPair<'_>> = ops
        .iter()
        .map(|[g0, g1, q0, q1]| ([&g0[..], &g1[..]], [&q0[..], &q1[..]]))
        .collect();
    for path in paths {
        let mut lazy = LazyTensor::new(p, N, path).unwrap();
        group.bench_function(format!("lazy_batch_{path:?}"), |b| {
            b.iter(|| {
                lazy.clear();
                lazy.add_batch(&pairs).unwrap();
                lazy.finish(&mut d0, &mut d1, &mut d2).unwrap();
                black_box((&d0, &d1, &d2));
            })
        });
    }

    let prime = Prime::new(p, N).unwrap();
    group.bench_function("per_product_mul_acc", |b| {
        b.iter(|| {
            d0.fill(0);
            d1.fill(0);
            d2.fill(0);
            for [g0, g1, q0, q1] in &ops {
                prime.mul_acc(&mut d0, g0, q0);
                prime.mul_acc(&mut d1, g0, q1);
                prime.mul_acc(&mut d1, g1, q0);
                prime.mul_acc(&mut d2, g1, q1);
            }
            black_box((&d0, &d1, &d2));
        })
    });
    group.finish();
}

/// The same 32 products on a 20-bit prime (the small prime of the CKKS presets), the
/// gallery side as `u64` words (`add_batch`) and as `u32` words (`add_batch_narrow`), on
/// the detected path.
fn bench_narrow(c: &mut Criterion) {
    let p = ntt_primes(&[20], N, &mut Vec::new()).unwrap()[0];
    let ops = operands(p);
    let narrow: Vec<[Vec<u32>; 2]> = ops
        .iter()
        .map(|[g0, g1, ..]| [g0, g1].map(|g| g.iter().map(|&x| x as u32).collect()))
        .collect();
    let wide_pairs: Vec<TensorPair<'_>> = ops
        .iter()
        .map(|[g0, g1, q0, q1]| ([&g0[..], &g1[..]], [&q0[..], &q1[..]]))
        .collect();
    let narrow_pairs: Vec<NarrowPair<'_>> = ops
        .iter()
        .zip(&narrow)
        .map(|([_, _, q0, q1], [g0, g1])| ([&g0[..], &g1[..]], [&q0[..], &q1[..]]))
        .collect();
    let (mut d0, mut d1, mut d2) = (vec![0u64; N], vec![0u64; N], vec![0u64; N]);
    let mut group = c.benchmark_group("tensor_acc_32_n8192_p20");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let path = detected_path();
    let mut lazy = LazyTensor::new(p, N, path).unwrap();
    group.bench_function(format!("lazy_batch_{path:?}"), |b| {
        b.iter(|| {
            lazy.clear();
            lazy.add_batch(&wide_pairs).unwrap();
            lazy.finish(&mut d0, &mut d1, &mut d2).unwrap();
            black_box((&d0, &d1, &d2));
        })
    });
    group.bench_function(format!("lazy_batch_narrow_{path:?}"), |b| {
        b.iter(|| {
            lazy.clear();
            lazy.add_batch_narrow(&narrow_pairs).unwrap();
            lazy.finish(&mut d0, &mut d1, &mut d2).unwrap();
            black_box((&d0, &d1, &d2));
        })
    });
    group.finish();
}

/// The building blocks of a key switch at N = 8192 on a 50-bit prime: forward and inverse
/// NTT (tfhe-ntt) and one pointwise multiply-accumulate, the unit costs of the key-switching
/// figures of BENCHMARKS.md.
fn bench_ntt(c: &mut Criterion) {
    let p = ntt_primes(&[50], N, &mut Vec::new()).unwrap()[0];
    let prime = Prime::new(p, N).unwrap();
    let ops = operands(p);
    let mut a = ops[0][0].clone();
    let mut acc = vec![0u64; N];
    let mut group = c.benchmark_group("ntt_n8192_p50");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    group.bench_function("forward", |b| b.iter(|| prime.forward(black_box(&mut a))));
    group.bench_function("backward", |b| b.iter(|| prime.backward(black_box(&mut a))));
    group.bench_function("mul_acc", |b| {
        b.iter(|| prime.mul_acc(black_box(&mut acc), &ops[1][0], &ops[1][1]))
    });
    group.finish();
}

/// Private retrieval's first-dimension batch (see the module's documentation).
fn bench_first_dimension(c: &mut Criterion) {
    use blindsight_he::{
        BfvEncoder, Context, Evaluator, NarrowCiphertext, NarrowOperands, NarrowProduct,
        NarrowSelectors, NarrowSums, SecretKey, accumulate_narrow, accumulate_narrow_by_prime,
    };
    let ctx = Context::preset("pir-4096").unwrap();
    let n = ctx.degree();
    // random-looking words, as sealed records are (a regular pattern would let a branch
    // predictor learn the data)
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_word = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 48) as u16
    };
    let words: Vec<u16> = (0..n).map(|_| next_word()).collect();
    let mut operands = NarrowOperands::new(&ctx, 1, 256).unwrap();
    for i in 0..256 {
        operands.load_u16(&ctx, i, &words).unwrap();
    }
    let sk = SecretKey::generate(&ctx).unwrap();
    let pt = BfvEncoder::new(&ctx)
        .unwrap()
        .encode_coefficients(&[1])
        .unwrap();
    let ct = Evaluator::new(&ctx)
        .mod_switch_to(&sk.encrypt(&ctx, &pt).unwrap(), 1)
        .unwrap();
    let selectors = NarrowSelectors::new(
        &ctx,
        1,
        (0..256).map(|_| NarrowCiphertext::new(&ctx, &ct).unwrap()),
    )
    .unwrap();
    let mut sums = NarrowSums::new(&ctx, 1, 64).unwrap();
    let mut products = Vec::new();
    for record in 0..128usize {
        let (row, col) = (record / 8, (record / 4) % 2);
        for k in 0..4usize {
            let bucket = (record * 5 + k * 3) % 16;
            for part in 0..2usize {
                products.push(NarrowProduct {
                    acc: (col * 16 + bucket) * 2 + part,
                    selector: row * 16 + bucket,
                    operand: record * 2 + part,
                });
            }
        }
    }
    let mut group = c.benchmark_group("pir_first_dimension_n4096");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("batch_1024_products", |b| {
        b.iter(|| accumulate_narrow(&ctx, &mut sums, &selectors, &operands, &products).unwrap())
    });
    // the same products on a few objects that stay in the cache: the arithmetic alone
    let cached: Vec<NarrowProduct> = products
        .iter()
        .map(|p| NarrowProduct {
            acc: p.acc % 8,
            selector: p.selector % 16,
            operand: p.operand % 32,
        })
        .collect();
    group.bench_function("cached_1024_products", |b| {
        b.iter(|| accumulate_narrow(&ctx, &mut sums, &selectors, &operands, &cached).unwrap())
    });
    group.bench_function("load_record_plaintext", |b| {
        b.iter(|| operands.load_u16(&ctx, 0, black_box(&words)).unwrap())
    });
    // a batch as the first dimension runs it: 256 plaintexts of records not in cache
    // loaded (lift, NTTs, packing), then their 1 024 products
    let db: Vec<u16> = (0..16 * 1024 * 1024).map(|_| next_word()).collect();
    let mut at = 0usize;
    group.bench_function("batch_256_loads_1024_products", |b| {
        b.iter(|| {
            for i in 0..256 {
                at = (at + 1) % (db.len() / n);
                let src = &db[at * n..][..n];
                operands.load_u16(&ctx, i, black_box(src)).unwrap();
            }
            accumulate_narrow(&ctx, &mut sums, &selectors, &operands, &products).unwrap()
        })
    });
    // as the first dimension runs it now: one prime at a time
    let mut one_prime = NarrowOperands::one_prime(&ctx, 1, 256).unwrap();
    group.bench_function("batch_256_loads_1024_products_by_prime", |b| {
        b.iter(|| {
            accumulate_narrow_by_prime(
                &ctx,
                &mut sums,
                &selectors,
                &mut one_prime,
                &products,
                |ops| {
                    for i in 0..256 {
                        at = (at + 1) % (db.len() / n);
                        ops.load_u16(&ctx, i, black_box(&db[at * n..][..n]))?;
                    }
                    Ok(())
                },
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench,
    bench_narrow,
    bench_ntt,
    bench_first_dimension
);
criterion_main!(benches);
