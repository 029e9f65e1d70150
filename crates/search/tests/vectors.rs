//! Image decoding: every supported format, and bad input (non-images, truncated files,
//! decompression bombs) rejected with an error naming the file.
#![allow(clippy::unwrap_used, reason = "tests")]

use blindsight_search::SearchError;
use blindsight_search::vectors::{MAX_DECODED_PIXELS, image_vector};
use image::{ImageFormat, RgbaImage};
use std::io::Cursor;

fn emoji() -> (&'static str, &'static [u8]) {
    let e = blindsight_testdata::first(1)[0];
    (e.name, e.png)
}

#[test]
fn every_supported_format_decodes_to_the_same_vectors() {
    let (name, png) = emoji();
    let reference = image_vector(png, name, 64).unwrap();
    assert_eq!(reference.dim(), 4096);
    let rgba: RgbaImage = image::load_from_memory(png).unwrap().to_rgba8();
    for format in [
        ImageFormat::Png,
        ImageFormat::Bmp,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Jpeg,
        ImageFormat::Tiff,
    ] {
        let mut bytes = Vec::new();
        let img = image::DynamicImage::ImageRgba8(rgba.clone());
        // JPEG has no alpha: composite on white first, as the decoder side does.
        let img = if format == ImageFormat::Jpeg {
            let v = image_vector(png, name, 72).unwrap();
            image::DynamicImage::ImageRgb8(v.to_rgb())
        } else {
            img
        };
        img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        let v = image_vector(&bytes, "x", 64).unwrap();
        let max_diff = v
            .channels
            .iter()
            .zip(&reference.channels)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()))
            .max()
            .unwrap();
        let tolerance = match format {
            ImageFormat::Jpeg => 60,
            ImageFormat::Gif => 40, // 256-colour palette
            _ => 1,
        };
        assert!(
            max_diff <= tolerance,
            "{format:?}: max difference {max_diff}"
        );
    }
}

#[test]
fn non_images_and_truncated_files_name_the_file() {
    let (_, png) = emoji();
    for (bytes, what) in [
        (&b"this is not an image"[..], "text"),
        (&png[..png.len() / 2], "truncated PNG"),
        (&png[..20], "PNG header only"),
        (&[][..], "empty file"),
    ] {
        let err = image_vector(bytes, "bad-file.png", 64).unwrap_err();
        assert!(
            matches!(err, SearchError::ImageDecode { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains("bad-file.png"), "{what}: {err}");
    }
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    // A valid PNG whose header claims 100 000 × 100 000 pixels.
    let (_, png) = emoji();
    let mut bomb = png.to_vec();
    // IHDR data starts at byte 16: width, height (big endian); its CRC covers bytes 12..29.
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = image_vector(&bomb, "bomb.png", 64).unwrap_err();
    match err {
        SearchError::ImageTooLarge {
            name,
            expected,
            actual,
        } => {
            assert_eq!(name, "bomb.png");
            assert_eq!(expected, MAX_DECODED_PIXELS);
            assert_eq!(actual, 10_000_000_000);
        }
        other => panic!("expected ImageTooLarge, got {other}"),
    }
}

#[test]
fn alpha_is_composited_on_white() {
    let mut bytes = Vec::new();
    let clear = RgbaImage::from_pixel(8, 8, image::Rgba([10, 20, 30, 0]));
    image::DynamicImage::ImageRgba8(clear)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    let v = image_vector(&bytes, "clear.png", 4).unwrap();
    assert!(v.channels.iter().all(|c| c.iter().all(|&p| p == 255)));
}
