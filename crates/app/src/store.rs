//! The server's store: SQLite (bundled, WAL), a versioned schema with migrations.
//!
//! It holds only what the server may hold: parameter sets, evaluation keys, layouts,
//! gallery ciphertexts, sealed payloads and metadata, keyed content tags, a hash of each
//! collection's access token. Every ingest batch (one segment and its images) is one
//! transaction: a crash never leaves half a batch visible.

use crate::errors::{AppError, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: [&str; 1] = [r#"
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
"#];

/// A collection as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionRecord {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Serialized parameter set.
    pub params: Vec<u8>,
    /// Parameter fingerprint.
    pub fingerprint: Vec<u8>,
    /// Values per channel.
    pub dim: usize,
    /// SHA-256 of the bearer token.
    pub token_hash: Vec<u8>,
    /// Identifier of the client key the collection was made with (a hash, not a secret).
    pub key_id: String,
}

/// A collection to create.
#[derive(Clone, Copy, Debug)]
pub struct NewCollection<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Serialized parameter set.
    pub params: &'a [u8],
    /// Parameter fingerprint.
    pub fingerprint: &'a [u8],
    /// Values per channel.
    pub dim: usize,
    /// Relinearization key envelope.
    pub relin_key: &'a [u8],
    /// Galois keys envelope.
    pub galois_keys: &'a [u8],
    /// SHA-256 of the bearer token.
    pub token_hash: &'a [u8],
    /// Identifier of the client key.
    pub key_id: &'a str,
}

/// A segment to insert: serialized layout, ciphertexts per channel, images.
pub type SegmentBatch<'a> = (&'a [u8], &'a [Vec<Vec<u8>>; 3], &'a [ImageRecord]);

/// One image of an ingest batch, as the server receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    /// Opaque id chosen by the client (random 63 bits).
    pub id: i64,
    /// Position in its segment.
    pub position: usize,
    /// Keyed content tag (for duplicate detection; opaque to the server).
    pub tag: Vec<u8>,
    /// Sealed metadata (name, norms).
    pub meta: Vec<u8>,
    /// Sealed original file.
    pub payload: Vec<u8>,
}

/// An image listed without its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// Opaque id.
    pub id: i64,
    /// Segment row id.
    pub segment_id: i64,
    /// Position in the segment.
    pub position: usize,
    /// Keyed content tag.
    pub tag: Vec<u8>,
    /// Sealed metadata.
    pub meta: Vec<u8>,
    /// Whether the image was deleted.
    pub deleted: bool,
}

/// The SQLite store.
pub struct Store {
    conn: Connection,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut store = Self { conn };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<()> {
        let version = self.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(AppError::SchemaTooNew {
                expected: SCHEMA_VERSION,
                actual: version,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Creates a collection; its name must be new.
    pub fn create_collection(&mut self, c: &NewCollection<'_>) -> Result<i64> {
        let NewCollection {
            name,
            params,
            fingerprint,
            dim,
            relin_key,
            galois_keys,
            token_hash,
            key_id,
        } = *c;
        let tx = self.conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM collections WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(AppError::AlreadyExists {
                what: "collection",
                name: name.to_string(),
            });
        }
        tx.execute(
            "INSERT INTO collections (name, params, fingerprint, dim, relin_key, galois_keys, token_hash, key_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![name, params, fingerprint, dim as i64, relin_key, galois_keys, token_hash, key_id, now()],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// A collection by name.
    pub fn collection(&self, name: &str) -> Result<CollectionRecord> {
        self.conn
            .query_row(
                "SELECT id, name, params, fingerprint, dim, token_hash, key_id FROM collections WHERE name = ?1",
                [name],
                |r| {
                    Ok(CollectionRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        params: r.get(2)?,
                        fingerprint: r.get(3)?,
                        dim: r.get::<_, i64>(4)? as usize,
                        token_hash: r.get(5)?,
                        key_id: r.get(6)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| AppError::NotFound { what: "collection", name: name.to_string() })
    }

    /// The evaluation keys of a collection: (relinearization, Galois).
    pub fn evaluation_keys(&self, collection: i64) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok(self.conn.query_row(
            "SELECT relin_key, galois_keys FROM collections WHERE id = ?1",
            [collection],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Appends one ingest batch (a segment and its images, and the collection's Galois keys
    /// if they changed) in one transaction. Fails as a whole, leaving nothing, if any image
    /// id or tag already exists.
    pub fn append_segment(
        &mut self,
        collection: i64,
        layout: &[u8],
        ciphertexts: &[Vec<Vec<u8>>; 3],
        images: &[ImageRecord],
        galois_keys: Option<&[u8]>,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        if let Some(keys) = galois_keys {
            tx.execute(
                "UPDATE collections SET galois_keys = ?1 WHERE id = ?2",
                params![keys, collection],
            )?;
        }
        let segment = insert_segment(&tx, collection, layout, ciphertexts, images)?;
        tx.commit()?;
        Ok(segment)
    }

    /// Replaces a segment of the collection by a rebuilt one (compaction: its live images,
    /// re-encrypted by the client), or drops it when `batch` is `None`, in one transaction.
    pub fn replace_segment(
        &mut self,
        collection: i64,
        old: i64,
        batch: Option<SegmentBatch<'_>>,
        galois_keys: Option<&[u8]>,
    ) -> Result<Option<i64>> {
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM segments WHERE id = ?1 AND collection_id = ?2",
            params![old, collection],
        )?;
        if removed == 0 {
            return Err(AppError::NotFound {
                what: "segment",
                name: old.to_string(),
            });
        }
        if let Some(keys) = galois_keys {
            tx.execute(
                "UPDATE collections SET galois_keys = ?1 WHERE id = ?2",
                params![keys, collection],
            )?;
        }
        let new = match batch {
            Some((layout, ciphertexts, images)) => Some(insert_segment(
                &tx,
                collection,
                layout,
                ciphertexts,
                images,
            )?),
            None => None,
        };
        tx.commit()?;
        Ok(new)
    }

    /// The segments of a collection: (row id, serialized layout), in order.
    pub fn segments(&self, collection: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, layout FROM segments WHERE collection_id = ?1 ORDER BY id")?;
        let rows = st.query_map([collection], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// All ciphertexts of a segment, per channel, in index order.
    pub fn segment_ciphertexts(&self, segment: i64) -> Result<[Vec<Vec<u8>>; 3]> {
        let mut out: [Vec<Vec<u8>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut st = self.conn.prepare(
            "SELECT channel, data FROM ciphertexts WHERE segment_id = ?1 ORDER BY channel, idx",
        )?;
        let rows = st.query_map([segment], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (c, data) = row?;
            if let Some(ch) = out.get_mut(c as usize) {
                ch.push(data);
            }
        }
        Ok(out)
    }

    /// Every image of a collection (without payloads), by segment and position.
    pub fn images(&self, collection: i64) -> Result<Vec<ImageEntry>> {
        let mut st = self.conn.prepare(
            "SELECT i.id, i.segment_id, i.position, i.tag, i.meta, t.image_id IS NOT NULL
             FROM images i LEFT JOIN tombstones t ON t.image_id = i.id
             WHERE i.collection_id = ?1 ORDER BY i.segment_id, i.position",
        )?;
        let rows = st.query_map([collection], |r| {
            Ok(ImageEntry {
                id: r.get(0)?,
                segment_id: r.get(1)?,
                position: r.get::<_, i64>(2)? as usize,
                tag: r.get(3)?,
                meta: r.get(4)?,
                deleted: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Which of `tags` the collection already holds.
    pub fn existing_tags(&self, collection: i64, tags: &[Vec<u8>]) -> Result<Vec<bool>> {
        let mut st = self
            .conn
            .prepare("SELECT 1 FROM images WHERE collection_id = ?1 AND tag = ?2")?;
        tags.iter()
            .map(|t| Ok(st.exists(params![collection, t])?))
            .collect()
    }

    /// Sealed payloads of live images of the collection (ids of other collections, and
    /// deleted images, are absent from the result).
    pub fn payloads(&self, collection: i64, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut st = self.conn.prepare(
            "SELECT payload FROM images WHERE id = ?1 AND collection_id = ?2
             AND id NOT IN (SELECT image_id FROM tombstones)",
        )?;
        let mut out = Vec::new();
        for &id in ids {
            if let Some(p) = st
                .query_row(params![id, collection], |r| r.get(0))
                .optional()?
            {
                out.push((id, p));
            }
        }
        Ok(out)
    }

    /// Marks images of the collection deleted; returns how many were live.
    pub fn delete_images(&mut self, collection: i64, ids: &[i64]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare(
                "INSERT OR IGNORE INTO tombstones (image_id, deleted_at)
                 SELECT id, ?3 FROM images WHERE id = ?1 AND collection_id = ?2",
            )?;
            for &id in ids {
                n += st.execute(params![id, collection, now()])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

fn insert_segment(
    tx: &rusqlite::Transaction<'_>,
    collection: i64,
    layout: &[u8],
    ciphertexts: &[Vec<Vec<u8>>; 3],
    images: &[ImageRecord],
) -> Result<i64> {
    tx.execute(
        "INSERT INTO segments (collection_id, layout) VALUES (?1, ?2)",
        params![collection, layout],
    )?;
    let segment = tx.last_insert_rowid();
    {
        let mut ins = tx.prepare(
            "INSERT INTO ciphertexts (segment_id, channel, idx, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (c, cts) in ciphertexts.iter().enumerate() {
            for (k, data) in cts.iter().enumerate() {
                ins.execute(params![segment, c as i64, k as i64, data])?;
            }
        }
        let mut ins = tx.prepare(
            "INSERT INTO images (id, collection_id, segment_id, position, tag, meta, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for img in images {
            ins.execute(params![
                img.id,
                collection,
                segment,
                img.position as i64,
                img.tag,
                img.meta,
                img.payload
            ])?;
        }
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_id: i64, n: usize) -> ([Vec<Vec<u8>>; 3], Vec<ImageRecord>) {
        let cts = [0u8, 1, 2].map(|c| (0..4).map(|k| vec![c, k as u8, 9]).collect());
        let images = (0..n)
            .map(|i| ImageRecord {
                id: first_id + i as i64,
                position: i,
                tag: vec![i as u8, first_id as u8],
                meta: vec![1, 2, 3],
                payload: vec![i as u8; 10],
            })
            .collect();
        (cts, images)
    }

    fn new_collection(name: &str) -> NewCollection<'_> {
        NewCollection {
            name,
            params: b"params",
            fingerprint: b"fp",
            dim: 4096,
            relin_key: b"rk",
            galois_keys: b"gk",
            token_hash: b"hash",
            key_id: "k1",
        }
    }

    fn collection(store: &mut Store, name: &str) -> i64 {
        store.create_collection(&new_collection(name)).unwrap()
    }

    #[test]
    fn batches_round_trip_and_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let mut s = Store::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            let c = collection(&mut s, "photos");
            let (cts, images) = batch(100, 3);
            let seg = s.append_segment(c, b"layout", &cts, &images, None).unwrap();
            assert_eq!(s.segment_ciphertexts(seg).unwrap(), cts);
            assert!(matches!(
                s.create_collection(&new_collection("photos")),
                Err(AppError::AlreadyExists { .. })
            ));
        }
        let s = Store::open(&path).unwrap();
        let c = s.collection("photos").unwrap();
        assert_eq!(c.dim, 4096);
        assert_eq!(s.segments(c.id).unwrap().len(), 1);
        assert_eq!(s.images(c.id).unwrap().len(), 3);
        assert_eq!(
            s.payloads(c.id, &[101]).unwrap(),
            vec![(101, vec![1u8; 10])]
        );
        assert_eq!(
            s.evaluation_keys(c.id).unwrap(),
            (b"rk".to_vec(), b"gk".to_vec())
        );
        assert!(matches!(
            s.collection("nope"),
            Err(AppError::NotFound { .. })
        ));
    }

    #[test]
    fn a_failing_batch_leaves_nothing_behind() {
        let mut s = Store::in_memory().unwrap();
        let c = collection(&mut s, "photos");
        let (cts, images) = batch(1, 3);
        s.append_segment(c, b"layout", &cts, &images, None).unwrap();
        // same tags again: the whole batch is refused
        let (cts2, mut images2) = batch(50, 3);
        images2[2].tag = images[0].tag.clone();
        assert!(
            s.append_segment(c, b"layout2", &cts2, &images2, Some(b"new keys"))
                .is_err()
        );
        assert_eq!(s.segments(c).unwrap().len(), 1);
        assert_eq!(s.images(c).unwrap().len(), 3);
        assert_eq!(
            s.existing_tags(c, &[images[0].tag.clone(), vec![99]])
                .unwrap(),
            vec![true, false]
        );
    }

    #[test]
    fn deletion_and_collection_isolation() {
        let mut s = Store::in_memory().unwrap();
        let a = collection(&mut s, "a");
        let b = collection(&mut s, "b");
        let (cts, images) = batch(1, 2);
        s.append_segment(a, b"l", &cts, &images, None).unwrap();
        // collection b sees nothing of a, and cannot delete it
        assert!(s.payloads(b, &[1, 2]).unwrap().is_empty());
        assert_eq!(s.delete_images(b, &[1]).unwrap(), 0);
        assert_eq!(s.delete_images(a, &[1, 1, 77]).unwrap(), 1);
        assert_eq!(s.payloads(a, &[1, 2]).unwrap().len(), 1);
        let listed = s.images(a).unwrap();
        assert!(listed[0].deleted && !listed[1].deleted);
    }

    #[test]
    fn replacing_a_segment_is_atomic() {
        let mut s = Store::in_memory().unwrap();
        let c = collection(&mut s, "photos");
        let (cts, images) = batch(1, 3);
        let old = s.append_segment(c, b"l", &cts, &images, None).unwrap();
        let (other_cts, other) = batch(10, 1);
        s.append_segment(c, b"l", &other_cts, &other, None).unwrap();
        s.delete_images(c, &[2]).unwrap();
        // a rebuilt segment that collides with another segment's image fails as a whole
        let (cts2, mut rebuilt) = batch(1, 2);
        rebuilt[1].id = 10;
        assert!(
            s.replace_segment(c, old, Some((b"l2", &cts2, &rebuilt)), None)
                .is_err()
        );
        assert_eq!(s.images(c).unwrap().len(), 4);
        // a good one replaces the segment; tombstones go with the purged images
        let (cts3, mut good) = batch(1, 2);
        good[1].id = 3;
        let new = s
            .replace_segment(c, old, Some((b"l3", &cts3, &good)), None)
            .unwrap()
            .unwrap();
        let listed = s.images(c).unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|i| !i.deleted));
        assert_eq!(listed.iter().filter(|i| i.segment_id == new).count(), 2);
        // another collection cannot replace it
        let b = collection(&mut s, "b");
        assert!(matches!(
            s.replace_segment(b, new, None, None),
            Err(AppError::NotFound { .. })
        ));
    }

    #[test]
    fn newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        assert!(matches!(
            Store::open(&path),
            Err(AppError::SchemaTooNew { actual: 99, .. })
        ));
    }
}
