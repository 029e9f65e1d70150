//! `bench --plot`: the timings of benchmark reports (blindsight's BFV and CKKS runs, the
//! peers' reports of the same contract) as one SVG: a group of bars per phase (gallery
//! encryption, query encryption, server scoring, decryption), one bar per report, on a
//! logarithmic time axis (the phases span four decades), each bar labelled with its value.

use crate::errors::{AppError, Result};
use crate::report_page::escape;
use serde_json::Value as Json;
use std::fmt::Write as _;

/// The phases drawn: (report field, label).
pub const PHASES: [(&str, &str); 4] = [
    ("encrypt_s", "gallery encryption"),
    ("query_encrypt_s", "query encryption"),
    ("score_s", "server scoring"),
    ("decrypt_s", "decryption"),
];

/// Bar colours, one per report (cycled).
const COLOURS: [&str; 6] = [
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2",
];

/// A report's legend label: its system (blindsight, OpenFHE, TenSEAL) and scheme.
pub fn label(report: &Json) -> String {
    let system = report
        .get("system")
        .and_then(Json::as_str)
        .unwrap_or("unknown");
    let system = if system.starts_with("openfhe") {
        "OpenFHE"
    } else if system.starts_with("tenseal") {
        "TenSEAL"
    } else {
        system
    };
    let scheme = report.get("scheme").and_then(Json::as_str).unwrap_or("");
    format!("{system} {}", scheme.to_uppercase())
}

/// The SVG of `reports` (at least one). A phase a report does not give is left out of its
/// group; a report without any phase is an error.
pub fn timings_svg(reports: &[Json]) -> Result<String> {
    if reports.is_empty() {
        return Err(AppError::Usage("nothing to plot".into()));
    }
    let value = |r: &Json, field: &str| {
        r.get(field)
            .and_then(Json::as_f64)
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    for r in reports {
        if PHASES.iter().all(|(f, _)| value(r, f).is_none()) {
            return Err(AppError::Usage(format!(
                "the report of {} has none of the timings {}",
                label(r),
                PHASES.map(|p| p.0).join(", ")
            )));
        }
    }
    // axis: whole decades around every value
    let all: Vec<f64> = reports
        .iter()
        .flat_map(|r| PHASES.iter().filter_map(move |(f, _)| value(r, f)))
        .collect();
    let lo = all
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor() as i32;
    let hi = all.iter().copied().fold(0.0, f64::max).log10().ceil() as i32;
    let hi = hi.max(lo + 1);
    let (left, plot_w, bar_h, gap) = (170.0, 560.0, 16.0, 14.0);
    let group_h = bar_h * reports.len() as f64 + gap;
    let legend_h = 22.0 * reports.len() as f64;
    let top = 40.0;
    let height = top + group_h * PHASES.len() as f64 + 40.0 + legend_h;
    let width = left + plot_w + 90.0;
    let x = |v: f64| left + plot_w * (v.log10() - f64::from(lo)) / f64::from(hi - lo);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="15" font-weight="bold">Time per phase (seconds, log scale; shorter is faster)</text>"#
    );
    let axis_y = top + group_h * PHASES.len() as f64;
    for d in lo..=hi {
        let gx = x(10f64.powi(d));
        let _ = write!(
            s,
            "<line x1=\"{gx:.1}\" y1=\"{top}\" x2=\"{gx:.1}\" y2=\"{axis_y}\" stroke=\"#ddd\"/><text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            axis_y + 16.0,
            seconds(10f64.powi(d))
        );
    }
    for (p, (field, name)) in PHASES.iter().enumerate() {
        let gy = top + group_h * p as f64;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{name}</text>"#,
            left - 8.0,
            gy + bar_h * reports.len() as f64 / 2.0 + 4.0
        );
        for (i, r) in reports.iter().enumerate() {
            let Some(v) = value(r, field) else { continue };
            let y = gy + bar_h * i as f64;
            let w = (x(v) - left).max(1.0);
            let _ = write!(
                s,
                r#"<rect x="{left}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {v:.4} s</title></rect><text x="{:.1}" y="{:.1}">{}</text>"#,
                bar_h - 2.0,
                COLOURS[i % COLOURS.len()],
                escape(&label(r)),
                left + w + 4.0,
                y + bar_h - 5.0,
                seconds(v)
            );
        }
    }
    for (i, r) in reports.iter().enumerate() {
        let y = axis_y + 36.0 + 22.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="14" height="14" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y - 11.0,
            COLOURS[i % COLOURS.len()],
            left + 20.0,
            y,
            escape(&format!(
                "{} ({} images)",
                label(r),
                r.get("n").and_then(Json::as_u64).unwrap_or(0)
            ))
        );
    }
    s.push_str("</svg>\n");
    Ok(s)
}

/// `0.0123` → `12.3 ms`, `2.5` → `2.50 s`.
fn seconds(v: f64) -> String {
    if v < 1e-3 {
        format!("{:.0} µs", v * 1e6)
    } else if v < 1.0 {
        format!("{:.1} ms", v * 1e3)
    } else {
        format!("{v:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_report_and_phase_is_drawn() -> Result<()> {
        let reports = [
            json!({"system": "blindsight", "scheme": "ckks", "n": 1001, "encrypt_s": 0.61,
                   "query_encrypt_s": 0.004, "score_s": 0.05, "decrypt_s": 0.002}),
            json!({"system": "openfhe-peer-reference", "scheme": "bgv", "n": 1001,
                   "encrypt_s": 3.2, "query_encrypt_s": 0.009, "score_s": 0.44,
                   "decrypt_s": 0.009}),
            json!({"system": "tenseal-<x>", "scheme": "ckks", "score_s": 305.0}),
        ];
        let svg = timings_svg(&reports)?;
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // 9 bars + 3 legend boxes + the background
        assert_eq!(svg.matches("<rect").count(), 9 + 3 + 1);
        assert!(svg.contains("blindsight CKKS") && svg.contains("OpenFHE BGV"));
        assert!(svg.contains("TenSEAL CKKS") && !svg.contains("<x>"));
        assert!(svg.contains("50.0 ms") && svg.contains("305.00 s"));
        // the axis covers 1 ms .. 1000 s
        assert!(svg.contains(">1.0 ms<") && svg.contains(">1000.00 s<"));
        Ok(())
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        assert!(timings_svg(&[]).is_err());
        assert!(timings_svg(&[json!({"system": "x", "score_s": "fast"})]).is_err());
        assert!(timings_svg(&[json!({"score_s": -1.0})]).is_err());
    }
}
