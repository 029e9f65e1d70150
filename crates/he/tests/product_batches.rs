//! `ProductAccumulator::add_products` (one batched pass per call) and `add_products_many`
//! (several sums in one pass) against repeated `add_product`: the same ciphertext after
//! `finish`, for CKKS and native BFV on the search
//! presets (lazy kernel) and CKKS on 60-bit primes (reduced sum); and a batch with a bad pair
//! anywhere in it is refused whole, leaving the accumulator unchanged.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
use blindsight_he::*;
use common::xorshift;

/// A preset's keys and evaluator.
struct Fixture {
    ctx: Context,
    sk: SecretKey,
    ev: Evaluator,
    rk: RelinKey,
}

fn fixture(ctx: Context) -> Fixture {
    let sk = SecretKey::generate(&ctx).unwrap();
    Fixture {
        ev: Evaluator::new(&ctx),
        rk: RelinKey::generate(&ctx, &sk).unwrap(),
        ctx,
        sk,
    }
}

/// A fresh encryption of random slots at `level` (CKKS: values in [−1, 1) at the default
/// scale; BFV: values mod t).
fn encrypt(f: &Fixture, seed: u64, level: usize) -> Ciphertext {
    let n = f.ctx.degree();
    let pt = match f.ctx.scheme() {
        Scheme::Ckks => {
            let e = CkksEncoder::new(&f.ctx).unwrap();
            let v: Vec<f64> = xorshift(seed, n / 2)
                .into_iter()
                .map(|x| (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
                .collect();
            e.encode(&v, e.default_scale(), level).unwrap()
        }
        Scheme::Bfv => {
            let t = f.ctx.params().plain_modulus();
            let v: Vec<u64> = common::random_below(seed, n, t);
            BfvEncoder::new(&f.ctx).unwrap().encode(&v).unwrap()
        }
    };
    let ct = f.sk.encrypt(&f.ctx, &pt).unwrap();
    if ct.level() > level {
        f.ev.mod_switch_to(&ct, level).unwrap()
    } else {
        ct
    }
}

/// `count` product pairs at the top level: distinct gallery operands, queries reused as the
/// search reuses its rotations.
fn operands(f: &Fixture, count: usize, native: bool) -> Vec<(ProductOperand, ProductOperand)> {
    let level = f.ctx.max_level();
    let prepare = |ct: &Ciphertext| {
        if native {
            f.ev.prepare_native_product(ct).unwrap()
        } else {
            f.ev.prepare_product(ct).unwrap()
        }
    };
    let queries: Vec<ProductOperand> = (0..4)
        .map(|i| prepare(&encrypt(f, 1000 + i, level)))
        .collect();
    (0..count)
        .map(|i| {
            let g = prepare(&encrypt(f, i as u64 + 1, level));
            (g, queries[i % queries.len()].clone())
        })
        .collect()
}

fn refs(pairs: &[(ProductOperand, ProductOperand)]) -> Vec<(&ProductOperand, &ProductOperand)> {
    pairs.iter().map(|(a, b)| (a, b)).collect()
}

/// One `add_products` of `count` pairs (prepared natively or not), and a split into an
/// `add_product`, a batch and an empty batch, both equal `add_product` pair by pair after
/// `finish`.
fn batched_equals_one_by_one(
    f: &Fixture,
    new: impl Fn() -> ProductAccumulator,
    count: usize,
    native: bool,
) {
    let pairs = operands(f, count, native);
    let mut one_by_one = new();
    for (a, b) in &pairs {
        one_by_one.add_product(a, b).unwrap();
    }
    let mut batched = new();
    batched.add_products(&refs(&pairs)).unwrap();
    let mut split = new();
    split.add_product(&pairs[0].0, &pairs[0].1).unwrap();
    split.add_products(&refs(&pairs[1..])).unwrap();
    split.add_products(&[]).unwrap();
    assert_eq!(batched.products(), count);
    assert_eq!(split.products(), count);
    let want = one_by_one.finish(&f.ev, &f.rk).unwrap();
    assert!(batched.finish(&f.ev, &f.rk).unwrap() == want);
    assert!(split.finish(&f.ev, &f.rk).unwrap() == want);
    // several sums at once, as the giant steps of a query (sharing its operands): each is
    // the sum its own batch gives alone
    let cut = count / 3;
    let chunks: [&[(ProductOperand, ProductOperand)]; 3] = [&pairs[..cut], &pairs[cut..], &[]];
    let batches: Vec<Vec<_>> = chunks.iter().map(|c| refs(c)).collect();
    let batch_refs: Vec<&[_]> = batches.iter().map(Vec::as_slice).collect();
    let mut many: Vec<ProductAccumulator> = chunks.iter().map(|_| new()).collect();
    many[1].add_product(&pairs[0].0, &pairs[0].1).unwrap();
    ProductAccumulator::add_products_many(&mut many.iter_mut().collect::<Vec<_>>(), &batch_refs)
        .unwrap();
    for (i, (acc, chunk)) in many.iter().zip(chunks).enumerate() {
        let mut alone = new();
        if i == 1 {
            alone.add_product(&pairs[0].0, &pairs[0].1).unwrap();
        }
        alone.add_products(&refs(chunk)).unwrap();
        assert_eq!(acc.products(), alone.products());
        assert!(acc.finish(&f.ev, &f.rk).unwrap() == alone.finish(&f.ev, &f.rk).unwrap());
    }
    // an empty batch on an empty accumulator is an empty sum
    let mut empty = new();
    empty.add_products(&[]).unwrap();
    assert_eq!(empty.products(), 0);
    assert!(empty.finish(&f.ev, &f.rk).unwrap() == new().finish(&f.ev, &f.rk).unwrap());
}

/// `acc.add_products(pairs)` must fail with an error `expected` accepts and leave `acc` as
/// it was: same product count, same `finish`, and still usable.
fn refused_whole(
    f: &Fixture,
    acc: &mut ProductAccumulator,
    pairs: &[(&ProductOperand, &ProductOperand)],
    expected: fn(&HeError) -> bool,
) {
    let (products, before) = (acc.products(), acc.finish(&f.ev, &f.rk).unwrap());
    let err = acc.add_products(pairs).unwrap_err();
    assert!(expected(&err), "unexpected error {err:?}");
    assert_eq!(acc.products(), products, "a refused batch adds nothing");
    assert!(
        acc.finish(&f.ev, &f.rk).unwrap() == before,
        "a refused batch changes nothing"
    );
}

#[test]
fn ckks_add_products_equals_repeated_add_product() {
    let f = fixture(Context::preset("ckks-8192").unwrap());
    let level = f.ctx.max_level();
    batched_equals_one_by_one(
        &f,
        || ProductAccumulator::new(&f.ctx, level).unwrap(),
        33,
        true,
    );
}

/// The reduced sum (primes of 60 bits, above the lazy kernel's bound) takes batches too.
#[test]
fn ckks_add_products_on_wide_primes_equals_repeated_add_product() {
    let c = common::ckks();
    let f = Fixture {
        ctx: c.ctx.clone(),
        sk: c.sk.clone(),
        ev: c.ev.clone(),
        rk: c.rk.clone(),
    };
    let level = f.ctx.max_level();
    batched_equals_one_by_one(
        &f,
        || ProductAccumulator::new(&f.ctx, level).unwrap(),
        5,
        true,
    );
}

#[test]
fn native_bfv_add_products_equals_repeated_add_product() {
    let f = fixture(Context::preset("bfv-8192").unwrap());
    let level = f.ctx.max_level();
    batched_equals_one_by_one(
        &f,
        || ProductAccumulator::native(&f.ctx, level).unwrap(),
        33,
        true,
    );
}

/// A pair at another level, with a CKKS scale that does not match, or of the other form,
/// anywhere in a batch: the whole batch is refused and the accumulator keeps its sum.
#[test]
fn add_products_refuses_a_bad_pair_without_change() {
    let f = fixture(Context::preset("ckks-8192").unwrap());
    let top = f.ctx.max_level();
    let pairs = operands(&f, 6, true);
    let good = refs(&pairs);
    let low = f.ev.prepare_product(&encrypt(&f, 77, top - 1)).unwrap();
    let squared = {
        let ct = encrypt(&f, 78, top);
        f.ev.prepare_product(&f.ev.multiply_relin(&ct, &ct, &f.rk).unwrap())
            .unwrap()
    };
    let mut acc = ProductAccumulator::new(&f.ctx, top).unwrap();
    acc.add_products(&good[..2]).unwrap();
    for bad in [(&low, &pairs[0].1), (&pairs[0].0, &low)] {
        let mut batch = good[2..].to_vec();
        batch.push(bad);
        refused_whole(&f, &mut acc, &batch, |e| {
            matches!(e, HeError::LevelMismatch { .. })
        });
    }
    let mut batch = good[2..].to_vec();
    batch.insert(1, (&squared, &pairs[0].1));
    refused_whole(&f, &mut acc, &batch, |e| {
        matches!(e, HeError::ScaleMismatch { .. })
    });
    // with several accumulators, a bad batch anywhere changes none of them
    let mut other = ProductAccumulator::new(&f.ctx, top).unwrap();
    let before = acc.finish(&f.ev, &f.rk).unwrap();
    let bad = [(&low, &pairs[0].1)];
    for (batches, accs) in [(vec![&good[2..], &bad[..]], 2), (vec![&good[2..]], 2)] {
        let mut list: Vec<&mut ProductAccumulator> = vec![&mut acc, &mut other];
        list.truncate(accs);
        assert!(ProductAccumulator::add_products_many(&mut list, &batches).is_err());
    }
    assert_eq!((acc.products(), other.products()), (2, 0));
    assert!(acc.finish(&f.ev, &f.rk).unwrap() == before);
    // the accumulator is intact: finishing the sum gives what a clean run gives
    acc.add_products(&good[2..]).unwrap();
    let mut clean = ProductAccumulator::new(&f.ctx, top).unwrap();
    for (a, b) in &good {
        clean.add_product(a, b).unwrap();
    }
    assert_eq!(acc.products(), 6);
    assert!(acc.finish(&f.ev, &f.rk).unwrap() == clean.finish(&f.ev, &f.rk).unwrap());

    // BFV: an extended operand in a native batch
    let b = fixture(Context::preset("bfv-8192").unwrap());
    let level = b.ctx.max_level();
    let native = operands(&b, 3, true);
    let extended = b.ev.prepare_product(&encrypt(&b, 5, level)).unwrap();
    let mut acc = ProductAccumulator::native(&b.ctx, level).unwrap();
    acc.add_product(&native[0].0, &native[0].1).unwrap();
    let mut batch = refs(&native[1..]);
    batch.push((&native[0].0, &extended));
    refused_whole(&b, &mut acc, &batch, |e| {
        matches!(e, HeError::ProductFormMismatch { .. })
    });
}

/// The capacity counts every product of a batch: a batch that does not fit is refused
/// whole, one that fits exactly is taken.
#[test]
fn add_products_counts_the_whole_batch_against_the_capacity() {
    let f = fixture(Context::preset("bfv-8192").unwrap());
    let level = f.ctx.max_level();
    let pairs = operands(&f, 3, false);
    let all = refs(&pairs);
    let mut acc = ProductAccumulator::with_capacity(&f.ctx, level, 3).unwrap();
    let mut four = all.clone();
    four.push(all[0]);
    refused_whole(&f, &mut acc, &four, |e| {
        matches!(e, HeError::AccumulatorFull { capacity: 3 })
    });
    acc.add_products(&all[..2]).unwrap();
    refused_whole(&f, &mut acc, &all[..2], |e| {
        matches!(e, HeError::AccumulatorFull { capacity: 3 })
    });
    acc.add_products(&all[2..]).unwrap();
    acc.add_products(&[]).unwrap();
    assert_eq!(acc.products(), 3);
    refused_whole(&f, &mut acc, &all[..1], |e| {
        matches!(e, HeError::AccumulatorFull { .. })
    });
    let mut one_by_one = ProductAccumulator::with_capacity(&f.ctx, level, 3).unwrap();
    for (a, b) in &all {
        one_by_one.add_product(a, b).unwrap();
    }
    assert!(acc.finish(&f.ev, &f.rk).unwrap() == one_by_one.finish(&f.ev, &f.rk).unwrap());
}

/// An operand made by taking the ciphertext (`into_native_product`) is the one
/// `prepare_native_product` copies, for CKKS and native BFV; a ciphertext of three
/// polynomials is refused.
#[test]
fn into_native_product_equals_prepare_native_product() {
    for preset in ["ckks-8192", "bfv-8192"] {
        let f = fixture(Context::preset(preset).unwrap());
        let level = f.ctx.max_level();
        let (g, q) = (encrypt(&f, 7, level), encrypt(&f, 8, level));
        let copied = (
            f.ev.prepare_native_product(&g).unwrap(),
            f.ev.prepare_native_product(&q).unwrap(),
        );
        let taken = (
            f.ev.into_native_product(g).unwrap(),
            f.ev.into_native_product(q).unwrap(),
        );
        let product = |(a, b): &(ProductOperand, ProductOperand)| {
            let mut acc = ProductAccumulator::native(&f.ctx, level).unwrap();
            acc.add_product(a, b).unwrap();
            acc
        };
        let want = product(&copied).finish(&f.ev, &f.rk).unwrap();
        assert!(
            product(&taken).finish(&f.ev, &f.rk).unwrap() == want,
            "{preset}"
        );
        let three = product(&taken).finish_unrelinearized().unwrap();
        assert!(matches!(
            f.ev.into_native_product(three),
            Err(HeError::CiphertextSize {
                expected: 2,
                actual: 3
            })
        ));
    }
}

/// Compact operands (`u32` words on the trailing primes below 2^32: the 20-bit prime of
/// `ckks-8192`) give the ciphertext the full operands give, whichever side of the product
/// is compact (or both), batched or not, with a quarter less memory on that prime; on
/// `bfv-8192` (every prime 50 bits) compacting changes nothing.
#[test]
fn compact_operands_give_the_same_products() {
    let f = fixture(Context::preset("ckks-8192").unwrap());
    let pairs = operands(&f, 33, true);
    let compact = |op: &ProductOperand| f.ev.compact_product(op.clone()).unwrap();
    let level = f.ctx.max_level();
    let sum = |pairs: &[(ProductOperand, ProductOperand)]| {
        let mut acc = ProductAccumulator::native(&f.ctx, level).unwrap();
        acc.add_products(&refs(pairs)).unwrap();
        acc.finish(&f.ev, &f.rk).unwrap()
    };
    let want = sum(&pairs);
    let gallery_compact: Vec<_> = pairs.iter().map(|(a, b)| (compact(a), b.clone())).collect();
    let query_compact: Vec<_> = pairs.iter().map(|(a, b)| (a.clone(), compact(b))).collect();
    let both: Vec<_> = pairs
        .iter()
        .map(|(a, b)| (compact(a), compact(b)))
        .collect();
    let mixed: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            if i % 2 == 0 {
                (compact(a), b.clone())
            } else {
                (a.clone(), b.clone())
            }
        })
        .collect();
    for (what, p) in [
        ("gallery", &gallery_compact),
        ("query", &query_compact),
        ("both", &both),
        ("mixed", &mixed),
    ] {
        assert!(sum(p) == want, "{what} compact");
    }
    // one at a time, too
    let mut acc = ProductAccumulator::native(&f.ctx, level).unwrap();
    for (a, b) in &gallery_compact {
        acc.add_product(a, b).unwrap();
    }
    assert!(acc.finish(&f.ev, &f.rk).unwrap() == want);
    let (full, small) = (&pairs[0].0, &gallery_compact[0].0);
    assert!(small.is_compact() && !full.is_compact());
    let n = f.ctx.degree();
    assert_eq!(full.residue_bytes(), 2 * 2 * n * 8);
    assert_eq!(small.residue_bytes(), 2 * n * (8 + 4));
    assert_eq!(f.ctx.product_operand_bytes(level), small.residue_bytes());
    // compacting twice changes nothing
    assert_eq!(compact(small).residue_bytes(), small.residue_bytes());

    let b = fixture(Context::preset("bfv-8192").unwrap());
    let op =
        b.ev.prepare_native_product(&encrypt(&b, 3, b.ctx.max_level()))
            .unwrap();
    let same = b.ev.compact_product(op.clone()).unwrap();
    assert!(!same.is_compact());
    assert_eq!(same.residue_bytes(), op.residue_bytes());
}

/// The reduced sum (a prime of 2^50 or more: no lazy kernel) reads compact operands too:
/// CKKS with Q = 60 + 30 bits, the 30-bit residues of the gallery side as `u32`.
#[test]
fn compact_operands_on_the_reduced_sum() {
    use blindsight_he::math::primes::ntt_primes;
    let mut used = Vec::new();
    let p = ntt_primes(&[60], 8192, &mut used).unwrap();
    let q = ntt_primes(&[60, 30], 8192, &mut used).unwrap();
    let f = fixture(Context::new(&Parameters::ckks(8192, q, p, 30).unwrap()).unwrap());
    let level = f.ctx.max_level();
    let pairs = operands(&f, 4, true);
    let sum = |pairs: &[(ProductOperand, ProductOperand)]| {
        let mut acc = ProductAccumulator::new(&f.ctx, level).unwrap();
        acc.add_products(&refs(pairs)).unwrap();
        acc.finish(&f.ev, &f.rk).unwrap()
    };
    let compact: Vec<_> = pairs
        .iter()
        .map(|(a, b)| (f.ev.compact_product(a.clone()).unwrap(), b.clone()))
        .collect();
    assert!(compact[0].0.is_compact());
    assert!(sum(&compact) == sum(&pairs));
}

/// Operands written in the kernel layout and read back in place from shared bytes (as the
/// server reads memory-mapped segment files) give exactly the products of the operands they
/// were written from: CKKS (one `u64` and one `u32` prime), native and extended BFV. A range
/// outside the bytes or misaligned is refused, and so are bytes of another context.
#[test]
fn shared_operands_give_the_same_products() {
    for (preset, native) in [("ckks-8192", true), ("bfv-8192", true), ("bfv-4096", false)] {
        let f = fixture(Context::preset(preset).unwrap());
        let level = f.ctx.max_level();
        let pairs = operands(&f, 9, native);
        let spec = pairs[0].0.spec();
        let len = f.ev.kernel_bytes_len(&spec).unwrap();
        // a 64-byte header first, as a segment file has, then every gallery operand
        let mut bytes = vec![0u8; 64];
        for (g, _) in &pairs {
            let before = bytes.len();
            g.append_kernel_bytes(&f.ctx, &mut bytes).unwrap();
            assert_eq!(bytes.len() - before, len, "{preset}");
        }
        assert_eq!(len, g_bytes(&f, &pairs[0].0), "{preset}");
        let shared: SharedBytes = std::sync::Arc::new(bytes);
        let read: Vec<(ProductOperand, ProductOperand)> = pairs
            .iter()
            .enumerate()
            .map(|(i, (_, q))| {
                let g =
                    f.ev.shared_product(shared.clone(), 64 + i * len, &spec)
                        .unwrap();
                assert!(g.is_shared());
                (g, q.clone())
            })
            .collect();
        let new = || {
            if native {
                ProductAccumulator::native(&f.ctx, level).unwrap()
            } else {
                ProductAccumulator::new(&f.ctx, level).unwrap()
            }
        };
        let sum = |pairs: &[(ProductOperand, ProductOperand)]| {
            let mut acc = new();
            acc.add_products(&refs(pairs)).unwrap();
            acc.finish(&f.ev, &f.rk).unwrap()
        };
        assert!(sum(&read) == sum(&pairs), "{preset}: shared operands");
        // a shared operand written again gives the same bytes
        let mut again = Vec::new();
        read[3].0.append_kernel_bytes(&f.ctx, &mut again).unwrap();
        let shared_bytes: &[u8] = shared.as_ref().as_ref();
        assert_eq!(again, shared_bytes[64 + 3 * len..64 + 4 * len]);
        // out of range, misaligned
        let total = 64 + pairs.len() * len;
        assert!(
            f.ev.shared_product(shared.clone(), total - len + 8, &spec)
                .is_err()
        );
        assert!(
            f.ev.shared_product(shared.clone(), usize::MAX - 3, &spec)
                .is_err()
        );
        assert!(matches!(
            f.ev.shared_product(shared.clone(), 68, &spec),
            Err(HeError::UnusableBytes { .. })
        ));
        // another context's operand is refused when written
        let other = Context::preset("ckks-16384").unwrap();
        assert!(
            pairs[0]
                .0
                .append_kernel_bytes(&other, &mut Vec::new())
                .is_err()
        );
    }
}

/// Bytes of an operand in the kernel layout, from its primes.
fn g_bytes(f: &Fixture, op: &ProductOperand) -> usize {
    let compact = f.ev.compact_product(op.clone()).unwrap();
    compact.residue_bytes()
}
