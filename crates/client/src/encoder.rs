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
//! An encoder is made for a collection's [`VectorKind`]; it refuses a kind whose model or
//! normalization this build does not have, so that a query is never made another way than
//! the gallery it is compared with.

use crate::errors::Result;
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
    let unit_vectors = matches!(kind, VectorKind::Embedding { .. });
    encoding_of(ctx, unit_vectors, kind.dim())
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
}

impl ImageEncoder {
    /// An encoder for `kind` under `ctx`'s scheme (loads the model for an embedding): an
    /// error if this build cannot make vectors of that kind (another model or normalization).
    pub fn new(kind: &VectorKind, ctx: &Context) -> Result<Self> {
        let source = match kind {
            VectorKind::Pixels { side } => Source::Pixels { side: *side },
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
        let source = self.source_of(&decode_rgb(bytes, name)?)?;
        Ok((source.encode(&self.encoding), source))
    }

    /// An image file decoded once into everything an ingest keeps of it: its encoded
    /// vectors, what they were encoded from, and its JPEG thumbnail ([`thumbnail::make`]).
    pub fn encode_for_ingest(&self, bytes: &[u8], name: &str) -> Result<EncodedFile> {
        let rgb = decode_rgb(bytes, name)?;
        let source = self.source_of(&rgb)?;
        Ok(EncodedFile {
            encoded: source.encode(&self.encoding),
            source,
            thumbnail: thumbnail::make(&rgb)?,
        })
    }

    /// What an upright image's vectors are encoded from.
    fn source_of(&self, rgb: &RgbImage) -> Result<SourceVector> {
        Ok(match &self.source {
            Source::Model(embedder, norm) => {
                SourceVector::Features(norm.apply(&embedder.features(rgb)?))
            }
            Source::Pixels { side } => SourceVector::Pixels(rgb_vector(rgb, *side)?.channels),
        })
    }

    /// The encoded vectors of a source kept from an ingest: the same as the file's.
    pub fn encode_source(&self, source: &SourceVector) -> EncodedImage {
        source.encode(&self.encoding)
    }
}
