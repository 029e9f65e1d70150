/// The names length errors give the four operands of a product.
const OPERAND_NAMES: [&str; 4] = [
    "lazy tensor operand g0",
    "lazy tensor operand g1",
    "lazy tensor operand q0",
    "lazy tensor operand q1",
];

use super::*;
use crate::math::primes::ntt_primes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// NTT primes (≡ 1 mod 16384) of 30, 33, 45 and 50 bits.
fn primes() -> Vec<u64> {
    ntt_primes(&[30, 33, 45, 50], 8192, &mut Vec::new()).unwrap()
}

/// Whether the IFMA path can run here. Fails (rather than skipping) if /proc/cpuinfo
/// lists `avx512ifma` but run-time detection does not pick IFMA, so that an IFMA test
/// never passes silently without running on an IFMA machine.
fn ifma_runs(test: &str) -> bool {
    let listed = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.contains("avx512ifma"))
        .unwrap_or(false);
    if listed {
        assert_eq!(
            detected_path(),
            KernelPath::Ifma,
            "/proc/cpuinfo lists avx512ifma but the IFMA path was not detected"
        );
    }
    if detected_path() == KernelPath::Ifma {
        eprintln!("{test}: running the IFMA path");
        true
    } else {
        eprintln!("{test}: SKIPPED the IFMA path (this CPU has no AVX-512 IFMA)");
        false
    }
}

/// A property-test runner of `cases` cases that keeps no failure files.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Sums by the definition: `u128` products reduced modulo `p` one by one.
struct Reference {
    p: u64,
    d: [Vec<u64>; 3],
}

impl Reference {
    fn new(p: u64, n: usize) -> Self {
        Self {
            p,
            d: [vec![0; n], vec![0; n], vec![0; n]],
        }
    }

    fn add(&mut self, g0: &[u64], g1: &[u64], q0: &[u64], q1: &[u64]) {
        let p = self.p as u128;
        let mul = |a: u64, b: u64| (a as u128 * b as u128 % p) as u64;
        let add = |a: u64, b: u64| ((a as u128 + b as u128) % p) as u64;
        for i in 0..g0.len() {
            self.d[0][i] = add(self.d[0][i], mul(g0[i], q0[i]));
            self.d[1][i] = add(self.d[1][i], add(mul(g0[i], q1[i]), mul(g1[i], q0[i])));
            self.d[2][i] = add(self.d[2][i], mul(g1[i], q1[i]));
        }
    }
}

fn finished(t: &LazyTensor) -> [Vec<u64>; 3] {
    let n = t.len();
    let mut d = [vec![0; n], vec![0; n], vec![0; n]];
    let [d0, d1, d2] = &mut d;
    t.finish(d0, d1, d2).unwrap();
    d
}

/// Operands of one step: uniform below `p`, or every value `p − 1` (the largest
/// products), or a mix of both per coefficient.
fn operands(rng: &mut ChaCha8Rng, p: u64, n: usize, kind: u8) -> [Vec<u64>; 4] {
    let value = |rng: &mut ChaCha8Rng| match kind {
        0 => rng.next_u64() % p,
        1 => p - 1,
        _ if rng.next_u32() & 1 == 0 => p - 1 - rng.next_u64() % 4,
        _ => rng.next_u64() % p,
    };
    std::array::from_fn(|_| (0..n).map(|_| value(rng)).collect())
}

/// Runs `steps` random steps on every path given, checking each against the reference
/// at a midpoint and at the end, and the paths' raw states against each other.
fn check(paths: &[KernelPath], p: u64, n: usize, steps: usize, kind: u8, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lazy: Vec<LazyTensor> = paths
        .iter()
        .map(|&path| LazyTensor::new(p, n, path).unwrap())
        .collect();
    let mut reference = Reference::new(p, n);
    let mut flushes = 0;
    for step in 0..steps {
        let [g0, g1, q0, q1] = operands(&mut rng, p, n, kind);
        reference.add(&g0, &g1, &q0, &q1);
        for t in &mut lazy {
            t.add(&g0, &g1, &q0, &q1).unwrap();
        }
        if lazy[0].pending() == 1 && step > 0 {
            flushes += 1;
        }
        if step == steps / 2 {
            for t in &lazy {
                assert_eq!(finished(t), reference.d, "{:?} p={p} mid-sum", t.path());
            }
        }
        for t in &lazy[1..] {
            assert_eq!(t.acc, lazy[0].acc, "raw states differ (p={p}, step {step})");
            assert_eq!(t.pending(), lazy[0].pending());
        }
    }
    assert_eq!(flushes, steps.saturating_sub(1) / FLUSH_STEPS);
    for t in &lazy {
        assert_eq!(
            finished(t),
            reference.d,
            "{:?} p={p} n={n} K={steps}",
            t.path()
        );
    }
}

fn run_random(paths: &[KernelPath], cases: u32) {
    let primes = primes();
    let strategy = (
        0..primes.len(),
        1usize..=8,
        1usize..=4500,
        0u8..3,
        any::<u64>(),
    );
    runner(cases)
        .run(&strategy, |(i, blocks, steps, kind, seed)| {
            check(paths, primes[i], blocks * LANES, steps, kind, seed);
            Ok(())
        })
        .unwrap();
}

/// Batch sizes around the flush limit: none, one, a baby-step count and its neighbour,
/// exactly the limit, one past it, and more than two flushes' worth.
const BATCH_SIZES: [usize; 7] = [0, 1, 31, 32, FLUSH_STEPS, FLUSH_STEPS + 1, 5000];

/// Steps before the batch, so that its chunks start anywhere relative to a flush.
const PENDING_BEFORE: [usize; 5] = [0, 1, 1000, FLUSH_STEPS - 1, FLUSH_STEPS];

/// `pre` single steps, then `batch` products, once as one `add_batch` and once as
/// repeated `add`s, on every path given: the raw states (and pending counts) must be
/// bit-identical across methods and paths, and the sums equal the reference (checked
/// when `reference` is set). Operands come from a pool of 7 sets, used in turn.
fn check_batch(
    paths: &[KernelPath],
    p: u64,
    n: usize,
    (pre, batch): (usize, usize),
    kind: u8,
    seed: u64,
    reference: bool,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pool: Vec<[Vec<u64>; 4]> = (0..7).map(|_| operands(&mut rng, p, n, kind)).collect();
    let op = |i: usize| &pool[i % pool.len()];
    let pairs: Vec<TensorPair<'_>> = (pre..pre + batch)
        .map(|i| {
            let [g0, g1, q0, q1] = op(i);
            ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
        })
        .collect();
    let mut states = Vec::new();
    for &path in paths {
        let mut single = LazyTensor::new(p, n, path).unwrap();
        for i in 0..pre {
            let [g0, g1, q0, q1] = op(i);
            single.add(g0, g1, q0, q1).unwrap();
        }
        let mut batched = single.clone();
        batched.add_batch(&pairs).unwrap();
        for i in pre..pre + batch {
            let [g0, g1, q0, q1] = op(i);
            single.add(g0, g1, q0, q1).unwrap();
        }
        let what = format!("{path:?} p={p} n={n} pre={pre} batch={batch} kind={kind}");
        assert_eq!(batched.acc, single.acc, "raw states differ: {what}");
        assert_eq!(batched.pending(), single.pending(), "{what}");
        assert!(batched.pending() <= FLUSH_STEPS);
        if reference {
            let mut r = Reference::new(p, n);
            for i in 0..pre + batch {
                let [g0, g1, q0, q1] = op(i);
                r.add(g0, g1, q0, q1);
            }
            assert_eq!(finished(&batched), r.d, "{what}");
        }
        states.push((batched.acc, batched.pending));
    }
    for s in &states[1..] {
        assert_eq!(*s, states[0], "paths differ: p={p} pre={pre} batch={batch}");
    }
}

fn batch_paths(test: &str) -> Vec<KernelPath> {
    let mut paths = vec![KernelPath::Portable];
    if ifma_runs(test) {
        paths.push(KernelPath::Ifma);
    }
    paths
}

/// `add_batch` against repeated `add` on random primes, inputs (uniform, all `p − 1`,
/// mixed), lengths, batch sizes and starting points, on both paths.
#[test]
fn add_batch_matches_repeated_add() {
    let paths = batch_paths("add_batch_matches_repeated_add");
    let primes = primes();
    let strategy = (
        0..primes.len(),
        prop::sample::select(vec![16usize, 64]),
        prop::sample::select(BATCH_SIZES.to_vec()),
        prop_oneof![prop::sample::select(PENDING_BEFORE.to_vec()), 0usize..4200],
        0u8..3,
        any::<u64>(),
    );
    runner(32)
        .run(&strategy, |(i, n, batch, pre, kind, seed)| {
            check_batch(&paths, primes[i], n, (pre, batch), kind, seed, false);
            Ok(())
        })
        .unwrap();
}

/// Each batch's gallery residues `[g0, g1]` paired with the query residues of the shared
/// operand of their position (as every giant step multiplies the same baby steps).
fn with_shared<'a, W>(
    gallery: &'a [Vec<[Vec<W>; 2]>],
    shared: &'a [[Vec<u64>; 4]],
) -> Vec<Vec<GalleryPair<'a, W>>> {
    gallery
        .iter()
        .map(|ops| {
            ops.iter()
                .enumerate()
                .map(|(b, [g0, g1])| {
                    let [_, _, q0, q1] = &shared[b % shared.len()];
                    ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
                })
                .collect()
        })
        .collect()
}

/// `add_batch_many` against one `add_batch` per accumulator: several sums sharing their
/// query operands (as the giant steps of a query share its baby steps), with random
/// batch sizes (empty ones included), starting points (some past the flush point, which
/// takes the one-by-one fallback), gallery words `u64` and `u32`, on both paths: the
/// states and pending counts are bit-identical, and equal across paths.
#[test]
fn add_batch_many_matches_one_batch_per_accumulator() {
    let paths = batch_paths("add_batch_many_matches_one_batch_per_accumulator");
    let primes = primes();
    let strategy = (
        0..primes.len(),
        prop::sample::select(vec![16usize, 64, 264]),
        prop::collection::vec((0usize..40, prop_oneof![0usize..8, 2000usize..2047]), 1..6),
        0u8..3,
        any::<u64>(),
    );
    runner(24)
        .run(&strategy, |(i, n, jobs, kind, seed)| {
            let p = primes[i];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let shared: Vec<[Vec<u64>; 4]> =
                (0..5).map(|_| operands(&mut rng, p, n, kind)).collect();
            let gallery: Vec<Vec<[Vec<u64>; 2]>> = jobs
                .iter()
                .map(|&(batch, _)| {
                    (0..batch)
                        .map(|_| {
                            let [g0, g1, ..] = operands(&mut rng, p, n, kind);
                            [g0, g1]
                        })
                        .collect()
                })
                .collect();
            let narrow: Vec<Vec<[Vec<u32>; 2]>> = gallery
                .iter()
                .map(|ops| {
                    ops.iter()
                        .map(|g| g.each_ref().map(|g| g.iter().map(|&x| x as u32).collect()))
                        .collect()
                })
                .collect();
            let small = p < 1 << 32;
            let mut states = Vec::new();
            for &path in &paths {
                let fresh = |pre: usize| {
                    let mut t = LazyTensor::new(p, n, path).unwrap();
                    let [g0, g1, q0, q1] = &shared[0];
                    for _ in 0..pre {
                        t.add(g0, g1, q0, q1).unwrap();
                    }
                    t
                };
                let mut one_by_one: Vec<LazyTensor> =
                    jobs.iter().map(|&(_, pre)| fresh(pre)).collect();
                let mut joint = one_by_one.clone();
                let wide: Vec<Vec<TensorPair<'_>>> = with_shared(&gallery, &shared);
                for (t, pairs) in one_by_one.iter_mut().zip(&wide) {
                    t.add_batch(pairs).unwrap();
                }
                let batches: Vec<&[TensorPair<'_>]> = wide.iter().map(Vec::as_slice).collect();
                let mut refs: Vec<&mut LazyTensor> = joint.iter_mut().collect();
                LazyTensor::add_batch_many(&mut refs, &batches).unwrap();
                if small {
                    // the same products with the gallery side as u32 words
                    let narrowed: Vec<Vec<NarrowPair<'_>>> = with_shared(&narrow, &shared);
                    for (t, pairs) in one_by_one.iter_mut().zip(&narrowed) {
                        t.add_batch_narrow(pairs).unwrap();
                    }
                    let batches: Vec<&[NarrowPair<'_>]> =
                        narrowed.iter().map(Vec::as_slice).collect();
                    let mut refs: Vec<&mut LazyTensor> = joint.iter_mut().collect();
                    LazyTensor::add_batch_narrow_many(&mut refs, &batches).unwrap();
                }
                for (a, b) in joint.iter().zip(&one_by_one) {
                    prop_assert_eq!(&a.acc, &b.acc, "{:?} p={} n={}", path, p, n);
                    prop_assert_eq!(a.pending(), b.pending());
                }
                states.push(
                    joint
                        .into_iter()
                        .map(|t| (t.acc, t.pending))
                        .collect::<Vec<_>>(),
                );
            }
            for s in &states[1..] {
                prop_assert_eq!(s, &states[0], "paths differ: p={}", p);
            }
            Ok(())
        })
        .unwrap();
}

/// `add_batch_many` checks every operand and the number of batches before changing
/// anything.
#[test]
fn add_batch_many_rejects_bad_shapes_without_change() {
    let p = primes()[0];
    let good = [1u64; 16];
    let short = [1u64; 8];
    let mut a = LazyTensor::new(p, 16, KernelPath::Portable).unwrap();
    let mut b = a.clone();
    let ok: TensorPair<'_> = ([&good[..], &good[..]], [&good[..], &good[..]]);
    let bad: TensorPair<'_> = ([&good[..], &short[..]], [&good[..], &good[..]]);
    let before = (a.acc.clone(), b.acc.clone());
    let err = LazyTensor::add_batch_many(&mut [&mut a, &mut b], &[&[ok][..], &[bad][..]]);
    assert!(
        matches!(err, Err(HeError::LengthMismatch { .. })),
        "{err:?}"
    );
    let err = LazyTensor::add_batch_many(&mut [&mut a, &mut b], &[&[ok][..]]);
    assert!(
        matches!(err, Err(HeError::LengthMismatch { .. })),
        "{err:?}"
    );
    assert_eq!((a.acc.clone(), b.acc.clone()), before);
    assert_eq!((a.pending(), b.pending()), (0, 0));
}

/// Every input `p − 1`, every batch size and starting point of the lists, every prime:
/// `add_batch` is bit-identical to repeated `add` on both paths and equals the
/// reference sum.
#[test]
fn add_batch_worst_case_inputs_every_size() {
    let paths = batch_paths("add_batch_worst_case_inputs_every_size");
    for p in primes() {
        for batch in BATCH_SIZES {
            for pre in PENDING_BEFORE {
                check_batch(&paths, p, 16, (pre, batch), 1, 9, true);
            }
        }
    }
}

/// `add_batch_narrow` (gallery residues as `u32`) leaves the state `add_batch` leaves on
/// the same values widened to `u64`, bit for bit, on both paths: primes of 20 to 32
/// bits, uniform, all-`(p − 1)` and mixed inputs, batches across flushes; and equals
/// the reference sum. A wrong length is refused without change.
#[test]
fn add_batch_narrow_matches_add_batch() {
    let paths = batch_paths("add_batch_narrow_matches_add_batch");
    let primes = ntt_primes(&[20, 27, 31, 32], 8192, &mut Vec::new()).unwrap();
    let strategy = (
        0..primes.len(),
        prop::sample::select(vec![16usize, 64]),
        prop::sample::select(vec![1usize, 3, 32, FLUSH_STEPS + 2]),
        0usize..3000,
        0u8..3,
        any::<u64>(),
    );
    runner(24)
        .run(&strategy, |(i, n, batch, pre, kind, seed)| {
            let p = primes[i];
            prop_assert!(p < 1 << 32);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let pool: Vec<[Vec<u64>; 4]> = (0..5).map(|_| operands(&mut rng, p, n, kind)).collect();
            let narrow: Vec<[Vec<u32>; 2]> = pool
                .iter()
                .map(|[g0, g1, ..]| {
                    [g0, g1].map(|g| g.iter().map(|&x| u32::try_from(x).unwrap()).collect())
                })
                .collect();
            let wide_pairs: Vec<TensorPair<'_>> = (0..batch)
                .map(|k| {
                    let [g0, g1, q0, q1] = &pool[k % 5];
                    ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
                })
                .collect();
            let narrow_pairs: Vec<NarrowPair<'_>> = (0..batch)
                .map(|k| {
                    let [g0, g1] = &narrow[k % 5];
                    let [_, _, q0, q1] = &pool[k % 5];
                    ([&g0[..], &g1[..]], [&q0[..], &q1[..]])
                })
                .collect();
            for &path in &paths {
                let mut wide = LazyTensor::new(p, n, path).unwrap();
                let [g0, g1, q0, q1] = &pool[0];
                for _ in 0..pre {
                    wide.add(g0, g1, q0, q1).unwrap();
                }
                let mut narrowed = wide.clone();
                wide.add_batch(&wide_pairs).unwrap();
                narrowed.add_batch_narrow(&narrow_pairs).unwrap();
                prop_assert_eq!(&narrowed.acc, &wide.acc, "{:?} p={}", path, p);
                prop_assert_eq!(narrowed.pending(), wide.pending());
                let mut r = Reference::new(p, n);
                for _ in 0..pre {
                    r.add(g0, g1, q0, q1);
                }
                for k in 0..batch {
                    let [g0, g1, q0, q1] = &pool[k % 5];
                    r.add(g0, g1, q0, q1);
                }
                prop_assert_eq!(finished(&narrowed), r.d.clone());
                let before = narrowed.clone();
                let short = [0u32; 8];
                let bad = [([&short[..], &narrow[0][1][..]], wide_pairs[0].1)];
                let refused = matches!(
                    narrowed.add_batch_narrow(&bad),
                    Err(HeError::LengthMismatch { .. })
                );
                prop_assert!(refused, "a short g0 must be refused");
                prop_assert_eq!(&narrowed.acc, &before.acc);
            }
            Ok(())
        })
        .unwrap();
}

/// A batch is checked whole before anything is added: a wrong length anywhere (here in
/// the last pair) is an error and leaves the state as it was; an empty batch changes
/// nothing, not even a pending flush.
#[test]
fn add_batch_rejects_bad_lengths_without_change() {
    let p = primes()[3];
    for path in batch_paths("add_batch_rejects_bad_lengths_without_change") {
        let mut t = LazyTensor::new(p, 16, path).unwrap();
        let (ok, short) = (vec![p - 1; 16], vec![1u64; 8]);
        for _ in 0..FLUSH_STEPS {
            t.add(&ok, &ok, &ok, &ok).unwrap();
        }
        let before = t.clone();
        t.add_batch(&[]).unwrap();
        assert_eq!((&t.acc, t.pending), (&before.acc, FLUSH_STEPS));
        for i in 0..4 {
            let mut args = [&ok[..], &ok[..], &ok[..], &ok[..]];
            args[i] = &short;
            let mut pairs: Vec<TensorPair<'_>> = vec![([&ok, &ok], [&ok, &ok]); 40];
            pairs.push(([args[0], args[1]], [args[2], args[3]]));
            assert_eq!(
                t.add_batch(&pairs),
                Err(HeError::LengthMismatch {
                    what: OPERAND_NAMES[i],
                    expected: 16,
                    actual: 8
                }),
                "{path:?}"
            );
            assert_eq!(
                t.acc, before.acc,
                "{path:?}: a rejected batch changes nothing"
            );
            assert_eq!(t.pending(), FLUSH_STEPS);
        }
    }
    // n = 0: batches of empty operands are valid
    let mut e = LazyTensor::new(p, 0, detected_path()).unwrap();
    let none: &[u64] = &[];
    e.add_batch(&[([none, none], [none, none]); 3]).unwrap();
    assert_eq!(e.pending(), 3);
}

#[test]
fn flush_limit_is_exact() {
    let max_residue = (MODULUS_BOUND - 2) as u128;
    let lo_max = |products: usize| max_residue + products as u128 * MASK52 as u128;
    // d1 takes two products per step
    assert!(lo_max(2 * FLUSH_STEPS) <= u64::MAX as u128);
    assert!(lo_max(2 * FLUSH_STEPS + 1) <= u64::MAX as u128);
    assert!(lo_max(2 * FLUSH_STEPS + 2) > u64::MAX as u128);
    // the high halves stay below the 2^60 the reduction assumes
    let hi_half_max = ((MODULUS_BOUND - 2) as u128).pow(2) >> 52;
    assert!(hi_half_max < 1 << 48);
    assert!(2 * FLUSH_STEPS as u128 * hi_half_max < 1 << 60);
}

#[test]
fn detected_path_matches_cpuinfo() {
    let listed = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.contains("avx512ifma"))
        .unwrap_or(false);
    eprintln!("detected kernel path: {:?}", detected_path());
    if listed {
        assert_eq!(detected_path(), KernelPath::Ifma);
    } else if std::path::Path::new("/proc/cpuinfo").exists() {
        assert_eq!(detected_path(), KernelPath::Portable);
    }
}

#[test]
fn portable_matches_reference() {
    run_random(&[KernelPath::Portable], 24);
}

#[test]
fn ifma_matches_portable_and_reference() {
    if ifma_runs("ifma_matches_portable_and_reference") {
        run_random(&[KernelPath::Ifma, KernelPath::Portable], 24);
    }
}

/// Every input `p − 1` (the largest products) across two flushes and around the flush
/// boundary, on every path available.
#[test]
fn worst_case_inputs_across_flushes() {
    let mut paths = vec![KernelPath::Portable];
    if ifma_runs("worst_case_inputs_across_flushes") {
        paths.push(KernelPath::Ifma);
    }
    for p in primes() {
        for steps in [FLUSH_STEPS, FLUSH_STEPS + 1, 2 * FLUSH_STEPS + 3] {
            check(&paths, p, 16, steps, 1, 7);
        }
    }
}

/// Inputs that drive `lo` to the bound: every product's low half is `2^52 − 1`
/// (`b = −a⁻¹ mod 2^52`) and the residue carried by the flush is `p − 1`, so `lo1`
/// reaches `p − 1 + 4094·(2^52 − 1)`, two low halves short of overflowing. One more
/// step between flushes would overflow: this test fails if `FLUSH_STEPS` is raised.
#[test]
fn adversarial_inputs_reach_the_bound() {
    let mut paths = vec![KernelPath::Portable];
    if ifma_runs("adversarial_inputs_reach_the_bound") {
        paths.push(KernelPath::Ifma);
    }
    let n = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // primes of 45 and 50 bits: b < p is likely enough to search for
    for p in primes().into_iter().skip(2) {
        let inv = |a: u64| {
            let mut x = a; // Newton: correct to 3 bits for odd a, doubling each step
            for _ in 0..6 {
                x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
            }
            x
        };
        let pair = |rng: &mut ChaCha8Rng| loop {
            let a = (rng.next_u64() % p) | 1;
            let b = inv(a).wrapping_neg() & MASK52;
            if a < p && b < p {
                assert_eq!((a as u128 * b as u128) as u64 & MASK52, MASK52);
                break (a, b);
            }
        };
        let (a, b): (Vec<u64>, Vec<u64>) = (0..n).map(|_| pair(&mut rng)).unzip();
        let m = Modulus::new(p);
        // first step: d1 += c with c making the sum at the flush ≡ p − 1
        let c: Vec<u64> = (0..n)
            .map(|i| {
                let rest = m.mul((2 * (FLUSH_STEPS - 1)) as u64 % p, m.mul(a[i], b[i]));
                m.sub(p - 1, rest)
            })
            .collect();
        let (zero, one) = (vec![0u64; n], vec![1u64; n]);
        let mut lazy: Vec<LazyTensor> = paths
            .iter()
            .map(|&path| LazyTensor::new(p, n, path).unwrap())
            .collect();
        let mut reference = Reference::new(p, n);
        reference.add(&c, &zero, &zero, &one);
        for _ in 1..2 * FLUSH_STEPS {
            reference.add(&a, &a, &b, &b);
        }
        for t in &mut lazy {
            t.add(&c, &zero, &zero, &one).unwrap();
            for _ in 1..2 * FLUSH_STEPS {
                t.add(&a, &a, &b, &b).unwrap();
            }
            assert_eq!(finished(t), reference.d, "{:?} p={p}", t.path());
            assert_eq!(t.pending(), FLUSH_STEPS);
            let peak = (p - 1) as u128 + 2 * FLUSH_STEPS as u128 * MASK52 as u128;
            assert!(
                u64::MAX as u128 - peak < 2 * MASK52 as u128,
                "two more overflow"
            );
            for blk in t.acc.chunks_exact(BLOCK) {
                assert!(
                    blk[2 * LANES..3 * LANES]
                        .iter()
                        .all(|&lo1| lo1 as u128 == peak)
                );
            }
        }
    }
}

/// The reduction on accumulator states at the edge of the bounds (largest `lo`,
/// largest `hi` the schedule allows) and random ones, against `u128` arithmetic.
#[test]
fn reduction_of_extreme_states() {
    let mut paths = vec![KernelPath::Portable];
    if ifma_runs("reduction_of_extreme_states") {
        paths.push(KernelPath::Ifma);
    }
    let hi_max = 2 * FLUSH_STEPS as u64 * ((1 << 48) - 1);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for p in primes().into_iter().chain([3, (1 << 50) - 27]) {
        for &path in &paths {
            let mut t = LazyTensor::new(p, 64, path).unwrap();
            let special = [0, 1, p - 1, p, MASK52, 1 << 52, u64::MAX];
            for (i, w) in t.acc.iter_mut().enumerate() {
                let hi = (i / LANES) % 2 == 1;
                *w = match (i % 7, hi) {
                    (0, true) => hi_max,
                    (1, true) => hi_max - 1,
                    (2, true) => 0,
                    (_, true) => rng.next_u64() % (hi_max + 1),
                    (0..=3, false) => special[(i / 2) % special.len()],
                    (_, false) => rng.next_u64(),
                };
            }
            let expect: Vec<u64> = t
                .acc
                .chunks_exact(2 * LANES)
                .flat_map(|pair| {
                    (0..LANES).map(move |l| {
                        let v = ((pair[LANES + l] as u128) << 52) + pair[l] as u128;
                        (v % p as u128) as u64
                    })
                })
                .collect();
            let d = finished(&t);
            // expect is ordered block by block: d0, d1, d2 lanes of each block
            for (b, chunk) in expect.chunks_exact(3 * LANES).enumerate() {
                for k in 0..3 {
                    assert_eq!(
                        &d[k][b * LANES..(b + 1) * LANES],
                        &chunk[k * LANES..(k + 1) * LANES],
                        "{path:?} p={p} block {b} output {k}"
                    );
                }
            }
            // a flush keeps the value and leaves hi = 0, lo < p
            t.flush();
            assert_eq!(finished(&t), d);
            for pair in t.acc.chunks_exact(2 * LANES) {
                assert!(pair[..LANES].iter().all(|&lo| lo < p));
                assert!(pair[LANES..].iter().all(|&hi| hi == 0));
            }
        }
    }
}

#[test]
fn clear_and_continue_after_finish() {
    let p = primes()[3];
    let mut paths = vec![KernelPath::Portable];
    if ifma_runs("clear_and_continue_after_finish") {
        paths.push(KernelPath::Ifma);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for path in paths {
        let mut t = LazyTensor::new(p, 24, path).unwrap();
        let [g0, g1, q0, q1] = operands(&mut rng, p, 24, 0);
        t.add(&g0, &g1, &q0, &q1).unwrap();
        t.clear();
        assert_eq!(t.pending(), 0);
        assert_eq!(finished(&t), [vec![0; 24], vec![0; 24], vec![0; 24]]);
        let mut reference = Reference::new(p, 24);
        for _ in 0..3 {
            t.add(&g0, &g1, &q0, &q1).unwrap();
            reference.add(&g0, &g1, &q0, &q1);
            assert_eq!(finished(&t), reference.d, "{path:?}");
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let p = primes()[3];
    for bad in [0, 1, 2, 4, 1 << 50, (1 << 50) + 1, u64::MAX] {
        assert!(matches!(
            LazyTensor::new(bad, 8, KernelPath::Portable),
            Err(HeError::InvalidParameters { .. })
        ));
    }
    for n in [1, 7, 12] {
        assert!(matches!(
            LazyTensor::new(p, n, KernelPath::Portable),
            Err(HeError::InvalidParameters { .. })
        ));
    }
    if detected_path() == KernelPath::Portable {
        assert!(LazyTensor::new(p, 8, KernelPath::Ifma).is_err());
    }
    let mut t = LazyTensor::new(p, 16, detected_path()).unwrap();
    let (ok, short) = (vec![1u64; 16], vec![1u64; 8]);
    for i in 0..4 {
        let mut args = [&ok[..], &ok[..], &ok[..], &ok[..]];
        args[i] = &short;
        assert_eq!(
            t.add(args[0], args[1], args[2], args[3]),
            Err(HeError::LengthMismatch {
                what: OPERAND_NAMES[i],
                expected: 16,
                actual: 8
            })
        );
    }
    assert_eq!(t.pending(), 0, "a rejected add changes nothing");
    let (mut a, mut b, mut c) = (vec![0u64; 16], vec![0u64; 16], vec![0u64; 17]);
    assert!(matches!(
        t.finish(&mut a, &mut b, &mut c),
        Err(HeError::LengthMismatch {
            expected: 16,
            actual: 17,
            ..
        })
    ));
    // n = 0 is a valid, empty accumulator
    let mut e = LazyTensor::new(p, 0, detected_path()).unwrap();
    assert!(e.is_empty());
    e.add(&[], &[], &[], &[]).unwrap();
    e.finish(&mut [], &mut [], &mut []).unwrap();
}
