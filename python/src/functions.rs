//! Module functions: blindsight's own image model, and the sample images it ships.

use crate::errors::{client_to_py, input};
use blindsight_embed::{Embedder, Normalization};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::OnceLock;

static EMBEDDER: OnceLock<Embedder> = OnceLock::new();

/// The features blindsight's own image model (EfficientNet-Lite0, embedded) gives an image
/// (a path or its bytes), normalized as "embedding" collections keep them: a float32 unit
/// vector of 1 280 values.
#[pyfunction]
pub fn embed_image<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let (bytes, name) = if let Ok(b) = image.cast::<PyBytes>() {
        (b.as_bytes().to_vec(), "image".to_string())
    } else {
        let path: PathBuf = py
            .import("os")?
            .call_method1("fspath", (image,))?
            .extract()?;
        let bytes = std::fs::read(&path).map_err(|e| input(format!("{}: {e}", path.display())))?;
        (bytes, path.display().to_string())
    };
    let features = py
        .detach(|| -> blindsight_client::Result<Vec<f32>> {
            let rgb = blindsight_search::vectors::decode_rgb(&bytes, &name)?;
            let embedder = match EMBEDDER.get() {
                Some(e) => e,
                None => {
                    let made = Embedder::new()?;
                    EMBEDDER.get_or_init(|| made)
                }
            };
            Ok(Normalization::SqrtL2.apply(&embedder.features(&rgb)?))
        })
        .map_err(client_to_py)?;
    Ok(PyArray1::from_vec(py, features))
}

/// Writes `count` of the sample images blindsight ships (Twemoji PNGs, distinct) into
/// `folder` (created if needed); returns their paths. For examples and tests that need
/// images and have none.
#[pyfunction]
#[pyo3(signature = (folder, count = 100))]
pub fn write_sample_images(folder: PathBuf, count: usize) -> PyResult<Vec<PathBuf>> {
    std::fs::create_dir_all(&folder).map_err(|e| input(format!("{}: {e}", folder.display())))?;
    blindsight_testdata::distinct_files(count)
        .into_iter()
        .map(|(name, bytes)| {
            let at = folder.join(name);
            std::fs::write(&at, bytes).map_err(|e| input(format!("{}: {e}", at.display())))?;
            Ok(at)
        })
        .collect()
}
