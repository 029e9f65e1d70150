//! How commands print: for a person (tables whose columns fit their names) or, with
//! `--json`, one JSON object on stdout for scripts. Every text that came from outside (names,
//! a server's answers) is made safe for a terminal either way.

use blindsight_client::client::{Match, SearchTiming};
use blindsight_client::names;
use serde_json::{Value, json};

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Lines and tables for a person.
    #[default]
    Text,
    /// One JSON object on stdout (progress and warnings stay on stderr).
    Json,
}

impl Output {
    /// `Json` when `json`, else `Text`.
    pub fn json_if(json: bool) -> Self {
        if json { Self::Json } else { Self::Text }
    }

    /// Whether the result is printed as JSON.
    pub fn is_json(self) -> bool {
        self == Self::Json
    }
}

/// `name` made safe for a terminal, whole (up to a bound far past any column).
fn safe(name: &str) -> String {
    names::for_terminal_bounded(name, 1024)
}

/// Longest name column of a table, in characters.
pub const MAX_NAME_COLUMN: usize = 48;

/// The width of a name column holding `names`: the longest (made safe for a terminal), at
/// least `header` and at most [`MAX_NAME_COLUMN`].
pub fn name_column<'a>(header: &str, names: impl IntoIterator<Item = &'a str>) -> usize {
    names
        .into_iter()
        .map(|n| safe(n).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(header.chars().count(), MAX_NAME_COLUMN)
}

/// `name` made safe for a terminal and fitted to `width` characters: cut with an ellipsis
/// when longer (keeping its end, where a file's extension and number are), padded when
/// shorter, so that the columns after it stay aligned.
pub fn fit(name: &str, width: usize) -> String {
    let safe = safe(name);
    let n = safe.chars().count();
    if n <= width {
        return format!("{safe}{}", " ".repeat(width - n));
    }
    let keep_end = (width.saturating_sub(1)) / 2;
    let keep_start = width.saturating_sub(1) - keep_end;
    let start: String = safe.chars().take(keep_start).collect();
    let end: String = safe.chars().skip(n - keep_end).collect();
    format!("{start}…{end}")
}

/// `value` with every string made safe for a terminal (control characters, bidirectional
/// overrides: see [`names::for_terminal_bounded`]), so that a hostile server's answer
/// printed as JSON cannot rewrite the terminal either.
pub fn clean(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(names::for_terminal_bounded(&s, 4096)),
        Value::Array(a) => Value::Array(a.into_iter().map(clean).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (names::for_terminal_bounded(&k, 256), clean(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Prints `value` (cleaned) as one line of JSON.
pub fn print_json(value: Value) {
    println!("{}", clean(value));
}

/// Bytes for a person: `812 B`, `3.4 MB`, `1.20 GB` (decimal units).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

/// Where a search spent its time, as every JSON answer names it.
pub fn timing_json(t: &SearchTiming) -> Value {
    json!({
        "encrypt_s": t.encrypt_s,
        "upload_s": t.upload_s,
        "server_s": t.server_s,
        "download_s": t.download_s,
        "decrypt_s": t.decrypt_s,
        "up_bytes": t.up_bytes,
        "down_bytes": t.down_bytes,
    })
}

/// Matches as JSON: rank, id, name, score (the cosine) and the per-channel cosines.
pub fn matches_json(matches: &[Match]) -> Value {
    matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "rank": i + 1,
                "id": m.id,
                "name": m.name,
                "score": m.whole_cosine,
                "channel_cosines": m.channel_cosines,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_their_column() {
        assert_eq!(fit("cat.jpg", 10), "cat.jpg   ");
        let long = "a-very-long-folder-name/with/a-photo-called-IMG_20240101_123456.jpg";
        let f = fit(long, 20);
        assert_eq!(f.chars().count(), 20);
        assert!(f.starts_with("a-very-lon") && f.ends_with("3456.jpg") && f.contains('…'));
        assert_eq!(fit("\u{1b}[31mred", 12), "?[31mred    ");
        assert_eq!(name_column("name", ["a", "bb"]), 4);
        assert_eq!(name_column("name", [long]), MAX_NAME_COLUMN);
    }

    #[test]
    fn json_strings_are_made_safe() {
        let v = serde_json::json!({"name": "a\u{202e}b", "n": 3, "list": ["\u{1b}[2J"]});
        let c = clean(v);
        assert_eq!(c["name"], "a?b");
        assert_eq!(c["list"][0], "?[2J");
        assert_eq!(c["n"], 3);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(3_400_000), "3.4 MB");
        assert_eq!(human_bytes(1_200_000_000), "1.20 GB");
    }
}
