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
/// declares. Every response ciphertext is decrypted once: [`check_response`], then
/// [`decrypt_response_with`] over the ciphertexts held.
pub fn decrypt_response<C: SlotCipher>(
    cipher: &C,
    layouts: &[Layout],
    channels: usize,
    response: &Response<C::Ct>,
) -> Result<Vec<ChannelDots>> {
    let counts: Vec<usize> = response.ciphertexts.iter().map(Vec::len).collect();
    let plan = check_response(
        layouts,
        channels,
        cipher.shape().len(),
        &counts,
        &response.placements,
    )?;
    decrypt_response_with(cipher, layouts, channels, &plan, |c, k| {
        response
            .ciphertexts
            .get(c)
            .and_then(|cts| cts.get(k))
            .cloned()
            .ok_or(SearchError::CiphertextCount {
                what: "response ciphertexts per channel",
                expected: k + 1,
                actual: counts.get(c).copied().unwrap_or(0),
            })
    })
}

/// Where a checked response's scores are: per response ciphertext, the groups placed in it
/// (segment, group, lane shift); made by [`check_response`] from counts alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseShape {
    /// Response ciphertexts per channel.
    pub per_channel: usize,
    /// Per response ciphertext, its members: (segment, group, placement).
    members: Vec<Vec<(usize, usize, crate::response::Placement)>>,
}

/// Checks a search response from its counts alone, before any ciphertext is read or
/// anything is allocated for it: `channels` channels of `per_channel[c]` ciphertexts each
/// (the same in every channel), one placement per group of every layout, each inside the
/// ciphertexts sent, the groups placed in one ciphertext claiming no more than its `slots`
/// slots, and every ciphertext placed by at least one group (so a response cannot send
/// more ciphertexts than its layouts have groups). The response may come from an untrusted
/// server: what this returns is bounded by the layouts, which the caller bounds.
pub fn check_response(
    layouts: &[Layout],
    channels: usize,
    slots: usize,
    per_channel: &[usize],
    placements: &[Vec<crate::response::Placement>],
) -> Result<ResponseShape> {
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
    count("response channels", channels, per_channel.len())?;
    let n = per_channel.first().copied().unwrap_or(0);
    for &c in per_channel {
        count("response ciphertexts per channel", n, c)?;
    }
    count(
        "segments placed in the response",
        layouts.len(),
        placements.len(),
    )?;
    let groups: usize = layouts.iter().map(Layout::groups).sum();
    if n > groups {
        return Err(SearchError::CiphertextCount {
            what: "response ciphertexts (at most one per placed group)",
            expected: groups,
            actual: n,
        });
    }
    let mut claimed = vec![0usize; n];
    let mut members = vec![Vec::new(); n];
    for (s, (layout, placed)) in layouts.iter().zip(placements).enumerate() {
        count("placed groups", layout.groups(), placed.len())?;
        if layout.shape.len() != slots {
            return Err(SearchError::Layout {
                reason: format!(
                    "a segment of {} slots per ciphertext in a response of {slots}",
                    layout.shape.len()
                ),
            });
        }
        for (g, p) in placed.iter().enumerate() {
            let used = claimed
                .get_mut(p.ciphertext)
                .ok_or_else(|| SearchError::Layout {
                    reason: format!(
                        "a group is placed in response ciphertext {}, of {n}",
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
            // the shift is checked here, before anything is decrypted
            shifted_slot(layout, g, 0, *p)?;
            if let Some(m) = members.get_mut(p.ciphertext) {
                m.push((s, g, *p));
            }
        }
    }
    if let Some(k) = members.iter().position(Vec::is_empty) {
        return Err(SearchError::Layout {
            reason: format!("response ciphertext {k} is placed by no group"),
        });
    }
    Ok(ResponseShape {
        per_channel: n,
        members,
    })
}

/// Ciphertexts read and decrypted at once by [`decrypt_response_with`]: a response is
/// never held expanded, only this many of its ciphertexts.
const DECRYPT_CHUNK: usize = 16;

/// Reads the per-channel dot products of a checked response (`shape`, from
/// [`check_response`] on the same layouts): ciphertext `k` of channel `c` is `read(c, k)`,
/// called once each, [`DECRYPT_CHUNK`] at a time, so that only those are expanded and
/// decrypted at once whatever the response's size.
pub fn decrypt_response_with<C: SlotCipher>(
    cipher: &C,
    layouts: &[Layout],
    channels: usize,
    shape: &ResponseShape,
    read: impl Fn(usize, usize) -> Result<C::Ct> + Sync,
) -> Result<Vec<ChannelDots>> {
    let mut out = layouts
        .iter()
        .map(|l| ChannelDots::zeros(channels, l.count))
        .collect::<Result<Vec<_>>>()?;
    // per segment, per group, its images and their slots
    let by_group: Vec<Vec<Vec<(usize, usize)>>> = layouts
        .iter()
        .map(|l| {
            let mut groups = vec![Vec::new(); l.groups()];
            for k in 0..l.count {
                let (group, slot) = l.score_slot(k);
                if let Some(g) = groups.get_mut(group) {
                    g.push((k, slot));
                }
            }
            groups
        })
        .collect();
    for c in 0..channels {
        for start in (0..shape.per_channel).step_by(DECRYPT_CHUNK) {
            let end = (start + DECRYPT_CHUNK).min(shape.per_channel);
            let decrypted = (start..end)
                .into_par_iter()
                .map(|k| cipher.decrypt(&read(c, k)?))
                .collect::<Result<Vec<_>>>()?;
            for (k, values) in (start..end).zip(&decrypted) {
                for &(s, g, placement) in shape.members.get(k).map_or(&[][..], Vec::as_slice) {
                    let (Some(layout), Some(dots)) = (layouts.get(s), out.get_mut(s)) else {
                        continue;
                    };
                    let images = by_group
                        .get(s)
                        .and_then(|groups| groups.get(g))
                        .map_or(&[][..], Vec::as_slice);
                    for &(image, slot) in images {
                        let slot = shifted_slot(layout, g, slot, placement)?;
                        let value = values.get(slot).copied().unwrap_or_default();
                        dots.image_mut(image)[c] = value.score();
                    }
                }
            }
        }
    }
    Ok(out)
}
