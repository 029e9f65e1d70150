//! A search answer read on the client: its ciphertexts per channel from the envelopes the
//! frame carries, and where it places each group's scores.

use crate::errors::Result;
use crate::wire::SegmentScores;
use blindsight_he::{Ciphertext, Context, Serializable};
use blindsight_search::response::Placement;
use rayon::prelude::*;

/// Reads ciphertexts per channel from their envelopes, each checked against `ctx`.
pub fn from_envelopes(ctx: &Context, channels: &[Vec<Vec<u8>>]) -> Result<Vec<Vec<Ciphertext>>> {
    channels
        .iter()
        .map(|blobs| {
            blobs
                .par_iter()
                .map(|b| Ciphertext::from_bytes(ctx, b))
                .collect::<blindsight_he::Result<Vec<_>>>()
        })
        .collect::<blindsight_he::Result<Vec<_>>>()
        .map_err(Into::into)
}

/// Where each group's scores are in a search answer: per segment, per group, its response
/// ciphertext and lane shift (as the answer says; checked by `check_response`).
pub fn placements(segments: &[SegmentScores]) -> Vec<Vec<Placement>> {
    segments
        .iter()
        .map(|seg| {
            seg.groups
                .iter()
                .map(|&(ciphertext, lane_offset)| Placement {
                    ciphertext,
                    lane_offset,
                })
                .collect()
        })
        .collect()
}
