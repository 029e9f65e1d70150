//! Deterministic edited copies of an image: what people do to a photo before they search for
//! it (or after they shared it). Each edit is a function of the image alone, so an
//! evaluation is reproducible run after run and machine after machine.

use crate::errors::{AppError, Result};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use std::io::Cursor;

/// One kind of edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Edit {
    /// The central 70 % (of each side) kept.
    CentreCrop,
    /// Moved right and down by 10 % of each side, the uncovered band white.
    Shift,
    /// Mirrored left to right.
    Mirror,
    /// Re-encoded as JPEG at quality 20.
    Jpeg,
    /// Brightness +20 %, saturation −30 %, a warm colour cast.
    ColourJitter,
    /// Down to a quarter of each side and back up (bilinear).
    Downscale,
    /// Rotated by 10° about the centre (bilinear), the corners white.
    Rotate,
    /// A caption burned into the lower part (black block letters on a white band).
    TextOverlay,
    /// Converted to grayscale.
    Grayscale,
}

impl Edit {
    /// Every edit, in report order.
    pub const ALL: [Edit; 9] = [
        Edit::CentreCrop,
        Edit::Shift,
        Edit::Mirror,
        Edit::Jpeg,
        Edit::ColourJitter,
        Edit::Downscale,
        Edit::Rotate,
        Edit::TextOverlay,
        Edit::Grayscale,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Edit::CentreCrop => "crop 70%",
            Edit::Shift => "shift 10%",
            Edit::Mirror => "mirror",
            Edit::Jpeg => "jpeg q20",
            Edit::ColourJitter => "colour jitter",
            Edit::Downscale => "downscale x4",
            Edit::Rotate => "rotate 10°",
            Edit::TextOverlay => "text overlay",
            Edit::Grayscale => "grayscale",
        }
    }

    /// The edited copy as an image file (PNG; JPEG for [`Edit::Jpeg`]).
    pub fn file(self, img: &RgbImage) -> Result<Vec<u8>> {
        let edited = self.apply(img);
        let mut out = Vec::new();
        let encoded = match self {
            Edit::Jpeg => {
                JpegEncoder::new_with_quality(&mut Cursor::new(&mut out), 20).encode_image(&edited)
            }
            _ => DynamicImage::ImageRgb8(edited)
                .write_to(&mut Cursor::new(&mut out), ImageFormat::Png),
        };
        encoded.map_err(|e| AppError::Internal(format!("encoding an edited image: {e}")))?;
        Ok(out)
    }

    /// The edited image (for [`Edit::Jpeg`], the image itself: the edit is the encoding).
    pub fn apply(self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        match self {
            Edit::CentreCrop => {
                let (cw, ch) = ((w * 7 / 10).max(1), (h * 7 / 10).max(1));
                imageops::crop_imm(img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image()
            }
            Edit::Shift => {
                let (dx, dy) = (w / 10, h / 10);
                RgbImage::from_fn(w, h, |x, y| {
                    if x >= dx && y >= dy {
                        *img.get_pixel(x - dx, y - dy)
                    } else {
                        WHITE
                    }
                })
            }
            Edit::Mirror => imageops::flip_horizontal(img),
            Edit::Jpeg => img.clone(),
            Edit::ColourJitter => colour_jitter(img),
            Edit::Downscale => {
                let small =
                    imageops::resize(img, (w / 4).max(1), (h / 4).max(1), FilterType::Triangle);
                imageops::resize(&small, w, h, FilterType::Triangle)
            }
            Edit::Rotate => rotate(img, 10f64.to_radians()),
            Edit::TextOverlay => caption(img, "SUMMER 2024"),
            Edit::Grayscale => DynamicImage::ImageLuma8(imageops::grayscale(img)).to_rgb8(),
        }
    }
}

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

fn colour_jitter(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let [r, g, b] = p.0.map(f64::from);
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        // less saturation, more brightness, a warm cast
        let jitter =
            |v: f64, cast: f64| ((grey + 0.7 * (v - grey)) * 1.2 * cast).clamp(0.0, 255.0) as u8;
        p.0 = [jitter(r, 1.06), jitter(g, 1.0), jitter(b, 0.92)];
    }
    out
}

/// Rotation about the centre by `theta` (bilinear; what falls outside is white).
fn rotate(img: &RgbImage, theta: f64) -> RgbImage {
    let (w, h) = img.dimensions();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (sin, cos) = theta.sin_cos();
    let sample = |x: f64, y: f64, c: usize| -> f64 {
        let inside =
            |xi: i64, yi: i64| xi >= 0 && yi >= 0 && xi < i64::from(w) && yi < i64::from(h);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let mut acc = 0.0;
        for (dx, dy, weight) in [
            (0, 0, (1.0 - fx) * (1.0 - fy)),
            (1, 0, fx * (1.0 - fy)),
            (0, 1, (1.0 - fx) * fy),
            (1, 1, fx * fy),
        ] {
            let (xi, yi) = (x0 as i64 + dx, y0 as i64 + dy);
            let v = if inside(xi, yi) {
                f64::from(img.get_pixel(xi as u32, yi as u32).0[c])
            } else {
                255.0
            };
            acc += weight * v;
        }
        acc
    };
    RgbImage::from_fn(w, h, |x, y| {
        // the source of each destination pixel: the inverse rotation
        let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
        let sx = cos * dx + sin * dy + cx - 0.5;
        let sy = -sin * dx + cos * dy + cy - 0.5;
        Rgb([0, 1, 2].map(|c| sample(sx, sy, c).round().clamp(0.0, 255.0) as u8))
    })
}

/// Glyphs of a 5×7 block font: one row per byte, the low 5 bits left to right.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        _ => [0; 7],
    }
}

/// `text` in black block letters on a white band across the lower fifth of the image.
fn caption(img: &RgbImage, text: &str) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    let cols = (text.chars().count() as u32 * 6).max(1);
    // letters as large as fit in 80 % of the width and a sixth of the height
    let scale = (w * 8 / 10 / cols).min(h / 6 / 8).max(1);
    let (text_w, text_h) = (cols * scale, 8 * scale);
    let (x0, y0) = (
        (w.saturating_sub(text_w)) / 2,
        h.saturating_sub(text_h + h / 20),
    );
    for y in y0..(y0 + text_h).min(h) {
        for x in x0.saturating_sub(scale)..(x0 + text_w + scale).min(w) {
            out.put_pixel(x, y, WHITE);
        }
    }
    for (i, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5u32 {
                if bits >> (4 - col) & 1 == 1 {
                    let gx = x0 + (i as u32 * 6 + col) * scale;
                    let gy = y0 + row as u32 * scale + scale / 2;
                    for yy in gy..(gy + scale).min(h) {
                        for xx in gx..(gx + scale).min(w) {
                            out.put_pixel(xx, yy, Rgb([0, 0, 0]));
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RgbImage {
        RgbImage::from_fn(120, 80, |x, y| {
            Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
        })
    }

    #[test]
    fn every_edit_is_deterministic_changes_the_image_and_decodes() {
        let img = sample();
        for edit in Edit::ALL {
            let a = edit.file(&img).unwrap();
            assert_eq!(a, edit.file(&img).unwrap(), "{edit:?} is deterministic");
            let back = image::load_from_memory(&a).unwrap().to_rgb8();
            if edit != Edit::CentreCrop {
                assert_eq!(back.dimensions(), img.dimensions(), "{edit:?}");
            }
            assert_ne!(back, img, "{edit:?} changes the image");
        }
        assert_eq!(Edit::CentreCrop.apply(&img).dimensions(), (84, 56));
    }

    #[test]
    fn rotation_by_zero_is_the_identity_and_mirror_is_an_involution() {
        let img = sample();
        assert_eq!(rotate(&img, 0.0), img);
        assert_eq!(Edit::Mirror.apply(&Edit::Mirror.apply(&img)), img);
        // a tiny image survives every edit
        let tiny = RgbImage::from_pixel(1, 1, Rgb([9, 9, 9]));
        for edit in Edit::ALL {
            assert!(edit.file(&tiny).is_ok(), "{edit:?}");
        }
    }
}
