//! The response of a search, packed across segments.
//!
//! A group's result occupies, before the response's trace, the lanes it has blocks in:
//! a full group all `L` lanes, the last group of a small segment only the first
//! `u = ⌈(images left)/m⌉` lanes of the first row, every other lane an encryption of zero.
//! A row rotation by `−o` (to the right) moves lanes `[0, u)` to `[o, o + u)` without
//! wrapping when `o + u ≤ S` (`S` lanes per row), and rotations commute with the trace the
//! response takes, so the partial results of several segments with disjoint lanes and the
//! same trace are summed before [`SlotEvaluator::finish`] and sent as one ciphertext. The
//! client reads the score of lane `ℓ` at the slot of lane `ℓ + o`.
//!
//! The plan depends only on the segments' layouts and the evaluator's trace, so it is the
//! same for every query of a gallery; the response carries each group's [`Placement`]. A
//! gallery whose evaluator lacks the lane-shift keys ([`Layout::packing_steps`]) is answered
//! unpacked. Packing sums the noise of the members (each member's encryptions of zero
//! included), so a packed score carries up to `√k` times a lone one's product noise for
//! `k ≤ S` members: CKKS scores stay within `10^-6`·√k of the reference, BFV stays exact
//! (its noise budget keeps the margin, `tests/similarity.rs`).

use crate::backend::SlotEvaluator;
use crate::errors::{Result, SearchError};
use crate::layout::Layout;
use std::collections::BTreeMap;

/// Where the scores of one group of a segment are in a search response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// Index of the response ciphertext (the same in every channel).
    pub ciphertext: usize,
    /// Lanes the group's results were shifted by within their row.
    pub lane_offset: usize,
}

/// An encrypted search response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<C> {
    /// Per channel, the response ciphertexts (as many in every channel).
    pub ciphertexts: Vec<Vec<C>>,
    /// Per segment (in the order they were scored), per group, where its scores are.
    pub placements: Vec<Vec<Placement>>,
}

/// One group's part of a response ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Segment index.
    pub segment: usize,
    /// Group within the segment.
    pub group: usize,
    /// Lanes its result is shifted by.
    pub lane_offset: usize,
}

/// Which groups make up each response ciphertext, and where every group's scores land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponsePlan {
    /// Per response ciphertext, its members (one unless packed) and its trace.
    pub ciphertexts: Vec<(Vec<Member>, usize)>,
    /// Per segment, per group.
    pub placements: Vec<Vec<Placement>>,
}

/// The trace a group of `layout` takes in its response under an evaluator whose `finish`
/// takes at most `max_trace`.
pub fn group_trace(layout: &Layout, max_trace: usize) -> usize {
    max_trace.max(1).min(layout.max_trace())
}

/// The row rotations that shift a result right by `lanes` lanes (one per set bit, each a
/// key of [`Layout::packing_steps`]).
pub fn shift_steps(lanes: usize) -> Vec<i64> {
    (0..usize::BITS)
        .filter(|b| lanes >> b & 1 == 1)
        .map(|b| -(1i64 << b))
        .collect()
}

/// Plans the response of a search over segments of `layouts`: every group whose lanes fill
/// a ciphertext gets its own; the last groups of small segments (those using fewer lanes
/// than a row has, whose lane shifts `can_shift` allows) are packed first-fit decreasing
/// into shared ones, keyed by trace and lanes per row.
pub fn plan(
    layouts: &[Layout],
    max_trace: usize,
    can_shift: impl Fn(&Layout) -> bool,
) -> ResponsePlan {
    let mut ciphertexts: Vec<(Vec<Member>, usize)> = Vec::new();
    let mut placements: Vec<Vec<Placement>> = layouts
        .iter()
        .map(|l| {
            vec![
                Placement {
                    ciphertext: 0,
                    lane_offset: 0,
                };
                l.groups()
            ]
        })
        .collect();
    // (lanes used, segment, group) of every packable group
    let mut packable: Vec<(usize, usize, usize)> = Vec::new();
    for (s, l) in layouts.iter().enumerate() {
        let trace = group_trace(l, max_trace);
        let shiftable = l.stride() > 1 && can_shift(l);
        for g in 0..l.groups() {
            let used = l.group_lanes(g);
            if shiftable && used < l.stride() {
                packable.push((used, s, g));
                continue;
            }
            placements[s][g].ciphertext = ciphertexts.len();
            ciphertexts.push((vec![member(s, g, 0)], trace));
        }
    }
    // first fit, widest first; bins keyed by (trace, lanes per row)
    packable.sort_by_key(|&(used, s, g)| (std::cmp::Reverse(used), s, g));
    let mut bins: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
    for (used, s, g) in packable {
        let l = &layouts[s];
        let trace = group_trace(l, max_trace);
        let open = bins.entry((trace, l.stride())).or_default();
        let slot = open
            .iter_mut()
            .find(|(_, filled)| filled + used <= l.stride());
        let (index, offset) = match slot {
            Some((index, filled)) => {
                let offset = *filled;
                *filled += used;
                (*index, offset)
            }
            None => {
                let index = ciphertexts.len();
                ciphertexts.push((Vec::new(), trace));
                open.push((index, used));
                (index, 0)
            }
        };
        if let Some((members, _)) = ciphertexts.get_mut(index) {
            members.push(member(s, g, offset));
        }
        placements[s][g] = Placement {
            ciphertext: index,
            lane_offset: offset,
        };
    }
    ResponsePlan {
        ciphertexts,
        placements,
    }
}

fn member(segment: usize, group: usize, lane_offset: usize) -> Member {
    Member {
        segment,
        group,
        lane_offset,
    }
}

/// Whether `ev` holds every lane shift a packed group of `layout` may need.
pub fn can_shift<E: SlotEvaluator>(ev: &E, layout: &Layout) -> bool {
    layout.packing_steps().iter().all(|&s| ev.can_rotate(s))
}

/// The slot where the score at `slot` of a group lands once the group is shifted by
/// `placement`, checked against the layout: a shifted group must keep every lane it uses in
/// its row (a server placing it elsewhere sent a malformed response).
pub fn shifted_slot(
    layout: &Layout,
    group: usize,
    slot: usize,
    placement: Placement,
) -> Result<usize> {
    let offset = placement.lane_offset;
    if offset == 0 {
        return Ok(slot);
    }
    if offset.saturating_add(layout.group_lanes(group)) > layout.stride() {
        return Err(SearchError::Layout {
            reason: format!(
                "group {group} of {} lanes shifted by {offset} leaves its row of {} lanes",
                layout.group_lanes(group),
                layout.stride()
            ),
        });
    }
    Ok(slot.saturating_add(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::SlotShape;
    use crate::slots::test_shapes::{BFV, CKKS};
    use proptest::prelude::*;

    fn layouts(sizes: &[usize], dim: usize, v: usize, shape: SlotShape) -> Vec<Layout> {
        sizes
            .iter()
            .map(|&n| Layout::new(n, dim, v, shape).unwrap())
            .collect()
    }

    #[test]
    fn a_thousand_one_image_segments_share_few_ciphertexts() {
        // embedding of 512 under CKKS: 16 lanes per row, one lane per one-image segment
        let ls = layouts(&[1; 1000], 512, 256, CKKS);
        let p = plan(&ls, 4, |_| true);
        assert_eq!(p.ciphertexts.len(), 1000usize.div_ceil(16));
        let unpacked = plan(&ls, 4, |_| false);
        assert_eq!(unpacked.ciphertexts.len(), 1000);
    }

    #[test]
    fn full_groups_and_pixels_are_never_shifted() {
        // BFV pixels: one lane per row; a full CKKS embedding group: every lane
        for ls in [
            layouts(&[1, 3, 1001], 4096, 4096, BFV),
            layouts(&[4096, 8192], 512, 256, CKKS),
        ] {
            let p = plan(&ls, 4, |_| true);
            let groups: usize = ls.iter().map(Layout::groups).sum();
            assert_eq!(p.ciphertexts.len(), groups);
            assert!(p.placements.iter().flatten().all(|pl| pl.lane_offset == 0));
        }
    }

    proptest! {
        /// Every group is placed exactly once, members of a ciphertext share its trace and
        /// never overlap, and no ciphertext holds more lanes than a row.
        #[test]
        fn plans_cover_every_group_without_overlap(
            sizes in prop::collection::vec(1usize..5000, 1..40),
            dim in prop::sample::select(vec![64usize, 512, 1280]),
            max_trace in prop::sample::select(vec![1usize, 2, 4]),
        ) {
            let v = (dim / 2).next_power_of_two();
            let ls = layouts(&sizes, dim, v, CKKS);
            let p = plan(&ls, max_trace, |_| true);
            let mut seen = 0;
            for (index, (members, trace)) in p.ciphertexts.iter().enumerate() {
                prop_assert!(!members.is_empty());
                let mut lanes = vec![false; ls[members[0].segment].lanes()];
                for m in members {
                    let l = &ls[m.segment];
                    prop_assert_eq!(group_trace(l, max_trace), *trace);
                    prop_assert_eq!(
                        p.placements[m.segment][m.group],
                        Placement { ciphertext: index, lane_offset: m.lane_offset }
                    );
                    let used = l.group_lanes(m.group);
                    if members.len() > 1 {
                        prop_assert!(m.lane_offset + used <= l.stride());
                    }
                    for lane in m.lane_offset..m.lane_offset + used {
                        prop_assert!(!lanes[lane], "lane {} used twice", lane);
                        lanes[lane] = true;
                    }
                    // every score slot of the group moves by whole lanes within its row
                    let per_group = l.lanes() * l.block;
                    for k in m.group * per_group..l.count.min((m.group + 1) * per_group) {
                        let (g, slot) = l.score_slot(k);
                        prop_assert_eq!(g, m.group);
                        let at = shifted_slot(l, g, slot, p.placements[m.segment][g]).unwrap();
                        prop_assert_eq!(at / l.shape.row_len, slot / l.shape.row_len);
                    }
                    seen += 1;
                }
            }
            prop_assert_eq!(seen, ls.iter().map(Layout::groups).sum::<usize>());
            let full: usize = ls.iter().map(|l| l.groups() - 1).sum();
            let lanes: usize = ls.iter().map(|l| l.group_lanes(l.groups() - 1)).sum();
            // first fit decreasing: at most 11/9 of the ideal number of shared ciphertexts
            // (+1 per trace)
            prop_assert!(p.ciphertexts.len() <= full + 2 * lanes.div_ceil(ls[0].stride()) + 3);
        }
    }

    #[test]
    fn a_shift_that_leaves_the_row_is_refused() {
        let l = Layout::new(3, 512, 256, CKKS).unwrap();
        let (g, slot) = l.score_slot(2);
        let at = |o| {
            shifted_slot(
                &l,
                g,
                slot,
                Placement {
                    ciphertext: 0,
                    lane_offset: o,
                },
            )
        };
        assert_eq!(at(13).unwrap(), slot + 13);
        assert!(at(14).is_err());
        assert!(at(usize::MAX).is_err());
    }

    #[test]
    fn shifts_decompose_into_power_of_two_steps() {
        assert_eq!(shift_steps(0), Vec::<i64>::new());
        assert_eq!(shift_steps(13), vec![-1, -4, -8]);
    }
}
