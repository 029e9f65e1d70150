//! Names that come from elsewhere (a server, a sealed catalogue, a folder of files) made safe
//! for the two places the client puts them: a terminal and a file name.
//!
//! - [`for_terminal`]: no control characters (so no ANSI escape sequences, no carriage
//!   returns or newlines rewriting earlier lines), no bidirectional overrides or invisible
//!   formatting characters, and a bounded length.
//! - [`for_file`]: one safe path component: no separators, never `.` or `..`, no leading
//!   dot (no hidden files) or dash, no control characters, never empty, at most
//!   [`MAX_FILE_BYTES`] bytes, keeping a short extension when it has to cut.

/// Longest name [`for_terminal`] returns, in characters (the ellipsis included).
pub const MAX_TERMINAL_CHARS: usize = 80;

/// Longest name [`for_file`] returns, in bytes.
pub const MAX_FILE_BYTES: usize = 100;

/// Longest extension [`for_file`] keeps when it shortens a name, in bytes (dot excluded).
const MAX_EXTENSION_BYTES: usize = 16;

/// Whether `c` must never reach a terminal or a file name: control characters (C0, DEL,
/// C1 — U+009B is a one-character CSI on some terminals), bidirectional embeddings,
/// overrides and isolates, zero-width and other invisible formatting characters, line and
/// paragraph separators, interlinear annotations, and unassigned-for-interchange
/// noncharacters used as markers.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'               // soft hyphen (invisible)
            | '\u{061C}'             // Arabic letter mark
            | '\u{180E}'             // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings/overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}'             // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tag characters
        )
}

/// `text` with every unsafe character replaced by `?`, cut to at most `max_chars`
/// characters (the last one an ellipsis when cut). For longer texts than names, such as
/// error messages that quote a server.
pub fn for_terminal_bounded(text: &str, max_chars: usize) -> String {
    let clean = |c: char| if is_unsafe(c) { '?' } else { c };
    if text.chars().count() <= max_chars {
        return text.chars().map(clean).collect();
    }
    match max_chars.checked_sub(1) {
        Some(keep) => text
            .chars()
            .take(keep)
            .map(clean)
            .chain(std::iter::once('…'))
            .collect(),
        None => String::new(),
    }
}

/// A name made safe to print: no control characters (ANSI escapes, carriage returns,
/// newlines, tabs), no bidirectional overrides or invisible formatting characters (each
/// becomes `?`), at most [`MAX_TERMINAL_CHARS`] characters (cut with an ellipsis).
pub fn for_terminal(name: &str) -> String {
    for_terminal_bounded(name, MAX_TERMINAL_CHARS)
}

/// Characters replaced by `_` in file names besides the unsafe ones: path separators and
/// the characters other file systems refuse (so that `--out` on a removable drive works).
fn is_reserved_in_file_names(c: char) -> bool {
    matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A name made safe as one file name inside a chosen folder: path separators, control and
/// invisible characters and the characters other file systems reserve become `_`; a
/// leading `.` or `-` becomes `_` (so never `.`, `..`, a hidden file or an option); an
/// empty name becomes `unnamed`; at most [`MAX_FILE_BYTES`] bytes, cut on a character
/// boundary, keeping an extension of up to 16 ASCII letters and digits.
///
/// `Path::new(dir).join(for_file(name))` is always a direct child of `dir`.
pub fn for_file(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if is_unsafe(c) || is_reserved_in_file_names(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.starts_with(['.', '-']) {
        clean.replace_range(..1, "_");
    }
    if clean.is_empty() {
        return "unnamed".to_string();
    }
    if clean.len() <= MAX_FILE_BYTES {
        return clean;
    }
    let extension = clean
        .rfind('.')
        .filter(|&dot| dot > 0)
        .map(|dot| &clean[dot + 1..])
        .filter(|e| {
            !e.is_empty()
                && e.len() <= MAX_EXTENSION_BYTES
                && e.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    match extension {
        Some(ext) => {
            let stem = cut(&clean, MAX_FILE_BYTES - ext.len() - 1);
            format!("{stem}.{ext}")
        }
        None => cut(&clean, MAX_FILE_BYTES).to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn is_one_child(dir: &Path, file: &str) -> bool {
        let joined = dir.join(file);
        joined.parent() == Some(dir)
            && matches!(
                Path::new(file).components().collect::<Vec<_>>()[..],
                [Component::Normal(_)]
            )
    }

    #[test]
    fn hostile_names_for_files() {
        let dir = Path::new("/tmp/out");
        for (name, want) in [
            ("cat.png", "cat.png"),
            ("../../etc/passwd", "_._.._etc_passwd"),
            ("..", "_."),
            (".", "_"),
            ("", "unnamed"),
            (".bashrc", "_bashrc"),
            ("-rf", "_rf"),
            ("a/b\\c", "a_b_c"),
            ("bell\u{7}\u{1b}[31mred.png", "bell__[31mred.png"),
            ("evil\u{202e}gnp.exe", "evil_gnp.exe"),
            ("new\nline", "new_line"),
            ("nul\0byte", "nul_byte"),
        ] {
            let got = for_file(name);
            assert_eq!(got, want, "{name:?}");
            assert!(is_one_child(dir, &got), "{name:?} -> {got:?}");
        }
    }

    #[test]
    fn long_file_names_keep_their_extension_and_char_boundaries() {
        let long = format!("{}.jpeg", "é".repeat(200));
        let got = for_file(&long);
        assert!(got.len() <= MAX_FILE_BYTES, "{}", got.len());
        assert!(got.ends_with(".jpeg") && got.starts_with('é'), "{got}");
        let no_ext = "日".repeat(100);
        let got = for_file(&no_ext);
        assert!(got.len() <= MAX_FILE_BYTES && got.len() > MAX_FILE_BYTES - 3);
        assert!(got.chars().all(|c| c == '日'));
        // an "extension" that is not one is cut like the rest
        let odd = format!("{}.{}", "a".repeat(90), "b".repeat(40));
        assert_eq!(for_file(&odd), "a".repeat(90) + "." + &"b".repeat(9));
    }

    #[test]
    fn hostile_names_for_terminals() {
        assert_eq!(for_terminal("cat.png"), "cat.png");
        assert_eq!(
            for_terminal("\u{1b}]0;pwned\u{7}\u{1b}[2J\rok\n"),
            "?]0;pwned??[2J?ok?"
        );
        assert_eq!(for_terminal("a\u{9b}31mb"), "a?31mb");
        assert_eq!(for_terminal("abc\u{202e}gnp.exe"), "abc?gnp.exe");
        let long = "x".repeat(200);
        let got = for_terminal(&long);
        assert_eq!(got.chars().count(), MAX_TERMINAL_CHARS);
        assert!(got.ends_with('…'));
        assert_eq!(for_terminal(&"y".repeat(80)), "y".repeat(80), "80 fit");
        assert_eq!(for_terminal_bounded("abc", 0), "");
        assert_eq!(for_terminal_bounded("abc", 2), "a…");
    }

    proptest! {
        #[test]
        fn for_file_is_one_safe_component(name in any::<String>()) {
            let got = for_file(&name);
            prop_assert!(is_one_child(Path::new("/some/dir"), &got), "{:?} -> {:?}", name, got);
            prop_assert!(!got.is_empty() && got.len() <= MAX_FILE_BYTES);
            prop_assert!(!got.starts_with('.') && !got.starts_with('-'));
            prop_assert!(!got.chars().any(|c| is_unsafe(c) || c == '/' || c == '\\'));
        }

        #[test]
        fn for_file_of_path_like_names(parts in prop::collection::vec(
            prop::sample::select(vec!["..", ".", "a", "bc", "/", "\\", "\0", "\n", "-", " "]),
            0..12,
        )) {
            let name: String = parts.concat();
            let got = for_file(&name);
            prop_assert!(is_one_child(Path::new("out"), &got), "{:?} -> {:?}", name, got);
        }

        #[test]
        fn for_terminal_has_no_control_characters(name in any::<String>()) {
            let got = for_terminal(&name);
            prop_assert!(!got.chars().any(is_unsafe), "{:?} -> {:?}", name, got);
            prop_assert!(got.chars().count() <= MAX_TERMINAL_CHARS);
            if name.chars().count() <= MAX_TERMINAL_CHARS {
                prop_assert_eq!(got.chars().count(), name.chars().count());
            }
        }
    }
}
