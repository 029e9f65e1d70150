//! Images to vectors: decode (PNG, JPEG, WebP, BMP, GIF), composite alpha on white, resize to
//! a square (default 64×64, as the original TenSEAL demo), split into R, G, B channels.

use crate::errors::{Result, SearchError};
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
pub use image::{Rgb, RgbImage};
use std::io::Cursor;

/// Side of the square images are resized to by default.
pub const DEFAULT_SIDE: u32 = 64;

/// Largest decoded image accepted, in pixels (a decompression-bomb guard).
pub const MAX_DECODED_PIXELS: u64 = 40_000_000;

/// One image as three channel vectors of `side²` bytes (row-major).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageVector {
    /// Side of the square.
    pub side: u32,
    /// R, G and B values.
    pub channels: [Vec<u8>; 3],
}

impl ImageVector {
    /// Number of values per channel.
    pub fn dim(&self) -> usize {
        (self.side * self.side) as usize
    }

    /// One of the 8 symmetries of the square (`k mod 8`: rotations by `k·90°`, then the
    /// same after a mirror flip): augmented copies of real images for large test galleries.
    pub fn dihedral(&self, k: usize) -> ImageVector {
        let s = self.side as usize;
        let source = |y: usize, x: usize| -> usize {
            let (y, x) = if k % 8 >= 4 { (y, s - 1 - x) } else { (y, x) };
            match k % 4 {
                0 => y * s + x,
                1 => (s - 1 - x) * s + y,
                2 => (s - 1 - y) * s + (s - 1 - x),
                _ => x * s + (s - 1 - y),
            }
        };
        let channels = self
            .channels
            .clone()
            .map(|ch| (0..s * s).map(|i| ch[source(i / s, i % s)]).collect());
        ImageVector {
            side: self.side,
            channels,
        }
    }

    /// A perturbed copy: every pixel moved by a small deterministic offset in `[-3, 3]`
    /// (a stand-in for a re-encoded or slightly edited photo, used as a query).
    pub fn perturbed(&self) -> ImageVector {
        let channels = self.channels.clone().map(|ch| {
            ch.iter()
                .enumerate()
                .map(|(i, &p)| (p as i32 + ((i * 7919) % 7) as i32 - 3).clamp(0, 255) as u8)
                .collect()
        });
        ImageVector {
            side: self.side,
            channels,
        }
    }

    /// Rebuilds an RGB image (for display / debugging).
    pub fn to_rgb(&self) -> RgbImage {
        RgbImage::from_fn(self.side, self.side, |x, y| {
            let i = (y * self.side + x) as usize;
            Rgb([
                self.channels[0][i],
                self.channels[1][i],
                self.channels[2][i],
            ])
        })
    }
}

fn check_side(side: u32) -> Result<()> {
    if side == 0 || side > 1024 {
        return Err(SearchError::Layout {
            reason: format!("image side {side} must be in 1..=1024"),
        });
    }
    Ok(())
}

/// Decodes an image file and turns it into channel vectors of `side × side`.
pub fn image_vector(bytes: &[u8], name: &str, side: u32) -> Result<ImageVector> {
    check_side(side)?;
    rgb_vector(&decode_rgb(bytes, name)?, side)
}

/// An upright RGB image as channel vectors of `side × side`.
pub fn rgb_vector(rgb: &RgbImage, side: u32) -> Result<ImageVector> {
    check_side(side)?;
    let resized = image::imageops::resize(rgb, side, side, FilterType::CatmullRom);
    let n = (side * side) as usize;
    let mut channels = [
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    ];
    for p in resized.pixels() {
        for (c, ch) in channels.iter_mut().enumerate() {
            ch.push(p.0[c]);
        }
    }
    Ok(ImageVector { side, channels })
}

/// Decodes an image file (PNG, JPEG, WebP, BMP, GIF; at most [`MAX_DECODED_PIXELS`],
/// checked from the header before decoding) to opaque RGB, alpha composited on white.
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<RgbImage> {
    let decode_err = |reason: String| SearchError::ImageDecode {
        name: name.to_string(),
        reason,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| decode_err(e.to_string()))?;
    let pixels = w as u64 * h as u64;
    if pixels > MAX_DECODED_PIXELS {
        return Err(SearchError::ImageTooLarge {
            name: name.to_string(),
            expected: MAX_DECODED_PIXELS,
            actual: pixels,
        });
    }
    reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_DECODED_PIXELS * 16);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_err(e.to_string()))?;
    // a photograph taken sideways is stored sideways with an EXIF Orientation tag: turned
    // upright here, so that it is compared as it is seen (a damaged tag: as stored)
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(on_white(&img.to_rgba8()))
}

/// `rgb` reduced to `width × height` by area averaging (fast for large photographs).
pub fn thumbnail(rgb: &RgbImage, width: u32, height: u32) -> RgbImage {
    image::imageops::thumbnail(rgb, width.max(1), height.max(1))
}

/// `rgb` as a baseline JPEG of `quality` (1–100).
pub fn encode_jpeg(rgb: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(rgb)
        .map_err(|e| SearchError::ImageDecode {
            name: "thumbnail".into(),
            reason: format!("JPEG encoding failed: {e}"),
        })?;
    Ok(out)
}

/// An RGBA image as opaque RGB, alpha composited on white.
pub fn on_white(rgba: &image::RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as u32;
        let blend = |c: u8| ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}
