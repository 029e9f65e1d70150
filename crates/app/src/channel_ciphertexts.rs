//! Ciphertexts per channel to and from the envelopes a wire frame carries (a search
//! response's ciphertexts, a segment's upload).

use crate::errors::Result;
use blindsight_he::{Ciphertext, Context, Serializable};
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
