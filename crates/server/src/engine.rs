//! The server's engine calls, each written once: [`respond`] answers a search query
//! against a loaded gallery, [`append`] checks and stores an ingest batch, [`compact`]
//! replaces segments by their rebuilt one (both through one write sequence). The HTTP handlers,
//! the in-process pipeline of `bench` and the tests all call these, so the sequence and its
//! checks cannot differ between them (as Apple's PNNS `Server::computeResponse`).

use crate::api_error::ApiError;
use crate::errors::ServerError;
use crate::gallery::Gallery;
use crate::ingest;
use crate::state::AppState;
use crate::store::{CollectionRecord, KeyUpdate};
use blindsight_he::{Ciphertext, Context, Serializable};
use blindsight_proto::{AppendSegment, CompactSegment, SearchResponse, SegmentScores};
use blindsight_search::VectorKind;
use blindsight_search::engine::{PreparedSegment, score};
use blindsight_search::he_backend::HeEvaluator;
use rayon::prelude::*;

/// Answers a search: `query` holds one ciphertext envelope per channel of `vectors`, each a
/// fresh encryption (two polynomials, top level) of the gallery's parameters; every segment
/// of the gallery's version is scored, and the answer names the version, the response
/// ciphertexts (per channel) and, per segment, its layout, its live images and where each
/// group's scores are.
pub fn respond(
    gallery: &Gallery,
    vectors: &VectorKind,
    query: &[Vec<u8>],
) -> Result<SearchResponse, ApiError> {
    let ctx = &gallery.ctx;
    if query.len() != vectors.channels() {
        return Err(ServerError::Malformed(format!(
            "the collection holds {vectors}: a query has {} ciphertexts, not {}",
            vectors.channels(),
            query.len()
        ))
        .into());
    }
    let q = query
        .iter()
        .map(|b| Ciphertext::from_bytes(ctx, b))
        .collect::<blindsight_he::Result<Vec<_>>>()?;
    if q.iter()
        .any(|ct| ct.size() != 2 || ct.level() != ctx.max_level())
    {
        return Err(ServerError::Malformed(
            "query ciphertexts must be fresh encryptions (2 polynomials, top level)".into(),
        )
        .into());
    }
    let segments: Vec<&PreparedSegment<HeEvaluator>> =
        gallery.segments.iter().map(|s| &*s.prepared).collect();
    let response = score(&*gallery.ev, &segments, &q)?;
    let ciphertexts = response
        .ciphertexts
        .iter()
        .map(|channel| {
            channel
                .par_iter()
                .map(|ct| ct.to_bytes(ctx))
                .collect::<blindsight_he::Result<Vec<_>>>()
        })
        .collect::<blindsight_he::Result<Vec<_>>>()?;
    let segments = gallery
        .segments
        .iter()
        .zip(response.placements)
        .map(|(seg, placements)| SegmentScores {
            segment: seg.id,
            layout: seg.prepared.layout.to_bytes(),
            live: seg.live.clone(),
            groups: placements
                .iter()
                .map(|p| (p.ciphertext, p.lane_offset))
                .collect(),
        })
        .collect();
    Ok(SearchResponse {
        version: gallery.version,
        ciphertexts,
        segments,
    })
}

/// Stores an ingest batch of `record`'s collection (see [`gated_upload`]): the segment, its
/// images and the completed keys committed in one transaction. Returns the new segment's id.
pub fn append(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    msg: &AppendSegment,
) -> Result<i64, ApiError> {
    gated_upload(state, record, ctx, Some(msg), |staged, keys| {
        let staged =
            staged.ok_or_else(|| ServerError::Internal("an ingest staged no file".into()))?;
        Ok(state.writer()?.append_segment(
            record.id,
            staged.into_batch(msg),
            keys,
            &state.options.quota,
        )?)
    })
}

/// Replaces the segments a compaction names by its rebuilt segment, if any (see
/// [`gated_upload`]), in one transaction, and forgets the replaced segments' cached
/// operands. Returns the new segment's id (`None` when the compaction only drops segments).
pub fn compact(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    msg: &CompactSegment,
) -> Result<Option<i64>, ApiError> {
    let new = gated_upload(state, record, ctx, msg.batch.as_ref(), |staged, keys| {
        let batch = staged
            .zip(msg.batch.as_ref())
            .map(|(s, b)| s.into_rebuilt(b));
        Ok(state.writer()?.replace_segments(
            record.id,
            &msg.olds,
            batch,
            keys,
            &state.options.quota,
        )?)
    })?;
    for (old, _) in &msg.olds {
        state.gallery.forget_segment(*old);
    }
    Ok(new)
}

/// The write sequence of an upload, written once: its shape checked and its segment file
/// written outside the collection's write gate ([`ingest::stage`]: segment cap, quota
/// headroom and expansion before the file's first byte), then, under the gate, its Galois
/// keys checked against the layout ([`ingest::check_keys`]) and `write` given the staged
/// file and the key update to commit. Without an upload, `write` runs under the gate alone.
fn gated_upload<U: ingest::Upload, T>(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    upload: Option<&U>,
    write: impl FnOnce(Option<ingest::Staged>, Option<&KeyUpdate<'_>>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let staged = upload
        .map(|u| ingest::stage(state, record, ctx, u))
        .transpose()?;
    state.write_gated(record.id, || {
        let keys = match upload {
            Some(u) => ingest::check_keys(state, record, ctx, u)?,
            None => None,
        };
        write(staged, keys.as_ref().map(ingest::NewKeys::update).as_ref())
    })
}
