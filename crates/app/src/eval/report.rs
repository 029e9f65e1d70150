//! What `eval` measured: per query, where the original ranked and by how much it led (or
//! trailed) the best unrelated image; aggregated per edit and per (vector kind, rule), as
//! Markdown tables and JSON.

use super::edits::Edit;
use blindsight_search::rank::{RankRule, Similarity};
use serde_json::{Value as Json, json};
use std::fmt::Write as _;

/// The outcome of one edited copy's search under one rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryOutcome {
    /// The edit.
    pub edit: Edit,
    /// The original's rank (1 = first); `None` if it was not among the results.
    pub rank: Option<usize>,
    /// The original's score minus the best other image's score (the rule's score, larger
    /// is better: a cosine, or minus the triple distance); positive when it came first.
    pub separation: Option<f64>,
}

impl QueryOutcome {
    /// Scores `results` (is it the original?, similarity) under `rule`. Ties count against
    /// the original: an unrelated image scoring exactly as well is ranked before it.
    pub fn of(edit: Edit, rule: RankRule, results: &[(bool, Similarity)]) -> Self {
        let original = results
            .iter()
            .find(|(is_original, _)| *is_original)
            .map(|(_, s)| s.score(rule));
        let best_other = results
            .iter()
            .filter(|(is_original, _)| !is_original)
            .map(|(_, s)| s.score(rule))
            .max_by(f64::total_cmp);
        let rank = original.map(|o| {
            1 + results
                .iter()
                .filter(|(is_original, s)| !is_original && s.score(rule) >= o)
                .count()
        });
        let separation = match (original, best_other) {
            (Some(o), Some(b)) => Some(o - b),
            _ => None,
        };
        Self {
            edit,
            rank,
            separation,
        }
    }

    fn within(&self, k: usize) -> bool {
        self.rank.is_some_and(|r| r <= k)
    }
}

/// Aggregates of a set of queries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Queries.
    pub queries: usize,
    /// Share of queries whose original came first.
    pub recall_at_1: f64,
    /// Share of queries whose original was among the first ten.
    pub recall_at_10: f64,
    /// Mean separation (over queries whose original was found).
    pub mean_separation: f64,
    /// Smallest separation.
    pub min_separation: f64,
}

impl Stats {
    /// Aggregates `outcomes` (all zero when empty).
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a QueryOutcome>) -> Self {
        let outcomes: Vec<&QueryOutcome> = outcomes.into_iter().collect();
        let n = outcomes.len();
        let share = |k| {
            if n == 0 {
                0.0
            } else {
                outcomes.iter().filter(|o| o.within(k)).count() as f64 / n as f64
            }
        };
        let seps: Vec<f64> = outcomes.iter().filter_map(|o| o.separation).collect();
        let (mean, min) = if seps.is_empty() {
            (0.0, 0.0)
        } else {
            (
                seps.iter().sum::<f64>() / seps.len() as f64,
                seps.iter().copied().fold(f64::INFINITY, f64::min),
            )
        };
        Self {
            queries: n,
            recall_at_1: share(1),
            recall_at_10: share(10),
            mean_separation: mean,
            min_separation: min,
        }
    }

    fn to_json(self) -> Json {
        json!({
            "queries": self.queries,
            "recall_at_1": self.recall_at_1,
            "recall_at_10": self.recall_at_10,
            "mean_separation": self.mean_separation,
            "min_separation": self.min_separation,
        })
    }
}

/// One collection's kind ranked by one rule.
#[derive(Clone, Debug)]
pub struct KindReport {
    /// The collection's vector kind (spec text).
    pub kind: String,
    /// The ranking rule.
    pub rule: RankRule,
    /// Seconds to ingest the gallery (encoding, encryption, upload, store).
    pub ingest_s: f64,
    /// Mean seconds per search, end to end on the client.
    pub mean_search_s: f64,
    /// Every query's outcome.
    pub outcomes: Vec<QueryOutcome>,
}

impl KindReport {
    /// A short label: `embedding`, `pixels · triple`, `pixels · cosine`.
    pub fn label(&self) -> String {
        let kind = self.kind.split(':').next().unwrap_or_default();
        match kind {
            "embedding" => kind.to_string(),
            k => format!("{k} · {}", self.rule.name()),
        }
    }

    /// Aggregates of the queries of `edit`.
    pub fn edit(&self, edit: Edit) -> Stats {
        Stats::of(self.outcomes.iter().filter(|o| o.edit == edit))
    }

    /// Aggregates of every query.
    pub fn overall(&self) -> Stats {
        Stats::of(&self.outcomes)
    }
}

/// The whole evaluation.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Where the gallery came from.
    pub source: String,
    /// HE preset.
    pub preset: String,
    /// Distinct gallery images.
    pub gallery: usize,
    /// Files skipped as unreadable.
    pub skipped: usize,
    /// Originals edited.
    pub originals: usize,
    /// One entry per (kind, rule).
    pub kinds: Vec<KindReport>,
}

impl EvalReport {
    /// The report as JSON (per kind: overall and per edit aggregates).
    pub fn to_json(&self) -> Json {
        json!({
            "source": self.source,
            "preset": self.preset,
            "gallery": self.gallery,
            "skipped_files": self.skipped,
            "originals": self.originals,
            "edits": Edit::ALL.iter().map(|e| e.name()).collect::<Vec<_>>(),
            "kinds": self.kinds.iter().map(|k| json!({
                "label": k.label(),
                "kind": k.kind,
                "rule": k.rule.name(),
                "ingest_s": k.ingest_s,
                "mean_search_s": k.mean_search_s,
                "overall": k.overall().to_json(),
                "per_edit": Edit::ALL.iter()
                    .map(|&e| (e.name().to_string(), k.edit(e).to_json()))
                    .collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Markdown: recall@1 / recall@10 per edit side by side for every (kind, rule), then
    /// the separations, then timings.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} distinct images ({} unreadable skipped), {} originals × {} edits, {}\n",
            self.source,
            self.gallery,
            self.skipped,
            self.originals,
            Edit::ALL.len(),
            self.preset
        );
        let header = |s: &mut String, what: &str| {
            let _ = write!(s, "| {what} |");
            for k in &self.kinds {
                let _ = write!(s, " {} |", k.label());
            }
            let _ = write!(s, "\n|---|");
            for _ in &self.kinds {
                let _ = write!(s, "---:|");
            }
            s.push('\n');
        };
        let rows = |s: &mut String, cell: &dyn Fn(Stats) -> String| {
            for &e in &Edit::ALL {
                let _ = write!(s, "| {} |", e.name());
                for k in &self.kinds {
                    let _ = write!(s, " {} |", cell(k.edit(e)));
                }
                s.push('\n');
            }
            let _ = write!(s, "| **all** |");
            for k in &self.kinds {
                let _ = write!(s, " **{}** |", cell(k.overall()));
            }
            s.push('\n');
        };
        header(&mut s, "recall@1 / recall@10");
        rows(&mut s, &|st| {
            format!("{:.2} / {:.2}", st.recall_at_1, st.recall_at_10)
        });
        s.push('\n');
        header(&mut s, "separation: mean (min)");
        rows(&mut s, &|st| {
            format!("{:+.3} ({:+.3})", st.mean_separation, st.min_separation)
        });
        s.push('\n');
        for k in &self.kinds {
            let _ = writeln!(
                s,
                "- {} (`{}`): gallery ingested in {:.1} s, {:.3} s per search (client, end to end)",
                k.label(),
                k.kind,
                k.ingest_s,
                k.mean_search_s
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(c: f64) -> Similarity {
        Similarity {
            channel_cosines: vec![c],
            whole_cosine: c,
        }
    }

    #[test]
    fn rank_and_separation_of_one_query() {
        let results = [(false, sim(0.5)), (true, sim(0.9)), (false, sim(0.7))];
        let o = QueryOutcome::of(Edit::Mirror, RankRule::WholeCosine, &results);
        assert_eq!(o.rank, Some(1));
        assert!((o.separation.unwrap_or(0.0) - 0.2).abs() < 1e-12);
        let results = [(false, sim(0.95)), (true, sim(0.9)), (false, sim(0.9))];
        let o = QueryOutcome::of(Edit::Mirror, RankRule::WholeCosine, &results);
        assert_eq!(o.rank, Some(3), "a tie counts against the original");
        assert!((o.separation.unwrap_or(0.0) + 0.05).abs() < 1e-12);
        let o = QueryOutcome::of(Edit::Mirror, RankRule::WholeCosine, &[(false, sim(0.1))]);
        assert_eq!((o.rank, o.separation), (None, None));
    }

    #[test]
    fn stats_aggregate_recall_and_separation() {
        let outcome = |rank, sep| QueryOutcome {
            edit: Edit::Jpeg,
            rank,
            separation: sep,
        };
        let all = [
            outcome(Some(1), Some(0.3)),
            outcome(Some(4), Some(-0.1)),
            outcome(Some(11), Some(-0.2)),
            outcome(None, None),
        ];
        let s = Stats::of(&all);
        assert_eq!(s.queries, 4);
        assert!((s.recall_at_1 - 0.25).abs() < 1e-12);
        assert!((s.recall_at_10 - 0.5).abs() < 1e-12);
        assert!((s.mean_separation - 0.0).abs() < 1e-12);
        assert!((s.min_separation + 0.2).abs() < 1e-12);
        assert_eq!(Stats::of(&[]).queries, 0);
    }
}
