//! Every decoder of untrusted bytes in `blindsight-search` survives random mutations of
//! valid input (10 000 cases each): an error or a value that is consistent, never a panic
//! or an unbounded allocation. Layouts with arbitrary fields never overflow or divide by
//! zero, and the layout the server derives is the one the client encrypts with.
#![allow(clippy::unwrap_used, reason = "tests")]

use blindsight_he::{Context, Scheme, SecretKey};
use blindsight_search::Layout;
use blindsight_search::client::encrypt_segment_with;
use blindsight_search::he_backend::{BfvCipher, CkksCipher};
use blindsight_search::he_backend::{response_secret, segment_layout, shape_of};
use blindsight_search::rank::ImageNorms;
use blindsight_search::slots::SlotShape;
use blindsight_search::vectors::image_vector;
use blindsight_testdata::{Mutation, mutate};
use proptest::prelude::*;

/// The response secret's seed of every test key set.
const RESPONSE_SEED: [u8; 32] = [7; 32];

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(any::<[u64; 4]>().prop_map(Mutation::from_words), 1..5)
}

/// Exercises every method of a layout that parsed: none may panic, and the numbers agree.
fn exercise(l: &Layout) {
    let per_channel = l.ciphertexts_per_channel();
    assert!(per_channel >= l.groups());
    assert!(l.lanes() >= 1 && l.giant() >= 1);
    assert!(l.galois_steps().len() <= l.baby + l.giant() + 64);
    let (g, s) = l.score_slot(l.count - 1);
    assert!(g < l.groups() && s < l.shape.len());
    assert_eq!(Layout::from_bytes(&l.to_bytes()).unwrap(), *l);
}

fn valid_layouts() -> Vec<Layout> {
    let bfv = SlotShape {
        rows: 2,
        row_len: 4096,
    };
    let ckks = SlotShape {
        rows: 1,
        row_len: 4096,
    };
    [(1, 4096), (1001, 4096), (9000, 256), (16384, 512), (3, 1)]
        .iter()
        .flat_map(|&(n, d)| {
            [
                Layout::new(n, d, d.next_power_of_two(), bfv).unwrap(),
                Layout::new(n, d, d.max(2).next_power_of_two() / 2, ckks).unwrap(),
            ]
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_layouts_are_errors_or_consistent(pick in 0usize..10, m in mutations()) {
        let layouts = valid_layouts();
        let bytes = mutate(&layouts[pick % layouts.len()].to_bytes(), &m);
        if let Ok(l) = Layout::from_bytes(&bytes) {
            exercise(&l);
        }
    }

    #[test]
    fn layouts_with_arbitrary_fields_never_panic(fields in any::<[u64; 7]>(), small in any::<[u8; 7]>(), mix in any::<u8>()) {
        // half of each field from the full range, half small (so that many parse)
        let mut bytes = b"BLSL\x01".to_vec();
        for (i, (&f, &s)) in fields.iter().zip(&small).enumerate() {
            let v = if mix >> i & 1 == 0 { f } else { u64::from(s).next_power_of_two() };
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        if let Ok(l) = Layout::from_bytes(&bytes) {
            exercise(&l);
        }
    }

    #[test]
    fn layout_new_never_panics(count in any::<usize>(), dim in any::<usize>(), slots in any::<usize>(), rows in any::<usize>(), row_len in any::<usize>()) {
        let shape = SlotShape { rows: rows % 4, row_len: 1 << (row_len % 70).min(63) };
        if let Ok(l) = Layout::new(count % (1 << 34), dim % (1 << 20), 1usize << (slots % 20), shape) {
            exercise(&l);
        }
    }

    #[test]
    fn mutated_norms_are_errors_or_two_numbers_per_channel(m in mutations(), channels in 0usize..5) {
        let norms = ImageNorms { encoded: vec![1.0, 2.0, 3.0], source: vec![4.0, 5.0, 6.0] };
        if let Some(n) = ImageNorms::from_bytes(&mutate(&norms.to_bytes(), &m), channels) {
            prop_assert_eq!(n.to_bytes().len(), 16 * channels);
            prop_assert_eq!(n.channels(), channels);
        }
    }

    #[test]
    fn mutated_images_are_errors_or_vectors(pick in 0usize..50, m in mutations()) {
        let e = blindsight_testdata::first(50)[pick];
        if let Ok(v) = image_vector(&mutate(e.png, &m), e.name, 16) {
            prop_assert_eq!(v.dim(), 256);
        }
    }
}

#[test]
fn the_server_derives_the_layout_the_client_encrypts_with() {
    for preset in ["bfv-8192", "ckks-8192"] {
        let ctx = Context::preset(preset).unwrap();
        for (n, d) in [(1, 4096), (1001, 4096), (9000, 256), (5, 1280)] {
            let derived = segment_layout(&ctx, n, d).unwrap();
            let (rows, row_len) = (shape_of(&ctx).rows, shape_of(&ctx).row_len);
            assert_eq!((derived.shape.rows, derived.shape.row_len), (rows, row_len));
            assert_eq!((derived.count, derived.dim), (n, d));
        }
        // the layout the client actually encrypts with is the derived one
        let sk = SecretKey::generate(&ctx).unwrap();
        for (n, d) in [(3, 16), (300, 64)] {
            let vectors = vec![vec![vec![1.0; d]; n]; 3];
            let seg = match ctx.scheme() {
                Scheme::Bfv => {
                    let c = BfvCipher::new(
                        &ctx,
                        sk.clone(),
                        response_secret(&ctx, &RESPONSE_SEED).unwrap(),
                    )
                    .unwrap();
                    encrypt_segment_with(&c, &vectors, |_| Ok(()))
                        .unwrap()
                        .layout
                }
                _ => {
                    let c = CkksCipher::new(
                        &ctx,
                        sk.clone(),
                        response_secret(&ctx, &RESPONSE_SEED).unwrap(),
                    )
                    .unwrap();
                    encrypt_segment_with(&c, &vectors, |_| Ok(()))
                        .unwrap()
                        .layout
                }
            };
            assert_eq!(seg, segment_layout(&ctx, n, d).unwrap());
        }
        assert!(segment_layout(&ctx, 0, 4096).is_err());
        assert!(segment_layout(&ctx, 10, 1 << 20).is_err());
    }
}
