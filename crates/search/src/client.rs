//! Client side: packing gallery segments into diagonals (pre-rotated by their giant-step
//! offsets) and encrypting them in parallel, packing the query, and reading scores out of a
//! decrypted response.

use crate::backend::{Role, SlotCipher};
use crate::errors::{Result, SearchError};
use crate::layout::Layout;
use crate::rank::{ChannelDots, check_channel_count};
use crate::response::{Response, shifted_slot};
use crate::slots::Slot;
use rayon::prelude::*;

/// Ciphertexts of one gallery segment: per channel, `layout.ciphertexts_per_channel()`
/// ciphertexts, group after group.
#[derive(Clone, Debug)]
pub struct EncryptedSegment<C> {
    /// The packing.
    pub layout: Layout,
    /// Per channel (R, G, B for pixels; one for an embedding), its ciphertexts.
    pub channels: Vec<Vec<C>>,
}

/// The slot vector of ciphertext `i` of `group` (one channel): diagonal `i` of each lane's
/// block, rotated right by its giant-step offset.
pub fn diagonal_slots<S: Slot>(
    layout: &Layout,
    vectors: &[Vec<S>],
    group: usize,
    i: usize,
) -> Vec<S> {
    let v = layout.vector_slots;
    let m = layout.block;
    let mut out = vec![S::default(); layout.shape.len()];
    for lane in 0..layout.lanes() {
        let block = group * layout.lanes() + lane;
        for j in 0..v {
            if let Some(img) = vectors.get(block * m + j % m) {
                out[layout.slot_of(lane, j)] = img[(j + i) % v];
            }
        }
    }
    let offset = layout.lane_step(i / layout.baby * layout.baby);
    layout.shape.rotate(&out, -offset)
}

/// The query slot vector: the packed query in every lane.
pub fn query_slots<S: Slot>(layout: &Layout, query: &[S]) -> Vec<S> {
    let mut out = vec![S::default(); layout.shape.len()];
    for lane in 0..layout.lanes() {
        for (j, &q) in query.iter().enumerate() {
            out[layout.slot_of(lane, j)] = q;
        }
    }
    out
}

/// Packs one encoded vector into its `V` slots (gallery side).
pub fn pack_gallery_vector<S: Slot>(values: &[f64]) -> Vec<S> {
    let mut out = vec![S::default(); S::vector_slots(values.len())];
    S::pack_gallery(values, &mut out);
    out
}

/// Packs one encoded vector into its `V` slots (query side).
pub fn pack_query_vector<S: Slot>(values: &[f64]) -> Vec<S> {
    let mut out = vec![S::default(); S::vector_slots(values.len())];
    S::pack_query(values, &mut out);
    out
}

/// Encrypts a segment: `vectors[c][k]` is channel `c` of image `k` (encoded values).
pub fn encrypt_segment<C: SlotCipher>(
    cipher: &C,
    vectors: &[Vec<Vec<f64>>],
) -> Result<EncryptedSegment<C::Ct>> {
    encrypt_segment_with(cipher, vectors, Ok)
}

/// Encrypts a segment and hands every ciphertext to `sink` as soon as it exists (to
/// serialize it, say), so that the ciphertexts of a whole segment never sit in memory.
pub fn encrypt_segment_with<C, T, F>(
    cipher: &C,
    vectors: &[Vec<Vec<f64>>],
    sink: F,
) -> Result<EncryptedSegment<T>>
where
    C: SlotCipher,
    T: Send,
    F: Fn(C::Ct) -> Result<T> + Sync,
{
    check_channel_count(vectors.len(), "gallery channels")?;
    let count = vectors[0].len();
    let dim = vectors[0].first().map_or(0, |v| v.len());
    for ch in vectors {
        if ch.len() != count {
            return Err(SearchError::DimensionMismatch {
                what: "images per channel",
                expected: count,
                actual: ch.len(),
            });
        }
        if let Some(bad) = ch.iter().find(|v| v.len() != dim) {
            return Err(SearchError::DimensionMismatch {
                what: "values per channel",
                expected: dim,
                actual: bad.len(),
            });
        }
    }
    let layout = Layout::new(count, dim, C::Slot::vector_slots(dim), cipher.shape())?;
    let per_channel = layout.ciphertexts_per_channel();
    let channels = vectors
        .iter()
        .map(|ch| {
            // one channel packed at a time (a third of the memory for pixels)
            let packed: Vec<Vec<C::Slot>> = ch
                .par_iter()
                .map(|v| pack_gallery_vector::<C::Slot>(v))
                .collect();
            (0..per_channel)
                .into_par_iter()
                .map(|k| {
                    let slots =
                        diagonal_slots(&layout, &packed, k / layout.block, k % layout.block);
                    sink(cipher.encrypt(&slots, Role::Gallery)?)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EncryptedSegment { layout, channels })
}

/// Encrypts a query (one encoded vector per channel, all of one length): one ciphertext per
/// channel.
pub fn encrypt_query<C: SlotCipher>(cipher: &C, channels: &[Vec<f64>]) -> Result<Vec<C::Ct>> {
    check_channel_count(channels.len(), "query channels")?;
    let dim = channels[0].len();
    if let Some(bad) = channels.iter().find(|v| v.len() != dim) {
        return Err(SearchError::DimensionMismatch {
            what: "query values per channel",
            expected: dim,
            actual: bad.len(),
        });
    }
    let layout = Layout::new(1, dim, C::Slot::vector_slots(dim), cipher.shape())?;
    channels
        .par_iter()
        .map(|v| {
            let slots = query_slots(&layout, &pack_query_vector::<C::Slot>(v));
            cipher.encrypt(&slots, Role::Query)
        })
        .collect()
}

/// Reads the per-channel dot products of every image of every segment (of `layouts`, in
/// the order they were scored) from a search response; `channels` is what the collection
/// declares. Every response ciphertext is decrypted once.
///
/// The response may come from an untrusted server: counts and placements are checked
/// before anything is allocated from them, and the images its layouts claim are bounded
/// by the slots of the ciphertexts actually received (the groups placed in one ciphertext
/// may not claim more slots than it has).
pub fn decrypt_response<C: SlotCipher>(
    cipher: &C,
    layouts: &[Layout],
    channels: usize,
    response: &Response<C::Ct>,
) -> Result<Vec<ChannelDots>> {
    let count = |what, expected, actual| {
        if expected == actual {
            Ok(())
        } else {
            Err(SearchError::CiphertextCount {
                what,
                expected,
                actual,
            })
        }
    };
    count("response channels", channels, response.ciphertexts.len())?;
    let per_channel = response.ciphertexts.first().map_or(0, Vec::len);
    for cts in &response.ciphertexts {
        count("response ciphertexts per channel", per_channel, cts.len())?;
    }
    count(
        "segments placed in the response",
        layouts.len(),
        response.placements.len(),
    )?;
    let slots = cipher.shape().len();
    let mut claimed = vec![0usize; per_channel];
    for (layout, placements) in layouts.iter().zip(&response.placements) {
        count("placed groups", layout.groups(), placements.len())?;
        if layout.shape.len() != slots {
            return Err(SearchError::Layout {
                reason: format!(
                    "a segment of {} slots per ciphertext in a response of {slots}",
                    layout.shape.len()
                ),
            });
        }
        for (g, p) in placements.iter().enumerate() {
            let used = claimed
                .get_mut(p.ciphertext)
                .ok_or_else(|| SearchError::Layout {
                    reason: format!(
                        "a group is placed in response ciphertext {}, of {per_channel}",
                        p.ciphertext
                    ),
                })?;
            *used = used.saturating_add(layout.group_lanes(g).saturating_mul(layout.block));
            if *used > slots {
                return Err(SearchError::Layout {
                    reason: format!(
                        "the groups placed in response ciphertext {} claim more than its \
                         {slots} slots",
                        p.ciphertext
                    ),
                });
            }
        }
    }
    let mut out = layouts
        .iter()
        .map(|l| ChannelDots::zeros(channels, l.count))
        .collect::<Result<Vec<_>>>()?;
    for (c, cts) in response.ciphertexts.iter().enumerate() {
        let decrypted = cts
            .par_iter()
            .map(|ct| cipher.decrypt(ct))
            .collect::<Result<Vec<_>>>()?;
        for ((layout, placements), dots) in layouts.iter().zip(&response.placements).zip(&mut out) {
            for k in 0..layout.count {
                let (group, slot) = layout.score_slot(k);
                let placement =
                    placements
                        .get(group)
                        .copied()
                        .ok_or_else(|| SearchError::Layout {
                            reason: format!("group {group} of a segment has no placement"),
                        })?;
                let slot = shifted_slot(layout, group, slot, placement)?;
                let value = decrypted
                    .get(placement.ciphertext)
                    .and_then(|v| v.get(slot))
                    .copied()
                    .unwrap_or_default();
                dots.image_mut(k)[c] = value.score();
            }
        }
    }
    Ok(out)
}
