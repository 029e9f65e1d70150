//! Real images for tests, benchmarks and the demo (neither side of the trust boundary: the
//! CLI's demo and bench, and tests), with no network access: the Twemoji
//! PNGs (72×72 RGBA, graphics CC-BY-4.0 by Twitter / jdecked) embedded in the
//! `twemoji-assets` crate.
//!
//! The crate exposes its assets only by emoji, so this module enumerates them by walking the
//! emoji code points (single code points, flag pairs, skin-tone modifiers and keycaps) and
//! names each image the way Twemoji names its files (`1f1e6-1f1fa.png`). The list is sorted
//! by name and deterministic.

use std::sync::OnceLock;
use twemoji_assets::png::PngTwemojiAsset;

/// One embedded image.
#[derive(Clone, Copy, Debug)]
pub struct EmojiImage {
    /// File name in Twemoji's convention, e.g. `1f600.png`.
    pub name: &'static str,
    /// The PNG bytes.
    pub png: &'static [u8],
}

/// Every enumerated emoji image, sorted by name.
pub fn all() -> &'static [EmojiImage] {
    static ALL: OnceLock<Vec<EmojiImage>> = OnceLock::new();
    ALL.get_or_init(enumerate)
}

/// The first `count` images by name (fewer if the crate has fewer).
pub fn first(count: usize) -> &'static [EmojiImage] {
    let all = all();
    &all[..count.min(all.len())]
}

/// The first `count` images with distinct bytes, as (name, PNG bytes) files (the crate holds
/// a few identical files, which an ingest would skip as duplicates).
pub fn distinct_files(count: usize) -> Vec<(String, Vec<u8>)> {
    let mut seen = std::collections::HashSet::new();
    all()
        .iter()
        .filter(|e| seen.insert(e.png))
        .take(count)
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect()
}

fn enumerate() -> Vec<EmojiImage> {
    let mut found: Vec<(String, &'static [u8])> = Vec::new();
    let mut push = |s: String| {
        if let Some(asset) = PngTwemojiAsset::from_emoji(&s) {
            let name = s
                .chars()
                .filter(|&c| c != '\u{fe0f}')
                .map(|c| format!("{:x}", c as u32))
                .collect::<Vec<_>>()
                .join("-");
            let bytes: &'static [u8] = asset;
            found.push((format!("{name}.png"), bytes));
        }
    };
    let singles: Vec<char> = (0x00a9u32..0x3300)
        .chain(0x1f000..0x1fb00)
        .filter_map(char::from_u32)
        .filter(|c| PngTwemojiAsset::from_emoji(&c.to_string()).is_some())
        .collect();
    for &c in &singles {
        push(c.to_string());
    }
    // Regional-indicator pairs (flags).
    for a in 0x1f1e6u32..=0x1f1ff {
        for b in 0x1f1e6u32..=0x1f1ff {
            if let (Some(a), Some(b)) = (char::from_u32(a), char::from_u32(b)) {
                push(format!("{a}{b}"));
            }
        }
    }
    // Skin-tone modifiers.
    for &c in &singles {
        for m in 0x1f3fbu32..=0x1f3ff {
            if let Some(m) = char::from_u32(m) {
                push(format!("{c}{m}"));
            }
        }
    }
    // Keycaps.
    for c in "#*0123456789".chars() {
        push(format!("{c}\u{fe0f}\u{20e3}"));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    found
        .into_iter()
        .map(|(name, png)| EmojiImage {
            name: Box::leak(name.into_boxed_str()),
            png,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_enough_distinct_images() {
        let all = all();
        println!("{} embedded images", all.len());
        assert!(all.len() >= 4096 / 2, "{} images", all.len());
        assert!(all.windows(2).all(|w| w[0].name < w[1].name));
        assert!(all.iter().all(|i| i.png.starts_with(b"\x89PNG")));
        assert!(all.iter().any(|i| i.name == "1f1e6-1f1fa.png"));
    }
}

/// One mutation of a byte string, for fuzzing decoders of untrusted input.
#[derive(Clone, Copy, Debug)]
pub enum Mutation {
    /// Flip bit `bit % 8` of the byte at `at % len`.
    FlipBit {
        /// Position (taken modulo the length).
        at: usize,
        /// Bit index (taken modulo 8).
        bit: u8,
    },
    /// Overwrite the byte at `at % len` with `value`.
    SetByte {
        /// Position (taken modulo the length).
        at: usize,
        /// New value.
        value: u8,
    },
    /// Overwrite the eight bytes at `at % len` (as far as they go) with a little-endian word:
    /// reaches length and count fields with extreme values.
    SetWord {
        /// Position (taken modulo the length).
        at: usize,
        /// New value.
        value: u64,
    },
    /// Keep only the first `at % (len + 1)` bytes.
    Truncate {
        /// New length (taken modulo the length plus one).
        at: usize,
    },
    /// Insert `count % 64` copies of `value` at `at % (len + 1)`.
    Insert {
        /// Position.
        at: usize,
        /// Inserted byte.
        value: u8,
        /// How many (taken modulo 64).
        count: usize,
    },
    /// Remove up to `count % 64` bytes at `at % len`.
    Remove {
        /// Position.
        at: usize,
        /// How many (taken modulo 64).
        count: usize,
    },
    /// Copy `count % 64` bytes from `from % len` over `at % len` (a splice of the input
    /// into itself: plausible-looking fields in the wrong place).
    Splice {
        /// Source position.
        from: usize,
        /// Destination position.
        at: usize,
        /// How many (taken modulo 64).
        count: usize,
    },
}

/// Applies `mutations` in order to a copy of `bytes`. Total: every position is taken
/// modulo the current length, so any list of mutations applies to any input.
pub fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in mutations {
        let len = b.len();
        match *m {
            Mutation::FlipBit { at, bit } if len > 0 => b[at % len] ^= 1 << (bit % 8),
            Mutation::SetByte { at, value } if len > 0 => b[at % len] = value,
            Mutation::SetWord { at, value } if len > 0 => {
                let at = at % len;
                for (dst, src) in b[at..].iter_mut().zip(value.to_le_bytes()) {
                    *dst = src;
                }
            }
            Mutation::Truncate { at } => b.truncate(at % (len + 1)),
            Mutation::Insert { at, value, count } => {
                let at = at % (len + 1);
                b.splice(at..at, std::iter::repeat_n(value, count % 64));
            }
            Mutation::Remove { at, count } if len > 0 => {
                let at = at % len;
                let end = (at + count % 64).min(len);
                b.drain(at..end);
            }
            Mutation::Splice { from, at, count } if len > 0 => {
                let (from, at) = (from % len, at % len);
                let n = (count % 64).min(len - from).min(len - at);
                let chunk: Vec<u8> = b[from..from + n].to_vec();
                b[at..at + n].copy_from_slice(&chunk);
            }
            _ => {}
        }
    }
    b
}

/// CRC-32 (IEEE) of `bytes`, bitwise: tests use it to re-seal a mutated frame or envelope
/// whose checksum would otherwise hide every mutation from the field parsers.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

impl Mutation {
    /// The mutation that four random words select (property tests generate the words, so
    /// that every crate's fuzz tests share one mutation strategy).
    pub fn from_words(w: [u64; 4]) -> Self {
        let [kind, a, b, c] = w;
        let (a, b, c) = (a as usize, b as usize, c as usize);
        match kind % 8 {
            0 | 1 => Mutation::FlipBit {
                at: a,
                bit: b as u8,
            },
            2 => Mutation::SetByte {
                at: a,
                value: b as u8,
            },
            3 => Mutation::SetWord {
                at: a,
                value: match c % 4 {
                    0 => w[2],
                    1 => u64::MAX - (w[2] % 4),
                    2 => 1 << (w[2] % 64),
                    _ => w[2] % 4096,
                },
            },
            4 => Mutation::Truncate { at: a },
            5 => Mutation::Insert {
                at: a,
                value: b as u8,
                count: c,
            },
            6 => Mutation::Remove { at: a, count: b },
            _ => Mutation::Splice {
                from: a,
                at: b,
                count: c,
            },
        }
    }
}
