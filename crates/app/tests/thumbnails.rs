//! Sealed thumbnails end to end over HTTP: made at ingest (upright, 256 px at most, one size
//! class), opened only for their own image (a swapped or altered record is an error, never
//! another image), refused by the server in any other size, and given at the next
//! compaction to images ingested before thumbnails existed.
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
use blindsight_proto::{self as wire, PayloadBatch};
use blindsight_search::vectors::decode_rgb;
use blindsight_server::{LocalServer, ServerOptions};

/// A pixels collection `c` on `server` and its token.
fn client_on(server: &LocalServer, preset: &str) -> (Client, String) {
    let remote = Remote::new(server.url()).unwrap();
    let ks = Keystore::generate(preset).unwrap();
    let kind = blindsight_client::encoder::pixels_kind();
    let token = Client::create(&ks, &remote.with_token(server.admin_token()), "c", &kind).unwrap();
    let client = Client::new(ks, remote.with_token(&token), "c").unwrap();
    (client, token)
}

fn sql(db: &std::path::Path, statement: &str) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute(statement, []).unwrap()
}

#[test]
fn thumbnails_are_sealed_upright_and_backfilled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gallery.db");
    let server = LocalServer::start(ServerOptions::new(db.clone())).unwrap();
    let (client, token) = client_on(&server, "bfv-8192");
    let files = blindsight_testdata::distinct_files(6);
    // one wide image, made here: its thumbnail keeps the aspect ratio
    let wide = image::RgbImage::from_fn(1200, 300, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut wide_png = Vec::new();
    image::DynamicImage::ImageRgb8(wide)
        .write_to(
            &mut std::io::Cursor::new(&mut wide_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    let mut all = files.clone();
    all.push(("wide.png".into(), wide_png));
    let report = client.ingest(&all, |_| {}).unwrap();
    assert_eq!(report.added, 7);
    let ids: Vec<i64> = report.ids.iter().map(|(_, id)| *id).collect();

    let thumbs = client.thumbnails(&ids).unwrap();
    assert_eq!(thumbs.len(), 7);
    for (name, id) in &report.ids {
        let jpeg = &thumbs.iter().find(|(i, _)| i == id).unwrap().1;
        assert!(jpeg.starts_with(&[0xFF, 0xD8]), "{name}: a JPEG");
        let t = decode_rgb(jpeg, name).unwrap();
        let original = decode_rgb(&all.iter().find(|(n, _)| n == name).unwrap().1, name).unwrap();
        let (w, h) = original.dimensions();
        assert_eq!(
            t.width().max(t.height()),
            256.min(w.max(h)),
            "{name}: 256 px on its longer side, never enlarged"
        );
        let aspect = |a: u32, b: u32| a as f64 / b as f64;
        assert!(
            (aspect(t.width(), t.height()) - aspect(w, h)).abs() < 0.05,
            "{name}"
        );
    }
    // every record on the server is of the one size class
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sizes: Vec<i64> = conn
        .prepare("SELECT DISTINCT length(thumbnail) FROM images")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sizes, vec![wire::THUMBNAIL_SEALED_BYTES as i64]);
    drop(conn);

    // a server that swaps two records: an error, never the other image
    sql(
        &db,
        &format!(
            "UPDATE images SET thumbnail = (SELECT thumbnail FROM images WHERE id = {})
             WHERE id = {}",
            ids[1], ids[0]
        ),
    );
    match client.thumbnails(&ids[..1]) {
        Err(ClientError::PayloadAuthentication { .. }) => {}
        other => panic!("a swapped thumbnail must not open: {other:?}"),
    }

    // the server refuses a thumbnail of another size class
    let odd = PayloadBatch {
        found: vec![(ids[0], vec![1; wire::THUMBNAIL_SEALED_BYTES - 1])],
        missing: vec![],
    };
    let status = reqwest::blocking::Client::new()
        .put(format!("{}/v1/collections/c/thumbnails", server.url()))
        .bearer_auth(&token)
        .body(wire::encode_payloads(&odd))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 400);

    // images ingested before thumbnails existed: none, until the next compaction
    sql(&db, "UPDATE images SET thumbnail = NULL");
    assert!(client.thumbnails(&ids).unwrap().is_empty());
    let compacted = client.compact().unwrap();
    assert_eq!((compacted.thumbnails, compacted.thumbnails_failed), (7, 0));
    let again = client.thumbnails(&ids).unwrap();
    assert_eq!(again.len(), 7);
    // and a compaction with nothing left to make makes none
    assert_eq!(client.compact().unwrap().thumbnails, 0);
}

/// Images merged in two rounds of one tiered merge (four one-image segments merged into one
/// of four, which then fills the tier of three other four-image segments, merged in turn)
/// get their missing thumbnails once each.
#[test]
fn a_merge_of_several_rounds_backfills_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gallery.db");
    let server = LocalServer::start(ServerOptions::new(db.clone())).unwrap();
    let (client, _) = client_on(&server, "bfv-8192");
    let client = client.without_merging();
    let files = blindsight_testdata::distinct_files(16);
    for batch in files[..12].chunks(4).chain(files[12..].chunks(1)) {
        assert_eq!(client.ingest(batch, |_| {}).unwrap().added, batch.len());
    }
    sql(&db, "UPDATE images SET thumbnail = NULL");
    let merged = client.merge().unwrap();
    assert_eq!(merged.replaced, 4 + 4, "two rounds: {merged:?}");
    assert_eq!((merged.thumbnails, merged.thumbnails_failed), (16, 0));
    let ids: Vec<i64> = client
        .image_page(None, 100)
        .unwrap()
        .0
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(client.thumbnails(&ids).unwrap().len(), 16);
}
