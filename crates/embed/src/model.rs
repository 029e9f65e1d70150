//! The embedded network and the embedder that runs it.

use crate::errors::{EmbedError, Result};
use crate::preprocess::{INPUT_SIDE, input_planes};
use image::RgbImage;
use std::sync::Arc;
use tract_nnef::prelude::{Framework, IntoRunnable, Tensor, TypedRunnableModel, tvec};

/// EfficientNet-Lite0's feature extractor as an NNEF archive (tar, gzip) (`models/efficientnet-lite0/`):
/// the committed ONNX file converted by `examples/onnx_to_nnef` (a test checks that the
/// conversion gives these very bytes). tract reads NNEF without its ONNX front end, which
/// maps model files into memory: the client links no memory-mapping crate.
static MODEL_NNEF: &[u8] =
    include_bytes!("../../../models/efficientnet-lite0/efficientnet-lite0-features.nnef.tgz");

/// SHA-256 of the ONNX file the archive was converted from: the model's identity, as
/// collections record it since they were first made (an identity that names the ONNX file
/// keeps collections made before the archive existed searchable).
const MODEL_ONNX_SHA256: [u8; 32] = [
    0x21, 0xa1, 0x13, 0x44, 0x3f, 0x13, 0xbc, 0x20, 0xfc, 0x4a, 0x19, 0x27, 0xa2, 0x68, 0xbd, 0xdc,
    0xbd, 0xd1, 0x14, 0xe5, 0xbd, 0x0e, 0xd5, 0xc7, 0x70, 0x1d, 0xc9, 0x71, 0x71, 0xf7, 0x3e, 0x3d,
];

/// Name of the embedded model, as collections record it.
pub const MODEL_NAME: &str = "efficientnet-lite0-features";

/// Features the network returns per image.
pub const FEATURES: usize = 1280;

/// Which model made an embedding: its name and the SHA-256 of its ONNX file (another
/// conversion, another hash: vectors of different models are not comparable).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelIdentity {
    /// The model's name ([`MODEL_NAME`]).
    pub name: String,
    /// SHA-256 of the ONNX file.
    pub sha256: [u8; 32],
}

impl ModelIdentity {
    /// The identity of the embedded model.
    pub fn embedded() -> Self {
        ModelIdentity {
            name: MODEL_NAME.to_string(),
            sha256: MODEL_ONNX_SHA256,
        }
    }

    /// `name@` and the first 16 hex digits of the hash: short, and still unique in practice.
    pub fn short(&self) -> String {
        let hex: String = self.sha256[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}@{hex}", self.name)
    }
}

/// Runs the embedded network: an image in, its 1280 raw features out (non-negative pooled
/// activations, not normalized). Built once (parsing and optimizing the graph takes ~0.1 s),
/// then shared by threads: each [`features`](Self::features) call runs on its caller's
/// thread.
#[derive(Clone)]
pub struct Embedder {
    plan: Arc<TypedRunnableModel>,
    identity: ModelIdentity,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("identity", &self.identity.short())
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads and optimizes the embedded network.
    pub fn new() -> Result<Self> {
        let plan = tract_nnef::nnef()
            .model_for_read(&mut &MODEL_NNEF[..])
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(EmbedError::model)?;
        Ok(Embedder {
            plan,
            identity: ModelIdentity::embedded(),
        })
    }

    /// The model's identity.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The raw features of `img` (opaque RGB, any size; see [`crate::preprocess`]).
    pub fn features(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.features_of_input(input_planes(img)?)
    }

    /// The raw features of a prepared input: `3 × 224 × 224` values, plane by plane.
    pub fn features_of_input(&self, planes: Vec<f32>) -> Result<Vec<f32>> {
        let input = Tensor::from_shape(&[1, 3, INPUT_SIDE, INPUT_SIDE], &planes)
            .map_err(EmbedError::model)?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(EmbedError::model)?;
        let first = out.first().ok_or(EmbedError::Output {
            expected: FEATURES,
            actual: 0,
        })?;
        let view = first
            .to_plain_array_view::<f32>()
            .map_err(EmbedError::model)?;
        let features: Vec<f32> = view.iter().copied().collect();
        if features.len() != FEATURES {
            return Err(EmbedError::Output {
                expected: FEATURES,
                actual: features.len(),
            });
        }
        Ok(features)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The model file's hash, as its README states it.
    const README_SHA256: &str = "21a113443f13bc20fc4a1927a268bddcbdd114e5bd0ed5c7701dc97171f73e3d";

    /// The synthetic inputs of `models/efficientnet-lite0/reference.py`.
    fn synthetic(m: i64) -> Vec<f32> {
        let len = (3 * INPUT_SIDE * INPUT_SIDE) as i64;
        (0..len)
            .map(|k| (k * m).rem_euclid(1024) as f32 / 512.0 - 1.0)
            .collect()
    }

    #[test]
    fn the_embedded_model_is_the_converted_file() {
        let onnx =
            include_bytes!("../../../models/efficientnet-lite0/efficientnet-lite0-features.onnx");
        assert_eq!(<[u8; 32]>::from(Sha256::digest(onnx)), MODEL_ONNX_SHA256);
        let id = ModelIdentity::embedded();
        let hex: String = id.sha256.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, README_SHA256);
        assert_eq!(id.short(), "efficientnet-lite0-features@21a113443f13bc20");
    }

    /// tract's features equal onnxruntime's, recorded once by `reference.py`, within 1e-4
    /// absolute (features reach ~5; the engines differ by ~3e-6).
    #[test]
    fn features_match_onnxruntime() {
        let reference: Vec<f32> = include_bytes!("../testdata/reference_features.bin")
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let e = Embedder::new().unwrap();
        for (i, m) in [2_654_435_761i64, 40503].into_iter().enumerate() {
            let got = e.features_of_input(synthetic(m)).unwrap();
            let want = &reference[i * FEATURES..(i + 1) * FEATURES];
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "input {i}: max difference {worst}");
            assert!(want.iter().any(|&x| x > 0.5), "a reference worth comparing");
        }
    }

    /// The whole client path (PNG decode, alpha on white, bilinear resize, scaling, tract)
    /// against an independent one (PIL and onnxruntime, `reference_images.py`, run once)
    /// on four embedded images. The two resizers round differently (PIL rounds the
    /// intermediate pass to 8 bits), so the features agree to a cosine ≥ 0.9999 and each
    /// value within 1 % of the reference's largest (measured: cosine ≥ 0.99998, 0.7 %), not
    /// bit for bit.
    #[test]
    fn features_of_embedded_images_match_the_recorded_reference() {
        const NAMES: [&str; 4] = [
            "1f004.png",
            "1f194.png",
            "1f1e6-1f1eb.png",
            "1f1e6-1f1fa.png",
        ];
        let reference: Vec<f32> = include_bytes!("../testdata/reference_images.bin")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(reference.len(), NAMES.len() * FEATURES);
        let e = Embedder::new().unwrap();
        for (i, name) in NAMES.iter().enumerate() {
            let png = blindsight_testdata::all()
                .iter()
                .find(|im| im.name == *name)
                .unwrap()
                .png;
            let img = blindsight_search::vectors::decode_rgb(png, name).unwrap();
            let got = e.features(&img).unwrap();
            let want = &reference[i * FEATURES..(i + 1) * FEATURES];
            let dot: f64 = got.iter().zip(want).map(|(a, b)| f64::from(a * b)).sum();
            let norm = |v: &[f32]| v.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
            let cosine = dot / (norm(&got) * norm(want));
            let largest = want.iter().copied().fold(0f32, f32::max);
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!("{name}: cosine {cosine:.6}, max difference {worst:.4} of {largest:.3}");
            assert!(cosine >= 0.9999, "{name}: cosine {cosine}");
            assert!(worst <= 0.01 * largest, "{name}: {worst} of {largest}");
        }
    }

    /// Real images: features are finite, non-negative, deterministic, and an image is far
    /// more like itself mirrored than like an unrelated image.
    #[test]
    fn features_of_embedded_images() {
        let e = Embedder::new().unwrap();
        let imgs: Vec<RgbImage> = blindsight_testdata::first(40)
            .iter()
            .step_by(10)
            .map(|i| blindsight_search::vectors::decode_rgb(i.png, i.name).unwrap())
            .collect();
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (n(a) * n(b))
        };
        let feats: Vec<Vec<f32>> = imgs.iter().map(|i| e.features(i).unwrap()).collect();
        for (img, f) in imgs.iter().zip(&feats) {
            assert!(f.iter().all(|x| x.is_finite() && *x >= 0.0));
            assert_eq!(&e.features(img).unwrap(), f, "deterministic");
            let mirrored = e.features(&image::imageops::flip_horizontal(img)).unwrap();
            let own = cos(f, &mirrored);
            for other in feats.iter().filter(|o| *o != f) {
                assert!(
                    own > cos(f, other),
                    "mirror {own} vs other {}",
                    cos(f, other)
                );
            }
        }
    }

    #[test]
    fn an_empty_image_is_an_error() {
        let e = Embedder::new().unwrap();
        let empty = RgbImage::new(0, 5);
        assert!(matches!(
            e.features(&empty),
            Err(EmbedError::EmptyImage {
                width: 0,
                height: 5
            })
        ));
    }
}
