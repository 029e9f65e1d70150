//! The server's two engine calls, each written once: [`respond`] answers a search query
//! against a loaded gallery, [`append`] checks and stores an ingest batch. The HTTP handlers,
//! the in-process pipeline of `bench` and the tests all call these, so the sequence and its
//! checks cannot differ between them (as Apple's PNNS `Server::computeResponse`).

use crate::api_error::ApiError;
use crate::errors::ServerError;
use crate::gallery::Gallery;
use crate::ingest;
use crate::state::AppState;
use crate::store::CollectionRecord;
use blindsight_he::{Ciphertext, Context, Serializable};
use blindsight_proto::{AppendSegment, SearchResponse, SegmentScores};
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

/// Stores an ingest batch of `record`'s collection: its shape checked and its segment file
/// written outside the collection's write gate ([`ingest::stage`]: segment cap, quota
/// headroom and expansion before the file's first byte), then, under the gate, its Galois
/// keys checked against the layout ([`ingest::check_keys`]) and the segment, its images and
/// the completed keys committed in one transaction. Returns the new segment's id.
pub fn append(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    msg: &AppendSegment,
) -> Result<i64, ApiError> {
    let staged = ingest::stage(state, record, ctx, msg)?;
    state.write_gated(record.id, || {
        let keys = ingest::check_keys(state, record, ctx, msg)?;
        Ok(state.writer()?.append_segment(
            record.id,
            staged.into_batch(msg),
            keys.as_ref().map(ingest::NewKeys::update).as_ref(),
            &state.options.quota,
        )?)
    })
}
