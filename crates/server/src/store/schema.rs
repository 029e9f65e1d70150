//! The store's schema: one migration per version, applied in order by `Store::open`
//! (each in its own transaction with the version it brings).

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 9;

/// The migrations: the one at index `k` takes a database of version `k` to `k + 1`.
pub(super) const MIGRATIONS: [&str; 9] = [
    r#"
CREATE TABLE collections (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    params      BLOB NOT NULL,
    fingerprint BLOB NOT NULL,
    dim         INTEGER NOT NULL,
    relin_key   BLOB NOT NULL,
    galois_keys BLOB NOT NULL,
    token_hash  BLOB NOT NULL,
    key_id      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE segments (
    id            INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    layout        BLOB NOT NULL
);
CREATE INDEX segments_by_collection ON segments(collection_id);
CREATE TABLE ciphertexts (
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    channel    INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (segment_id, channel, idx)
) WITHOUT ROWID;
CREATE TABLE images (
    id            INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    segment_id    INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    tag           BLOB NOT NULL,
    meta          BLOB NOT NULL,
    payload       BLOB NOT NULL,
    UNIQUE (collection_id, tag),
    UNIQUE (segment_id, position)
);
CREATE TABLE tombstones (
    image_id   INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    deleted_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE collection_keys (
    collection_id   INTEGER PRIMARY KEY REFERENCES collections(id) ON DELETE CASCADE,
    relin_key       BLOB NOT NULL,
    galois_keys     BLOB NOT NULL,
    galois_elements TEXT NOT NULL DEFAULT ''
);
INSERT INTO collection_keys (collection_id, relin_key, galois_keys)
    SELECT id, relin_key, galois_keys FROM collections;
ALTER TABLE collections ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN keys_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN key_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE collections SET key_bytes = length(relin_key) + length(galois_keys);
ALTER TABLE collections DROP COLUMN relin_key;
ALTER TABLE collections DROP COLUMN galois_keys;
CREATE TABLE images_v2 (
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    id            INTEGER NOT NULL,
    segment_id    INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    tag           BLOB NOT NULL,
    meta          BLOB NOT NULL,
    deleted_at    INTEGER,
    payload       BLOB NOT NULL,
    UNIQUE (collection_id, id),
    UNIQUE (collection_id, tag),
    UNIQUE (segment_id, position)
);
INSERT INTO images_v2 (collection_id, id, segment_id, position, tag, meta, deleted_at, payload)
    SELECT i.collection_id, i.id, i.segment_id, i.position, i.tag, i.meta, t.deleted_at, i.payload
    FROM images i LEFT JOIN tombstones t ON t.image_id = i.id;
DROP TABLE tombstones;
DROP TABLE images;
ALTER TABLE images_v2 RENAME TO images;
UPDATE collections SET stored_bytes =
      (SELECT COALESCE(SUM(length(c.data)), 0) FROM ciphertexts c
         JOIN segments s ON s.id = c.segment_id WHERE s.collection_id = collections.id)
    + (SELECT COALESCE(SUM(length(i.tag) + length(i.meta) + length(i.payload)), 0)
         FROM images i WHERE i.collection_id = collections.id);
"#,
    // The ring-switching key of responses (issue 9); NULL for older collections, whose
    // responses stay in the full ring.
    r#"
ALTER TABLE collection_keys ADD COLUMN response_key BLOB;
"#,
    // What a collection encrypts (issue 10): a `VectorKind` spec; older collections all
    // hold the original demo's 64×64 pixels.
    r#"
ALTER TABLE collections ADD COLUMN vectors TEXT NOT NULL DEFAULT 'pixels:64';
"#,
    // Segment files (issue 11): the bytes of a segment's file once it has one; NULL for a
    // segment whose ciphertexts are still rows of `ciphertexts` (written before), which the
    // server converts to a file when it opens the store.
    r#"
ALTER TABLE segments ADD COLUMN file_bytes INTEGER;
"#,
    // Merging (issue 11): each image's sealed source vector, which a merge re-encrypts
    // without the original file; NULL for images ingested before (their file is re-encoded).
    r#"
ALTER TABLE images ADD COLUMN source BLOB;
"#,
    // Stored counters (issue 22): images, live images and segments per collection, kept by
    // every write's transaction, so that nothing counts rows under the write lock.
    r#"
ALTER TABLE collections ADD COLUMN image_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN live_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN segment_count INTEGER NOT NULL DEFAULT 0;
UPDATE collections SET
    image_count = (SELECT COUNT(*) FROM images WHERE collection_id = collections.id),
    live_count = (SELECT COUNT(*) FROM images
                  WHERE collection_id = collections.id AND deleted_at IS NULL),
    segment_count = (SELECT COUNT(*) FROM segments WHERE collection_id = collections.id);
"#,
    // Thumbnails (issue 24): each image's sealed thumbnail, of one size class; NULL for
    // images ingested before, which get one when their client next merges or compacts.
    r#"
ALTER TABLE images ADD COLUMN thumbnail BLOB;
"#,
    // Private retrieval (issue 25): each thumbnail's slot in its collection's PIR database,
    // given in the order thumbnails arrive (never reused, never moved: a merge keeps it), and
    // the number of slots given so far. Thumbnails stored before get theirs in row order.
    r#"
ALTER TABLE images ADD COLUMN thumbnail_slot INTEGER;
ALTER TABLE collections ADD COLUMN thumbnail_slots INTEGER NOT NULL DEFAULT 0;
UPDATE images SET thumbnail_slot = (
    SELECT COUNT(*) FROM images AS earlier
    WHERE earlier.collection_id = images.collection_id
      AND earlier.thumbnail IS NOT NULL AND earlier.rowid < images.rowid)
WHERE thumbnail IS NOT NULL;
UPDATE collections SET thumbnail_slots = (
    SELECT COUNT(*) FROM images
    WHERE collection_id = collections.id AND thumbnail IS NOT NULL);
CREATE UNIQUE INDEX images_thumbnail_slot ON images (collection_id, thumbnail_slot)
    WHERE thumbnail_slot IS NOT NULL;
"#,
];
