//! `blindsight.Collection`, `Hit` and `IngestReport`: a collection seen from its owner, on
//! the in-process store (`db=`) or a server (`server=`), through `blindsight::workspace`,
//! the same code and token files as the CLI and the web app.

use crate::arrays;
use crate::errors::{client_to_py, input, to_py};
use crate::keystore::Keystore;
use blindsight::commands::{Env, default_rule};
use blindsight::images::walk;
use blindsight::workspace::Workspace;
use blindsight_client::client::{
    IngestItem, IngestProgress, Match, RetrievedThumbnail, VectorItem,
};
use blindsight_client::{Client, ClientError};
use blindsight_search::VectorKind;
use blindsight_search::rank::RankRule;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

/// Workspaces open in this process, by keystore and endpoint: two collections of one store
/// share its in-process server.
static OPEN: Mutex<Vec<(String, Weak<Workspace>)>> = Mutex::new(Vec::new());

/// Where a collection lives, as the CLI's options say it.
struct Place {
    db: Option<PathBuf>,
    server: Option<String>,
    ca_file: Option<PathBuf>,
    fingerprint: Option<String>,
    insecure_http: bool,
}

/// The workspace of `place` for `ks`: the one open in this process, unless `fresh` (then a
/// new one replaces it: an in-process server started before another process created a
/// collection in the same store does not know its token).
fn workspace(
    py: Python<'_>,
    ks: &Keystore,
    name: &str,
    place: &Place,
    fresh: bool,
) -> PyResult<Arc<Workspace>> {
    let env = Env {
        keystore: ks.path.clone(),
        passphrase_file: None,
        server: place.server.clone(),
        db: place
            .db
            .clone()
            .unwrap_or_else(|| Env::default_home().join("gallery.db")),
        collection: name.to_string(),
        admin_token_file: None,
        ca_file: place.ca_file.clone(),
        fingerprint: place.fingerprint.clone(),
        insecure_http: place.insecure_http,
    };
    let key = format!(
        "{}\t{}",
        std::path::absolute(&ks.path)
            .unwrap_or_else(|_| ks.path.clone())
            .display(),
        env.endpoint()
    );
    let mut open = OPEN
        .lock()
        .map_err(|_| crate::errors::Error::new_err("a lock of blindsight is poisoned"))?;
    open.retain(|(k, w)| w.strong_count() > 0 && !(fresh && *k == key));
    if let Some(ws) = open
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(ws);
    }
    let keys = Arc::clone(&ks.keys);
    let ws = Arc::new(py.detach(|| Workspace::open(env, keys)).map_err(to_py)?);
    open.push((key, Arc::downgrade(&ws)));
    Ok(ws)
}

/// What an ingest did.
#[pyclass(module = "blindsight", frozen, get_all)]
pub struct IngestReport {
    /// Images (or vectors) added.
    added: usize,
    /// Skipped: the collection holds them already.
    duplicates: usize,
    /// `(name, reason)` of every file that could not be read or decoded.
    failed: Vec<(String, String)>,
    /// `(path, reason)` of every file left out while listing (not an image, a link, …).
    left_out: Vec<(String, String)>,
    /// `(name, id)` of every image added.
    ids: Vec<(String, i64)>,
    /// Segments the merging that followed replaced.
    merged_segments: usize,
    /// Seconds in all.
    seconds: f64,
}

#[pymethods]
impl IngestReport {
    fn __repr__(&self) -> String {
        format!(
            "IngestReport(added={}, duplicates={}, failed={}, left_out={}, seconds={:.2})",
            self.added,
            self.duplicates,
            self.failed.len(),
            self.left_out.len(),
            self.seconds
        )
    }
}

/// One search result: its image id, name and score (the cosine; for pixel collections
/// also the per-channel cosines).
#[pyclass(module = "blindsight", frozen)]
pub struct Hit {
    /// The image id (as the CLI prints it).
    #[pyo3(get)]
    id: i64,
    /// Its name.
    #[pyo3(get)]
    name: String,
    /// Its cosine to the query.
    #[pyo3(get)]
    score: f64,
    /// Per-channel cosines (R, G, B for pixel collections; one value otherwise).
    #[pyo3(get)]
    channels: Vec<f64>,
    /// Its rank, from 1.
    #[pyo3(get)]
    rank: usize,
    slot: Option<u64>,
    client: Arc<Client>,
}

fn jpeg_of(py: Python<'_>, t: &RetrievedThumbnail) -> Option<Py<PyBytes>> {
    match t {
        RetrievedThumbnail::Jpeg(j) => Some(PyBytes::new(py, j).unbind()),
        _ => None,
    }
}

#[pymethods]
impl Hit {
    /// Its thumbnail (JPEG bytes), fetched by private retrieval: the server does not learn
    /// which image it is. `None` if it has none (or, rarely, the batch could not place it).
    fn thumbnail(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let client = Arc::clone(&self.client);
        let wanted = [(self.id, self.slot)];
        let got = py
            .detach(|| client.private_thumbnails(&wanted))
            .map_err(client_to_py)?;
        Ok(got.first().and_then(|(_, t)| jpeg_of(py, t)))
    }

    /// The original file (or payload) of the image. Fetched by its id: **the server learns
    /// which image you opened** (search results and thumbnails do not tell it).
    fn original(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let client = Arc::clone(&self.client);
        let id = self.id;
        let files = py.detach(|| client.fetch(&[id])).map_err(client_to_py)?;
        match files.into_iter().find(|(i, _)| *i == id) {
            Some((_, bytes)) => Ok(PyBytes::new(py, &bytes).unbind()),
            None => Err(input(format!(
                "image {id} is not in the collection (deleted?)"
            ))),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Hit(rank={}, id={}, name={:?}, score={:.4})",
            self.rank, self.id, self.name, self.score
        )
    }
}

/// How an ingest reports progress: a callable `(done, total)`, `True` (a tqdm bar if tqdm
/// is installed, else a line on stderr), or nothing.
enum Progress {
    None,
    Call(Py<PyAny>),
    Tqdm(Py<PyAny>),
    Stderr,
}

impl Progress {
    fn of(py: Python<'_>, progress: Option<&Bound<'_, PyAny>>, total: usize) -> PyResult<Self> {
        let Some(p) = progress else {
            return Ok(Self::None);
        };
        if p.is_callable() {
            return Ok(Self::Call(p.clone().unbind()));
        }
        if !p.is_truthy()? {
            return Ok(Self::None);
        }
        match py.import("tqdm") {
            Ok(tqdm) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item("total", total)?;
                kwargs.set_item("unit", "file")?;
                Ok(Self::Tqdm(
                    tqdm.getattr("tqdm")?.call((), Some(&kwargs))?.unbind(),
                ))
            }
            Err(_) => Ok(Self::Stderr),
        }
    }

    /// Reports `p`; the first error of a callback is kept for after the ingest.
    fn report(&self, p: &IngestProgress, error: &Mutex<Option<PyErr>>) {
        let outcome = match self {
            Self::None => Ok(()),
            Self::Stderr => {
                eprint!("\ringested {}/{} files", p.files_done, p.files_total);
                Ok(())
            }
            Self::Call(f) => {
                Python::attach(|py| f.call1(py, (p.files_done, p.files_total)).map(|_| ()))
            }
            Self::Tqdm(bar) => Python::attach(|py| {
                let bar = bar.bind(py);
                bar.setattr("n", p.files_done)?;
                bar.call_method0("refresh").map(|_| ())
            }),
        };
        if let (Err(e), Ok(mut slot)) = (outcome, error.lock())
            && slot.is_none()
        {
            *slot = Some(e);
        }
    }

    fn finish(&self, py: Python<'_>) {
        match self {
            Self::Tqdm(bar) => {
                let _ = bar.bind(py).call_method0("close");
            }
            Self::Stderr => eprintln!(),
            _ => {}
        }
    }
}

/// A collection of encrypted images (or of your own vectors) on a server or the
/// in-process store. The keys stay in this process.
#[pyclass(module = "blindsight", frozen)]
pub struct Collection {
    workspace: Arc<Workspace>,
    client: Arc<Client>,
    name: String,
}

fn kind_of(kind: &str, dim: Option<usize>, model: Option<&str>) -> PyResult<VectorKind> {
    use blindsight_client::encoder;
    match (kind, dim, model) {
        ("embedding", None, None) => Ok(encoder::embedding_kind()),
        ("pixels", None, None) => Ok(encoder::pixels_kind()),
        ("vectors", Some(dim), Some(model)) => {
            encoder::vectors_kind(dim, model).map_err(client_to_py)
        }
        ("vectors", _, _) => Err(input("kind=\"vectors\" needs dim=D and model=\"NAME\"")),
        ("embedding" | "pixels", _, _) => Err(input(
            "dim and model are for kind=\"vectors\" (the image kinds fix their own)",
        )),
        (other, _, _) => Err(input(format!(
            "unknown kind `{other}`: \"embedding\", \"pixels\" or \"vectors\""
        ))),
    }
}

/// A query image: bytes, or a path (str or os.PathLike) to read.
fn query_bytes(py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, String)> {
    if let Ok(b) = query.cast::<PyBytes>() {
        return Ok((b.as_bytes().to_vec(), "query".into()));
    }
    let path: PathBuf = py
        .import("os")?
        .call_method1("fspath", (query,))
        .and_then(|p| p.extract())
        .map_err(|_| input("a query is a path (str or os.PathLike) or the image's bytes"))?;
    let bytes = std::fs::read(&path).map_err(|e| input(format!("{}: {e}", path.display())))?;
    Ok((bytes, path.display().to_string()))
}

impl Collection {
    fn hits(&self, matches: Vec<Match>) -> Vec<Hit> {
        matches
            .into_iter()
            .enumerate()
            .map(|(i, m)| Hit {
                id: m.id,
                name: m.name,
                score: m.whole_cosine,
                channels: m.channel_cosines,
                rank: i + 1,
                slot: m.thumbnail_slot,
                client: Arc::clone(&self.client),
            })
            .collect()
    }

    fn ingest_items<T: IngestItem + Send>(
        &self,
        py: Python<'_>,
        items: Vec<T>,
        left_out: Vec<(String, String)>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<IngestReport> {
        let started = std::time::Instant::now();
        let progress = Progress::of(py, progress, items.len())?;
        let error = Mutex::new(None);
        let client = Arc::clone(&self.client);
        let report = py.detach(|| client.ingest_items(&items, |p| progress.report(p, &error)));
        progress.finish(py);
        let report = report.map_err(client_to_py)?;
        if let Ok(mut e) = error.lock()
            && let Some(e) = e.take()
        {
            return Err(e);
        }
        Ok(IngestReport {
            added: report.added,
            duplicates: report.duplicates,
            failed: report.failed,
            left_out,
            ids: report.ids,
            merged_segments: report.merged.replaced,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[pymethods]
impl Collection {
    /// Creates collection `name` of `kind` ("embedding": the embedded image model;
    /// "pixels": the original demo's 64×64 colour channels; "vectors": your own vectors of
    /// `dim` values made by `model`) on the in-process store `db` (a SQLite file; default
    /// ~/.blindsight/gallery.db) or on `server` (a URL, with its `admin_token`, and
    /// `ca_file` or `fingerprint` for a private certificate). Its token is filed beside the
    /// keystore, as the CLI files it.
    #[staticmethod]
    #[pyo3(signature = (keystore, name, kind = "embedding", db = None, server = None,
                        admin_token = None, ca_file = None, fingerprint = None, dim = None,
                        model = None, insecure_http = false))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn create(
        py: Python<'_>,
        keystore: &Keystore,
        name: &str,
        kind: &str,
        db: Option<PathBuf>,
        server: Option<String>,
        admin_token: Option<String>,
        ca_file: Option<PathBuf>,
        fingerprint: Option<String>,
        dim: Option<usize>,
        model: Option<String>,
        insecure_http: bool,
    ) -> PyResult<Self> {
        let kind = kind_of(kind, dim, model.as_deref())?;
        let place = Place {
            db,
            server,
            ca_file,
            fingerprint,
            insecure_http,
        };
        let ws = workspace(py, keystore, name, &place, false)?;
        let preset = keystore.preset.clone();
        let admin = admin_token.map(zeroize::Zeroizing::new);
        let client = py
            .detach(|| {
                ws.create_with_admin(name, &kind, Some(&preset), admin)?;
                ws.client(name)
            })
            .map_err(to_py)?;
        Ok(Self {
            workspace: ws,
            client,
            name: name.to_string(),
        })
    }

    /// Opens collection `name`, made here or by the CLI with this keystore, on `db` or
    /// `server` (as in `create`).
    #[staticmethod]
    #[pyo3(signature = (keystore, name, db = None, server = None, ca_file = None,
                        fingerprint = None, insecure_http = false))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn open(
        py: Python<'_>,
        keystore: &Keystore,
        name: &str,
        db: Option<PathBuf>,
        server: Option<String>,
        ca_file: Option<PathBuf>,
        fingerprint: Option<String>,
        insecure_http: bool,
    ) -> PyResult<Self> {
        let place = Place {
            db,
            server,
            ca_file,
            fingerprint,
            insecure_http,
        };
        let mut ws = workspace(py, keystore, name, &place, false)?;
        let client = match py.detach(|| ws.client(name)) {
            // made by another process since this one started its in-process server
            Err(blindsight::AppError::Client(ClientError::Remote { status: 401, .. }))
                if place.server.is_none() =>
            {
                ws = workspace(py, keystore, name, &place, true)?;
                py.detach(|| ws.client(name))
            }
            other => other,
        }
        .map_err(to_py)?;
        Ok(Self {
            workspace: ws,
            client,
            name: name.to_string(),
        })
    }

    /// Its name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// What it holds, as recorded (e.g. "vectors:512:my-clip:cosine").
    #[getter]
    fn kind(&self) -> String {
        self.client.vectors().spec()
    }

    /// Its parameter preset (e.g. "ckks-8192").
    #[getter]
    fn preset(&self) -> String {
        self.client.preset().to_string()
    }

    /// What the server says of it: kind, preset, images, deleted, segments, bytes, quota.
    fn info(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let ws = Arc::clone(&self.workspace);
        let name = self.name.clone();
        let info = py.detach(|| ws.info(&name)).map_err(to_py)?;
        Ok(py
            .import("json")?
            .call_method1("loads", (info.to_string(),))?
            .unbind())
    }

    /// Encrypts and adds image files and folders (read recursively unless `recursive` is
    /// false). Files already in the collection are skipped; every file left out or that
    /// could not be read is in the report. `progress`: a callable `(done, total)` or True.
    #[pyo3(signature = (paths, recursive = true, progress = None))]
    fn ingest(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        recursive: bool,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<IngestReport> {
        let listed = py.detach(|| walk(&paths, recursive)).map_err(to_py)?;
        self.ingest_items(py, listed.files, listed.skipped, progress)
    }

    /// `ingest([path])` for one folder.
    #[pyo3(signature = (path, recursive = true, progress = None))]
    fn ingest_dir(
        &self,
        py: Python<'_>,
        path: PathBuf,
        recursive: bool,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<IngestReport> {
        self.ingest(py, vec![path], recursive, progress)
    }

    /// The `k` images most similar to `query` (a path or the image's bytes), best first.
    /// `rule`: "whole" (the cosine) or, for pixel collections, "triple" (the original
    /// demo's rule, their default).
    #[pyo3(signature = (query, k = 10, rule = None))]
    fn search(
        &self,
        py: Python<'_>,
        query: &Bound<'_, PyAny>,
        k: usize,
        rule: Option<&str>,
    ) -> PyResult<Vec<Hit>> {
        if k == 0 {
            return Err(input("k = 0 asks for no result: give k = 1 or more"));
        }
        let (bytes, name) = query_bytes(py, query)?;
        let rule = match rule {
            None => default_rule(self.client.vectors()),
            Some("whole") => RankRule::WholeCosine,
            Some("triple") => RankRule::ChannelTriple,
            Some(other) => return Err(input(format!("unknown rule `{other}`: whole or triple"))),
        };
        let client = Arc::clone(&self.client);
        let (matches, _) = py
            .detach(|| client.search(&bytes, &name, k, rule))
            .map_err(client_to_py)?;
        Ok(self.hits(matches))
    }

    /// Adds your own vectors to a "vectors" collection: `vectors` a float32 (or float64)
    /// array of shape (n, dim), `names` n names, `payloads` None or n bytes (or None each):
    /// sealed beside each vector; an image payload also gets a thumbnail.
    #[pyo3(signature = (vectors, names, payloads = None, progress = None))]
    fn add(
        &self,
        py: Python<'_>,
        vectors: &Bound<'_, PyAny>,
        names: Vec<String>,
        payloads: Option<Vec<Option<Vec<u8>>>>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<IngestReport> {
        if !matches!(self.client.vectors(), VectorKind::Vectors { .. }) {
            return Err(input(format!(
                "collection `{}` holds {}, made from images: add image files (ingest), or \
                 create a collection with kind=\"vectors\" for your own vectors",
                self.name,
                self.client.vectors()
            )));
        }
        let (rows, dim, values) = arrays::matrix(vectors)?;
        if names.len() != rows {
            return Err(input(format!(
                "{} names for {rows} vectors: one name per row",
                names.len()
            )));
        }
        if let Some(p) = &payloads
            && p.len() != rows
        {
            return Err(input(format!(
                "{} payloads for {rows} vectors: one per row (None for none)",
                p.len()
            )));
        }
        if let VectorKind::Vectors { dim: ours, .. } = self.client.vectors()
            && *ours != dim
        {
            return Err(crate::errors::KindMismatchError::new_err(format!(
                "the collection holds vectors of dimension {ours} ({}), the array has {dim} \
                 columns",
                self.client.vectors().spec()
            )));
        }
        let mut payloads = payloads.unwrap_or_default().into_iter();
        let items: Vec<VectorItem> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| VectorItem {
                name,
                vector: values[i * dim..(i + 1) * dim].to_vec(),
                payload: payloads.next().flatten().unwrap_or_default(),
            })
            .collect();
        self.ingest_items(py, items, Vec::new(), progress)
    }

    /// The `k` vectors most similar (cosine) to `vector` (float32 or float64, shape
    /// (dim,)); with `model`, it must be the collection's model.
    #[pyo3(signature = (vector, k = 10, model = None))]
    fn search_vector(
        &self,
        py: Python<'_>,
        vector: &Bound<'_, PyAny>,
        k: usize,
        model: Option<String>,
    ) -> PyResult<Vec<Hit>> {
        if k == 0 {
            return Err(input("k = 0 asks for no result: give k = 1 or more"));
        }
        let v = arrays::vector(vector)?;
        let client = Arc::clone(&self.client);
        let (matches, _) = py
            .detach(|| client.search_vector(&v, model.as_deref(), k))
            .map_err(client_to_py)?;
        Ok(self.hits(matches))
    }

    /// The thumbnails of `hits` (JPEG bytes, or None), by private retrieval: one query
    /// per ten hits, the same whatever matched.
    fn thumbnails(
        &self,
        py: Python<'_>,
        hits: Vec<PyRef<'_, Hit>>,
    ) -> PyResult<Vec<Option<Py<PyBytes>>>> {
        let wanted: Vec<(i64, Option<u64>)> = hits.iter().map(|h| (h.id, h.slot)).collect();
        let client = Arc::clone(&self.client);
        let got = py
            .detach(|| client.private_thumbnails(&wanted))
            .map_err(client_to_py)?;
        Ok(got.iter().map(|(_, t)| jpeg_of(py, t)).collect())
    }

    /// Deletes images by id; returns how many were live (purged by `compact`).
    fn delete(&self, py: Python<'_>, ids: Vec<i64>) -> PyResult<u64> {
        let client = Arc::clone(&self.client);
        py.detach(|| client.delete(&ids)).map_err(client_to_py)
    }

    /// Purges deleted images and merges small segments; returns what it did.
    fn compact(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let client = Arc::clone(&self.client);
        let r = py.detach(|| client.compact()).map_err(client_to_py)?;
        let d = PyDict::new(py);
        d.set_item("replaced", r.replaced)?;
        d.set_item("written", r.written)?;
        d.set_item("purged", r.purged)?;
        d.set_item("seconds", r.elapsed.as_secs_f64())?;
        Ok(d.into_any().unbind())
    }

    fn __repr__(&self) -> String {
        format!(
            "Collection({:?}, kind={:?}, server={:?})",
            self.name,
            self.client.vectors().spec(),
            self.workspace.endpoint()
        )
    }
}
