//! Image files to the encoded vectors of a collection's kind, on the client.
//!
//! - `pixels`: the file decoded, resized to `side × side`, split into R, G, B and encoded per
//!   channel (exact integers for BFV, unit vectors for CKKS).
//! - `embedding`: the original file (not a thumbnail) through the embedded image model
//!   (EfficientNet-Lite0, see `blindsight-embed`), its features normalized as the
//!   collection recorded, then encoded (unit vectors for CKKS; for BFV, integers whose dot
//!   products provably fit the plaintext modulus, see
//!   [`VectorEncoding::for_bfv_unit_vectors`]).
//!
//! - `vectors`: the user's own vectors, checked (dimension, finite, not zero),
//!   L2-normalized and encoded as an embedding's; an image file is refused (they come from
//!   the user's model, not ours). A file given beside a vector is kept as its payload, and
//!   its thumbnail made if it is an image.
//!
//! An encoder is made for a collection's [`VectorKind`]; it refuses a kind whose model or
//! normalization this build does not have, so that a query is never made another way than
//! the gallery it is compared with.

use crate::errors::{ClientError, Result};
use crate::thumbnail;
use blindsight_embed::{Embedder, FEATURES, ModelIdentity, Normalization};
use blindsight_he::{Context, Scheme};
use blindsight_search::encoding::VectorEncoding;
use blindsight_search::rank::EncodedImage;
use blindsight_search::source_vector::SourceVector;
use blindsight_search::vectors::{DEFAULT_SIDE, RgbImage, decode_rgb, rgb_vector};
use blindsight_search::{SearchError, VectorKind};

/// The kind of new collections by default: the embedded model's features, normalized by
/// the normalization chosen by measurement.
pub fn embedding_kind() -> VectorKind {
    VectorKind::Embedding {
        dim: FEATURES,
        model: ModelIdentity::embedded().short(),
        normalization: Normalization::SqrtL2.name().to_string(),
    }
}

/// The original demo's kind: 64 × 64 RGB pixels.
pub fn pixels_kind() -> VectorKind {
    VectorKind::Pixels { side: DEFAULT_SIDE }
}

/// The encoding of `kind`'s vectors under `ctx`'s scheme.
pub fn encoding_for(kind: &VectorKind, ctx: &Context) -> VectorEncoding {
    encoding_of(ctx, kind.is_unit_vectors(), kind.dim())
}

/// A `vectors` kind: `dim` values made by the user's model `model`.
pub fn vectors_kind(dim: usize, model: &str) -> Result<VectorKind> {
    Ok(VectorKind::parse(
        &VectorKind::Vectors {
            dim,
            model: model.to_string(),
        }
        .spec(),
    )?)
}

/// The encoding of vectors of dimension `dim` under `ctx`'s scheme: unit vectors (an
/// embedding's features) or 8-bit pixel channels. CKKS encodes both as unit vectors; BFV
/// quantizes unit vectors so that no dot product wraps, and takes pixels as integers.
pub fn encoding_of(ctx: &Context, unit_vectors: bool, dim: usize) -> VectorEncoding {
    let t = ctx.params().plain_modulus();
    match ctx.scheme() {
        Scheme::Bfv if unit_vectors => VectorEncoding::for_bfv_unit_vectors(t, dim),
        Scheme::Bfv => VectorEncoding::for_bfv(t, dim),
        _ => VectorEncoding::Unit,
    }
}

/// What an ingest keeps of an image file.
#[derive(Clone, Debug)]
pub struct EncodedFile {
    /// Its encoded vectors.
    pub encoded: EncodedImage,
    /// What they were encoded from.
    pub source: SourceVector,
    /// Its JPEG thumbnail (not yet sealed).
    pub thumbnail: Vec<u8>,
}

/// Encodes image files as a collection's vectors.
#[derive(Clone, Debug)]
pub struct ImageEncoder {
    kind: VectorKind,
    encoding: VectorEncoding,
    source: Source,
}

/// Where the vectors come from.
#[derive(Clone, Debug)]
enum Source {
    /// The pixels, resized to `side × side`.
    Pixels { side: u32 },
    /// The image model's features, normalized.
    Model(Embedder, Normalization),
    /// The user's vectors, given as they are (no image is encoded).
    Given,
}

impl ImageEncoder {
    /// An encoder for `kind` under `ctx`'s scheme (loads the model for an embedding): an
    /// error if this build cannot make vectors of that kind (another model or normalization).
    pub fn new(kind: &VectorKind, ctx: &Context) -> Result<Self> {
        let source = match kind {
            VectorKind::Pixels { side } => Source::Pixels { side: *side },
            VectorKind::Vectors { .. } => Source::Given,
            _ => {
                // this build's model and normalization, or nothing comparable
                let ours = embedding_kind();
                if kind != &ours {
                    return Err(SearchError::KindMismatch {
                        expected: kind.spec(),
                        actual: ours.spec(),
                    }
                    .into());
                }
                Source::Model(Embedder::new()?, Normalization::SqrtL2)
            }
        };
        Ok(Self {
            kind: kind.clone(),
            encoding: encoding_for(kind, ctx),
            source,
        })
    }

    /// The kind of vectors made.
    pub fn kind(&self) -> &VectorKind {
        &self.kind
    }

    /// The numeric encoding.
    pub fn encoding(&self) -> &VectorEncoding {
        &self.encoding
    }

    /// The encoded vectors of an image file (`name` for error messages).
    pub fn encode(&self, bytes: &[u8], name: &str) -> Result<EncodedImage> {
        Ok(self.encode_with_source(bytes, name)?.0)
    }

    /// The encoded vectors of an image file and what they were encoded from (to seal beside
    /// the image, so that a merge re-encodes it with [`ImageEncoder::encode_source`]).
    pub fn encode_with_source(
        &self,
        bytes: &[u8],
        name: &str,
    ) -> Result<(EncodedImage, SourceVector)> {
        self.takes_images()?;
        let source = self.source_of(&decode_rgb(bytes, name)?)?;
        Ok((source.encode(&self.encoding), source))
    }

    /// An image file decoded once into everything an ingest keeps of it: its encoded
    /// vectors, what they were encoded from, and its JPEG thumbnail ([`thumbnail::make`]).
    pub fn encode_for_ingest(&self, bytes: &[u8], name: &str) -> Result<EncodedFile> {
        self.takes_images()?;
        let rgb = decode_rgb(bytes, name)?;
        let source = self.source_of(&rgb)?;
        Ok(EncodedFile {
            encoded: source.encode(&self.encoding),
            source,
            thumbnail: thumbnail::make(&rgb)?,
        })
    }

    /// An error for a collection of the user's vectors, which takes no image file.
    fn takes_images(&self) -> Result<()> {
        match self.source {
            Source::Given => Err(self.images_refused()),
            _ => Ok(()),
        }
    }

    fn images_refused(&self) -> ClientError {
        ClientError::Usage(format!(
            "this collection holds your own vectors ({}): add and search it with vectors \
             (`ingest-vectors`, `search --vector`, or Python's `add`, `search_vector`), not \
             image files",
            self.kind
        ))
    }

    /// What an upright image's vectors are encoded from.
    fn source_of(&self, rgb: &RgbImage) -> Result<SourceVector> {
        Ok(match &self.source {
            Source::Model(embedder, norm) => {
                SourceVector::Features(norm.apply(&embedder.features(rgb)?))
            }
            Source::Pixels { side } => SourceVector::Pixels(rgb_vector(rgb, *side)?.channels),
            Source::Given => return Err(self.images_refused()),
        })
    }

    /// A user vector checked against the collection (its dimension; every value finite; not
    /// all zero) and L2-normalized: what it is encoded from.
    pub fn source_of_vector(&self, vector: &[f32]) -> Result<SourceVector> {
        let VectorKind::Vectors { dim, model } = &self.kind else {
            return Err(ClientError::Usage(format!(
                "this collection holds {}, made from images: add image files, not vectors",
                self.kind
            )));
        };
        if vector.len() != *dim {
            return Err(SearchError::KindMismatch {
                expected: self.kind.spec(),
                actual: VectorKind::Vectors {
                    dim: vector.len(),
                    model: model.clone(),
                }
                .spec(),
            }
            .into());
        }
        if let Some(i) = vector.iter().position(|v| !v.is_finite()) {
            return Err(ClientError::Usage(format!(
                "value {i} of the vector is {}: every value must be a finite number",
                vector[i]
            )));
        }
        let norm = vector
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(ClientError::Usage(
                "the vector is all zeros (or too large to normalize): it has no direction to \
                 compare by cosine"
                    .into(),
            ));
        }
        Ok(SourceVector::Features(
            vector
                .iter()
                .map(|&v| (f64::from(v) / norm) as f32)
                .collect(),
        ))
    }

    /// The encoded query of a user vector (see [`ImageEncoder::source_of_vector`]).
    pub fn encode_vector(&self, vector: &[f32]) -> Result<EncodedImage> {
        Ok(self.source_of_vector(vector)?.encode(&self.encoding))
    }

    /// A user vector and its optional payload file, as an ingest keeps them: the encoded
    /// vector, its normalized source, and a thumbnail when the payload is an image (else
    /// none).
    pub fn encode_vector_for_ingest(&self, vector: &[f32], payload: &[u8]) -> Result<EncodedFile> {
        let source = self.source_of_vector(vector)?;
        let thumbnail = if payload.is_empty() {
            Vec::new()
        } else {
            decode_rgb(payload, "payload")
                .ok()
                .and_then(|rgb| thumbnail::make(&rgb).ok())
                .unwrap_or_default()
        };
        Ok(EncodedFile {
            encoded: source.encode(&self.encoding),
            source,
            thumbnail,
        })
    }

    /// The encoded vectors of a source kept from an ingest: the same as the file's.
    pub fn encode_source(&self, source: &SourceVector) -> EncodedImage {
        source.encode(&self.encoding)
    }
}
