//! Server side: the encrypted matrix-vector product over every segment of a gallery.
//!
//! Per channel the query is decomposed once and rotated by every baby step (hoisted); per
//! group and giant step the products are summed lazily and relinearized once; giant-step
//! sums are rotated into place and added; short blocks are folded by rotate-and-add, the
//! last steps of the fold left to the trace of the response's ring switch; the last groups
//! of small segments are shifted into disjoint lanes and summed ([`crate::response`]); the
//! result is switched to the smallest modulus. Channels, segments, groups and giant steps run in
//! parallel (rayon), each channel its baby steps and then its groups with no barrier across
//! channels. No rotation is ever done per image.

use crate::backend::SlotEvaluator;
use crate::errors::{Result, SearchError};
use crate::layout::Layout;
use crate::rank::check_channel_count;
use crate::response::{self, Response};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A segment ready for queries: its gallery operands per channel, in memory or read in
/// place from a mapped segment file (`blindsight_he::Evaluator::shared_product`), which
/// the engine does not tell apart.
pub struct PreparedSegment<E: SlotEvaluator> {
    /// The packing.
    pub layout: Layout,
    channels: usize,
    operands: Vec<Vec<E::Operand>>,
}

impl<E: SlotEvaluator> PreparedSegment<E> {
    /// Prepares a segment's ciphertexts (per channel; in parallel) and keeps the operands
    /// in memory.
    pub fn new(ev: &E, layout: Layout, channels: Vec<Vec<E::Ct>>) -> Result<Self> {
        check_counts(&layout, &channels, "segment ciphertexts")?;
        let operands = channels
            .into_iter()
            .map(|ch| {
                ch.into_par_iter()
                    .map(|ct| ev.gallery_operand(ct))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_operands(layout, operands)
    }

    /// A segment of prepared gallery operands (per channel, as many as the layout has).
    pub fn from_operands(layout: Layout, operands: Vec<Vec<E::Operand>>) -> Result<Self> {
        check_counts(&layout, &operands, "segment operands")?;
        Ok(Self {
            layout,
            channels: operands.len(),
            operands,
        })
    }

    /// Channels of every image (three for pixels, one for an embedding).
    pub fn channels(&self) -> usize {
        self.channels
    }
}

/// Checks that a segment has a valid number of channels, each of as many items as `layout`
/// has ciphertexts per channel.
fn check_counts<T>(layout: &Layout, channels: &[Vec<T>], what: &'static str) -> Result<()> {
    check_channel_count(channels.len(), "segment channels")?;
    let expected = layout.ciphertexts_per_channel();
    match channels.iter().find(|c| c.len() != expected) {
        Some(bad) => Err(SearchError::CiphertextCount {
            what,
            expected,
            actual: bad.len(),
        }),
        None => Ok(()),
    }
}

/// Scores an encrypted query (one ciphertext per channel) against every segment; every
/// segment must have as many channels as the query. The results of small segments share
/// response ciphertexts ([`crate::response`]).
pub fn score<E, S>(ev: &E, segments: &[S], query: &[E::Ct]) -> Result<Response<E::Ct>>
where
    E: SlotEvaluator,
    S: std::borrow::Borrow<PreparedSegment<E>> + Sync,
{
    check_channel_count(query.len(), "query channels")?;
    if let Some(bad) = segments.iter().find(|s| s.borrow().channels != query.len()) {
        return Err(SearchError::CiphertextCount {
            what: "query channels (one per channel of the segments)",
            expected: bad.borrow().channels,
            actual: query.len(),
        });
    }
    let layouts: Vec<Layout> = segments.iter().map(|s| s.borrow().layout).collect();
    let plan = response::plan(&layouts, ev.max_trace(), |l| response::can_shift(ev, l));
    // Baby steps of every segment, computed once per channel.
    let mut steps: Vec<i64> = layouts.iter().flat_map(Layout::baby_steps).collect();
    steps.sort_unstable();
    steps.dedup();
    // Channel by channel in parallel, each its baby steps and then its response
    // ciphertexts: no barrier between the channels, so one channel's rotations
    // (arithmetic) overlap another's products (memory traffic).
    let ciphertexts = query
        .par_iter()
        .enumerate()
        .map(|(c, q)| {
            let rotated = ev.rotations(q, &steps)?;
            let mut all: Vec<(i64, E::Ct)> = vec![(0, q.clone())];
            all.extend(steps.iter().copied().zip(rotated));
            let babies = all
                .into_par_iter()
                .map(|(s, ct)| Ok((s, ev.operand(ct)?)))
                .collect::<Result<BTreeMap<_, _>>>()?;
            plan.ciphertexts
                .par_iter()
                .map(|(members, trace)| {
                    let parts = members
                        .par_iter()
                        .map(|m| {
                            let seg =
                                segments.get(m.segment).ok_or_else(|| SearchError::Layout {
                                    reason: format!("no segment {}", m.segment),
                                })?;
                            let acc = score_group(ev, seg.borrow(), c, &babies, m.group, *trace)?;
                            shift_lanes(ev, acc, m.lane_offset)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    ev.finish(ev.add_all(parts)?, *trace)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Response {
        ciphertexts,
        placements: plan.placements,
    })
}

/// Shifts a group's result right by `lanes` lanes (one rotation per set bit).
fn shift_lanes<E: SlotEvaluator>(ev: &E, ct: E::Ct, lanes: usize) -> Result<E::Ct> {
    response::shift_steps(lanes)
        .into_iter()
        .try_fold(ct, |acc, step| ev.rotate(&acc, step))
}

/// A group's result before the response's trace: its giant steps summed and the fold's
/// steps below `trace` done.
fn score_group<E: SlotEvaluator>(
    ev: &E,
    seg: &PreparedSegment<E>,
    channel: usize,
    babies: &BTreeMap<i64, E::Operand>,
    group: usize,
    trace: usize,
) -> Result<E::Ct> {
    let l = &seg.layout;
    let base = group * l.block;
    let gallery = seg
        .operands
        .get(channel)
        .and_then(|ch| ch.get(base..base + l.block))
        .ok_or_else(|| SearchError::Layout {
            reason: format!("group {group} of channel {channel} is outside its segment"),
        })?;
    let giants = (0..l.giant())
        .map(|gi| {
            let first = gi * l.baby;
            let count = l.baby.min(l.block - first);
            Ok((
                pairs_of(&gallery[first..first + count], babies, l, first)?,
                l.lane_step(first),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut acc = ev.sum_of_rotated_products(&giants)?;
    // the fold's last steps are left to the response's trace (ring switch) where it can
    for step in l.fold_steps_before_trace(trace) {
        let r = ev.rotate(&acc, step)?;
        acc = ev.add(&acc, &r)?;
    }
    Ok(acc)
}

/// The products of a giant step: gallery operand `b` with the query's baby step `b`.
fn pairs_of<'a, O>(
    gallery: &'a [O],
    babies: &'a BTreeMap<i64, O>,
    l: &Layout,
    first: usize,
) -> Result<Vec<(&'a O, &'a O)>> {
    gallery
        .iter()
        .enumerate()
        .map(|(b, g)| {
            let baby = babies
                .get(&l.lane_step(b))
                .ok_or_else(|| SearchError::Layout {
                    reason: format!("baby step {b} of the giant step at {first} was not computed"),
                })?;
            Ok((g, baby))
        })
        .collect()
}
