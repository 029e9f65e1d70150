//! Image payloads sealed with XChaCha20-Poly1305 under the client's payload key. The
//! collection and the image id are associated data: a payload moved to another image or
//! collection does not open.
//!
//! ```text
//! version u8 = 1 | nonce [24] | ciphertext ‖ tag [16]
//! ```

use crate::errors::{ClientError, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const VERSION: u8 = 1;
/// Bytes sealing adds to a plaintext: version, nonce and tag.
pub const OVERHEAD: usize = crate::wire::SEALED_OVERHEAD;

fn associated_data(collection: &str, image: u64) -> Vec<u8> {
    let mut aad = b"blindsight/payload/v1\0".to_vec();
    aad.extend_from_slice(collection.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&image.to_le_bytes());
    aad
}

/// Seals `plaintext` (an image file, its norms, ...) for `image` of `collection`.
pub fn seal(key: &[u8; 32], collection: &str, image: u64, plaintext: &[u8]) -> Result<Vec<u8>> {
    let nonce: [u8; 24] = blindsight_os::random::bytes()?;
    let aad = associated_data(collection, image);
    let sealed = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| ClientError::Usage("payload encryption failed".into()))?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a payload sealed by [`seal`] for the same key, collection and image.
pub fn open(key: &[u8; 32], collection: &str, image: u64, sealed: &[u8]) -> Result<Vec<u8>> {
    let fail = || ClientError::PayloadAuthentication {
        image: image.to_string(),
    };
    if sealed.len() < OVERHEAD || sealed[0] != VERSION {
        return Err(fail());
    }
    let aad = associated_data(collection, image);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(&sealed[1..25]),
            Payload {
                msg: &sealed[25..],
                aad: &aad,
            },
        )
        .map_err(|_| fail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_for_the_same_key_collection_and_image() {
        let key = [7u8; 32];
        let data = b"\x89PNG not really, but bytes";
        let s = seal(&key, "photos", 42, data).unwrap();
        assert_eq!(open(&key, "photos", 42, &s).unwrap(), data);
        assert!(open(&[8u8; 32], "photos", 42, &s).is_err());
        assert!(open(&key, "photos", 43, &s).is_err());
        assert!(open(&key, "other", 42, &s).is_err());
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 1;
            assert!(open(&key, "photos", 42, &bad).is_err(), "flip at {i}");
        }
        assert!(open(&key, "photos", 42, &s[..s.len() - 1]).is_err());
        assert_ne!(
            seal(&key, "photos", 42, data).unwrap(),
            s,
            "fresh nonce every time"
        );
    }
}
