//! An image to the network's input: RGB (alpha composited on white, grey replicated),
//! resized to 224 × 224 with a bilinear (triangle) filter, planes `R, G, B`, each value
//! `(x − 127) / 128`, the scaling the Lite models were trained with.

use crate::errors::{EmbedError, Result};
use image::DynamicImage;
use image::imageops::FilterType;

/// Side of the square input.
pub const INPUT_SIDE: usize = 224;

/// The network's input for `img`: `3 × 224 × 224` values, plane by plane.
pub fn input_planes(img: &DynamicImage) -> Result<Vec<f32>> {
    if img.width() == 0 || img.height() == 0 {
        return Err(EmbedError::EmptyImage {
            width: img.width(),
            height: img.height(),
        });
    }
    let rgb = on_white(img);
    let side = INPUT_SIDE as u32;
    let small = image::imageops::resize(&rgb, side, side, FilterType::Triangle);
    let plane = INPUT_SIDE * INPUT_SIDE;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px.0[c]) - 127.0) / 128.0;
        }
    }
    Ok(out)
}

/// The image as RGB, transparent pixels composited on white (emoji and icons are drawn on
/// transparency; a photograph is opaque and unchanged).
fn on_white(img: &DynamicImage) -> image::RgbImage {
    let rgba = img.to_rgba8();
    let mut out = image::RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p.0[3]);
        let blend = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        o.0 = [blend(p.0[0]), blend(p.0[1]), blend(p.0[2])];
    }
    out
}
