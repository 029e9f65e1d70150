//! Finding and loading images: the files an ingest reads (folders walked recursively, every
//! file left out reported), galleries of a folder (sorted by name) or the embedded test
//! images.

use crate::errors::{AppError, Result};
use blindsight_client::client::IngestFile;
use blindsight_search::vectors::{ImageVector, image_vector};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"];

/// The files an ingest reads, and every file it leaves out with the reason.
#[derive(Debug, Default)]
pub struct Walk {
    /// Image files, folder by folder in name order, each named by its path relative to the
    /// folder given (a file given by itself: its file name).
    pub files: Vec<IngestFile>,
    /// Files and folders left out: (path, reason).
    pub skipped: Vec<(String, String)>,
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files of `paths` (files, or folders read recursively unless `recursive` is
/// false). A path given that does not exist is an error; inside folders, every file that is
/// not an image, every folder not read (unreadable, a symbolic link, or below the top with
/// `recursive` off) is reported in [`Walk::skipped`].
pub fn walk(paths: &[PathBuf], recursive: bool) -> Result<Walk> {
    let mut out = Walk::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| AppError::io(path, e))?;
        if meta.is_dir() {
            walk_dir(path, Path::new(""), recursive, &mut out);
        } else {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            out.files.push(IngestFile {
                name,
                path: path.clone(),
                size: meta.len(),
            });
        }
    }
    Ok(out)
}

fn walk_dir(root: &Path, rel: &Path, recursive: bool, out: &mut Walk) {
    let dir = root.join(rel);
    let shown = |p: &Path| p.display().to_string();
    let mut entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(std::result::Result::ok).collect(),
        Err(e) => {
            out.skipped
                .push((shown(&dir), format!("folder not read: {e}")));
            return;
        }
    };
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let rel_path = rel.join(entry.file_name());
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            out.skipped
                .push((shown(&path), "its type could not be read".into()));
            continue;
        };
        if kind.is_symlink() {
            out.skipped
                .push((shown(&path), "a symbolic link: not followed".into()));
        } else if kind.is_dir() {
            if recursive {
                walk_dir(root, &rel_path, recursive, out);
            } else {
                out.skipped
                    .push((shown(&path), "a folder (--no-recursive)".into()));
            }
        } else if !has_image_extension(&path) {
            let what = path.extension().map_or_else(
                || "no extension".to_string(),
                |e| format!(".{}", e.to_string_lossy()),
            );
            out.skipped.push((shown(&path), unsupported_reason(&what)));
        } else {
            let size = entry.metadata().map_or(0, |m| m.len());
            out.files.push(IngestFile {
                name: rel_path.to_string_lossy().into_owned(),
                path,
                size,
            });
        }
    }
}

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
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| AppError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_image_extension(p))
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

/// Why a file of extension `what` (`.heic`, `no extension`, ...) is left out, with what to do
/// for the formats people meet most (HEIC from phones, AVIF from the web).
fn unsupported_reason(what: &str) -> String {
    let supported = IMAGE_EXTENSIONS.join(", ");
    match what.to_ascii_lowercase().as_str() {
        ".heic" | ".heif" => format!(
            "HEIC/HEIF is not decoded by blindsight (no sound decoder yet, see README): convert \
             it first, e.g. `heif-convert photo.heic photo.jpg` (supported: {supported})"
        ),
        ".avif" => format!(
            "AVIF is not decoded by blindsight (no sound decoder yet, see README): convert it \
             first, e.g. `avifdec photo.avif photo.png` (supported: {supported})"
        ),
        _ => format!("not a supported image ({what}; supported: {supported})"),
    }
}
