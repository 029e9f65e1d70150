//! Ciphertexts per channel to and from the envelopes a wire frame carries (a search
//! response's ciphertexts, a segment's upload), and where a search answer places each
//! group's scores.

use crate::errors::Result;
use crate::wire::SegmentScores;
use blindsight_he::{Ciphertext, Context, Serializable};
use blindsight_search::response::Placement;
use rayon::prelude::*;

/// Serializes ciphertexts per channel into their envelopes.
pub fn to_envelopes(ctx: &Context, channels: &[Vec<Ciphertext>]) -> Result<Vec<Vec<Vec<u8>>>> {
    channels
        .iter()
        .map(|cts| {
            cts.par_iter()
                .map(|ct| ct.to_bytes(ctx))
                .collect::<blindsight_he::Result<Vec<_>>>()
        })
        .collect::<blindsight_he::Result<Vec<_>>>()
        .map_err(Into::into)
}

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
