//! What a collection encrypts: its [`VectorKind`], recorded with the collection so that
//! every query is checked against it.
//!
//! - `pixels`: the original demo's vectors, an image resized to `side × side` and split into
//!   R, G, B: three channels of `side²` values; ranked by the demo's channel rule or by the
//!   whole-vector cosine.
//! - `embedding`: one L2-normalized feature vector of `dim` values per image, made by a
//!   named model (its identity includes the hash of its weights) with a named
//!   normalization; ranked by cosine. Vectors of different models or normalizations are not
//!   comparable, so a query made another way is refused.
//! - `vectors`: the user's own vectors (CLIP embeddings, face templates, document
//!   embeddings) of `dim` values, made by a model the user names; blindsight L2-normalizes
//!   each one and ranks by cosine (the only metric offered, written in the spec). A query of
//!   another model name or dimension is refused.
//!
//! A kind is written as a short text spec, stored and sent as is:
//! `pixels:64`, `embedding:1280:efficientnet-lite0@21a11344c0ffee12:sqrt-l2` or
//! `vectors:512:my-clip:cosine`.

use crate::errors::{Result, SearchError};

/// Largest dimension of an embedding (values per vector).
pub const MAX_EMBEDDING_DIM: usize = 1 << 15;
/// Largest side of pixel vectors.
pub const MAX_PIXEL_SIDE: u32 = 1024;
/// Longest model or normalization name.
const MAX_NAME: usize = 100;

/// What a collection encrypts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VectorKind {
    /// Raw pixels: `side × side` RGB, three channels.
    Pixels {
        /// Side of the square images are resized to.
        side: u32,
    },
    /// A learned embedding: one unit vector of `dim` values.
    Embedding {
        /// Values per vector.
        dim: usize,
        /// The model's identity (`name@hash`).
        model: String,
        /// The normalization applied to the model's output.
        normalization: String,
    },
    /// The user's own vectors, L2-normalized by blindsight and compared by cosine.
    Vectors {
        /// Values per vector.
        dim: usize,
        /// The name the user gives the model that made them.
        model: String,
    },
}

/// The one metric of `vectors` collections, as its spec writes it.
pub const VECTORS_METRIC: &str = "cosine";

impl VectorKind {
    /// The kind's name: `pixels`, `embedding` or `vectors`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pixels { .. } => "pixels",
            Self::Embedding { .. } => "embedding",
            Self::Vectors { .. } => "vectors",
        }
    }

    /// Whether its vectors are unit vectors compared by cosine (an embedding, the user's
    /// vectors), rather than 8-bit pixel channels.
    pub fn is_unit_vectors(&self) -> bool {
        !matches!(self, Self::Pixels { .. })
    }

    /// Channels per image (encrypted separately, one query ciphertext each).
    pub fn channels(&self) -> usize {
        match self {
            Self::Pixels { .. } => 3,
            Self::Embedding { .. } | Self::Vectors { .. } => 1,
        }
    }

    /// Values per channel.
    pub fn dim(&self) -> usize {
        match self {
            Self::Pixels { side } => (*side as usize) * (*side as usize),
            Self::Embedding { dim, .. } | Self::Vectors { dim, .. } => *dim,
        }
    }

    /// The text spec (see the module docs); [`VectorKind::parse`] reads it back.
    pub fn spec(&self) -> String {
        match self {
            Self::Pixels { side } => format!("pixels:{side}"),
            Self::Embedding {
                dim,
                model,
                normalization,
            } => format!("embedding:{dim}:{model}:{normalization}"),
            Self::Vectors { dim, model } => format!("vectors:{dim}:{model}:{VECTORS_METRIC}"),
        }
    }

    /// Reads a text spec, checking every field's range and alphabet.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| SearchError::MalformedKind {
            spec: spec.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let kind = match parts.as_slice() {
            ["pixels", side] => {
                let side: u32 = side.parse().map_err(|_| bad("side is not a number"))?;
                Self::Pixels { side }
            }
            ["embedding", dim, model, normalization] => Self::Embedding {
                dim: dim.parse().map_err(|_| bad("dimension is not a number"))?,
                model: (*model).to_string(),
                normalization: (*normalization).to_string(),
            },
            ["vectors", dim, model, metric] => {
                if *metric != VECTORS_METRIC {
                    return Err(bad("the metric of user vectors is `cosine`"));
                }
                Self::Vectors {
                    dim: dim.parse().map_err(|_| bad("dimension is not a number"))?,
                    model: (*model).to_string(),
                }
            }
            _ => {
                return Err(bad(
                    "expected `pixels:SIDE`, `embedding:DIM:MODEL:NORM` or \
                     `vectors:DIM:MODEL:cosine`",
                ));
            }
        };
        kind.validate().map_err(|reason| bad(&reason))?;
        Ok(kind)
    }

    /// Checks the ranges and names; the reason otherwise.
    fn validate(&self) -> std::result::Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_NAME
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b))
        };
        match self {
            Self::Pixels { side } if !(1..=MAX_PIXEL_SIDE).contains(side) => {
                Err(format!("side {side} is not in 1..={MAX_PIXEL_SIDE}"))
            }
            Self::Embedding { dim, .. } | Self::Vectors { dim, .. }
                if !(1..=MAX_EMBEDDING_DIM).contains(dim) =>
            {
                Err(format!("dimension {dim} is not in 1..={MAX_EMBEDDING_DIM}"))
            }
            Self::Vectors { model, .. } if !name_ok(model) => Err(format!(
                "a model name is 1 to {MAX_NAME} characters of [A-Za-z0-9@._-]"
            )),
            Self::Embedding {
                model,
                normalization,
                ..
            } if !name_ok(model) || !name_ok(normalization) => Err(format!(
                "model and normalization names are 1 to {MAX_NAME} characters of \
                 [A-Za-z0-9@._-]"
            )),
            _ => Ok(()),
        }
    }

    /// An error unless a query of kind `query` may be scored against this collection's
    /// vectors (the same kind, dimension, model and normalization).
    pub fn check_query(&self, query: &VectorKind) -> Result<()> {
        if self == query {
            Ok(())
        } else {
            Err(SearchError::KindMismatch {
                expected: self.spec(),
                actual: query.spec(),
            })
        }
    }
}

impl std::fmt::Display for VectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pixels { side } => write!(f, "pixels ({side}×{side} RGB, 3 channels)"),
            Self::Embedding {
                dim,
                model,
                normalization,
            } => write!(f, "embedding ({dim}-d, {model}, {normalization})"),
            Self::Vectors { dim, model } => write!(f, "vectors ({dim}-d, {model}, cosine)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for kind in [
            VectorKind::Pixels { side: 64 },
            VectorKind::Embedding {
                dim: 1280,
                model: "efficientnet-lite0@21a11344c0ffee12".into(),
                normalization: "sqrt-l2".into(),
            },
            VectorKind::Vectors {
                dim: 512,
                model: "my-clip".into(),
            },
        ] {
            assert_eq!(VectorKind::parse(&kind.spec()).ok(), Some(kind.clone()));
            assert!(kind.check_query(&kind).is_ok());
        }
        assert_eq!(VectorKind::Pixels { side: 64 }.dim(), 4096);
        assert_eq!(VectorKind::Pixels { side: 64 }.channels(), 3);
    }

    #[test]
    fn malformed_specs_are_refused() {
        for spec in [
            "",
            "pixels",
            "pixels:0",
            "pixels:-1",
            "pixels:99999",
            "pixels:64:1",
            "embedding:1280:m",
            "embedding:0:m:n",
            "embedding:99999999:m:n",
            "embedding:1280::n",
            "embedding:1280:m:",
            "embedding:1280:m o:n",
            "embedding:1280:m:n:x",
            "voxels:3",
            "vectors:512:m",
            "vectors:512:m:dot",
            "vectors:0:m:cosine",
            "vectors:40000:m:cosine",
            "vectors:512::cosine",
            "vectors:512:a b:cosine",
        ] {
            assert!(VectorKind::parse(spec).is_err(), "{spec}");
        }
    }

    #[test]
    fn another_model_or_kind_is_refused() {
        let ours = VectorKind::parse("embedding:1280:effnet@aa:sqrt-l2").unwrap();
        for other in [
            "embedding:1280:effnet@bb:sqrt-l2",
            "embedding:1280:effnet@aa:l2",
            "embedding:640:effnet@aa:sqrt-l2",
            "pixels:64",
        ] {
            let other = VectorKind::parse(other).unwrap();
            let err = ours.check_query(&other).unwrap_err().to_string();
            assert!(err.contains("effnet@aa"), "{err}");
        }
    }
}
