//! Makes a photo library to ingest, as a phone or camera leaves one: real photographs (from
//! `scripts/install-photos.sh DIR`) in dated folders, 12-megapixel JPEGs made from them
//! (each cropped, tinted and scaled differently, so that no two are the same file), smaller
//! JPEGs and PNGs, deep nesting, and files that are not images or are broken (truncated,
//! empty, text named `.jpg`, HEIC, videos) among them.
//!
//! ```sh
//! scripts/install-photos.sh /tmp/photos
//! cargo run --release -p blindsight --example make_library -- /tmp/photos /tmp/library 10000 1000
//! ```
//!
//! Arguments: the photographs' folder, the library to make (must not exist), the number of
//! files (at least the photographs, the large ones and the 40 broken or unsupported ones),
//! and how many of them are 12-megapixel JPEGs. Deterministic: the same arguments make the
//! same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a tool")]

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Files that are not images or do not decode.
const BAD: usize = 40;

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// A variant of `src`: cropped by up to 20 % at an offset set by `k`, tinted by `k`,
/// resized to `w × h`.
fn variant(src: &RgbImage, k: usize, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = src.dimensions();
    let cw = (sw * (80 + (k % 21) as u32) / 100).max(1);
    let ch = (sh * (80 + ((k / 21) % 21) as u32) / 100).max(1);
    let x = ((sw - cw) as usize * (k % 7) / 6) as u32;
    let y = ((sh - ch) as usize * (k % 5) / 4) as u32;
    let crop = image::imageops::crop_imm(src, x, y, cw, ch).to_image();
    let mut out = image::imageops::resize(&crop, w, h, FilterType::Triangle);
    let tint = [
        (k * 7 % 23) as i16 - 11,
        (k * 13 % 19) as i16 - 9,
        (k * 5 % 17) as i16 - 8,
    ];
    for p in out.pixels_mut() {
        for c in 0..3 {
            p.0[c] = (p.0[c] as i16 + tint[c]).clamp(0, 255) as u8;
        }
    }
    out
}

/// A dated folder for the `i`-th file, some of them deep.
fn folder(root: &Path, kind: &str, i: usize) -> PathBuf {
    let year = 2015 + i % 10;
    let month = 1 + (i / 10) % 12;
    let mut p = root
        .join(kind)
        .join(year.to_string())
        .join(format!("{month:02}"));
    if i.is_multiple_of(17) {
        p = p.join("trip").join("day 2").join("phone camera");
    }
    p
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5,
        "usage: make_library PHOTOS_DIR LIBRARY_DIR FILES LARGE"
    );
    let (photos_dir, root) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let total: usize = args[3].parse().unwrap();
    let large: usize = args[4].parse().unwrap();
    assert!(!root.exists(), "{} exists", root.display());
    let mut names: Vec<PathBuf> = std::fs::read_dir(&photos_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let photos: Vec<(PathBuf, RgbImage)> = names
        .par_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            let img = image::load_from_memory(&bytes).ok()?.to_rgb8();
            Some((p.clone(), img))
        })
        .collect();
    assert!(
        !photos.is_empty(),
        "no photographs in {}",
        photos_dir.display()
    );
    let real = photos.len();
    assert!(total >= real + large + BAD, "too few files for the parts");
    let small = total - real - large - BAD;
    println!("{real} photographs, {large} 12 MP JPEGs, {small} small images, {BAD} bad files");

    // the photographs as they are, in dated folders
    photos.par_iter().enumerate().for_each(|(i, (p, _))| {
        let name = p.file_name().unwrap();
        write(
            &folder(&root, "camera", i).join(name),
            &std::fs::read(p).unwrap(),
        );
    });
    // 12-megapixel JPEGs (4000 × 3000, or 3000 × 4000 for every fifth)
    (0..large).into_par_iter().for_each(|i| {
        let (w, h) = if i % 5 == 4 {
            (3000, 4000)
        } else {
            (4000, 3000)
        };
        let img = variant(&photos[i % real].1, i, w, h);
        let path = folder(&root, "DCIM", i).join(format!("IMG_{:05}.JPG", i));
        write(&path, &jpeg(&img, 88));
    });
    // smaller images: phone-sized JPEGs of the photographs and the embedded PNGs
    let emoji = blindsight_testdata::all();
    (0..small).into_par_iter().for_each(|i| {
        let path = folder(&root, "shared", i);
        if i.is_multiple_of(3) {
            let e = &emoji[i / 3 % emoji.len()];
            let bytes = if i / 3 < emoji.len() {
                e.png.to_vec()
            } else {
                // a second round: the same picture, another file
                let img = image::load_from_memory(e.png).unwrap().to_rgb8();
                jpeg(&variant(&img, i, 96, 96), 90)
            };
            let ext = if i / 3 < emoji.len() { "png" } else { "jpg" };
            write(&path.join(format!("sticker-{i:05}.{ext}")), &bytes);
        } else {
            let img = variant(&photos[i % real].1, i + 7, 800, 600);
            write(&path.join(format!("photo-{i:05}.jpg")), &jpeg(&img, 82));
        }
    });
    // what a real library also holds
    let a_jpeg = std::fs::read(
        std::fs::read_dir(folder(&root, "DCIM", 0))
            .map(|mut d| d.next().unwrap().unwrap().path())
            .unwrap_or_else(|_| names[0].clone()),
    )
    .unwrap();
    for i in 0..BAD {
        let dir = folder(&root, "misc", i);
        match i % 5 {
            0 => write(
                &dir.join(format!("truncated-{i}.jpg")),
                &a_jpeg[..a_jpeg.len() / 3],
            ),
            1 => write(&dir.join(format!("empty-{i}.png")), b""),
            2 => write(
                &dir.join(format!("notes-{i}.jpg")),
                b"shopping list: milk, eggs",
            ),
            3 => write(&dir.join(format!("IMG_{i}.HEIC")), b"\0\0\0\x18ftypheic"),
            _ => write(&dir.join(format!("clip-{i}.mov")), b"\0\0\0\x14ftypqt  "),
        }
    }
    println!("made {}", root.display());
}
