//! Encrypted top-k equals the f64 reference, for the no-op scheme, BFV and CKKS (the same
//! test body for all), on real images, for galleries of 1, 7, 64, 1001 images and one larger
//! than the slot count, across layouts (hybrid and rows-in-slots) and several segments.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use blindsight_he::{Complex, Context, SecretKey};
use blindsight_search::backend::{NoOp, SlotCipher, SlotEvaluator};
use blindsight_search::client::{decrypt_response, encrypt_query, encrypt_segment};
use blindsight_search::encoding::VectorEncoding;
use blindsight_search::engine::{PreparedSegment, score};
use blindsight_search::he_backend::{
    BfvCipher, CkksCipher, HeEvaluator, evaluation_keys, response_secret, shape_of,
};
use blindsight_search::rank::{
    ChannelDots, EncodedImage, RankRule, Similarity, channel_values, reference_dots, similarities,
    top_k,
};
use blindsight_search::slots::{Slot, SlotShape};
use blindsight_search::vectors::{ImageVector, image_vector};
use blindsight_search::{Layout, Result};
use std::collections::HashSet;
use std::sync::OnceLock;

/// The response secret's seed of every test key set.
const RESPONSE_SEED: [u8; 32] = [7; 32];

/// Distinct (by content) real images at `side × side`: the embedded emoji, then their
/// mirror images and rotations when more are needed.
fn images(n: usize, side: u32) -> Vec<ImageVector> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for variant in 0..4 {
        for e in blindsight_testdata::all() {
            if out.len() == n {
                return out;
            }
            let v = image_vector(e.png, e.name, side).unwrap().dihedral(variant);
            if seen.insert(v.clone()) {
                out.push(v);
            }
        }
    }
    assert_eq!(out.len(), n, "not enough distinct images");
    out
}

/// Encrypts `gallery` as segments of `segment_sizes`, scores the query, returns the
/// similarities computed from the decrypted dot products.
fn encrypted_similarities<C, E>(
    cipher: &C,
    ev: &E,
    encoding: &VectorEncoding,
    gallery: &[EncodedImage],
    query: &EncodedImage,
    segment_sizes: &[usize],
) -> Result<(Vec<Similarity>, Vec<Layout>)>
where
    C: SlotCipher,
    E: SlotEvaluator<Ct = C::Ct>,
{
    let mut segments = Vec::new();
    let mut start = 0;
    for &size in segment_sizes {
        let part = &gallery[start..start + size];
        start += size;
        let enc = encrypt_segment(cipher, &channel_values(part, query.channels.len()))?;
        segments.push(PreparedSegment::new(ev, enc.layout, enc.channels)?);
    }
    assert_eq!(start, gallery.len());
    let q = encrypt_query(cipher, &query.values())?;
    let response = score(ev, &segments, &q)?;
    let channels = query.channels.len();
    let layouts: Vec<Layout> = segments.iter().map(|s| s.layout).collect();
    let mut dots = ChannelDots::zeros(channels, 0)?;
    for d in decrypt_response(cipher, &layouts, channels, &response)? {
        dots.extend(&d)?;
    }
    Ok((similarities(encoding, gallery, query, &dots), layouts))
}

#[derive(Clone, Copy, PartialEq)]
enum Exactness {
    Exact,
    Within(f64),
}

struct Case {
    n: usize,
    side: u32,
    segments: Vec<usize>,
    query_of: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            n: 1,
            side: 64,
            segments: vec![1],
            query_of: 0,
        },
        Case {
            n: 7,
            side: 64,
            segments: vec![7],
            query_of: 3,
        },
        Case {
            n: 64,
            side: 64,
            segments: vec![64],
            query_of: 40,
        },
        Case {
            n: 1001,
            side: 64,
            segments: vec![1001],
            query_of: 700,
        },
        Case {
            n: 1001,
            side: 64,
            segments: vec![600, 300, 101],
            query_of: 950,
        },
        // more images than slots (8192): rows-in-slots blocks, two segments
        Case {
            n: 9000,
            side: 16,
            segments: vec![8500, 500],
            query_of: 8600,
        },
    ]
}

fn run_cases<C, E>(
    cipher: &C,
    ev: &E,
    encoding: &VectorEncoding,
    exactness: Exactness,
) -> Vec<Layout>
where
    C: SlotCipher,
    E: SlotEvaluator<Ct = C::Ct>,
{
    let mut layouts = Vec::new();
    for case in cases() {
        let imgs = images(case.n, case.side);
        let gallery: Vec<EncodedImage> = imgs
            .iter()
            .map(|v| EncodedImage::new(encoding, &v.channels))
            .collect();
        let query = EncodedImage::new(encoding, &imgs[case.query_of].perturbed().channels);
        let reference = similarities(
            encoding,
            &gallery,
            &query,
            &reference_dots(&gallery, &query),
        );
        let (got, seg_layouts) =
            encrypted_similarities(cipher, ev, encoding, &gallery, &query, &case.segments).unwrap();
        layouts.extend(seg_layouts);
        for rule in [RankRule::ChannelTriple, RankRule::WholeCosine] {
            let want_top = top_k(&reference, rule, 10);
            let got_top = top_k(&got, rule, 10);
            assert_eq!(
                got_top[0], case.query_of,
                "n={} rule={rule:?}: perturbed copy ranks first",
                case.n
            );
            assert_eq!(want_top[0], case.query_of);
            match exactness {
                Exactness::Exact => {
                    assert_eq!(got_top, want_top, "n={} rule={rule:?}", case.n);
                    assert_eq!(got, reference, "n={}: scores equal to the last bit", case.n);
                }
                Exactness::Within(tol) => {
                    for (g, w) in got.iter().zip(&reference) {
                        for (a, b) in g.channel_cosines.iter().zip(&w.channel_cosines) {
                            let err = (a - b).abs();
                            assert!(err <= tol, "n={}: channel cosine error {err}", case.n);
                        }
                        assert!((g.whole_cosine - w.whole_cosine).abs() <= tol);
                    }
                }
            }
        }
    }
    layouts
}

fn all_steps(shape: SlotShape, vector_slots: impl Fn(usize) -> usize) -> Vec<i64> {
    let mut steps = Vec::new();
    for case in cases() {
        let mut start = 0;
        for &size in &case.segments {
            let dim = (case.side * case.side) as usize;
            steps.extend(
                Layout::new(size, dim, vector_slots(dim), shape)
                    .unwrap()
                    .galois_steps(),
            );
            start += size;
        }
        assert_eq!(start, case.n);
    }
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// Every trace the response may take (1: the server folds everything; up to 16: the last
/// four fold steps left to the response) gives the same scores.
const TRACES: [usize; 4] = [1, 2, 4, 16];

#[test]
fn no_op_scheme_with_the_bfv_shape_is_exact() {
    let shape = SlotShape {
        rows: 2,
        row_len: 4096,
    };
    for trace in TRACES {
        let s = NoOp::<i64>::with_max_trace(shape, trace);
        let layouts = run_cases(
            &s,
            &s,
            &VectorEncoding::for_bfv(532_709_377, 4096),
            Exactness::Exact,
        );
        assert!(layouts.iter().any(|l| l.is_tall()) && layouts.iter().any(|l| !l.is_tall()));
    }
}

#[test]
fn no_op_scheme_with_the_ckks_shape_is_exact_to_rounding() {
    for trace in TRACES {
        let s = NoOp::<Complex>::with_max_trace(
            SlotShape {
                rows: 1,
                row_len: 4096,
            },
            trace,
        );
        let layouts = run_cases(&s, &s, &VectorEncoding::Unit, Exactness::Within(1e-12));
        assert!(layouts.iter().any(|l| l.is_tall()) && layouts.iter().any(|l| !l.is_tall()));
    }
}

/// The server side of a test key set: evaluation keys for `steps` and the response key.
fn he_evaluator(ctx: &Context, sk: &SecretKey, steps: &[i64]) -> HeEvaluator {
    let response = response_secret(ctx, &RESPONSE_SEED).unwrap();
    let (rk, gk, rsk) = evaluation_keys(ctx, sk, &response, steps).unwrap();
    HeEvaluator::new(ctx, rk, gk, Some(rsk))
}

fn he_setup(preset: &str) -> (Context, SecretKey, HeEvaluator) {
    let ctx = Context::preset(preset).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let shape = shape_of(&ctx);
    let steps = match ctx.scheme() {
        blindsight_he::Scheme::Bfv => all_steps(shape, i64::vector_slots),
        _ => all_steps(shape, Complex::vector_slots),
    };
    let ev = he_evaluator(&ctx, &sk, &steps);
    (ctx, sk, ev)
}

#[test]
fn bfv_top10_and_scores_are_exact() {
    let (ctx, sk, ev) = he_setup("bfv-8192");
    let cipher = BfvCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    let encoding = VectorEncoding::for_bfv(ctx.params().plain_modulus(), 4096);
    run_cases(&cipher, &ev, &encoding, Exactness::Exact);
}

#[test]
fn ckks_scores_within_1e_6() {
    let (ctx, sk, ev) = he_setup("ckks-8192");
    let cipher = CkksCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    run_cases(&cipher, &ev, &VectorEncoding::Unit, Exactness::Within(1e-6));
}

/// The extreme images: all-255 (the query), and a gallery of all-255, all-0 and a mix of
/// 128, 254 and 1.
fn extreme_images(encoding: &VectorEncoding) -> (EncodedImage, Vec<EncodedImage>) {
    let white = EncodedImage::new(
        encoding,
        &[vec![255; 4096], vec![255; 4096], vec![255; 4096]],
    );
    let black = EncodedImage::new(encoding, &[vec![0; 4096], vec![0; 4096], vec![0; 4096]]);
    let grey = EncodedImage::new(encoding, &[vec![128; 4096], vec![254; 4096], vec![1; 4096]]);
    let gallery = vec![white.clone(), black, grey];
    (white, gallery)
}

#[test]
fn all_white_and_all_black_images_do_not_wrap() {
    // The extreme images of the BFV bound: 4096 values of 255 (and 0) in every channel.
    static CTX: OnceLock<(Context, SecretKey, HeEvaluator)> = OnceLock::new();
    let (ctx, sk, ev) = CTX.get_or_init(|| {
        let ctx = Context::preset("bfv-8192").unwrap();
        let sk = SecretKey::generate(&ctx).unwrap();
        let layout = Layout::new(3, 4096, 4096, shape_of(&ctx)).unwrap();
        let ev = he_evaluator(&ctx, &sk, &layout.galois_steps());
        (ctx, sk, ev)
    });
    let cipher = BfvCipher::new(
        ctx,
        sk.clone(),
        response_secret(ctx, &RESPONSE_SEED).unwrap(),
    )
    .unwrap();
    let encoding = VectorEncoding::for_bfv(ctx.params().plain_modulus(), 4096);
    let (white, gallery) = extreme_images(&encoding);
    let (got, _) = encrypted_similarities(&cipher, ev, &encoding, &gallery, &white, &[3]).unwrap();
    let reference = similarities(
        &encoding,
        &gallery,
        &white,
        &reference_dots(&gallery, &white),
    );
    assert_eq!(got, reference);
    assert_eq!(got[0].channel_cosines, [1.0; 3]);
    assert_eq!(got[1].channel_cosines, [0.0; 3]);
    assert_eq!(
        reference_dots(&gallery, &white).image(0),
        [(4096 * 255 * 255) as f64; 3]
    );
}

/// CKKS at its largest values: an all-255 query against all-255, all-0 and mixed images.
/// Every partial sum of the white pair reaches the bound the scales are chosen for (each
/// slot of the full sum is exactly 1, so every coefficient of the product is `Δ_gΔ_q`); the
/// cosines must still be within 1e-6.
#[test]
fn ckks_extreme_images_stay_within_1e_6() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let layout = Layout::new(3, 4096, Complex::vector_slots(4096), shape_of(&ctx)).unwrap();
    let ev = he_evaluator(&ctx, &sk, &layout.galois_steps());
    let cipher = CkksCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    let encoding = VectorEncoding::Unit;
    let (white, gallery) = extreme_images(&encoding);
    let (got, _) = encrypted_similarities(&cipher, &ev, &encoding, &gallery, &white, &[3]).unwrap();
    let reference = similarities(
        &encoding,
        &gallery,
        &white,
        &reference_dots(&gallery, &white),
    );
    for (g, w) in got.iter().zip(&reference) {
        for (c, (a, b)) in g.channel_cosines.iter().zip(&w.channel_cosines).enumerate() {
            let err = (a - b).abs();
            assert!(err < 1e-6, "channel {c}: {err}");
        }
    }
}

/// The client floods decrypted CKKS scores (two decryptions of one response differ) and the
/// cosines still match the f64 reference within 1e-6.
#[test]
fn ckks_client_decryption_is_flooded_and_within_1e_6() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let encoding = VectorEncoding::Unit;
    let imgs = images(64, 64);
    let gallery: Vec<EncodedImage> = imgs
        .iter()
        .map(|v| EncodedImage::new(&encoding, &v.channels))
        .collect();
    let query = EncodedImage::new(&encoding, &imgs[40].perturbed().channels);
    let layout = Layout::new(64, 4096, Complex::vector_slots(4096), shape_of(&ctx)).unwrap();
    let ev = he_evaluator(&ctx, &sk, &layout.galois_steps());
    let cipher = CkksCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    let enc = encrypt_segment(&cipher, &channel_values(&gallery, 3)).unwrap();
    let seg = PreparedSegment::new(&ev, enc.layout, enc.channels).unwrap();
    let q = encrypt_query(&cipher, &query.values()).unwrap();
    let response = score(&ev, std::slice::from_ref(&seg), &q).unwrap();
    let first = decrypt_response(&cipher, &[seg.layout], 3, &response).unwrap();
    let second = decrypt_response(&cipher, &[seg.layout], 3, &response).unwrap();
    assert_ne!(first, second, "decryption must add fresh noise");
    let reference = reference_dots(&gallery, &query);
    let mut worst = 0f64;
    for dots in [&first[0], &second[0]] {
        for (g, w) in similarities(&encoding, &gallery, &query, dots)
            .iter()
            .zip(similarities(&encoding, &gallery, &query, &reference))
        {
            for (a, b) in g.channel_cosines.iter().zip(&w.channel_cosines) {
                worst = worst.max((a - b).abs());
            }
            worst = worst.max((g.whole_cosine - w.whole_cosine).abs());
        }
    }
    eprintln!("flooded CKKS cosines: largest error {worst:.2e}");
    assert!(worst <= 1e-6, "{worst}");
    // the noise is really there: two decryptions differ (above), and by more than the
    // encoding's rounding
    assert!(worst > 1e-7, "{worst}");
}

mod layouts {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any gallery size and vector size, any split into segments: the no-op engine
        /// reproduces the reference dot products exactly.
        #[test]
        fn no_op_engine_matches_reference(
            n in 1usize..400,
            dim in 1usize..300,
            rows in 1usize..3,
            row_len_log in 8u32..11,
            cuts in prop::collection::vec(0.0f64..1.0, 0..6),
            seed in any::<u64>(),
            trace_log in 0u32..4,
        ) {
            let shape = SlotShape { rows, row_len: 1 << row_len_log };
            prop_assume!(i64::vector_slots(dim) <= shape.row_len);
            let s = NoOp::<i64>::with_max_trace(shape, 1 << trace_log);
            let encoding = VectorEncoding::Integer { levels: 255 };
            let mut x = seed | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x % 256) as u8 };
            let pixels: Vec<[Vec<u8>; 3]> = (0..=n)
                .map(|_| [0, 1, 2].map(|_| (0..dim).map(|_| next()).collect()))
                .collect();
            let gallery: Vec<EncodedImage> = pixels[..n].iter().map(|p| EncodedImage::new(&encoding, p)).collect();
            let query = EncodedImage::new(&encoding, &pixels[n]);
            // up to seven segments: their small last groups share response ciphertexts
            let mut ends: Vec<usize> = cuts.iter().map(|c| (n as f64 * c) as usize).collect();
            ends.push(n);
            ends.sort_unstable();
            ends.dedup();
            let sizes: Vec<usize> = ends
                .iter()
                .scan(0, |start, &end| {
                    let size = end - *start;
                    *start = end;
                    Some(size)
                })
                .filter(|&size| size > 0)
                .collect();
            let (got, _) = encrypted_similarities(&s, &s, &encoding, &gallery, &query, &sizes).unwrap();
            let want = similarities(&encoding, &gallery, &query, &reference_dots(&gallery, &query));
            prop_assert_eq!(got, want);
        }
    }
}

/// A segment made of operands prepared elsewhere (as the server's mapped segment files are)
/// scores exactly like one prepared from its ciphertexts, at every trace; operands that do
/// not cover the layout are refused.
#[test]
fn segments_from_operands_score_like_prepared_ones() {
    use blindsight_search::client::encrypt_segment;
    let shape = SlotShape {
        rows: 2,
        row_len: 256,
    };
    for trace in TRACES {
        let s = NoOp::<i64>::with_max_trace(shape, trace);
        let mut x = 12345u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 256) as f64
        };
        let vectors: Vec<Vec<Vec<f64>>> = (0..3)
            .map(|_| {
                (0..40)
                    .map(|_| (0..100).map(|_| next()).collect())
                    .collect()
            })
            .collect();
        let query: Vec<Vec<f64>> = (0..3).map(|_| (0..100).map(|_| next()).collect()).collect();
        let seg = encrypt_segment(&s, &vectors).unwrap();
        assert!(seg.layout.giant() > 1, "{:?}", seg.layout);
        let prepared = PreparedSegment::new(&s, seg.layout, seg.channels.clone()).unwrap();
        let from_operands: PreparedSegment<NoOp<i64>> =
            PreparedSegment::from_operands(seg.layout, seg.channels.clone()).unwrap();
        let q = encrypt_query(&s, &query).unwrap();
        let a = score(&s, &[prepared], &q).unwrap();
        let b = score(&s, &[from_operands], &q).unwrap();
        assert_eq!(a, b, "trace {trace}");
        let mut short = seg.channels.clone();
        short[1].pop();
        assert!(PreparedSegment::<NoOp<i64>>::from_operands(seg.layout, short).is_err());
        assert!(PreparedSegment::<NoOp<i64>>::from_operands(seg.layout, Vec::new()).is_err());
    }
}

/// Feature-like vectors (an embedding: one channel of `dim` non-negative reals, most of them
/// small) for `n` images, and a query near image `of`.
fn feature_vectors(n: usize, dim: usize, of: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let gallery: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..dim).map(|_| next().powi(4) * 6.0).collect())
        .collect();
    let query = gallery[of]
        .iter()
        .map(|v| (v + 0.3 * next() - 0.15).max(0.0))
        .collect();
    (gallery, query)
}

/// Embedding-like dimensions (one channel of 64, 320 and 1280 values), hybrid and tall
/// layouts, one and two segments.
const DIMENSION_CASES: [(usize, usize, &[usize]); 3] = [
    (64, 3000, &[2500, 500]),
    (320, 500, &[500]),
    (1280, 257, &[200, 57]),
];

/// The engine at any dimension: one-channel vectors of every [`DIMENSION_CASES`] dimension,
/// encrypted and scored, against the f64 reference on the same encoded vectors; also how
/// far the scheme's cosines are from the cosine of the unencoded floats.
fn run_dimensions<C, E>(cipher: &C, ev: &E, encoding: &VectorEncoding, exactness: Exactness)
where
    C: SlotCipher,
    E: SlotEvaluator<Ct = C::Ct>,
{
    for (dim, n, segments) in DIMENSION_CASES {
        let of = n / 3;
        let (features, query_features) = feature_vectors(n, dim, of, dim as u64);
        let gallery: Vec<EncodedImage> = features
            .iter()
            .map(|f| EncodedImage::from_features(encoding, f))
            .collect();
        let query = EncodedImage::from_features(encoding, &query_features);
        let reference = similarities(
            encoding,
            &gallery,
            &query,
            &reference_dots(&gallery, &query),
        );
        let (got, _) =
            encrypted_similarities(cipher, ev, encoding, &gallery, &query, segments).unwrap();
        for rule in [RankRule::ChannelTriple, RankRule::WholeCosine] {
            assert_eq!(top_k(&got, rule, 1), [of], "dim {dim}: the near copy first");
        }
        let mut worst_float = 0f64;
        for (k, (g, w)) in got.iter().zip(&reference).enumerate() {
            assert_eq!(g.channel_cosines.len(), 1);
            match exactness {
                Exactness::Exact => assert_eq!(g, w, "dim {dim} image {k}"),
                Exactness::Within(tol) => {
                    let err = (g.whole_cosine - w.whole_cosine).abs();
                    assert!(err <= tol, "dim {dim} image {k}: {err}");
                }
            }
            // against the cosine of the floats themselves (quantization, for BFV)
            let f = &features[k];
            let dot: f64 = f.iter().zip(&query_features).map(|(a, b)| a * b).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let float_cos = dot / (norm(f) * norm(&query_features));
            worst_float = worst_float.max((g.whole_cosine - float_cos).abs());
        }
        eprintln!("dim {dim}: largest error against the float cosine {worst_float:.2e}");
        // BFV's rounding to L ≈ 16 300 levels: about √dim/L at worst, far less in practice
        assert!(worst_float <= 1e-3, "dim {dim}: {worst_float}");
    }
}

fn dimension_steps(shape: SlotShape, vector_slots: impl Fn(usize) -> usize) -> Vec<i64> {
    let mut steps: Vec<i64> = DIMENSION_CASES
        .iter()
        .flat_map(|&(dim, _, segments)| {
            let slots = vector_slots(dim);
            segments
                .iter()
                .flat_map(move |&size| Layout::new(size, dim, slots, shape).unwrap().galois_steps())
        })
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

#[test]
fn no_op_scheme_scores_any_dimension() {
    let bfv_shape = SlotShape {
        rows: 2,
        row_len: 4096,
    };
    let s = NoOp::<i64>::with_max_trace(bfv_shape, 16);
    let encoding = VectorEncoding::for_bfv_unit_vectors(532_709_377, 1280);
    run_dimensions(&s, &s, &encoding, Exactness::Exact);
    let ckks_shape = SlotShape {
        rows: 1,
        row_len: 4096,
    };
    let s = NoOp::<Complex>::with_max_trace(ckks_shape, 16);
    run_dimensions(&s, &s, &VectorEncoding::Unit, Exactness::Within(1e-12));
}

#[test]
fn bfv_scores_of_quantized_embeddings_are_exact_at_any_dimension() {
    let ctx = Context::preset("bfv-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let ev = he_evaluator(
        &ctx,
        &sk,
        &dimension_steps(shape_of(&ctx), i64::vector_slots),
    );
    let cipher = BfvCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    let t = ctx.params().plain_modulus();
    // the quantization of the largest dimension holds for every smaller one
    let encoding = VectorEncoding::for_bfv_unit_vectors(t, 1280);
    run_dimensions(&cipher, &ev, &encoding, Exactness::Exact);
}

#[test]
fn ckks_scores_of_embeddings_are_within_1e_6_at_any_dimension() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let ev = he_evaluator(
        &ctx,
        &sk,
        &dimension_steps(shape_of(&ctx), Complex::vector_slots),
    );
    let cipher = CkksCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    run_dimensions(&cipher, &ev, &VectorEncoding::Unit, Exactness::Within(1e-6));
}

/// A query with another channel count than the segments is refused, never scored.
#[test]
fn a_query_of_another_channel_count_is_refused() {
    let shape = SlotShape {
        rows: 2,
        row_len: 256,
    };
    let s = NoOp::<i64>::new(shape);
    let seg = encrypt_segment(&s, &[vec![vec![1.0; 64]; 5]]).unwrap();
    let prepared = PreparedSegment::new(&s, seg.layout, seg.channels).unwrap();
    assert_eq!(prepared.channels(), 1);
    let three = encrypt_query(&s, &vec![vec![1.0; 64]; 3]).unwrap();
    let err = score(&s, &[prepared], &three).unwrap_err();
    assert!(err.to_string().contains("query channels"), "{err}");
    assert!(encrypt_query(&s, &[]).is_err());
    assert!(encrypt_query(&s, &[vec![1.0; 64], vec![1.0; 32]]).is_err());
    assert!(encrypt_segment(&s, &vec![vec![vec![1.0; 8]]; 4]).is_err());
}

/// Many small segments of 512-value embeddings: sixteen of one image, five of two to five,
/// one of 30 and one of 700, as tiered merging leaves them between compactions.
const SMALL_SEGMENTS: [usize; 23] = [
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 5, 4, 2, 30, 700,
];

/// Scores a query against [`SMALL_SEGMENTS`] and checks every cosine against the f64
/// reference; returns the response and the layouts.
fn run_small_segments<C, E>(
    cipher: &C,
    ev: &E,
    encoding: &VectorEncoding,
    exactness: Exactness,
) -> (blindsight_search::response::Response<C::Ct>, Vec<Layout>)
where
    C: SlotCipher,
    E: SlotEvaluator<Ct = C::Ct>,
{
    let n: usize = SMALL_SEGMENTS.iter().sum();
    let of = 9; // in a one-image segment
    let (features, query_features) = feature_vectors(n, 512, of, 99);
    let gallery: Vec<EncodedImage> = features
        .iter()
        .map(|f| EncodedImage::from_features(encoding, f))
        .collect();
    let query = EncodedImage::from_features(encoding, &query_features);
    let mut segments = Vec::new();
    let mut start = 0;
    for size in SMALL_SEGMENTS {
        let enc =
            encrypt_segment(cipher, &channel_values(&gallery[start..start + size], 1)).unwrap();
        segments.push(PreparedSegment::new(ev, enc.layout, enc.channels).unwrap());
        start += size;
    }
    let q = encrypt_query(cipher, &query.values()).unwrap();
    let response = score(ev, &segments, &q).unwrap();
    let layouts: Vec<Layout> = segments.iter().map(|s| s.layout).collect();
    let mut dots = ChannelDots::zeros(1, 0).unwrap();
    for d in decrypt_response(cipher, &layouts, 1, &response).unwrap() {
        dots.extend(&d).unwrap();
    }
    let got = similarities(encoding, &gallery, &query, &dots);
    let want = similarities(
        encoding,
        &gallery,
        &query,
        &reference_dots(&gallery, &query),
    );
    assert_eq!(top_k(&got, RankRule::WholeCosine, 1), [of]);
    let mut worst = 0f64;
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        match exactness {
            Exactness::Exact => assert_eq!(g, w, "image {k}"),
            Exactness::Within(tol) => {
                let err = (g.whole_cosine - w.whole_cosine).abs();
                worst = worst.max(err);
                assert!(err <= tol, "image {k}: {err}");
            }
        }
    }
    eprintln!("packed response: largest cosine error {worst:.2e}");
    (response, layouts)
}

/// Response ciphertexts per channel for [`SMALL_SEGMENTS`]: under the CKKS shape (16 lanes
/// per row) their last groups fill 58 lanes, packed into 4 ciphertexts; under the BFV shape
/// (8 lanes per row, two rows) the segments of 30 and 700 fill more than a row and keep
/// their own, the other 32 lanes take 4.
const PACKED_CKKS: usize = 4;
const PACKED_BFV: usize = 6;

fn small_segment_steps(shape: SlotShape, vector_slots: usize) -> Vec<i64> {
    let mut steps: Vec<i64> = SMALL_SEGMENTS
        .iter()
        .flat_map(|&n| {
            Layout::new(n, 512, vector_slots, shape)
                .unwrap()
                .galois_steps()
        })
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

#[test]
fn no_op_small_segments_share_response_ciphertexts() {
    let bfv = SlotShape {
        rows: 2,
        row_len: 4096,
    };
    let s = NoOp::<i64>::with_max_trace(bfv, 4);
    let encoding = VectorEncoding::for_bfv_unit_vectors(532_709_377, 512);
    let (response, _) = run_small_segments(&s, &s, &encoding, Exactness::Exact);
    assert_eq!(response.ciphertexts[0].len(), PACKED_BFV);
    let ckks = SlotShape {
        rows: 1,
        row_len: 4096,
    };
    for trace in TRACES {
        let s = NoOp::<Complex>::with_max_trace(ckks, trace);
        let (response, _) =
            run_small_segments(&s, &s, &VectorEncoding::Unit, Exactness::Within(1e-12));
        assert_eq!(response.ciphertexts[0].len(), PACKED_CKKS, "trace {trace}");
    }
}

#[test]
fn bfv_small_segments_share_response_ciphertexts_exactly() {
    let ctx = Context::preset("bfv-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let steps = small_segment_steps(shape_of(&ctx), i64::vector_slots(512));
    let ev = he_evaluator(&ctx, &sk, &steps);
    let response_key = response_secret(&ctx, &RESPONSE_SEED).unwrap();
    let cipher = BfvCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    let encoding = VectorEncoding::for_bfv_unit_vectors(ctx.params().plain_modulus(), 512);
    let (response, _) = run_small_segments(&cipher, &ev, &encoding, Exactness::Exact);
    assert_eq!(response.ciphertexts[0].len(), PACKED_BFV);
    // the noise budget left in every response ciphertext, packed (the last four) or not
    let budgets: Vec<f64> = response.ciphertexts[0]
        .iter()
        .map(|ct| response_key.noise_budget(&ctx, ct).unwrap())
        .collect();
    eprintln!("BFV response noise budgets (bits): {budgets:.1?}");
    assert!(budgets.iter().all(|&b| b >= 1.5), "{budgets:?}");
}

#[test]
fn ckks_small_segments_share_response_ciphertexts_within_2e_6() {
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let steps = small_segment_steps(shape_of(&ctx), Complex::vector_slots(512));
    let ev = he_evaluator(&ctx, &sk, &steps);
    let cipher = CkksCipher::new(&ctx, sk, response_secret(&ctx, &RESPONSE_SEED).unwrap()).unwrap();
    let (response, _) =
        run_small_segments(&cipher, &ev, &VectorEncoding::Unit, Exactness::Within(2e-6));
    assert_eq!(response.ciphertexts[0].len(), PACKED_CKKS);
}
