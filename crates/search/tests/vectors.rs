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

/// A JPEG `jpeg` with an EXIF APP1 segment holding only `Orientation = value`, inserted right
/// after the start-of-image marker (as cameras write it).
fn with_exif_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec(); // little-endian TIFF header, IFD at 8
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
    tiff.extend_from_slice(&u32::from(value).to_le_bytes()); // the value, padded
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // FF D8
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    // an upright photograph-like image, and the same pixels stored sideways (turned 90°
    // anticlockwise) with the tag that says "turn 90° clockwise to show" (6)
    let (name, png) = emoji();
    let upright = image_vector(png, name, 72).unwrap().to_rgb();
    let jpeg = |img: &image::RgbImage| {
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
            .unwrap();
        bytes
    };
    let sideways = image::imageops::rotate270(&upright);
    let tagged = with_exif_orientation(&jpeg(&sideways), 6);
    let reference = image_vector(&jpeg(&upright), "upright.jpg", 64).unwrap();
    let turned = image_vector(&tagged, "sideways.jpg", 64).unwrap();
    let untagged = image_vector(&jpeg(&sideways), "sideways-untagged.jpg", 64).unwrap();
    let cosine = |a: &blindsight_search::vectors::ImageVector,
                  b: &blindsight_search::vectors::ImageVector| {
        let flat = |v: &blindsight_search::vectors::ImageVector| -> Vec<f64> {
            v.channels.iter().flatten().map(|&x| f64::from(x)).collect()
        };
        let (a, b) = (flat(a), flat(b));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (ma, mb) = (mean(&a), mean(&b));
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let norm = |v: &[f64], m: f64| v.iter().map(|x| (x - m) * (x - m)).sum::<f64>().sqrt();
        dot / (norm(&a, ma) * norm(&b, mb))
    };
    let turned_score = cosine(&turned, &reference);
    let untagged_score = cosine(&untagged, &reference);
    assert!(turned_score >= 0.99, "tagged copy: {turned_score}");
    assert!(
        untagged_score < turned_score - 0.05,
        "the test image is not symmetric enough to tell: {untagged_score} vs {turned_score}"
    );
}
