//! Reading rows: a collection's record, counters, keys, images and segment ciphertexts.

use super::{CollectionRecord, ImageEntry, Usage};
use crate::errors::{Result, ServerError};
use blindsight_search::VectorKind;
use blindsight_search::rank::MAX_CHANNELS;
use rusqlite::{Connection, OptionalExtension};

pub(super) fn evaluation_keys(conn: &Connection, collection: i64) -> Result<EvaluationKeyBlobs> {
    Ok(conn.query_row(
        "SELECT relin_key, galois_keys, response_key FROM collection_keys WHERE collection_id = ?1",
        [collection],
        |r| {
            Ok(EvaluationKeyBlobs {
                relin_key: r.get(0)?,
                galois_keys: r.get(1)?,
                response_key: r.get(2)?,
            })
        },
    )?)
}

/// A collection's evaluation keys as stored (envelopes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluationKeyBlobs {
    /// Relinearization key.
    pub relin_key: Vec<u8>,
    /// Galois keys.
    pub galois_keys: Vec<u8>,
    /// Ring-switching key of responses (`None` for collections made before it existed).
    pub response_key: Option<Vec<u8>>,
}

pub(super) fn collection_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CollectionRecord> {
    Ok(CollectionRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        params: r.get(2)?,
        fingerprint: r.get(3)?,
        vectors: {
            let spec: String = r.get(4)?;
            VectorKind::parse(&spec).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?
        },
        token_hash: r.get(5)?,
        key_id: r.get(6)?,
    })
}

pub(super) fn usage(conn: &Connection, collection: i64) -> Result<Usage> {
    let row: [i64; 7] = conn
        .query_row(
            "SELECT version, keys_version, key_bytes, stored_bytes, image_count, live_count,
                    segment_count
             FROM collections WHERE id = ?1",
            [collection],
            |r| {
                Ok([
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ])
            },
        )
        .optional()?
        .ok_or_else(|| ServerError::NotFound {
            what: "collection",
            name: collection.to_string(),
        })?;
    let [
        version,
        keys_version,
        key_bytes,
        stored_bytes,
        images,
        live,
        segments,
    ] = row;
    Ok(Usage {
        version,
        keys_version,
        key_bytes: key_bytes.max(0) as u64,
        stored_bytes: stored_bytes.max(0) as u64,
        images: images.max(0) as u64,
        live: live.max(0) as u64,
        segments: segments.max(0) as u64,
    })
}

pub(super) fn images(conn: &Connection, collection: i64) -> Result<Vec<ImageEntry>> {
    let mut st = conn.prepare(
        "SELECT id, segment_id, position, tag, meta, deleted_at IS NOT NULL,
                CASE WHEN thumbnail IS NOT NULL THEN thumbnail_slot END
         FROM images WHERE collection_id = ?1 ORDER BY segment_id, position",
    )?;
    let rows = st.query_map([collection], image_entry)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// An image row: id, segment, position, tag, metadata, whether deleted, its thumbnail's
/// slot.
pub(super) fn image_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageEntry> {
    Ok(ImageEntry {
        id: r.get(0)?,
        segment_id: r.get(1)?,
        position: usize::try_from(r.get::<_, i64>(2)?).unwrap_or(usize::MAX),
        tag: r.get(3)?,
        meta: r.get(4)?,
        deleted: r.get(5)?,
        thumbnail_slot: r
            .get::<_, Option<i64>>(6)?
            .and_then(|s| u64::try_from(s).ok()),
    })
}

/// Rows of a channel at or beyond `channels` are left out (the segment's count check then
/// fails loudly).
pub(super) fn segment_ciphertexts(
    conn: &Connection,
    segment: i64,
    channels: usize,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new(); channels.min(MAX_CHANNELS)];
    let mut st = conn.prepare(
        "SELECT channel, data FROM ciphertexts WHERE segment_id = ?1 ORDER BY channel, idx",
    )?;
    let rows = st.query_map([segment], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    for row in rows {
        let (c, data) = row?;
        if let Some(ch) = usize::try_from(c).ok().and_then(|c| out.get_mut(c)) {
            ch.push(data);
        }
    }
    Ok(out)
}

pub(super) fn elements_text(elements: &[u64]) -> String {
    elements
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn parse_elements(text: &str) -> Vec<u64> {
    text.split(',').filter_map(|e| e.parse().ok()).collect()
}
