//! The client library against a fake, hostile server: layouts claiming billions of images,
//! counts that do not match the ciphertexts, positions and ids out of place, scores placed
//! outside the response, shifted out of their row or packed beyond a ciphertext's slots, answers for
//! ids that were not asked for, endless bodies, thousands of tiny ciphertexts that would
//! expand 125 times, more segments than any server keeps. Each gets an error,
//! and the client's memory stays within its stated bound (3 × the answer cap + 64 MiB),
//! never the 23 GB a claimed layout or the 1.1 GB 4 000 tiny ciphertexts once cost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_client::seal;
use blindsight_he::{CkksEncoder, Context, Evaluator, Serializable};
use blindsight_proto as wire;
use blindsight_search::Layout;
use blindsight_search::he_backend::segment_layout;
use blindsight_search::rank::{ImageNorms, RankRule};
use blindsight_server::store::{ImageEntry, PayloadBatch};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the fake server answers to a search or payload request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    HugeLayout,
    TooFewCiphertexts,
    PositionOutOfRange,
    DuplicateIds,
    UnknownImage,
    EndlessBody,
    ForeignLayout,
    UnaskedPayload,
    PlacedOutOfRange,
    ShiftedOutOfRow,
    OverclaimedCiphertext,
    TinyCiphertexts,
    ManySegments,
    TooManySegments,
}

/// The search attacks, then the payload attack (its answer cap is another).
const ATTACKS: [Attack; 14] = [
    Attack::HugeLayout,
    Attack::TooFewCiphertexts,
    Attack::PositionOutOfRange,
    Attack::DuplicateIds,
    Attack::UnknownImage,
    Attack::EndlessBody,
    Attack::ForeignLayout,
    Attack::PlacedOutOfRange,
    Attack::ShiftedOutOfRow,
    Attack::OverclaimedCiphertext,
    Attack::TinyCiphertexts,
    Attack::ManySegments,
    Attack::TooManySegments,
    Attack::UnaskedPayload,
];

/// Response ciphertexts per channel of [`Attack::TinyCiphertexts`].
const TINY: usize = 4000;

struct Fake {
    attack: AtomicUsize,
    key_id: String,
    list: Vec<u8>,
    ctx: Context,
    ct: Vec<u8>,
    /// A valid ciphertext rounded to 2 bits per coefficient: ~2 KB that reads back as a
    /// full ciphertext of 256 KB.
    tiny: Vec<u8>,
}

fn vm_hwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap()
        * 1024
}

async fn search(State(f): State<Arc<Fake>>, _query: bytes::Bytes) -> axum::response::Response {
    let attack = ATTACKS[f.attack.load(Ordering::SeqCst)];
    let valid = segment_layout(&f.ctx, 2, 4096).unwrap();
    let one = |layout: Layout, live: Vec<(usize, i64)>, groups: Vec<(usize, usize)>| {
        vec![(layout, live, groups)]
    };
    // (layout, live images, placements) per segment; one response ciphertext per channel
    let segments = match attack {
        // a layout the client's parameters give, but for 2^32 images: billions of scores
        Attack::HugeLayout => one(
            segment_layout(&f.ctx, 1 << 32, 4096).unwrap(),
            vec![(0, 1)],
            vec![(0, 0)],
        ),
        Attack::TooFewCiphertexts => one(valid, vec![(0, 1)], vec![]),
        Attack::PositionOutOfRange => one(valid, vec![(1 << 40, 1)], vec![(0, 0)]),
        Attack::DuplicateIds => one(valid, vec![(0, 1), (1, 1)], vec![(0, 0)]),
        Attack::UnknownImage => one(valid, vec![(0, 999)], vec![(0, 0)]),
        Attack::ForeignLayout => one(
            Layout::new(
                2,
                4096,
                4096,
                blindsight_search::slots::SlotShape {
                    rows: 2,
                    row_len: 4096,
                },
            )
            .unwrap(),
            vec![(0, 1)],
            vec![(0, 0)],
        ),
        Attack::PlacedOutOfRange => one(valid, vec![(0, 1)], vec![(7, 0)]),
        // two lanes shifted by one: the second leaves the row
        Attack::ShiftedOutOfRow => one(valid, vec![(0, 1)], vec![(0, 1)]),
        // two full segments of 4096 images claiming the one ciphertext sent
        Attack::OverclaimedCiphertext => {
            let full = segment_layout(&f.ctx, 4096, 4096).unwrap();
            vec![
                (full, vec![(0, 1)], vec![(0, 0)]),
                (full, vec![(1, 2)], vec![(0, 0)]),
            ]
        }
        Attack::TinyCiphertexts => {
            let tiny = vec![f.tiny.clone(); TINY];
            let resp = wire::SearchResponse {
                version: 1,
                ciphertexts: vec![tiny.clone(), tiny.clone(), tiny],
                segments: vec![wire::SegmentScores {
                    segment: 1,
                    layout: valid.to_bytes(),
                    live: vec![(0, 1)],
                    groups: vec![(0, 0)],
                }],
            };
            return axum::response::Response::new(Body::from(wire::encode_search_response(&resp)));
        }
        // one-image segments: 600 of them (one response ciphertext sent) for a collection
        // that lists 2 images, then more segments than any server keeps
        Attack::ManySegments | Attack::TooManySegments => {
            let count = if attack == Attack::ManySegments {
                600
            } else {
                wire::MAX_ANSWER_SEGMENTS + 1
            };
            let one = segment_layout(&f.ctx, 1, 4096).unwrap();
            (0..count)
                .map(|i| (one, vec![(0, i as i64 + 1)], vec![(i, 0)]))
                .collect()
        }
        Attack::EndlessBody | Attack::UnaskedPayload => {
            // an endless stream of bytes
            let chunk = bytes::Bytes::from(vec![0x5a; 1 << 20]);
            let stream = futures_stream(chunk);
            return axum::response::Response::new(Body::from_stream(stream));
        }
    };
    // valid ciphertexts of the client's own key: only the structure is hostile
    let ct = f.ct.clone();
    let resp = wire::SearchResponse {
        version: 1,
        ciphertexts: vec![vec![ct.clone()], vec![ct.clone()], vec![ct]],
        segments: segments
            .into_iter()
            .enumerate()
            .map(|(i, (layout, live, groups))| wire::SegmentScores {
                segment: i as i64 + 1,
                layout: layout.to_bytes(),
                live,
                groups,
            })
            .collect(),
    };
    axum::response::Response::new(Body::from(wire::encode_search_response(&resp)))
}

fn futures_stream(
    chunk: bytes::Bytes,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    struct Endless(bytes::Bytes);
    impl futures_core::Stream for Endless {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(Some(Ok(self.0.clone())))
        }
    }
    Endless(chunk)
}

async fn payloads(State(f): State<Arc<Fake>>, _ids: bytes::Bytes) -> axum::response::Response {
    let _ = &f;
    let batch = PayloadBatch {
        found: vec![(424_242, vec![1; 10])],
        missing: vec![],
    };
    axum::response::Response::new(Body::from(wire::encode_payloads(&batch)))
}

#[test]
fn a_hostile_server_gets_errors_and_bounded_memory() {
    let ks = Keystore::generate("ckks-8192").unwrap();
    let ctx = ks.context.clone();
    // an image list with two real sealed entries, ids 1 and 2
    let images = [1i64, 2]
        .iter()
        .map(|&id| {
            let norms = ImageNorms {
                encoded: vec![1.0; 3],
                source: vec![1.0; 3],
            };
            let mut meta = norms.to_bytes();
            meta.extend_from_slice(format!("img{id}.png").as_bytes());
            ImageEntry {
                id,
                segment_id: 1,
                position: id as usize - 1,
                tag: vec![id as u8; 32],
                meta: seal::seal(&ks.payload_key, "c/meta", id as u64, &meta).unwrap(),
                deleted: false,
                thumbnail_slot: None,
            }
        })
        .collect();
    let fake = Arc::new(Fake {
        attack: AtomicUsize::new(0),
        key_id: ks.key_id(),
        list: wire::encode_image_page(&wire::ImagePage {
            version: 1,
            images,
            next: None,
        }),
        ct: {
            let enc = CkksEncoder::new(&ctx).unwrap();
            let pt = enc
                .encode(&[0.0], enc.default_scale(), ctx.max_level())
                .unwrap();
            ks.secret_key
                .encrypt(&ctx, &pt)
                .unwrap()
                .to_bytes(&ctx)
                .unwrap()
        },
        tiny: {
            let enc = CkksEncoder::new(&ctx).unwrap();
            let pt = enc
                .encode(&[0.0], enc.default_scale(), ctx.max_level())
                .unwrap();
            let ct = ks.secret_key.encrypt(&ctx, &pt).unwrap();
            Evaluator::new(&ctx)
                .round_for_transfer(&ct, [2, 0])
                .unwrap()
                .to_bytes(&ctx)
                .unwrap()
        },
        ctx,
    });
    let app = Router::new()
        .route(
            "/v1/collections/c",
            get(|State(f): State<Arc<Fake>>| async move {
                axum::Json(serde_json::json!({
                    "collection": "c", "preset": "ckks-8192", "key_id": f.key_id,
                    "vectors": "pixels:64",
                    "galois_elements": [],
                }))
            }),
        )
        .route(
            "/v1/collections/c/images",
            get(|State(f): State<Arc<Fake>>| async move { f.list.clone() }),
        )
        .route("/v1/collections/c/search", post(search))
        .route("/v1/collections/c/payloads", post(payloads))
        .with_state(fake.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let client = Client::new(ks, Remote::new(&url).unwrap().with_token("t"), "c").unwrap();
    let query = blindsight_testdata::first(1)[0].png;
    // what the client may read and decode of an answer for its collection (2 listed images)
    let search_cap = blindsight_client::remote::search_answer_cap(2, 3) as u64;
    eprintln!(
        "tiny ciphertext: {} bytes; search answer cap {search_cap}",
        fake.tiny.len()
    );
    let before = vm_hwm();
    for (i, attack) in ATTACKS.iter().enumerate() {
        fake.attack.store(i, Ordering::SeqCst);
        let result = if *attack == Attack::UnaskedPayload {
            client.fetch(&[1]).map(|_| ())
        } else {
            client
                .search(query, "q.png", 5, RankRule::WholeCosine)
                .map(|_| ())
        };
        let err = result
            .expect_err(&format!("{attack:?} must be an error"))
            .to_string();
        eprintln!("{attack:?}: {err}");
        let expected = match attack {
            Attack::HugeLayout => "the collection lists 2",
            Attack::ManySegments => "placed in response ciphertext 1, of 1",
            Attack::TooFewCiphertexts => "placed groups",
            Attack::TinyCiphertexts => "at most one per placed group",
            Attack::TooManySegments => "a server keeps at most",
            Attack::PositionOutOfRange => "at position",
            Attack::DuplicateIds => "twice",
            Attack::UnknownImage => "does not hold",
            Attack::EndlessBody => "larger than",
            Attack::ForeignLayout => "layout",
            Attack::UnaskedPayload => "not asked for",
            Attack::PlacedOutOfRange => "placed in response ciphertext 7",
            Attack::ShiftedOutOfRow => "leaves its row",
            Attack::OverclaimedCiphertext => "claim more than",
        };
        assert!(err.contains(expected), "{attack:?}: {err}");
        // the stated bound: the answer read (at most its cap), its decoded copy, and the
        // allocator's slack (SECURITY.md, "Limits")
        let grown = vm_hwm().saturating_sub(before);
        let bound = if *attack == Attack::UnaskedPayload {
            3 * blindsight_client::remote::MAX_PAYLOAD_ANSWER as u64 + (64 << 20)
        } else {
            3 * search_cap + (64 << 20)
        };
        eprintln!("{attack:?}: the client grew by {} MiB", grown >> 20);
        assert!(
            grown < bound,
            "{attack:?}: the client grew by {grown} bytes, over {bound}"
        );
    }
}
