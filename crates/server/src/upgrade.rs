//! Stores written before segment files: every segment whose ciphertexts are still rows gets
//! its file (the ciphertexts converted to gallery operands, as an upload would be), and its
//! rows are dropped, one segment per transaction. Runs when a server opens its store, before
//! it serves; a crash midway leaves the remaining segments as they were, and the next open
//! carries on.

use crate::errors::{Result, ServerError};
use crate::state::AppState;
use crate::store::segment_file::write_segment;
use blindsight_he::{Ciphertext, Evaluator, Serializable};
use blindsight_search::Layout;
use std::collections::HashMap;

/// Gives every segment of the server's store that has none its segment file; returns how
/// many.
pub fn give_segments_files(state: &AppState) -> Result<usize> {
    let mut store = state.writer()?;
    let todo = store.segments_without_files()?;
    if todo.is_empty() {
        return Ok(0);
    }
    let collections: HashMap<i64, _> = store
        .collections()?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let layouts: HashMap<i64, Vec<u8>> = todo
        .iter()
        .map(|&(_, c)| c)
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .map(|c| store.segments(c))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    for (segment, collection) in &todo {
        let record = collections
            .get(collection)
            .ok_or_else(|| ServerError::NotFound {
                what: "collection",
                name: collection.to_string(),
            })?;
        let ctx = state.context(&record.params)?;
        let layout_bytes = layouts.get(segment).ok_or_else(|| ServerError::NotFound {
            what: "segment",
            name: segment.to_string(),
        })?;
        let layout = Layout::from_bytes(layout_bytes)?;
        let channels = record.vectors.channels();
        let blobs = store.segment_ciphertexts(*segment, channels)?;
        let ev = Evaluator::new(&ctx);
        // stored before segment files, already counted: converted whatever its size
        let file = write_segment(
            store.files(),
            &ev,
            &layout,
            channels,
            |c, k| {
                let bytes = blobs.get(c).and_then(|ch| ch.get(k)).ok_or_else(|| {
                    ServerError::Malformed(format!(
                        "segment {segment} lacks ciphertext {k} of channel {c}"
                    ))
                })?;
                Ok(Ciphertext::from_bytes(&ctx, bytes)?)
            },
            |_| Ok(()),
        )?;
        store.adopt_segment_file(*segment, file)?;
        tracing::info!(segment, collection = %record.name, "segment file written for a segment stored before them");
    }
    Ok(todo.len())
}
