//! The steps of a write transaction: counters bumped, keys updated, quota checked, a
//! segment and its images inserted, images moved to a compacted segment, the commit that
//! removes its files if it fails.

use super::files::SegmentFiles;
use super::quota::first_exceeded;
use super::rows::{elements_text, usage};
use super::{KeyUpdate, Quota, SegmentBatch, conflict, to_i64};
use crate::errors::{Result, ServerError};
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::HashSet;

/// Commits `tx`; if that fails, removes the files it would have given `segments` (renamed
/// into place before the commit).
pub(super) fn commit_or_remove(
    tx: Transaction<'_>,
    files: &SegmentFiles,
    segments: &[i64],
) -> Result<()> {
    if let Err(e) = tx.commit() {
        for &id in segments {
            files.remove(id);
        }
        return Err(e.into());
    }
    Ok(())
}

/// What a write changes in a collection's counters.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Delta {
    /// Stored bytes.
    pub(super) bytes: i64,
    /// Evaluation key bytes (non-zero when the keys changed).
    pub(super) keys: i64,
    /// Images stored (live and deleted).
    pub(super) images: i64,
    /// Live images.
    pub(super) live: i64,
    /// Segments.
    pub(super) segments: i64,
}

/// Applies `delta` to the collection's counters and bumps the version (and the keys'
/// version when the keys changed), in the write's transaction.
pub(super) fn bump(tx: &Transaction<'_>, collection: i64, delta: Delta) -> Result<()> {
    tx.execute(
        "UPDATE collections SET version = version + 1,
             keys_version = keys_version + (?3 != 0),
             stored_bytes = MAX(stored_bytes + ?2, 0),
             key_bytes = MAX(key_bytes + ?3, 0),
             image_count = MAX(image_count + ?4, 0),
             live_count = MAX(live_count + ?5, 0),
             segment_count = MAX(segment_count + ?6, 0)
         WHERE id = ?1",
        params![
            collection,
            delta.bytes,
            delta.keys,
            delta.images,
            delta.live,
            delta.segments
        ],
    )?;
    Ok(())
}

/// Stores new Galois keys; returns the change in key bytes (non-zero when keys changed).
pub(super) fn update_keys(
    tx: &Transaction<'_>,
    collection: i64,
    keys: Option<&KeyUpdate<'_>>,
) -> Result<i64> {
    let Some(k) = keys else { return Ok(0) };
    let old: i64 = tx.query_row(
        "SELECT length(galois_keys) FROM collection_keys WHERE collection_id = ?1",
        [collection],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE collection_keys SET galois_keys = ?1, galois_elements = ?2 WHERE collection_id = ?3",
        params![k.galois_keys, elements_text(k.galois_elements), collection],
    )?;
    // never zero when the keys changed, so that the keys' version moves
    Ok((k.galois_keys.len() as i64 - old).max(1))
}

pub(super) fn check_quota(tx: &Transaction<'_>, collection: i64, quota: &Quota) -> Result<()> {
    let u = usage(tx, collection)?;
    let checks = [
        ("evaluation key bytes", quota.key_bytes, u.key_bytes),
        ("stored images", quota.images, u.images),
        ("stored bytes", quota.stored_bytes, u.stored_bytes),
    ];
    first_exceeded(checks)
}

/// The next free thumbnail slots of a collection, read once per transaction and written
/// back at its end.
pub(super) struct SlotCounter {
    next: i64,
    start: i64,
}

impl SlotCounter {
    /// The collection's counter.
    pub(super) fn read(tx: &Transaction<'_>, collection: i64) -> Result<Self> {
        let next: i64 = tx.query_row(
            "SELECT thumbnail_slots FROM collections WHERE id = ?1",
            [collection],
            |r| r.get(0),
        )?;
        Ok(Self { next, start: next })
    }

    /// The slot [`Self::take`] gives next.
    pub(super) fn peek(&self) -> i64 {
        self.next
    }

    /// A fresh slot.
    pub(super) fn take(&mut self) -> i64 {
        self.next += 1;
        self.next - 1
    }

    /// Stores the counter if slots were taken.
    pub(super) fn write(&self, tx: &Transaction<'_>, collection: i64) -> Result<()> {
        if self.next != self.start {
            tx.execute(
                "UPDATE collections SET thumbnail_slots = ?2 WHERE id = ?1",
                params![collection, self.next],
            )?;
        }
        Ok(())
    }
}

pub(super) fn insert_segment(
    tx: &Transaction<'_>,
    collection: i64,
    batch: &SegmentBatch<'_>,
) -> Result<i64> {
    let mut ids = HashSet::with_capacity(batch.images.len());
    let mut tags = HashSet::with_capacity(batch.images.len());
    for img in batch.images {
        if !ids.insert(img.id) {
            return Err(conflict(format!(
                "image id {} appears twice in the batch",
                img.id
            )));
        }
        if !tags.insert(img.tag.as_slice()) {
            return Err(conflict("the batch holds the same image twice"));
        }
    }
    {
        let mut id_taken =
            tx.prepare("SELECT 1 FROM images WHERE collection_id = ?1 AND id = ?2")?;
        let mut tag_taken =
            tx.prepare("SELECT 1 FROM images WHERE collection_id = ?1 AND tag = ?2")?;
        for img in batch.images {
            if id_taken.exists(params![collection, img.id])? {
                return Err(conflict(format!(
                    "image id {} already exists in the collection; choose new random ids",
                    img.id
                )));
            }
            if tag_taken.exists(params![collection, img.tag])? {
                return Err(conflict(
                    "the collection already holds one of the batch's images; list the images and skip it",
                ));
            }
        }
    }
    let segment = insert_segment_row(tx, collection, batch.layout, batch.file.bytes())?;
    let mut slots = SlotCounter::read(tx, collection)?;
    {
        let mut ins = tx.prepare(
            "INSERT INTO images
                 (collection_id, id, segment_id, position, tag, meta, payload, source, thumbnail,
                  thumbnail_slot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for img in batch.images {
            let slot = (!img.thumbnail.is_empty()).then(|| slots.take());
            ins.execute(params![
                collection,
                img.id,
                segment,
                img.position as i64,
                img.tag,
                img.meta,
                img.payload,
                (!img.source.is_empty()).then_some(&img.source),
                (!img.thumbnail.is_empty()).then_some(&img.thumbnail),
                slot
            ])?;
        }
    }
    slots.write(tx, collection)?;
    Ok(segment)
}

/// Inserts a segment's row under a fresh id (never one used before) and returns it.
pub(super) fn insert_segment_row(
    tx: &Transaction<'_>,
    collection: i64,
    layout: &[u8],
    file_bytes: u64,
) -> Result<i64> {
    // Segment ids are never reused (SQLite would reuse the highest id once it is deleted):
    // caches key prepared segments by id, so an id must name one segment forever.
    let high_water: i64 = tx
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM store_meta WHERE key = 'segment_high_water'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let max_id: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM segments", [], |r| {
        r.get(0)
    })?;
    let segment = high_water.max(max_id).saturating_add(1);
    tx.execute(
        "INSERT INTO segments (id, collection_id, layout, file_bytes) VALUES (?1, ?2, ?3, ?4)",
        params![segment, collection, layout, to_i64(file_bytes)],
    )?;
    tx.execute(
        "INSERT INTO store_meta (key, value) VALUES ('segment_high_water', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [segment.to_string()],
    )?;
    Ok(segment)
}

/// Moves the images of a rebuilt segment into `segment`, at their new positions.
pub(super) fn move_images(
    tx: &Transaction<'_>,
    collection: i64,
    segment: i64,
    placements: &[(i64, usize)],
) -> Result<()> {
    let mut positions = HashSet::with_capacity(placements.len());
    if placements.iter().any(|(_, p)| !positions.insert(*p)) {
        return Err(ServerError::Malformed(
            "a rebuilt segment places two images at one position".into(),
        ));
    }
    let mut st = tx.prepare(
        "UPDATE images SET segment_id = ?3, position = ?4
         WHERE collection_id = ?1 AND id = ?2 AND deleted_at IS NULL",
    )?;
    for &(id, position) in placements {
        if st.execute(params![collection, id, segment, to_i64(position as u64)])? != 1 {
            return Err(conflict(format!(
                "image {id} is not a live image of the collection; list the images and compact again"
            )));
        }
    }
    Ok(())
}
