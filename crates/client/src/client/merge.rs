//! Compaction and tiered merging, on the client.
//!
//! Merging happens here because only the secret key's holder can move an image's values
//! from one segment's packing into another's: the server could only add whole ciphertexts
//! (the packing puts every segment's images in the same lanes) or rotate them with a Galois
//! key per offset, and the result would still have the small segments' layouts. So the
//! client fetches each live image's sealed *source vector* (its resized pixels or model
//! features, sealed at ingest: no file decoding, no model run), encodes and encrypts the
//! rebuilt segment, and uploads only its ciphertexts with where each image goes; the
//! images' rows (tag, sealed metadata, payload, source) stay on the server and move into the
//! new segment in the transaction that replaces the old ones.
//!
//! The policy ([`plan_rebuilds`]): a segment of `s` live images is in tier
//! `⌊log_F s⌋` (fanout `F` = 4). After every ingest ([`MergeMode::Tiered`]), a tier
//! holding `F` segments or more is merged into one, which lands at least one tier higher;
//! rounds repeat until no tier is full. So every image is rewritten at most once per tier
//! (`log_F n` times), and `n` images ingested in any number of batches leave at most
//! `(F − 1)` segments per tier: `O(F·log_F n)` segments, not `n`. `compact`
//! ([`MergeMode::Full`]) purges deleted images and packs every segment below the size cap
//! into as few segments as fit. The cap ([`MergePolicy::max_images`]) keeps a rebuilt
//! segment's upload under [`MERGE_BYTES`] (the server takes 512 MiB bodies by default).

use super::{AnyCipher, Client, EncodedImage, source_context};
use crate::errors::{ClientError, Result};
use crate::remote::THUMBNAILS_PER_UPLOAD;
use crate::wire::ImageEntry;
use crate::wire::{CompactSegment, RebuiltSegment};
use crate::{seal, thumbnail};
use blindsight_he::{Ciphertext, Context, Serializable};
use blindsight_search::VectorKind;
use blindsight_search::backend::{Role, SlotCipher};
use blindsight_search::he_backend::segment_layout;
use blindsight_search::source_vector::SourceVector;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Largest upload of a rebuilt segment's ciphertexts.
pub const MERGE_BYTES: usize = 384 << 20;
/// Most images in a rebuilt segment (the server's default `max_batch_images`).
pub const MAX_MERGED_IMAGES: usize = 1 << 16;
/// Files fetched at once to make the thumbnails of images ingested before thumbnails
/// existed.
pub const BACKFILL_FILES: usize = 16;
/// Most rounds of tiered merging after one ingest (each round merges every full tier).
const MAX_ROUNDS: usize = 64;

/// The outcome of a compaction or a merge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Segments replaced (merged, rebuilt without their deleted images, or dropped).
    pub replaced: usize,
    /// Segments written in their place.
    pub written: usize,
    /// Deleted images purged.
    pub purged: usize,
    /// Segments left for a later compaction because their live set changed meanwhile.
    pub skipped: usize,
    /// Images ingested before thumbnails existed that were given one.
    pub thumbnails: usize,
    /// Images that should have been given a thumbnail but whose file could not be read
    /// back or decoded (tried again at the next compaction).
    pub thumbnails_failed: usize,
    /// Time taken (listing, fetching sources, re-encrypting, uploading).
    pub elapsed: Duration,
}

impl CompactReport {
    /// Adds another rebuild's counts and time to these.
    pub(crate) fn add(&mut self, other: CompactReport) {
        self.replaced += other.replaced;
        self.written += other.written;
        self.purged += other.purged;
        self.skipped += other.skipped;
        self.thumbnails += other.thumbnails;
        self.thumbnails_failed += other.thumbnails_failed;
        self.elapsed += other.elapsed;
    }
}

/// A segment as the merge policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentState {
    /// Segment row id.
    pub id: i64,
    /// Live images.
    pub live: usize,
    /// Deleted images not yet purged.
    pub deleted: usize,
}

/// When segments are rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// After an ingest: the segments of a tier holding `fanout` or more are merged (segments
    /// of more than half the cap are final); segments with nothing live are dropped.
    Tiered,
    /// `compact`: deleted images purged, every segment below the cap packed with others into
    /// as few segments as fit.
    Full,
}

/// The sizes that drive merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergePolicy {
    /// Segments of one tier that trigger its merge (at least 2).
    pub fanout: usize,
    /// Most images in a merged segment.
    pub max_images: usize,
}

impl MergePolicy {
    /// The fanout of tiers.
    pub const FANOUT: usize = 4;

    /// The tier of a segment of `live` images: `⌊log_F live⌋`.
    pub fn tier(&self, live: usize) -> u32 {
        live.max(1).ilog(self.fanout.max(2))
    }
}

/// The rebuilds a collection needs: each a list of segment ids to replace by one segment
/// holding their live images (none if nothing in them is live), in id order.
pub fn plan_rebuilds(
    segments: &[SegmentState],
    policy: &MergePolicy,
    mode: MergeMode,
) -> Vec<Vec<i64>> {
    let mut sorted = segments.to_vec();
    sorted.sort_by_key(|s| s.id);
    let cap = policy.max_images.max(1);
    let mut out = Vec::new();
    match mode {
        MergeMode::Tiered => {
            let mut tiers: BTreeMap<u32, Vec<SegmentState>> = BTreeMap::new();
            for s in sorted {
                if s.live == 0 {
                    if s.deleted > 0 {
                        out.push(vec![s.id]);
                    }
                } else if s.live <= cap / 2 {
                    // a segment of more than half the cap can merge with nothing as large
                    tiers.entry(policy.tier(s.live)).or_default().push(s);
                }
            }
            for members in tiers.into_values() {
                if members.len() >= policy.fanout.max(2) {
                    out.extend(
                        pack(&members, cap)
                            .iter()
                            .filter(|run| run.len() > 1)
                            .map(|run| ids(run)),
                    );
                }
            }
        }
        MergeMode::Full => {
            let (small, large): (Vec<_>, Vec<_>) = sorted.into_iter().partition(|s| s.live < cap);
            // a run of one segment is rebuilt only to purge its deleted images
            out.extend(
                pack(&small, cap)
                    .into_iter()
                    .filter(|run| run.len() > 1 || run[0].deleted > 0)
                    .map(|run| ids(&run)),
            );
            out.extend(large.iter().filter(|s| s.deleted > 0).map(|s| vec![s.id]));
        }
    }
    out
}

/// Consecutive runs of `segments` holding at most `cap` live images each.
fn pack(segments: &[SegmentState], cap: usize) -> Vec<Vec<SegmentState>> {
    let mut out: Vec<Vec<SegmentState>> = Vec::new();
    let mut total = 0usize;
    for &s in segments {
        match out.last_mut() {
            Some(run) if total + s.live <= cap => {
                run.push(s);
                total += s.live;
            }
            _ => {
                out.push(vec![s]);
                total = s.live;
            }
        }
    }
    out
}

fn ids(run: &[SegmentState]) -> Vec<i64> {
    run.iter().map(|s| s.id).collect()
}

/// Bytes of one serialized fresh gallery ciphertext of `c`.
pub fn fresh_ciphertext_bytes<C: SlotCipher<Ct = Ciphertext>>(
    c: &C,
    ctx: &Context,
) -> Result<usize> {
    let zeros = vec![C::Slot::default(); c.shape().len()];
    Ok(c.encrypt(&zeros, Role::Gallery)?.to_bytes(ctx)?.len())
}

/// The most images (at most [`MAX_MERGED_IMAGES`]) of `dim` values and `channels` channels
/// whose segment's upload, at `ciphertext_bytes` per ciphertext, stays under
/// [`MERGE_BYTES`]: the size merging and compaction build segments up to.
pub fn merged_segment_cap(
    ctx: &Context,
    dim: usize,
    channels: usize,
    ciphertext_bytes: usize,
) -> Result<usize> {
    let fits = |n: usize| -> Result<bool> {
        let cts = segment_layout(ctx, n, dim)?.ciphertexts_per_channel();
        Ok(cts
            .saturating_mul(channels)
            .saturating_mul(ciphertext_bytes)
            <= MERGE_BYTES)
    };
    // the largest n that fits (the upload grows with n)
    let (mut lo, mut hi) = (1usize, MAX_MERGED_IMAGES);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

impl Client {
    /// Compacts the collection: purges deleted images and merges every segment below the
    /// size cap with others into as few segments as fit, each replacement one transaction
    /// on the server. A group whose live set changes meanwhile (an image deleted after the
    /// listing: the server answers 409) is left for the next compaction and counted as
    /// skipped; nothing live is ever dropped.
    pub fn compact(&self) -> Result<CompactReport> {
        self.rebuild_segments(MergeMode::Full)
    }

    /// Merges full tiers (see the module documentation) until none is full; ingests call it.
    pub fn merge(&self) -> Result<CompactReport> {
        self.rebuild_segments(MergeMode::Tiered)
    }

    /// The merge policy of this collection: the most images whose rebuilt segment's upload
    /// stays under [`MERGE_BYTES`].
    pub fn merge_policy(&self) -> Result<MergePolicy> {
        let ctx = self.ctx();
        let ct_bytes = match &self.cipher {
            AnyCipher::Bfv(c) => fresh_ciphertext_bytes(c, ctx)?,
            AnyCipher::Ckks(c) => fresh_ciphertext_bytes(c, ctx)?,
        };
        Ok(MergePolicy {
            fanout: MergePolicy::FANOUT,
            max_images: merged_segment_cap(ctx, self.vectors().dim(), self.channels(), ct_bytes)?,
        })
    }

    fn rebuild_segments(&self, mode: MergeMode) -> Result<CompactReport> {
        let started = Instant::now();
        let info = self.check_collection()?;
        let mut elements = Self::galois_elements(&info);
        let policy = self.merge_policy()?;
        let mut report = CompactReport::default();
        // images without a thumbnail (ingested before thumbnails existed) get one when
        // their segment is rebuilt, or at a full compaction
        let mut unthumbnailed: Vec<i64> = Vec::new();
        for round_number in 0..MAX_ROUNDS {
            let (_, entries) = self.verified_images()?;
            if mode == MergeMode::Full && round_number == 0 {
                unthumbnailed.extend(
                    entries
                        .iter()
                        .filter(|e| !e.deleted && !e.has_thumbnail())
                        .map(|e| e.id),
                );
            }
            let mut by_segment: BTreeMap<i64, Vec<ImageEntry>> = BTreeMap::new();
            for e in entries {
                by_segment.entry(e.segment_id).or_default().push(e);
            }
            let states: Vec<SegmentState> = by_segment
                .iter()
                .map(|(&id, images)| {
                    let deleted = images.iter().filter(|e| e.deleted).count();
                    SegmentState {
                        id,
                        live: images.len() - deleted,
                        deleted,
                    }
                })
                .collect();
            let plan = plan_rebuilds(&states, &policy, mode);
            let mut round = CompactReport::default();
            for group in &plan {
                if mode == MergeMode::Tiered {
                    unthumbnailed.extend(
                        group
                            .iter()
                            .filter_map(|id| by_segment.get(id))
                            .flatten()
                            .filter(|e| !e.deleted && !e.has_thumbnail())
                            .map(|e| e.id),
                    );
                }
                round.add(self.rebuild(group, &by_segment, &mut elements)?);
            }
            report.add(round);
            // a full compaction is one round; tiered merging repeats while it progresses
            if mode == MergeMode::Full || round.replaced == 0 {
                break;
            }
        }
        // a user vector without a thumbnail has no image to make one from
        let (made, failed) = if matches!(self.vectors(), VectorKind::Vectors { .. }) {
            (0, 0)
        } else {
            self.backfill_thumbnails(&unthumbnailed)?
        };
        report.thumbnails += made;
        report.thumbnails_failed += failed;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Makes thumbnails for `ids` from their files, [`BACKFILL_FILES`] files fetched at a
    /// time, and uploads them [`THUMBNAILS_PER_UPLOAD`] at a time; returns how many the
    /// server set and how many files could not be read back or decoded.
    fn backfill_thumbnails(&self, ids: &[i64]) -> Result<(usize, usize)> {
        // an image merged in two rounds is listed twice: the server refuses an upload that
        // names an image twice, so each goes once
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let key = &self.keystore.payload_key;
        let (mut made, mut failed) = (0usize, 0usize);
        let mut ready: Vec<(i64, Vec<u8>)> = Vec::new();
        let flush = |ready: &mut Vec<(i64, Vec<u8>)>, made: &mut usize| -> Result<()> {
            if !ready.is_empty() {
                *made += self.remote.set_thumbnails(&self.collection, ready)? as usize;
                ready.clear();
            }
            Ok(())
        };
        for chunk in ids.chunks(BACKFILL_FILES) {
            // images deleted since the listing are not answered: nothing to make
            let files = self.remote.payloads(&self.collection, chunk)?;
            let sealed: Vec<Option<(i64, Vec<u8>)>> = files
                .par_iter()
                .map(|(id, sealed_file)| {
                    let made = || -> Result<Vec<u8>> {
                        let file = seal::open(key, &self.collection, *id as u64, sealed_file)?;
                        let jpeg = thumbnail::from_file(&file, &id.to_string())?;
                        thumbnail::seal(key, &self.collection, *id as u64, &jpeg)
                    };
                    made().ok().map(|t| (*id, t))
                })
                .collect();
            failed += sealed.iter().filter(|t| t.is_none()).count();
            ready.extend(sealed.into_iter().flatten());
            if ready.len() >= THUMBNAILS_PER_UPLOAD {
                flush(&mut ready, &mut made)?;
            }
        }
        flush(&mut ready, &mut made)?;
        Ok((made, failed))
    }

    /// Replaces the segments of `group` by one holding their live images (or drops them).
    fn rebuild(
        &self,
        group: &[i64],
        by_segment: &BTreeMap<i64, Vec<ImageEntry>>,
        elements: &mut HashSet<u64>,
    ) -> Result<CompactReport> {
        let mut olds = Vec::with_capacity(group.len());
        let mut live: Vec<&ImageEntry> = Vec::new();
        let mut purged = 0;
        for id in group {
            let mut images: Vec<&ImageEntry> = by_segment
                .get(id)
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            purged += images.iter().filter(|e| e.deleted).count();
            images.retain(|e| !e.deleted);
            images.sort_by_key(|e| e.position);
            olds.push((*id, images.iter().map(|e| e.id).collect::<Vec<i64>>()));
            live.extend(images);
        }
        let skipped = CompactReport {
            skipped: group.len(),
            ..CompactReport::default()
        };
        let batch = if live.is_empty() {
            None
        } else {
            let Some(encoded) = self.live_vectors(&live)? else {
                return Ok(skipped);
            };
            let refs: Vec<&EncodedImage> = encoded.iter().collect();
            let seg = self.encrypt_segment(&refs, elements)?;
            Some(RebuiltSegment {
                layout: seg.layout,
                ciphertexts: seg.ciphertexts,
                placements: live.iter().enumerate().map(|(k, e)| (e.id, k)).collect(),
                galois_keys: seg.galois_keys,
            })
        };
        let written = usize::from(batch.is_some());
        match self
            .remote
            .compact(&self.collection, &CompactSegment { olds, batch })
        {
            Ok(_) => Ok(CompactReport {
                replaced: group.len(),
                written,
                purged,
                ..CompactReport::default()
            }),
            Err(ClientError::Remote { status: 409, .. }) => Ok(skipped),
            Err(e) => Err(e),
        }
    }

    /// The encoded vectors of live images, from their sealed sources (or, for images
    /// ingested before sources were kept, from their files); `None` if one was deleted
    /// since the listing.
    fn live_vectors(&self, live: &[&ImageEntry]) -> Result<Option<Vec<EncodedImage>>> {
        let ids: Vec<i64> = live.iter().map(|e| e.id).collect();
        let sources: HashMap<i64, Vec<u8>> = self
            .remote
            .sources(&self.collection, &ids)?
            .into_iter()
            .collect();
        let without: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !sources.contains_key(id))
            .collect();
        let files: HashMap<i64, Vec<u8>> = if without.is_empty() {
            HashMap::new()
        } else {
            self.remote
                .payloads(&self.collection, &without)?
                .into_iter()
                .collect()
        };
        if without.iter().any(|id| !files.contains_key(id)) {
            return Ok(None);
        }
        let key = &self.keystore.payload_key;
        let context = source_context(&self.collection);
        ids.par_iter()
            .map(|&id| match (sources.get(&id), files.get(&id)) {
                (Some(sealed), _) => {
                    let bytes = seal::open(key, &context, id as u64, sealed)?;
                    let source = SourceVector::from_bytes(&bytes, self.vectors())?;
                    Ok(self.encoder.encode_source(&source))
                }
                (None, Some(sealed)) => {
                    let file = seal::open(key, &self.collection, id as u64, sealed)?;
                    self.encoder.encode(&file, &id.to_string())
                }
                (None, None) => Err(ClientError::Malformed(format!(
                    "image {id} has neither a source nor a payload"
                ))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: MergePolicy = MergePolicy {
        fanout: 4,
        max_images: 1000,
    };

    /// Applies a plan: each group becomes one segment of its live images (new id).
    fn apply(segments: &mut Vec<SegmentState>, plan: &[Vec<i64>], next_id: &mut i64) {
        for group in plan {
            let live: usize = segments
                .iter()
                .filter(|s| group.contains(&s.id))
                .map(|s| s.live)
                .sum();
            segments.retain(|s| !group.contains(&s.id));
            if live > 0 {
                segments.push(SegmentState {
                    id: *next_id,
                    live,
                    deleted: 0,
                });
                *next_id += 1;
            }
        }
    }

    /// Ingests `sizes` one batch after another, merging as a client does after each.
    fn ingest_all(sizes: &[usize], policy: &MergePolicy) -> (Vec<SegmentState>, usize) {
        let (mut segments, mut next_id, mut rewritten) = (Vec::new(), 1i64, 0usize);
        for &n in sizes {
            segments.push(SegmentState {
                id: next_id,
                live: n,
                deleted: 0,
            });
            next_id += 1;
            loop {
                let plan = plan_rebuilds(&segments, policy, MergeMode::Tiered);
                if plan.is_empty() {
                    break;
                }
                rewritten += plan
                    .iter()
                    .flatten()
                    .map(|id| segments.iter().find(|s| s.id == *id).map_or(0, |s| s.live))
                    .sum::<usize>();
                apply(&mut segments, &plan, &mut next_id);
            }
        }
        (segments, rewritten)
    }

    #[test]
    fn a_thousand_single_ingests_leave_few_segments_and_compact_to_one() {
        let (mut segments, rewritten) = ingest_all(&[1; 1000], &POLICY);
        let total: usize = segments.iter().map(|s| s.live).sum();
        assert_eq!(total, 1000);
        // at most fanout − 1 segments per tier, tiers 0..=log4(1000)
        assert!(segments.len() <= 3 * 5, "{} segments", segments.len());
        // each image rewritten at most once per tier
        assert!(rewritten <= 1000 * 5, "{rewritten} rewrites");
        let mut next = 10_000;
        let plan = plan_rebuilds(&segments, &POLICY, MergeMode::Full);
        apply(&mut segments, &plan, &mut next);
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].live, 1000);
    }

    #[test]
    fn compaction_purges_drops_and_respects_the_cap() {
        let s = |id, live, deleted| SegmentState { id, live, deleted };
        let policy = MergePolicy {
            fanout: 4,
            max_images: 10,
        };
        let segments = [
            s(1, 10, 2),
            s(2, 0, 3),
            s(3, 4, 0),
            s(4, 5, 0),
            s(5, 6, 1),
            s(6, 10, 0),
        ];
        let plan = plan_rebuilds(&segments, &policy, MergeMode::Full);
        // 2, 3 and 4 fit together (9 images); 5 alone has a deletion; 1 is at the cap with
        // deletions; 6 is full and clean
        assert_eq!(plan, vec![vec![2, 3, 4], vec![5], vec![1]]);
        // tiered: only the empty segment goes (no tier holds 4 segments)
        assert_eq!(
            plan_rebuilds(&segments, &policy, MergeMode::Tiered),
            vec![vec![2]]
        );
        assert!(plan_rebuilds(&[], &policy, MergeMode::Full).is_empty());
        assert!(plan_rebuilds(&[s(1, 3, 0)], &policy, MergeMode::Full).is_empty());
    }

    proptest! {
        #[test]
        fn tiered_merging_keeps_every_image_and_few_segments(
            sizes in proptest::collection::vec(1usize..300, 1..200),
        ) {
            let (segments, _) = ingest_all(&sizes, &POLICY);
            let total: usize = sizes.iter().sum();
            prop_assert_eq!(segments.iter().map(|s| s.live).sum::<usize>(), total);
            // up to half the cap: at most fanout − 1 per tier; larger ones (final) hold more
            // than half the cap each
            let half = POLICY.max_images / 2;
            let small = segments.iter().filter(|s| s.live <= half).count();
            let tiers = POLICY.tier(half) as usize + 1;
            prop_assert!(small <= 3 * tiers, "{} small segments", small);
            let large = segments.len() - small;
            prop_assert!(large * half < total, "{} large segments", large);
            prop_assert!(segments.iter().all(|s| s.live <= POLICY.max_images));
        }
    }
}
