//! Every decoder of untrusted bytes in the application survives random mutations of valid
//! input (10 000 cases each): wire frames (with the checksum recomputed after the mutation
//! too, so that mutations reach the field parsers), keystores and sealed payloads. Each must
//! return an error or a value that encodes back consistently; never panic, never allocate
//! beyond what the bytes can hold.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use blindsight_client::keystore::Keystore;
use blindsight_client::seal;
use blindsight_proto::{self as wire, AppendSegment, CompactSegment, CreateCollection};
use blindsight_server::store::{ImageEntry, ImageRecord, PayloadBatch};
use blindsight_testdata::{Mutation, crc32, mutate};
use proptest::prelude::*;
use std::sync::OnceLock;

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(any::<[u64; 4]>().prop_map(Mutation::from_words), 1..5)
}

/// The mutated frame, with its checksum recomputed when `reseal`.
fn mutated_frame(frame: &[u8], m: &[Mutation], reseal: bool) -> Vec<u8> {
    if !reseal || frame.len() < 4 {
        return mutate(frame, m);
    }
    let mut content = mutate(&frame[..frame.len() - 4], m);
    let crc = crc32(&content);
    content.extend_from_slice(&crc.to_le_bytes());
    content
}

fn image(id: i64, position: usize) -> ImageRecord {
    ImageRecord {
        id,
        position,
        tag: vec![id as u8; 32],
        meta: vec![7; 70],
        payload: vec![9; 100],
        source: vec![4; 50],
        thumbnail: vec![6; 20],
    }
}

fn append() -> AppendSegment {
    AppendSegment {
        layout: vec![1; 61],
        ciphertexts: vec![vec![vec![2; 40]], vec![vec![3; 40]], vec![vec![4; 40]]],
        images: vec![image(11, 0), image(12, 1)],
        galois_keys: vec![5; 30],
    }
}

/// One valid frame of every message kind.
fn frames() -> &'static [Vec<u8>] {
    static F: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    F.get_or_init(|| {
        vec![
            CreateCollection {
                name: "photos".into(),
                params: vec![1; 50],
                vectors: "embedding:1280:efficientnet-lite0@0123456789abcdef:sqrt-l2".into(),
                relin_key: vec![2; 80],
                galois_keys: vec![3; 80],
                response_key: vec![5; 80],
                key_id: "abc".into(),
            }
            .encode(),
            append().encode(),
            CompactSegment {
                olds: vec![(3, vec![11]), (4, vec![12])],
                batch: Some(wire::RebuiltSegment {
                    layout: vec![1; 61],
                    ciphertexts: vec![vec![vec![2; 40]], vec![vec![3; 40]], vec![vec![4; 40]]],
                    placements: vec![(11, 1), (12, 0)],
                    galois_keys: vec![5; 30],
                }),
            }
            .encode(),
            wire::encode_search(&[vec![1; 30], vec![2; 30], vec![3; 30]]),
            wire::encode_search(&[vec![1; 30]]),
            wire::encode_search_response(&wire::SearchResponse {
                version: 4,
                ciphertexts: vec![vec![vec![1; 20]], vec![vec![2; 20]], vec![vec![3; 20]]],
                segments: vec![wire::SegmentScores {
                    segment: 2,
                    layout: vec![1; 61],
                    live: vec![(0, 11), (1, 12)],
                    groups: vec![(0, 0), (0, 3)],
                }],
            }),
            wire::encode_ids(&[1, 2, 3, 4]),
            wire::encode_payloads(&PayloadBatch {
                found: vec![(1, vec![1; 30]), (2, vec![2; 10])],
                missing: vec![3],
            }),
            wire::encode_image_page(&wire::ImagePage {
                version: 9,
                images: vec![ImageEntry {
                    id: 1,
                    segment_id: 2,
                    position: 0,
                    tag: vec![1; 32],
                    meta: vec![2; 70],
                    deleted: false,
                    thumbnail_slot: Some(3),
                }],
                next: Some(1),
            }),
        ]
    })
}

/// Decodes `bytes` as message `kind`; a decoded value must encode to a frame that decodes to
/// the same value.
fn decode_any(kind: usize, bytes: &[u8]) {
    match kind {
        0 => {
            if let Ok(m) = CreateCollection::decode(bytes) {
                assert_eq!(CreateCollection::decode(&m.encode()).unwrap(), m);
            }
        }
        1 => {
            if let Ok(m) = AppendSegment::decode(bytes) {
                assert_eq!(AppendSegment::decode(&m.encode()).unwrap(), m);
            }
        }
        2 => {
            if let Ok(m) = CompactSegment::decode(bytes) {
                assert_eq!(CompactSegment::decode(&m.encode()).unwrap(), m);
            }
        }
        3 => {
            if let Ok(m) = wire::decode_search(bytes) {
                assert_eq!(wire::decode_search(&wire::encode_search(&m)).unwrap(), m);
            }
        }
        4 => {
            if let Ok(m) = wire::decode_search_response(bytes) {
                let again = wire::encode_search_response(&m);
                assert_eq!(wire::decode_search_response(&again).unwrap(), m);
            }
        }
        5 => {
            if let Ok(m) = wire::decode_ids(bytes) {
                assert_eq!(wire::decode_ids(&wire::encode_ids(&m)).unwrap(), m);
            }
        }
        6 => {
            if let Ok(m) = wire::decode_payloads(bytes) {
                assert_eq!(
                    wire::decode_payloads(&wire::encode_payloads(&m)).unwrap(),
                    m
                );
            }
        }
        _ => {
            if let Ok(m) = wire::decode_image_page(bytes) {
                let again = wire::encode_image_page(&m);
                assert_eq!(wire::decode_image_page(&again).unwrap(), m);
            }
        }
    }
}

fn keystore() -> &'static Vec<u8> {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    K.get_or_init(|| {
        Keystore::generate("bfv-4096")
            .unwrap()
            .to_bytes(None)
            .unwrap()
            .to_vec()
    })
}

macro_rules! frame_fuzz {
    ($name:ident, $kind:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]
            #[test]
            fn $name(m in mutations(), reseal in any::<bool>()) {
                let frame = &frames()[$kind];
                decode_any($kind, &mutated_frame(frame, &m, reseal));
                // and every other decoder on this kind's bytes
                decode_any(($kind + 1) % 8, &mutated_frame(frame, &m, reseal));
            }
        }
    };
}

frame_fuzz!(mutated_create_frames, 0);
frame_fuzz!(mutated_append_frames, 1);
frame_fuzz!(mutated_compact_frames, 2);
frame_fuzz!(mutated_search_frames, 3);
frame_fuzz!(mutated_search_response_frames, 4);
frame_fuzz!(mutated_id_frames, 5);
frame_fuzz!(mutated_payload_frames, 6);
frame_fuzz!(mutated_image_list_frames, 7);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_keystores_are_errors_or_keystores(m in mutations(), reseal in any::<bool>()) {
        let bytes = mutated_frame(keystore(), &m, reseal);
        if let Ok(k) = Keystore::from_bytes(&bytes, None, "fuzz") {
            prop_assert_eq!(k.preset.as_str(), "bfv-4096");
        }
    }

    /// Passphrase-sealed keystores, read without the passphrase: every header field (salt,
    /// key-derivation parameters, nonce, lengths, checksum) is parsed before the refusal;
    /// the key derivation itself runs in the smaller test below.
    #[test]
    fn mutated_sealed_keystore_headers_are_errors(m in mutations(), reseal in any::<bool>()) {
        static SEALED: OnceLock<Vec<u8>> = OnceLock::new();
        let sealed = SEALED.get_or_init(|| {
            Keystore::generate("bfv-4096").unwrap().to_bytes(Some("pw")).unwrap().to_vec()
        });
        let bytes = mutated_frame(sealed, &m, reseal);
        prop_assert!(Keystore::from_bytes(&bytes, None, "fuzz").is_err());
    }

    #[test]
    fn mutated_sealed_payloads_never_open(m in mutations()) {
        static SEALED: OnceLock<Vec<u8>> = OnceLock::new();
        let key = [7u8; 32];
        let sealed = SEALED.get_or_init(|| seal::seal(&key, "photos", 5, b"an image file").unwrap());
        let bytes = mutate(sealed, &m);
        if let Ok(plain) = seal::open(&key, "photos", 5, &bytes) {
            // only an identity mutation can open
            prop_assert_eq!(bytes.as_slice(), sealed.as_slice());
            prop_assert_eq!(plain.as_slice(), b"an image file".as_slice());
        }
    }
}

/// Sealed keystores run Argon2id (64 MiB) when the header parses: fewer cases, but the
/// header and body parsers they reach are the ones the 10 000 cases above exercise.
#[test]
fn mutated_passphrase_keystores_are_errors() {
    let sealed = Keystore::generate("bfv-4096")
        .unwrap()
        .to_bytes(Some("pw"))
        .unwrap()
        .to_vec();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    runner
        .run(&(mutations(), any::<bool>()), |(m, reseal)| {
            let bytes = mutated_frame(&sealed, &m, reseal);
            if bytes != sealed {
                prop_assert!(Keystore::from_bytes(&bytes, Some("pw"), "fuzz").is_err());
            }
            Ok(())
        })
        .unwrap();
}
