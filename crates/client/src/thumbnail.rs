//! Thumbnails: each image's small JPEG, made at ingest from the decoded, upright image,
//! padded to one size class and sealed beside its payload.
//!
//! ```text
//! sealed (THUMBNAIL_SEALED_BYTES) = seal( jpeg length u32 LE | jpeg | zero padding )
//! ```
//!
//! Every sealed thumbnail is exactly [`THUMBNAIL_SEALED_BYTES`] long, whatever the image:
//! its length tells the server nothing (a photograph and a flat icon look the same), and a
//! private retrieval of it (a fixed-size record) needs no per-record length. The JPEG is
//! the largest of [`SIDES`] that fits at the best of [`QUALITIES`]: a typical photograph
//! gets 256 px on its longer side at quality 80 to 60. It is sealed under the payload key
//! with the collection and image id as associated data (a thumbnail moved to another image
//! does not open).

use crate::errors::{ClientError, Result};
use crate::seal;
use crate::wire::{SEALED_OVERHEAD, THUMBNAIL_SEALED_BYTES};
use blindsight_search::vectors::RgbImage;

/// Longer sides tried, largest first (the first whose JPEG fits is kept).
pub const SIDES: [u32; 4] = [256, 192, 128, 64];

/// JPEG qualities tried at each side, best first.
pub const QUALITIES: [u8; 5] = [85, 75, 65, 50, 35];

/// Bytes of the padded plaintext: what sealing leaves of the size class.
pub const PLAIN_BYTES: usize = THUMBNAIL_SEALED_BYTES - SEALED_OVERHEAD;

/// Longest JPEG a thumbnail holds (after its 4-byte length).
pub const MAX_JPEG_BYTES: usize = PLAIN_BYTES - 4;

/// The JPEG thumbnail of an upright image: the largest of [`SIDES`] (never larger than the
/// image) at the best of [`QUALITIES`] that fits in [`MAX_JPEG_BYTES`].
pub fn make(rgb: &RgbImage) -> Result<Vec<u8>> {
    let (w, h) = rgb.dimensions();
    let longer = w.max(h).max(1);
    for side in SIDES {
        let side = side.min(longer);
        let tw = ((w as u64 * side as u64) / longer as u64).max(1) as u32;
        let th = ((h as u64 * side as u64) / longer as u64).max(1) as u32;
        let small = blindsight_search::vectors::thumbnail(rgb, tw, th);
        for quality in QUALITIES {
            let jpeg = blindsight_search::vectors::encode_jpeg(&small, quality)?;
            if jpeg.len() <= MAX_JPEG_BYTES {
                return Ok(jpeg);
            }
        }
    }
    Err(ClientError::Usage(
        "no thumbnail fits its size class, even at 64 px".into(),
    ))
}

/// The thumbnail of an image file (decoded upright, as at ingest).
pub fn from_file(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    make(&blindsight_search::vectors::decode_rgb(bytes, name)?)
}

/// The context sealed thumbnails of `collection` are bound to.
fn context(collection: &str) -> String {
    format!("{collection}/thumbnail")
}

/// `jpeg` (at most [`MAX_JPEG_BYTES`]) padded and sealed for `image` of `collection`:
/// exactly [`THUMBNAIL_SEALED_BYTES`].
pub fn seal(key: &[u8; 32], collection: &str, image: u64, jpeg: &[u8]) -> Result<Vec<u8>> {
    if jpeg.len() > MAX_JPEG_BYTES {
        return Err(ClientError::Usage(format!(
            "a thumbnail of {} bytes does not fit its size class ({MAX_JPEG_BYTES} bytes)",
            jpeg.len()
        )));
    }
    let mut plain = vec![0u8; PLAIN_BYTES];
    plain[..4].copy_from_slice(&(jpeg.len() as u32).to_le_bytes());
    plain[4..4 + jpeg.len()].copy_from_slice(jpeg);
    let sealed = seal::seal(key, &context(collection), image, &plain)?;
    zeroize::Zeroize::zeroize(&mut plain);
    Ok(sealed)
}

/// Opens a sealed thumbnail of `image` of `collection`: its JPEG. A thumbnail of another
/// size, image or collection, or altered in any way, is an error.
pub fn open(key: &[u8; 32], collection: &str, image: u64, sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() != THUMBNAIL_SEALED_BYTES {
        return Err(ClientError::PayloadAuthentication {
            image: image.to_string(),
        });
    }
    let plain = seal::open(key, &context(collection), image, sealed)?;
    let len = plain
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
        .filter(|&len| len <= MAX_JPEG_BYTES && 4 + len <= plain.len())
        .ok_or_else(|| {
            ClientError::Malformed(format!("the thumbnail of image {image} has a bad length"))
        })?;
    Ok(plain[4..4 + len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blindsight_search::vectors::{Rgb, decode_rgb};

    fn noisy(w: u32, h: u32) -> RgbImage {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        RgbImage::from_fn(w, h, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            Rgb([b[0], b[1], b[2]])
        })
    }

    #[test]
    fn every_thumbnail_fits_one_size_class_and_opens() {
        let key = [3u8; 32];
        // noise is the worst case for JPEG: it must still fit, smaller or coarser
        for img in [
            noisy(4000, 3000),
            noisy(3, 700),
            RgbImage::new(1, 1),
            noisy(256, 256),
        ] {
            let jpeg = make(&img).unwrap();
            assert!(jpeg.len() <= MAX_JPEG_BYTES);
            let back = decode_rgb(&jpeg, "thumbnail").unwrap();
            let (w, h) = img.dimensions();
            let (tw, th) = back.dimensions();
            assert!(tw.max(th) <= 256 && tw.max(th) <= w.max(h));
            // the aspect ratio is kept (within a pixel)
            assert!(
                (tw as f64 / th as f64 - w as f64 / h as f64).abs() * th as f64
                    <= 1.0 + w as f64 / h as f64
            );
            let sealed = seal(&key, "photos", 9, &jpeg).unwrap();
            assert_eq!(sealed.len(), THUMBNAIL_SEALED_BYTES);
            assert_eq!(open(&key, "photos", 9, &sealed).unwrap(), jpeg);
            assert!(open(&key, "photos", 10, &sealed).is_err());
            assert!(open(&key, "other", 9, &sealed).is_err());
            assert!(open(&key, "photos", 9, &sealed[1..]).is_err());
        }
    }

    #[test]
    fn a_thumbnail_is_not_a_payload() {
        let key = [3u8; 32];
        let jpeg = make(&noisy(64, 48)).unwrap();
        let sealed = seal(&key, "photos", 9, &jpeg).unwrap();
        // the same key, collection and id open a payload, never a thumbnail
        assert!(seal::open(&key, "photos", 9, &sealed).is_err());
    }
}
