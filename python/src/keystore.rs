//! `blindsight.Keystore`: the HE secret key and the payload key, in the same file format
//! and mode as the CLI's (`--keystore PATH`), optionally sealed under a passphrase.

use crate::errors::{KeystoreError, client_to_py};
use blindsight::workspace::SharedKeystore;
use blindsight_client::keystore;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A keystore: the secret keys of your collections. Never sent anywhere.
#[pyclass(module = "blindsight", frozen)]
pub struct Keystore {
    pub(crate) path: PathBuf,
    pub(crate) preset: String,
    pub(crate) keys: SharedKeystore,
}

fn preset_of(scheme: &str, preset: Option<&str>) -> PyResult<String> {
    if let Some(p) = preset {
        return Ok(p.to_string());
    }
    match scheme {
        "ckks" => Ok("ckks-8192".into()),
        "bfv" => Ok("bfv-8192".into()),
        other => Err(crate::errors::input(format!(
            "unknown scheme `{other}`: \"ckks\" (approximate, faster) or \"bfv\" (exact)"
        ))),
    }
}

#[pymethods]
impl Keystore {
    /// Makes a new keystore at `path` (a file; its folder is created with mode 0700) for
    /// `scheme` ("ckks" or "bfv"), sealed under `passphrase` if given (Argon2id). An existing
    /// keystore is never replaced.
    #[staticmethod]
    #[pyo3(signature = (path, scheme = "ckks", passphrase = None, preset = None))]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        scheme: &str,
        passphrase: Option<String>,
        preset: Option<String>,
    ) -> PyResult<Self> {
        let preset = preset_of(scheme, preset.as_deref())?;
        if path.exists() {
            return Err(KeystoreError::new_err(format!(
                "{} exists already: open it with Keystore.open, or choose another path",
                path.display()
            )));
        }
        let passphrase = passphrase.map(zeroize::Zeroizing::new);
        py.detach(|| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                keystore::prepare_private_dir(dir, false)?;
            }
            let ks = keystore::Keystore::generate(&preset)?;
            ks.save(&path, passphrase.as_deref().map(String::as_str))?;
            Ok(Self {
                path: path.clone(),
                preset: ks.preset.clone(),
                keys: Arc::new(Mutex::new(Some(ks))),
            })
        })
        .map_err(client_to_py)
    }

    /// Opens the keystore at `path` (made by `Keystore.create` or the CLI), with its
    /// passphrase if it has one.
    #[staticmethod]
    #[pyo3(signature = (path, passphrase = None))]
    fn open(py: Python<'_>, path: PathBuf, passphrase: Option<String>) -> PyResult<Self> {
        let passphrase = passphrase.map(zeroize::Zeroizing::new);
        py.detach(|| {
            let ks = keystore::Keystore::load(&path, passphrase.as_deref().map(String::as_str))?;
            Ok(Self {
                path: path.clone(),
                preset: ks.preset.clone(),
                keys: Arc::new(Mutex::new(Some(ks))),
            })
        })
        .map_err(client_to_py)
    }

    /// Where the keystore is.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Its parameter preset, e.g. "ckks-8192".
    #[getter]
    fn preset(&self) -> &str {
        &self.preset
    }

    /// Its scheme: "ckks" or "bfv".
    #[getter]
    fn scheme(&self) -> &str {
        if self.preset.starts_with("bfv") {
            "bfv"
        } else {
            "ckks"
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Keystore({:?}, preset={:?})",
            self.path.display().to_string(),
            self.preset
        )
    }
}
