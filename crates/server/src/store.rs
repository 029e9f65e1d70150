//! The server's store: SQLite (bundled, WAL, `synchronous=FULL`), a versioned schema with
//! migrations.
//!
//! It holds only what the server may hold: parameter sets, evaluation keys, layouts,
//! gallery ciphertexts, sealed payloads and metadata, keyed content tags, a hash of each
//! collection's access token.
//!
//! - Every write (an ingest batch, a deletion, a compaction) is one transaction that also
//!   bumps the collection's `version`: a reader that sees version `v` sees exactly the
//!   writes acknowledged up to `v` ([`Store::snapshot`] reads a whole collection in one read
//!   transaction).
//! - `collections` is narrow (name, token hash, parameters, counters): authorization never
//!   reads a multi-MB row. Evaluation keys live in `collection_keys`.
//! - Image ids are unique per collection (and only per collection: one collection cannot
//!   probe another's ids). A compaction replaces a segment only if the live set it was
//!   computed from is still the segment's live set, so no live image is dropped and no
//!   deleted image comes back.
//! - `synchronous=FULL`: an acknowledged batch survives a power loss, not only a crash.
//! - A segment's gallery operands are a file beside the database ([`files`], in the format
//!   of [`segment_file`], mapped by [`mapped`]), committed with its rows: visible only
//!   when both are, and a file no row names (a crash between the two) is removed when the
//!   store is next opened.

use crate::errors::{Result, ServerError};
pub use blindsight_proto::{ImageEntry, ImageRecord, PayloadBatch};
use blindsight_search::VectorKind;
use files::{SegmentFiles, StagedFile};
use rusqlite::TransactionBehavior;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub mod files;
pub mod mapped;
mod quota;
mod rows;
mod schema;
pub mod segment_file;
mod transactions;

pub use quota::{Quota, Usage};
pub use rows::EvaluationKeyBlobs;
use rows::{
    collection_row, elements_text, evaluation_keys, image_entry, images, parse_elements,
    segment_ciphertexts, usage,
};
use transactions::{
    Delta, bump, check_quota, commit_or_remove, insert_segment, insert_segment_row, move_images,
    update_keys,
};

use schema::MIGRATIONS;
pub use schema::SCHEMA_VERSION;

/// A collection as the authorization path and the handlers see it: one narrow row.
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
    /// What the collection encrypts (its channels and their dimension).
    pub vectors: VectorKind,
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
    /// What the collection encrypts.
    pub vectors: &'a VectorKind,
    /// Relinearization key envelope.
    pub relin_key: &'a [u8],
    /// Galois keys envelope.
    pub galois_keys: &'a [u8],
    /// Galois elements the keys hold.
    pub galois_elements: &'a [u64],
    /// Ring-switching key envelope of responses.
    pub response_key: &'a [u8],
    /// SHA-256 of the bearer token.
    pub token_hash: &'a [u8],
    /// Identifier of the client key.
    pub key_id: &'a str,
}

/// New Galois keys for a collection (the old ones completed by a batch's).
#[derive(Clone, Copy, Debug)]
pub struct KeyUpdate<'a> {
    /// Galois keys envelope.
    pub galois_keys: &'a [u8],
    /// Galois elements the keys hold.
    pub galois_elements: &'a [u64],
}

/// A segment to insert: serialized layout, its file (staged in [`Store::files`]), images.
#[derive(Debug)]
pub struct SegmentBatch<'a> {
    /// Serialized layout.
    pub layout: &'a [u8],
    /// The segment's file, written and synced under a temporary name.
    pub file: StagedFile,
    /// The images, `images[k].position == k` not required but positions are distinct.
    pub images: &'a [ImageRecord],
}

impl SegmentBatch<'_> {
    fn bytes(&self) -> u64 {
        let imgs: usize = self.images.iter().map(ImageRecord::stored_bytes).sum();
        self.file.bytes() + (imgs + self.layout.len()) as u64
    }
}

/// A segment rebuilt from the live images of the segments it replaces (compaction and
/// merging, re-encrypted by the client): the images keep their rows (tag, metadata, payload,
/// source) and move into it.
#[derive(Debug)]
pub struct RebuiltBatch<'a> {
    /// Serialized layout.
    pub layout: &'a [u8],
    /// The segment's file, written and synced under a temporary name.
    pub file: StagedFile,
    /// Where each image goes: (image id, position in the new segment), positions distinct.
    pub placements: &'a [(i64, usize)],
}

/// Sealed data kept per image that a client may fetch back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedData {
    /// The original file.
    Payload,
    /// The source vector (absent for images ingested before sources were kept).
    Source,
    /// The thumbnail (absent for images ingested before thumbnails were made, until their
    /// client backfills them).
    Thumbnail,
}

impl SealedData {
    fn column(self) -> &'static str {
        match self {
            Self::Payload => "payload",
            Self::Source => "source",
            Self::Thumbnail => "thumbnail",
        }
    }
}

/// A segment as a search sees it: its layout and its live images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentView {
    /// Segment row id.
    pub id: i64,
    /// Serialized layout.
    pub layout: Vec<u8>,
    /// Live images: (position, image id), by position.
    pub live: Vec<(usize, i64)>,
}

/// A collection as of one version, read in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The collection's version.
    pub version: i64,
    /// The version of its evaluation keys.
    pub keys_version: i64,
    /// Its segments, by id.
    pub segments: Vec<SegmentView>,
}

/// The SQLite store and its segment files.
pub struct Store {
    conn: Connection,
    files: SegmentFiles,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(super) fn conflict(reason: impl Into<String>) -> ServerError {
    ServerError::Conflict(reason.into())
}

/// Page size of a new database (bytes).
const PAGE_SIZE: i64 = 16 << 10;

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and its segment directory
    /// (`<path>-segments`), owner-only (0600 files, 0700 folders), migrates it and removes segment files no row names (left by a
    /// crash).
    pub fn open(path: &Path) -> Result<Self> {
        files::private_database(path)?;
        let mut store = Self::init(Connection::open(path)?, SegmentFiles::beside(path)?)?;
        store.migrate()?;
        let removed = store.collect_orphans()?;
        if removed > 0 {
            tracing::info!(files = removed, "orphaned segment files removed");
        }
        Ok(store)
    }

    /// Opens an existing, migrated database read-only (a reader beside the writer).
    pub fn open_reader(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let store = Self {
            conn,
            files: SegmentFiles::of_reader(path),
        };
        let version = store.schema_version()?;
        if version != SCHEMA_VERSION {
            return Err(ServerError::SchemaTooNew {
                expected: SCHEMA_VERSION,
                actual: version,
            });
        }
        Ok(store)
    }

    /// An in-memory store with its segment files in a temporary directory (tests).
    #[cfg(test)]
    pub fn in_memory() -> Result<Self> {
        let mut store = Self::init(Connection::open_in_memory()?, SegmentFiles::temporary()?)?;
        store.migrate()?;
        Ok(store)
    }

    fn init(conn: Connection, files: SegmentFiles) -> Result<Self> {
        // a new database only (SQLite ignores it once a table exists, and in WAL mode):
        // an image row carries a sealed source of up to a few KiB (2 KiB for 512 features),
        // so that 4 KiB pages would hold one row each, half empty, and every ingest would
        // write (twice, WAL then checkpoint) about twice its bytes
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Self { conn, files })
    }

    /// The segment files.
    pub fn files(&self) -> &SegmentFiles {
        &self.files
    }

    /// Where segment `id`'s file is.
    pub fn segment_path(&self, id: i64) -> PathBuf {
        self.files.path(id)
    }

    /// Removes the segment files no committed segment names, and stale temporary files
    /// (under the write lock, so never a file between its rename and its commit); returns
    /// how many went.
    pub fn collect_orphans(&mut self) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let live: HashSet<i64> = {
            let mut st = tx.prepare("SELECT id FROM segments WHERE file_bytes IS NOT NULL")?;
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let removed = self.files.collect_orphans(&live)?;
        tx.commit()?;
        Ok(removed)
    }

    /// Segments whose ciphertexts are still rows (written before segment files): (segment,
    /// collection).
    pub fn segments_without_files(&self) -> Result<Vec<(i64, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT id, collection_id FROM segments WHERE file_bytes IS NULL ORDER BY id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Gives segment `segment` (without a file so far) its `file`, written from its
    /// ciphertext rows, and drops those rows, in one transaction.
    pub fn adopt_segment_file(&mut self, segment: i64, mut file: StagedFile) -> Result<()> {
        let tx = self.conn.transaction()?;
        let row: Option<(i64, Option<i64>, i64)> = tx
            .query_row(
                "SELECT collection_id, file_bytes,
                        (SELECT COALESCE(SUM(length(data)), 0) FROM ciphertexts WHERE segment_id = ?1)
                 FROM segments WHERE id = ?1",
                [segment],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((collection, None, blob_bytes)) = row else {
            return Err(conflict(format!(
                "segment {segment} has a file already or is gone"
            )));
        };
        let bytes = to_i64(file.bytes());
        tx.execute(
            "UPDATE segments SET file_bytes = ?2 WHERE id = ?1",
            params![segment, bytes],
        )?;
        tx.execute("DELETE FROM ciphertexts WHERE segment_id = ?1", [segment])?;
        tx.execute(
            "UPDATE collections SET stored_bytes = MAX(stored_bytes + ?2, 0) WHERE id = ?1",
            params![collection, bytes - blob_bytes],
        )?;
        self.files.commit(&mut file, segment)?;
        commit_or_remove(tx, &self.files, &[segment])
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
            return Err(ServerError::SchemaTooNew {
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
        let tx = self.conn.transaction()?;
        let has_id: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM store_meta WHERE key = 'store_id')",
            [],
            |r| r.get(0),
        )?;
        if !has_id {
            let id = blindsight_os::random::hex(&blindsight_os::random::bytes::<16>()?);
            tx.execute(
                "INSERT INTO store_meta (key, value) VALUES ('store_id', ?1)",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The random identity of this database (clients file their tokens under it, so a
    /// collection is found whichever URL or file path reaches the database).
    pub fn store_id(&self) -> Result<String> {
        Ok(self.conn.query_row(
            "SELECT value FROM store_meta WHERE key = 'store_id'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Creates a collection; its name must be new and its keys within `quota`.
    pub fn create_collection(&mut self, c: &NewCollection<'_>, quota: &Quota) -> Result<i64> {
        let key_bytes = (c.relin_key.len() + c.galois_keys.len() + c.response_key.len()) as u64;
        if key_bytes > quota.key_bytes {
            return Err(ServerError::QuotaExceeded {
                what: "evaluation key bytes",
                limit: quota.key_bytes,
                actual: key_bytes,
            });
        }
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM collections WHERE name = ?1)",
            [c.name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(ServerError::AlreadyExists {
                what: "collection",
                name: c.name.to_string(),
            });
        }
        tx.execute(
            "INSERT INTO collections (name, params, fingerprint, dim, token_hash, key_id, created_at, key_bytes, vectors)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![c.name, c.params, c.fingerprint, to_i64(c.vectors.dim() as u64), c.token_hash, c.key_id, now(), to_i64(key_bytes), c.vectors.spec()],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO collection_keys (collection_id, relin_key, galois_keys, galois_elements, response_key)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                c.relin_key,
                c.galois_keys,
                elements_text(c.galois_elements),
                c.response_key
            ],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Every collection (narrow rows: no keys).
    pub fn collections(&self) -> Result<Vec<CollectionRecord>> {
        let mut st = self.conn.prepare(
            "SELECT id, name, params, fingerprint, vectors, token_hash, key_id FROM collections ORDER BY id",
        )?;
        let rows = st.query_map([], collection_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// A collection by name.
    pub fn collection(&self, name: &str) -> Result<CollectionRecord> {
        self.conn
            .query_row(
                "SELECT id, name, params, fingerprint, vectors, token_hash, key_id FROM collections WHERE name = ?1",
                [name],
                collection_row,
            )
            .optional()?
            .ok_or_else(|| ServerError::NotFound { what: "collection", name: name.to_string() })
    }

    /// The counters of a collection.
    pub fn usage(&self, collection: i64) -> Result<Usage> {
        usage(&self.conn, collection)
    }

    /// The evaluation keys of a collection: (relinearization, Galois).
    pub fn evaluation_keys(&self, collection: i64) -> Result<EvaluationKeyBlobs> {
        evaluation_keys(&self.conn, collection)
    }

    /// The Galois elements the collection holds keys for (without reading the keys).
    pub fn galois_elements(&self, collection: i64) -> Result<Vec<u64>> {
        let text: String = self.conn.query_row(
            "SELECT galois_elements FROM collection_keys WHERE collection_id = ?1",
            [collection],
            |r| r.get(0),
        )?;
        Ok(parse_elements(&text))
    }

    /// Appends one ingest batch (a segment, its images, and the collection's completed
    /// Galois keys if they changed) in one transaction that bumps the version. Fails as a
    /// whole, leaving nothing, if an image id or tag already exists in the collection
    /// ([`ServerError::Conflict`]), the collection holds its most segments
    /// ([`ServerError::TooManySegments`]) or a quota would be exceeded.
    pub fn append_segment(
        &mut self,
        collection: i64,
        batch: SegmentBatch<'_>,
        keys: Option<&KeyUpdate<'_>>,
        quota: &Quota,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        quota.check_new_segment(usage(&tx, collection)?.segments)?;
        let bytes = batch.bytes() as i64;
        let segment = insert_segment(&tx, collection, &batch)?;
        let added = batch.images.len() as i64;
        let delta = Delta {
            bytes,
            keys: update_keys(&tx, collection, keys)?,
            images: added,
            live: added,
            segments: 1,
        };
        bump(&tx, collection, delta)?;
        check_quota(&tx, collection, quota)?;
        let mut file = batch.file;
        self.files.commit(&mut file, segment)?;
        commit_or_remove(tx, &self.files, &[segment])?;
        Ok(segment)
    }

    /// Replaces segments `olds` of the collection by one rebuilt from their live images
    /// (compaction and merging: re-encrypted by the client), or drops them when `batch` is
    /// `None`, in one transaction that bumps the version: the live images move into the new
    /// segment (their rows, tags, metadata, payloads and sources stay), the deleted ones
    /// go with the old segments, whose files are removed after the commit. Refused as a
    /// whole with [`ServerError::Conflict`] unless, for every old segment, the ids the client
    /// computed the rebuild from are exactly its current live set, and the batch places
    /// exactly the union of those images (none, without a batch), or if a segment is not
    /// (or no longer) the collection's.
    pub fn replace_segments(
        &mut self,
        collection: i64,
        olds: &[(i64, Vec<i64>)],
        batch: Option<RebuiltBatch<'_>>,
        keys: Option<&KeyUpdate<'_>>,
        quota: &Quota,
    ) -> Result<Option<i64>> {
        let distinct: HashSet<i64> = olds.iter().map(|(id, _)| *id).collect();
        if olds.is_empty() || distinct.len() != olds.len() {
            return Err(ServerError::Malformed(
                "a replacement names one or more distinct segments".into(),
            ));
        }
        let tx = self.conn.transaction()?;
        let mut all_live: HashSet<i64> = HashSet::new();
        let mut old_bytes = 0i64;
        let mut purged = 0i64;
        for (old, expected_live) in olds {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM segments WHERE id = ?1 AND collection_id = ?2)",
                params![old, collection],
                |r| r.get(0),
            )?;
            if !exists {
                // merged or dropped since the client's listing (or never the collection's)
                return Err(conflict(format!(
                    "segment {old} is not (or no longer) one of the collection's; fetch the \
                     image list and compact again"
                )));
            }
            let live: HashSet<i64> = {
                let mut st = tx.prepare(
                    "SELECT id FROM images WHERE segment_id = ?1 AND deleted_at IS NULL",
                )?;
                st.query_map([old], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let expected: HashSet<i64> = expected_live.iter().copied().collect();
            if expected.len() != expected_live.len() || expected != live {
                return Err(conflict(
                    "a segment's live images changed since the compaction was computed; \
                     fetch the image list and compact again",
                ));
            }
            purged += tx.query_row(
                "SELECT COUNT(*) FROM images WHERE segment_id = ?1 AND deleted_at IS NOT NULL",
                [old],
                |r| r.get::<_, i64>(0),
            )?;
            all_live.extend(live);
            // what goes: the segment (file, layout, legacy ciphertext rows) and its deleted
            // images; its live images move
            old_bytes += tx.query_row(
                "SELECT length(layout) + COALESCE(file_bytes, 0)
                   + (SELECT COALESCE(SUM(length(data)), 0) FROM ciphertexts WHERE segment_id = ?1)
                   + (SELECT COALESCE(SUM(length(tag) + length(meta) + length(payload)
                                          + COALESCE(length(source), 0)
                                          + COALESCE(length(thumbnail), 0)), 0)
                        FROM images WHERE segment_id = ?1 AND deleted_at IS NOT NULL)
                 FROM segments WHERE id = ?1",
                [old],
                |r| r.get::<_, i64>(0),
            )?;
        }
        let incoming: HashSet<i64> = batch
            .as_ref()
            .map(|b| b.placements.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default();
        let placed = batch.as_ref().map_or(0, |b| b.placements.len());
        if placed != incoming.len() || incoming != all_live {
            return Err(conflict(
                "a rebuilt segment must hold exactly the live images of the segments it replaces",
            ));
        }
        let new_bytes = batch.as_ref().map_or(0, |b| {
            to_i64(b.file.bytes()).saturating_add(b.layout.len() as i64)
        });
        let new = match &batch {
            Some(b) => {
                let id = insert_segment_row(&tx, collection, b.layout, b.file.bytes())?;
                move_images(&tx, collection, id, b.placements)?;
                Some(id)
            }
            None => None,
        };
        // the old segments' rows go with their deleted images (the live ones have moved)
        for (old, _) in olds {
            tx.execute("DELETE FROM segments WHERE id = ?1", [old])?;
        }
        let delta = Delta {
            bytes: new_bytes - old_bytes,
            keys: update_keys(&tx, collection, keys)?,
            images: -purged,
            live: 0,
            segments: i64::from(new.is_some()) - olds.len() as i64,
        };
        bump(&tx, collection, delta)?;
        check_quota(&tx, collection, quota)?;
        if let (Some(b), Some(id)) = (batch, new) {
            let mut file = b.file;
            self.files.commit(&mut file, id)?;
        }
        commit_or_remove(tx, &self.files, new.as_slice())?;
        // the old segments' files go once nothing names them (a search that mapped them
        // keeps reading them)
        for (old, _) in olds {
            self.files.remove(*old);
        }
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

    /// All ciphertexts of a segment of `channels` channels, per channel, in index order.
    pub fn segment_ciphertexts(&self, segment: i64, channels: usize) -> Result<Vec<Vec<Vec<u8>>>> {
        segment_ciphertexts(&self.conn, segment, channels)
    }

    /// Reads a collection as of its current version in one read transaction: the version,
    /// the keys' version, every segment with its live images; then `load` runs inside the
    /// same transaction (to read keys and ciphertexts of exactly this version).
    pub fn snapshot<T>(
        &mut self,
        collection: i64,
        load: impl FnOnce(&Snapshot, &SnapshotReader<'_>) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.transaction()?;
        let u = usage(&tx, collection)?;
        let mut segments: Vec<SegmentView> = {
            let mut st =
                tx.prepare("SELECT id, layout FROM segments WHERE collection_id = ?1 ORDER BY id")?;
            st.query_map([collection], |r| {
                Ok(SegmentView {
                    id: r.get(0)?,
                    layout: r.get(1)?,
                    live: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        {
            let mut st = tx.prepare(
                "SELECT segment_id, position, id FROM images
                 WHERE collection_id = ?1 AND deleted_at IS NULL ORDER BY segment_id, position",
            )?;
            let rows = st.query_map([collection], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut k = 0;
            for row in rows {
                let (seg, position, id) = row?;
                while segments.get(k).is_some_and(|s| s.id < seg) {
                    k += 1;
                }
                if let Some(s) = segments.get_mut(k).filter(|s| s.id == seg) {
                    s.live
                        .push((usize::try_from(position).unwrap_or(usize::MAX), id));
                }
            }
        }
        let snap = Snapshot {
            version: u.version,
            keys_version: u.keys_version,
            segments,
        };
        let out = load(
            &snap,
            &SnapshotReader {
                conn: &tx,
                files: &self.files,
            },
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// Every image of a collection (without payloads), by segment and position.
    pub fn images(&self, collection: i64) -> Result<Vec<ImageEntry>> {
        images(&self.conn, collection)
    }

    /// Every image of a collection and the version they were read at, in one transaction.
    pub fn image_list(&mut self, collection: i64) -> Result<(i64, Vec<ImageEntry>)> {
        let tx = self.conn.transaction()?;
        let version = usage(&tx, collection)?.version;
        let images = images(&tx, collection)?;
        tx.commit()?;
        Ok((version, images))
    }

    /// At most `limit` images of a collection with ids above `after` (all from the
    /// start without one), in id order, read with the collection's version in one
    /// transaction; and the id to read the next page after, if there are more.
    pub fn image_page(
        &mut self,
        collection: i64,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(i64, Vec<ImageEntry>, Option<i64>)> {
        let tx = self.conn.transaction()?;
        let version = usage(&tx, collection)?.version;
        let mut images = {
            let mut st = tx.prepare(
                "SELECT id, segment_id, position, tag, meta, deleted_at IS NOT NULL,
                        CASE WHEN thumbnail IS NOT NULL THEN thumbnail_slot END
                 FROM images WHERE collection_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = st.query_map(
                params![
                    collection,
                    after.unwrap_or(i64::MIN),
                    to_i64(limit.max(1) as u64 + 1)
                ],
                image_entry,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.commit()?;
        let next = if images.len() > limit.max(1) {
            images.truncate(limit.max(1));
            images.last().map(|e| e.id)
        } else {
            None
        };
        Ok((version, images, next))
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

    /// Sealed payloads of live images: [`Store::sealed`] of [`SealedData::Payload`].
    pub fn payloads(&self, collection: i64, ids: &[i64], max_bytes: usize) -> Result<PayloadBatch> {
        self.sealed(collection, SealedData::Payload, ids, max_bytes)
    }

    /// Sealed data (payloads or sources) of live images of the collection, in the order of
    /// `ids` (which must hold no duplicates), until their total would pass `max_bytes` (at
    /// least one is returned). Ids of other collections, deleted images and images without
    /// that data are reported missing.
    pub fn sealed(
        &self,
        collection: i64,
        what: SealedData,
        ids: &[i64],
        max_bytes: usize,
    ) -> Result<PayloadBatch> {
        let column = what.column();
        let mut st = self.conn.prepare(&format!(
            "SELECT {column} FROM images
             WHERE collection_id = ?1 AND id = ?2 AND deleted_at IS NULL AND {column} IS NOT NULL"
        ))?;
        let mut size = self.conn.prepare(&format!(
            "SELECT length({column}) FROM images
             WHERE collection_id = ?1 AND id = ?2 AND deleted_at IS NULL AND {column} IS NOT NULL"
        ))?;
        let mut out = PayloadBatch::default();
        let mut total = 0usize;
        for &id in ids {
            let len: Option<i64> = size
                .query_row(params![collection, id], |r| r.get(0))
                .optional()?;
            let Some(len) = len else {
                out.missing.push(id);
                continue;
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if !out.found.is_empty() && total.saturating_add(len) > max_bytes {
                break;
            }
            total = total.saturating_add(len);
            // deleted since the length was read (another connection): missing, not an error
            match st
                .query_row(params![collection, id], |r| r.get::<_, Vec<u8>>(0))
                .optional()?
            {
                Some(p) => out.found.push((id, p)),
                None => out.missing.push(id),
            }
        }
        Ok(out)
    }

    /// Marks images of the collection deleted; returns how many were live. Bumps the
    /// version when anything changed.
    pub fn delete_images(&mut self, collection: i64, ids: &[i64]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare(
                "UPDATE images SET deleted_at = ?3
                 WHERE collection_id = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?;
            for &id in ids {
                n += st.execute(params![collection, id, now()])?;
            }
        }
        if n > 0 {
            let delta = Delta {
                live: -(n as i64),
                ..Delta::default()
            };
            bump(&tx, collection, delta)?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Thumbnail slots the collection has given (its private-retrieval database's
    /// capacity) and its version.
    pub fn thumbnail_capacity(&self, collection: i64) -> Result<(u64, i64)> {
        let (slots, version): (i64, i64) = self.conn.query_row(
            "SELECT thumbnail_slots, version FROM collections WHERE id = ?1",
            [collection],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((u64::try_from(slots).unwrap_or(0), version))
    }

    /// The thumbnails of slots `from..to`, by slot (purged images' slots are left out;
    /// deleted ones stay until a compaction purges them, so that a search that matched an
    /// image just before its deletion still gets its thumbnail).
    pub fn thumbnails_by_slot(
        &self,
        collection: i64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut st = self.conn.prepare(
            "SELECT thumbnail_slot, thumbnail FROM images
             WHERE collection_id = ?1 AND thumbnail_slot >= ?2 AND thumbnail_slot < ?3
               AND thumbnail IS NOT NULL
             ORDER BY thumbnail_slot",
        )?;
        let rows = st.query_map(params![collection, to_i64(from), to_i64(to)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (slot, bytes) = row?;
            out.push((u64::try_from(slot).unwrap_or(u64::MAX), bytes));
        }
        Ok(out)
    }

    /// The slots of the thumbnails the collection holds (of images not purged).
    pub fn held_thumbnail_slots(&self, collection: i64) -> Result<Vec<u64>> {
        let mut st = self.conn.prepare(
            "SELECT thumbnail_slot FROM images
             WHERE collection_id = ?1 AND thumbnail_slot IS NOT NULL AND thumbnail IS NOT NULL",
        )?;
        let rows = st.query_map([collection], |r| r.get::<_, i64>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(u64::try_from(row?).unwrap_or(u64::MAX));
        }
        Ok(out)
    }

    /// Gives live images of the collection that have none the sealed thumbnails of
    /// `thumbnails` (id, sealed bytes; the caller checks their size class), in one
    /// transaction that bumps the version; returns how many were set. Ids of other
    /// collections, deleted images and images that have a thumbnail are passed over. Refused
    /// as a whole when the stored bytes would pass `quota`.
    pub fn set_thumbnails(
        &mut self,
        collection: i64,
        thumbnails: &[(i64, Vec<u8>)],
        quota: &Quota,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0usize;
        let mut bytes = 0u64;
        let mut slots = transactions::SlotCounter::read(&tx, collection)?;
        {
            let mut st = tx.prepare(
                "UPDATE images SET thumbnail = ?3, thumbnail_slot = ?4
                 WHERE collection_id = ?1 AND id = ?2 AND deleted_at IS NULL
                   AND thumbnail IS NULL",
            )?;
            for (id, sealed) in thumbnails {
                let set = st.execute(params![collection, id, sealed, slots.peek()])?;
                if set > 0 {
                    slots.take();
                    n += set;
                    bytes = bytes.saturating_add(sealed.len() as u64);
                }
            }
        }
        slots.write(&tx, collection)?;
        if n > 0 {
            let usage = usage(&tx, collection)?;
            quota::first_exceeded([(
                "stored bytes",
                quota.stored_bytes,
                usage.stored_bytes.saturating_add(bytes),
            )])?;
            let delta = Delta {
                bytes: to_i64(bytes),
                ..Delta::default()
            };
            bump(&tx, collection, delta)?;
        }
        tx.commit()?;
        Ok(n)
    }
}

/// Reads keys and segment files inside a [`Store::snapshot`] transaction.
pub struct SnapshotReader<'a> {
    conn: &'a Connection,
    files: &'a SegmentFiles,
}

impl SnapshotReader<'_> {
    /// The evaluation keys: (relinearization, Galois).
    pub fn evaluation_keys(&self, collection: i64) -> Result<EvaluationKeyBlobs> {
        evaluation_keys(self.conn, collection)
    }

    /// Where segment `id`'s file is.
    pub fn segment_path(&self, id: i64) -> PathBuf {
        self.files.path(id)
    }
}

#[cfg(test)]
mod tests;
