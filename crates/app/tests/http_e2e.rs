//! End to end over real HTTP on 127.0.0.1: create, ingest real images, search a perturbed
//! copy, fetch it back byte-identical, delete, search again, token isolation on every
//! endpoint, restart on the same file; for both schemes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight_client::ClientError;
use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_proto::{self as wire, AppendSegment};
use blindsight_search::rank::RankRule;
use blindsight_search::vectors::{DEFAULT_SIDE, image_vector};
use blindsight_server::{LocalServer, ServerOptions};
use std::io::Cursor;

/// The answer cap of the raw searches below.
const ANSWER: usize = blindsight_client::remote::MAX_SEARCH_RESPONSE;
use std::path::Path;

/// A server on an ephemeral loopback port, stopped on drop.
struct TestServer {
    url: String,
    admin: String,
    _server: LocalServer,
}

impl TestServer {
    fn start(db: &Path) -> Self {
        let server = LocalServer::start(ServerOptions::new(db.to_path_buf())).unwrap();
        Self {
            url: server.url().to_string(),
            admin: server.admin_token().to_string(),
            _server: server,
        }
    }
}

fn real_images(n: usize) -> Vec<(String, Vec<u8>)> {
    blindsight_testdata::first(n)
        .iter()
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect()
}

fn perturbed_png(bytes: &[u8]) -> Vec<u8> {
    let v = image_vector(bytes, "q", DEFAULT_SIDE).unwrap().perturbed();
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(v.to_rgb())
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Same images in the same order, cosines equal up to CKKS noise (fresh query encryption
/// and flooded decryption every time, each within 1e-4 of the reference; BFV is exact).
fn assert_same_results(
    a: &[blindsight_client::client::Match],
    b: &[blindsight_client::client::Match],
) {
    assert_eq!(
        a.iter().map(|m| m.id).collect::<Vec<_>>(),
        b.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.name, y.name);
        for c in 0..3 {
            assert!((x.channel_cosines[c] - y.channel_cosines[c]).abs() < 2e-4);
        }
        assert!((x.whole_cosine - y.whole_cosine).abs() < 2e-4);
    }
}

fn expect_status<T: std::fmt::Debug>(r: Result<T, ClientError>, status: u16) {
    match r {
        Err(ClientError::Remote { status: s, .. }) => assert_eq!(s, status),
        other => panic!("expected HTTP {status}, got {other:?}"),
    }
}

fn run(preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gallery.db");
    let server = TestServer::start(&db);
    let remote = Remote::new(&server.url).unwrap();
    let ks = Keystore::generate(preset).unwrap();
    // creating a collection needs the admin token
    expect_status(
        Client::create(
            &ks,
            &remote,
            "photos",
            &blindsight_client::encoder::pixels_kind(),
        ),
        401,
    );
    expect_status(
        Client::create(
            &ks,
            &remote.with_token("wrong"),
            "photos",
            &blindsight_client::encoder::pixels_kind(),
        ),
        401,
    );
    let admin = remote.with_token(&server.admin);
    let token = Client::create(
        &ks,
        &admin,
        "photos",
        &blindsight_client::encoder::pixels_kind(),
    )
    .unwrap();
    let client = Client::new(
        Keystore::from_bytes(&ks.to_bytes(None).unwrap(), None, "ks").unwrap(),
        remote.with_token(&token),
        "photos",
    )
    .unwrap();

    // ingest ~50 real images plus a non-image and a truncated PNG
    let mut files = real_images(48);
    files.push(("notes.txt.png".into(), b"not an image at all".to_vec()));
    let truncated = files[3].1[..files[3].1.len() / 2].to_vec();
    files.push(("truncated.png".into(), truncated));
    let report = client.ingest(&files, |_| {}).unwrap();
    assert_eq!(report.added, 48);
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert!(report.failed.iter().any(|(n, _)| n == "truncated.png"));
    // ingesting again adds nothing
    let again = client.ingest(&files[..10], |_| {}).unwrap();
    assert_eq!((again.added, again.duplicates), (0, 10));

    // search a perturbed copy of image 17: it comes first
    let (target_name, target_bytes) = files[17].clone();
    let query = perturbed_png(&target_bytes);
    let (matches, timing) = client
        .search(&query, "query.png", 5, RankRule::ChannelTriple)
        .unwrap();
    assert_eq!(matches[0].name, target_name);
    assert!(timing.server_s > 0.0 && timing.up_bytes > 0 && timing.down_bytes > 0);
    let (whole, _) = client
        .search(&query, "query.png", 5, RankRule::WholeCosine)
        .unwrap();
    assert_eq!(whole[0].name, target_name);

    // fetch: the original file, byte for byte
    let fetched = client.fetch(&[matches[0].id]).unwrap();
    assert_eq!(fetched, vec![(matches[0].id, target_bytes.clone())]);

    // a second collection's token is refused on the first collection's data, everywhere
    let other = Client::create(
        &ks,
        &admin,
        "other",
        &blindsight_client::encoder::pixels_kind(),
    )
    .unwrap();
    let intruder = remote.with_token(&other);
    let nobody = remote.with_token("0000");
    for r in [&intruder, &nobody, &remote] {
        expect_status(r.info("photos"), 401);
        expect_status(r.images("photos"), 401);
        expect_status(r.payloads("photos", &[matches[0].id]), 401);
        expect_status(r.delete("photos", &[matches[0].id]), 401);
        expect_status(r.search("photos", &[vec![], vec![], vec![]], ANSWER), 401);
        let empty = AppendSegment {
            layout: vec![],
            ciphertexts: vec![vec![], vec![], vec![]],
            images: vec![],
            galois_keys: vec![],
        };
        expect_status(r.append("photos", &empty), 401);
    }
    // and the other collection cannot reach the first one's images through its own name
    assert!(
        intruder
            .payloads("other", &[matches[0].id])
            .unwrap()
            .is_empty()
    );

    // delete, search again: the deleted image is absent
    assert_eq!(client.delete(&[matches[0].id]).unwrap(), 1);
    let (after, _) = client
        .search(&query, "query.png", 5, RankRule::ChannelTriple)
        .unwrap();
    assert!(after.iter().all(|m| m.id != matches[0].id));
    assert!(client.fetch(&[matches[0].id]).unwrap().is_empty());

    // compaction rebuilds the segment without the deleted image; results are unchanged
    let r = client.compact().unwrap();
    assert_eq!((r.replaced, r.written, r.purged, r.skipped), (1, 1, 1, 0));
    let r = client.compact().unwrap();
    assert_eq!((r.replaced, r.purged), (0, 0), "nothing left to compact");
    let info = remote.with_token(&token).info("photos").unwrap();
    assert_eq!(
        (info["images"].as_u64(), info["deleted"].as_u64()),
        (Some(47), Some(0))
    );
    let (compacted, _) = client
        .search(&query, "query.png", 5, RankRule::ChannelTriple)
        .unwrap();
    assert_same_results(&compacted, &after);
    assert_eq!(
        client.fetch(&[after[0].id]).unwrap().len(),
        1,
        "live images keep their ids and payloads"
    );

    // bad bodies: 4xx, and the server keeps serving
    let authed = remote.with_token(&token);
    expect_status(
        authed.search("photos", &[vec![1, 2, 3], vec![], vec![]], ANSWER),
        400,
    );
    let mut bad_query = wire::encode_search(&[vec![], vec![], vec![]]);
    bad_query[10] ^= 1;
    let raw = reqwest::blocking::Client::new()
        .post(format!("{}/v1/collections/photos/search", server.url))
        .bearer_auth(&token)
        .body(bad_query)
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    // a truncated ciphertext, and ciphertexts of another parameter set, in well-formed frames
    let other_ctx = blindsight_he::Context::preset(if preset.starts_with("bfv") {
        "ckks-8192"
    } else {
        "bfv-8192"
    })
    .unwrap();
    let other_sk = blindsight_he::SecretKey::generate(&other_ctx).unwrap();
    let foreign_pt = match other_ctx.scheme() {
        blindsight_he::Scheme::Bfv => blindsight_he::BfvEncoder::new(&other_ctx)
            .unwrap()
            .encode(&[1, 2, 3])
            .unwrap(),
        _ => {
            let e = blindsight_he::CkksEncoder::new(&other_ctx).unwrap();
            e.encode(&[0.5], e.default_scale(), other_ctx.max_level())
                .unwrap()
        }
    };
    let foreign = blindsight_he::Serializable::to_bytes(
        &other_sk.encrypt(&other_ctx, &foreign_pt).unwrap(),
        &other_ctx,
    )
    .unwrap();
    expect_status(
        authed.search(
            "photos",
            &[foreign.clone(), foreign.clone(), foreign.clone()],
            ANSWER,
        ),
        400,
    );
    let truncated_ct = foreign[..foreign.len() / 2].to_vec();
    expect_status(
        authed.search(
            "photos",
            &[truncated_ct.clone(), truncated_ct.clone(), truncated_ct],
            ANSWER,
        ),
        400,
    );
    let mut flipped = foreign.clone();
    flipped[200] ^= 4;
    expect_status(
        authed.search(
            "photos",
            &[flipped.clone(), flipped.clone(), flipped],
            ANSWER,
        ),
        400,
    );
    // an ingest batch inconsistent with its own layout is refused, nothing is stored
    let shape = blindsight_search::slots::SlotShape {
        rows: 1,
        row_len: 4096,
    };
    let layout = blindsight_search::Layout::new(5, 4096, 2048, shape)
        .unwrap()
        .to_bytes();
    let bogus = AppendSegment {
        layout,
        ciphertexts: vec![vec![], vec![], vec![]],
        images: vec![],
        galois_keys: vec![],
    };
    expect_status(authed.append("photos", &bogus), 400);
    let huge = vec![0u8; 17 << 20];
    // refused from its declared length, before it is read: the client sees 413, or the
    // connection closed under its upload
    match reqwest::blocking::Client::new()
        .post(format!("{}/v1/collections/photos/search", server.url))
        .bearer_auth(&token)
        .body(huge)
        .send()
    {
        Ok(raw) => assert_eq!(raw.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let (still, _) = client
        .search(&query, "query.png", 5, RankRule::ChannelTriple)
        .unwrap();
    assert_same_results(&still, &after);

    // restart on the same file: same results
    drop(client);
    drop(server);
    let server = TestServer::start(&db);
    let remote = Remote::new(&server.url).unwrap();
    let client = Client::new(ks, remote.with_token(&token), "photos").unwrap();
    let (restarted, _) = client
        .search(&query, "query.png", 5, RankRule::ChannelTriple)
        .unwrap();
    assert_same_results(&restarted, &after);
}

#[test]
fn ckks_end_to_end_over_http() {
    run("ckks-8192");
}

#[test]
fn bfv_end_to_end_over_http() {
    run("bfv-8192");
}

/// A mirrored copy of an image file, its central 80 % kept (PNG).
fn mirrored_crop_png(bytes: &[u8]) -> Vec<u8> {
    let img = image::load_from_memory(bytes).unwrap().to_rgba8();
    let (w, h) = img.dimensions();
    let cropped = image::imageops::crop_imm(&img, w / 10, h / 10, w * 8 / 10, h * 8 / 10);
    let flipped = image::imageops::flip_horizontal(&cropped.to_image());
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(flipped)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// An embedding collection over HTTP: the model runs on the client, the server sees one
/// ciphertext per query; an edited copy (mirrored and cropped) finds its original first;
/// a pixel query (three ciphertexts) is refused by the server; a collection recorded with
/// another model is refused by the client before anything is encrypted.
fn run_embedding(preset: &str) {
    use blindsight_client::encoder::embedding_kind;
    use blindsight_search::VectorKind;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("gallery.db"));
    let remote = Remote::new(&server.url).unwrap();
    let admin = remote.with_token(&server.admin);
    let ks = Keystore::generate(preset).unwrap();
    let token = Client::create(&ks, &admin, "emb", &embedding_kind()).unwrap();
    let client = Client::new(ks.duplicate(), remote.with_token(&token), "emb").unwrap();
    assert_eq!(client.vectors(), &embedding_kind());
    // spread over the set (its first images are near-identical letter tiles)
    let files: Vec<(String, Vec<u8>)> = blindsight_testdata::all()
        .iter()
        .step_by(97)
        .take(24)
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect();
    let report = client.ingest(&files, |_| {}).unwrap();
    assert_eq!(report.added, 24);
    for k in [3usize, 17] {
        let query = mirrored_crop_png(&files[k].1);
        let (matches, timing) = client
            .search(&query, "query.png", 3, RankRule::WholeCosine)
            .unwrap();
        assert_eq!(matches[0].name, files[k].0, "{matches:?}");
        assert_eq!(matches[0].channel_cosines.len(), 1);
        assert!(matches[0].whole_cosine > matches[1].whole_cosine);
        // one query ciphertext, one response ciphertext per group
        assert!(timing.up_bytes < 250_000, "{}", timing.up_bytes);
    }

    // three query ciphertexts against a one-channel collection: refused by the server
    let pixel_query = vec![vec![0u8; 100]; 3];
    expect_status(
        remote
            .with_token(&token)
            .search("emb", &pixel_query, ANSWER),
        400,
    );

    // a collection recorded with another model: this client cannot make its vectors
    let other_model =
        VectorKind::parse("embedding:1280:efficientnet-lite0@00000000000000ff:sqrt-l2").unwrap();
    let other = Client::create(&ks, &admin, "other", &other_model).unwrap();
    let msg = match Client::new(ks.duplicate(), remote.with_token(&other), "other") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a collection of another model was accepted"),
    };
    assert!(
        msg.contains("00000000000000ff") && msg.contains(&embedding_kind().spec()),
        "{msg}"
    );
    // a pixel collection searched by this build's pixel encoder still works beside it
    let px = Client::create(
        &ks,
        &admin,
        "px",
        &blindsight_client::encoder::pixels_kind(),
    )
    .unwrap();
    let px = Client::new(ks, remote.with_token(&px), "px").unwrap();
    px.ingest(&files[..4], |_| {}).unwrap();
    let (m, _) = px
        .search(&files[2].1, "q.png", 1, RankRule::ChannelTriple)
        .unwrap();
    assert_eq!(m[0].name, files[2].0);
    assert_eq!(m[0].channel_cosines.len(), 3);
}

#[test]
fn ckks_embedding_collection_end_to_end() {
    run_embedding("ckks-8192");
}

#[test]
fn bfv_embedding_collection_end_to_end() {
    run_embedding("bfv-8192");
}

/// `blindsight eval` on a small embedded gallery, through the encrypted path: every edit of
/// every sampled original is searched in both collections; the embedding finds the
/// originals of nearly all of them, and beats pixels on the geometric edits (crop, shift,
/// mirror, rotation), which pixel cosines cannot see through.
#[test]
fn eval_recall_on_embedded_images_is_above_a_floor() {
    use blindsight::eval::edits::Edit;
    use blindsight::eval::{self, EvalOptions};
    let work = tempfile::tempdir().unwrap();
    let report = eval::run(&EvalOptions {
        images: None,
        count: 60,
        sample: 5,
        preset: "ckks-8192".into(),
        kinds: vec![
            blindsight_client::encoder::embedding_kind(),
            blindsight_client::encoder::pixels_kind(),
        ],
        work: work.path().to_path_buf(),
        progress: false,
    })
    .unwrap();
    assert_eq!((report.gallery, report.originals), (60, 5));
    let labels: Vec<String> = report.kinds.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["embedding", "pixels · triple", "pixels · cosine"]);
    for k in &report.kinds {
        assert_eq!(k.outcomes.len(), 5 * Edit::ALL.len(), "{}", k.label());
        // photometric edits keep the original first in every kind
        for e in [Edit::Jpeg, Edit::ColourJitter, Edit::TextOverlay] {
            assert!(k.edit(e).recall_at_1 >= 0.8, "{} {}", k.label(), e.name());
        }
    }
    let embedding = &report.kinds[0];
    let overall = embedding.overall();
    eprintln!("{}", report.markdown());
    assert!(overall.recall_at_1 >= 0.8, "{overall:?}");
    assert!(overall.recall_at_10 >= 0.95, "{overall:?}");
    assert!(overall.mean_separation > 0.02, "{overall:?}");
    let geometric = [Edit::CentreCrop, Edit::Shift, Edit::Mirror, Edit::Rotate];
    let recall = |k: &eval::report::KindReport| {
        geometric
            .iter()
            .map(|&e| k.edit(e).recall_at_1)
            .sum::<f64>()
    };
    assert!(
        recall(embedding) > recall(&report.kinds[1]),
        "embedding {} vs pixels {}",
        recall(embedding),
        recall(&report.kinds[1])
    );
    assert!(report.to_json()["kinds"][0]["per_edit"]["mirror"]["queries"] == 5);
    // the stores are removed, the working directory is left
    assert!(!work.path().join("kind-0").join("gallery.db").exists());
}

/// A collection of `kind` on `server` and its client (merging after ingests unless
/// `merging` is false).
fn collection(
    server: &TestServer,
    ks: &Keystore,
    name: &str,
    kind: &blindsight_search::VectorKind,
    merging: bool,
) -> Client {
    let remote = Remote::new(&server.url).unwrap();
    let token = Client::create(ks, &remote.with_token(&server.admin), name, kind).unwrap();
    let client = Client::new(
        Keystore::from_bytes(&ks.to_bytes(None).unwrap(), None, "ks").unwrap(),
        remote.with_token(&token),
        name,
    )
    .unwrap();
    if merging {
        client
    } else {
        client.without_merging()
    }
}

fn segment_count(client: &Client) -> u64 {
    client.check_collection().unwrap()["segments"]
        .as_u64()
        .unwrap()
}

/// The first `n` test images with distinct bytes (the crate holds a few identical files).
fn distinct_images(n: usize) -> Vec<(String, Vec<u8>)> {
    blindsight_testdata::distinct_files(n)
}

/// The same images (by name: ids differ between collections) ranked the same way: equal
/// cosines (up to CKKS noise) per image, so that only images whose cosines tie within the
/// noise may trade places.
fn assert_same_ranking(
    a: &[blindsight_client::client::Match],
    b: &[blindsight_client::client::Match],
) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        if x.name != y.name {
            assert!(
                (x.whole_cosine - y.whole_cosine).abs() < 2e-4,
                "{x:?} vs {y:?}"
            );
        }
        let other = b
            .iter()
            .find(|m| m.name == x.name)
            .expect("the same images");
        assert!((x.whole_cosine - other.whole_cosine).abs() < 2e-4);
    }
}

/// A search over many one-image segments ranks exactly as over the one segment they merge
/// into, and answers in as many bytes: their scores share the response's ciphertexts, so
/// 40 segments, the one they merge into and one batch of the same images all answer with
/// exactly the same bytes.
fn merged_segments_rank_like_one_batch(preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("g.db"));
    let ks = Keystore::generate(preset).unwrap();
    let small = blindsight_search::VectorKind::Pixels { side: 8 };
    let files = distinct_images(40);
    let query = perturbed_png(&files[29].1);
    let rule = RankRule::WholeCosine;

    let split = collection(&server, &ks, "split", &small, false);
    for f in &files {
        assert_eq!(
            split.ingest(std::slice::from_ref(f), |_| {}).unwrap().added,
            1
        );
    }
    assert_eq!(segment_count(&split), 40);
    let (tiny, tiny_t) = split.search(&query, "q.png", 40, rule).unwrap();
    // a deletion, then the compaction: purged and merged into one segment
    let gone = tiny[5].id;
    assert_eq!(split.delete(&[gone]).unwrap(), 1);
    let r = split.compact().unwrap();
    assert_eq!((r.replaced, r.written, r.purged, r.skipped), (40, 1, 1, 0));
    assert_eq!(segment_count(&split), 1);
    let (merged, merged_t) = split.search(&query, "q.png", 40, rule).unwrap();
    let expected: Vec<_> = tiny.iter().filter(|m| m.id != gone).cloned().collect();
    assert_same_ranking(&merged, &expected);
    assert_eq!(
        tiny_t.down_bytes, merged_t.down_bytes,
        "40 one-image segments answer in the ciphertexts of one"
    );
    // the merged segment's images keep their payloads (fetch) and ids
    assert_eq!(split.fetch(&[merged[0].id]).unwrap().len(), 1);

    let batch = collection(&server, &ks, "batch", &small, false);
    let kept: Vec<_> = files
        .iter()
        .filter(|(name, _)| *name != tiny[5].name)
        .cloned()
        .collect();
    assert_eq!(batch.ingest(&kept, |_| {}).unwrap().added, 39);
    let (one, one_t) = batch.search(&query, "q.png", 40, rule).unwrap();
    assert_eq!(
        one_t.down_bytes, merged_t.down_bytes,
        "the response of one batch"
    );
    let names = |v: &[blindsight_client::client::Match]| {
        v.iter().map(|m| m.name.clone()).collect::<Vec<_>>()
    };
    let mut a = names(&one);
    let mut b = names(&merged);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn merged_segments_rank_like_one_batch_ckks() {
    merged_segments_rank_like_one_batch("ckks-8192");
}

#[test]
fn merged_segments_rank_like_one_batch_bfv() {
    merged_segments_rank_like_one_batch("bfv-8192");
}

/// 1 000 one-image ingests: tiered merging keeps the segment count logarithmic while they
/// arrive, the segments left answer in shared ciphertexts, and after `compact` the
/// response is exactly that of one batch of 1 000.
#[test]
fn a_thousand_single_ingests_merge_into_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("g.db"));
    let ks = Keystore::generate("ckks-8192").unwrap();
    let small = blindsight_search::VectorKind::Pixels { side: 8 };
    let files = distinct_images(1000);
    let nightly = collection(&server, &ks, "nightly", &small, true);
    let mut most = 0;
    for f in &files {
        assert_eq!(
            nightly
                .ingest(std::slice::from_ref(f), |_| {})
                .unwrap()
                .added,
            1
        );
        most = most.max(segment_count(&nightly));
    }
    // at most 3 segments in each of the tiers 0..=4 (4^5 > 1000)
    assert!(most <= 15, "{most} segments at once");
    let query = perturbed_png(&files[500].1);
    let rule = RankRule::WholeCosine;
    let spread = segment_count(&nightly);
    let (tiered, tiered_t) = nightly.search(&query, "q.png", 10, rule).unwrap();
    nightly.compact().unwrap();
    assert_eq!(segment_count(&nightly), 1);
    let (merged, merged_t) = nightly.search(&query, "q.png", 10, rule).unwrap();
    assert_same_ranking(&tiered, &merged);
    eprintln!(
        "{spread} segments answer in {} bytes, one in {}",
        tiered_t.down_bytes, merged_t.down_bytes
    );
    // the small segments' scores share ciphertexts: at most half of one per segment
    assert!(2 * tiered_t.down_bytes <= spread as usize * merged_t.down_bytes);
    assert_eq!(merged[0].name, files[500].0);

    let once = collection(&server, &ks, "once", &small, false);
    assert_eq!(once.ingest(&files, |_| {}).unwrap().added, 1000);
    assert_eq!(segment_count(&once), 1);
    let (one, one_t) = once.search(&query, "q.png", 10, rule).unwrap();
    assert_eq!(
        merged_t.down_bytes, one_t.down_bytes,
        "the response of one batch"
    );
    assert_same_ranking(&merged, &one);
}
