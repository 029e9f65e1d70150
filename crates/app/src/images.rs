//! Loading galleries: a folder of image files (sorted by name) or the embedded test images.

use crate::errors::{AppError, Result};
use blindsight_search::vectors::{ImageVector, image_vector};
use rayon::prelude::*;
use std::path::Path;

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "bmp", "gif"];

/// A named image, decoded to vectors, with its original bytes.
#[derive(Clone, Debug)]
pub struct NamedImage {
    /// File name.
    pub name: String,
    /// Channel vectors.
    pub vector: ImageVector,
    /// The original file.
    pub bytes: Vec<u8>,
}

/// The image files of `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| AppError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Decodes the first `count` images of `dir` (sorted by name). Undecodable files are
/// returned separately with their error, and the rest are kept.
pub fn load_folder(dir: &Path, count: usize, side: u32) -> Result<(Vec<NamedImage>, Vec<String>)> {
    let files: Vec<_> = list_images(dir)?.into_iter().take(count).collect();
    let loaded: Vec<std::result::Result<NamedImage, String>> = files
        .par_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let vector = image_vector(&bytes, &name, side).map_err(|e| e.to_string())?;
            Ok(NamedImage {
                name,
                vector,
                bytes,
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for r in loaded {
        match r {
            Ok(i) => ok.push(i),
            Err(e) => failed.push(e),
        }
    }
    Ok((ok, failed))
}

/// The first `count` embedded Twemoji images, by name. When more are asked for than the
/// crate ships, the gallery continues with their rotations and mirror images (the 8
/// symmetries of the square), skipping any that are pixel-identical to one already taken;
/// augmented images are named `<file>#<k>`.
pub fn load_embedded(count: usize, side: u32) -> Result<Vec<NamedImage>> {
    let base: Vec<NamedImage> = blindsight_testdata::all()
        .par_iter()
        .map(|e| {
            Ok(NamedImage {
                name: e.name.to_string(),
                vector: image_vector(e.png, e.name, side)?,
                bytes: e.png.to_vec(),
            })
        })
        .collect::<Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    for k in 0..8 {
        for img in &base {
            if out.len() == count {
                return Ok(out);
            }
            let vector = img.vector.dihedral(k);
            if k > 0 && !seen.insert(vector.clone()) {
                continue;
            }
            if k == 0 {
                seen.insert(vector.clone());
            }
            let name = if k == 0 {
                img.name.clone()
            } else {
                format!("{}#{k}", img.name)
            };
            out.push(NamedImage {
                name,
                vector,
                bytes: img.bytes.clone(),
            });
        }
    }
    if out.len() < count {
        return Err(AppError::Usage(format!(
            "only {} distinct embedded images are available",
            out.len()
        )));
    }
    Ok(out)
}
