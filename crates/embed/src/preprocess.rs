//! An image to the network's input: opaque RGB (files are decoded, bounded and composited
//! on white by `blindsight_search::vectors::decode_rgb`), resized to 224 × 224 with a
//! bilinear (triangle) filter, planes `R, G, B`, each value `(x − 127) / 128`, the scaling
//! the Lite models were trained with.

use crate::errors::{EmbedError, Result};
use image::RgbImage;
use image::imageops::FilterType;

/// Side of the square input.
pub const INPUT_SIDE: usize = 224;

/// The network's input for `img`: `3 × 224 × 224` values, plane by plane.
pub fn input_planes(img: &RgbImage) -> Result<Vec<f32>> {
    if img.width() == 0 || img.height() == 0 {
        return Err(EmbedError::EmptyImage {
            width: img.width(),
            height: img.height(),
        });
    }
    let side = INPUT_SIDE as u32;
    let small = image::imageops::resize(img, side, side, FilterType::Triangle);
    let plane = INPUT_SIDE * INPUT_SIDE;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px.0[c]) - 127.0) / 128.0;
        }
    }
    Ok(out)
}
