//! Real images for tests, benchmarks and the demo, with no network access: the Twemoji
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
