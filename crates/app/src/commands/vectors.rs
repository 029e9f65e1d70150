//! `blindsight ingest-vectors` and `search --vector`: collections of the user's own
//! vectors (kind `vectors`), read from `.npy` files (the `npyz` crate: float32 or float64,
//! C or Fortran order; anything else is refused with what was found).

use super::output::{self, Output};
use super::{Env, print_ingest};
use crate::errors::{AppError, Result};
use blindsight_client::client::{IngestReport, VectorItem};
use blindsight_client::names;
use std::path::Path;

/// Largest `.npy` file read (bytes): 10⁶ vectors of 4 096 float32 values.
pub const MAX_NPY_BYTES: u64 = 16 << 30;

/// Vectors read from a `.npy` file: `rows` of `dim` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Vectors {
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// The values, row after row.
    pub values: Vec<f32>,
}

impl Vectors {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// Reads a `.npy` file of shape `(n, d)` (or `(d,)`: one row) of float32 or float64.
pub fn read_npy(path: &Path) -> Result<Vectors> {
    let bad = |why: String| {
        AppError::Usage(format!(
            "{} is not a .npy array of vectors ({why}): save one with numpy.save(path, \
             array.astype('float32')), shape (n, dim)",
            path.display()
        ))
    };
    let size = std::fs::metadata(path)
        .map_err(|e| AppError::io(path, e))?
        .len();
    if size > MAX_NPY_BYTES {
        return Err(bad(format!("{size} bytes, more than {MAX_NPY_BYTES}")));
    }
    let file = std::fs::File::open(path).map_err(|e| AppError::io(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let shape: Vec<u64> = npy.shape().to_vec();
    let (rows, dim) = match shape.as_slice() {
        [d] => (1, *d),
        [n, d] => (*n, *d),
        other => return Err(bad(format!("shape {other:?}; expected (n, dim) or (dim,)"))),
    };
    let (Ok(rows), Ok(dim)) = (usize::try_from(rows), usize::try_from(dim)) else {
        return Err(bad("its shape does not fit this machine".into()));
    };
    let fortran = npy.order() == npyz::Order::Fortran;
    let descr = npy.dtype().descr();
    let descr = descr.trim_matches('\'');
    // the header's shape must fit in the file before anything is allocated for it
    let width: u64 = match descr {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(bad(format!(
                "values of type {other}; expected float32 or float64"
            )));
        }
    };
    let needed = (rows as u64)
        .checked_mul(dim as u64)
        .and_then(|n| n.checked_mul(width));
    if needed.is_none_or(|n| n > size) {
        return Err(bad(format!(
            "its header claims {rows} × {dim} values, more than the file holds"
        )));
    }
    let mut values: Vec<f32> = match width {
        4 => npy.into_vec::<f32>().map_err(|e| bad(e.to_string()))?,
        _ => npy
            .into_vec::<f64>()
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
    };
    if fortran && rows > 1 {
        let mut c = vec![0f32; values.len()];
        for r in 0..rows {
            for k in 0..dim {
                c[r * dim + k] = values[k * rows + r];
            }
        }
        values = c;
    }
    Ok(Vectors { rows, dim, values })
}

/// Writes `vectors` as a float32 `.npy` file of shape `(rows, dim)`.
pub fn write_npy(path: &Path, vectors: &Vectors) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| AppError::io(path, e))?;
    use npyz::WriterBuilder;
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[vectors.rows as u64, vectors.dim as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| AppError::io(path, e))?;
    writer
        .extend(vectors.values.iter().copied())
        .map_err(|e| AppError::io(path, e))?;
    writer.finish().map_err(|e| AppError::io(path, e))?;
    Ok(())
}

/// The names of a names file: one per line (a final newline optional; `\r\n` allowed).
fn read_names(path: &Path, rows: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| AppError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if names.len() != rows {
        return Err(AppError::Usage(format!(
            "{} holds {} names for {rows} vectors: one name per line, in the order of the rows",
            path.display(),
            names.len()
        )));
    }
    if let Some(i) = names.iter().position(String::is_empty) {
        return Err(AppError::Usage(format!(
            "line {} of {} is empty: every vector needs a name",
            i + 1,
            path.display()
        )));
    }
    Ok(names)
}

/// `blindsight ingest-vectors FILE.npy --names FILE.txt [--payloads DIR]`.
pub fn ingest(
    env: &Env,
    npy: &Path,
    names_file: &Path,
    payloads: Option<&Path>,
    output: Output,
) -> Result<IngestReport> {
    let started = std::time::Instant::now();
    let vectors = read_npy(npy)?;
    let names = read_names(names_file, vectors.rows)?;
    let (_server, client) = env.client()?;
    let mut without_payload = 0usize;
    let mut items = Vec::with_capacity(vectors.rows);
    for (i, name) in names.iter().enumerate() {
        let payload = match payloads {
            Some(dir) => {
                let at = dir.join(names::for_file(name));
                match std::fs::read(&at) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        without_payload += 1;
                        Vec::new()
                    }
                    Err(e) => return Err(AppError::io(&at, e)),
                }
            }
            None => Vec::new(),
        };
        items.push(VectorItem {
            name: name.clone(),
            vector: vectors.row(i).to_vec(),
            payload,
        });
    }
    let report = client.ingest_items(&items, |_| {})?;
    if output.is_json() {
        output::print_json(serde_json::json!({
            "collection": env.collection,
            "vectors": vectors.rows,
            "dim": vectors.dim,
            "added": report.added,
            "duplicates": report.duplicates,
            "failed": report.failed.iter().map(|(n, r)| serde_json::json!({"name": n, "reason": r})).collect::<Vec<_>>(),
            "without_payload": without_payload,
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        print_ingest(&report, &[]);
        if without_payload > 0 {
            println!(
                "{without_payload} vectors have no payload file of their name in the payload folder"
            );
        }
    }
    if !report.failed.is_empty() {
        return Err(AppError::Incomplete {
            failed: report.failed.len(),
            total: vectors.rows,
        });
    }
    Ok(report)
}

/// `blindsight search --vector FILE.npy [--model NAME]`.
pub fn search(
    env: &Env,
    npy: &Path,
    model: Option<&str>,
    top: usize,
    output: Output,
) -> Result<()> {
    if top == 0 {
        return Err(AppError::Usage(
            "--top 0 asks for no match: give --top 1 or more".into(),
        ));
    }
    let v = read_npy(npy)?;
    if v.rows != 1 {
        return Err(AppError::Usage(format!(
            "{} holds {} vectors: a query is one vector, shape (dim,) or (1, dim)",
            npy.display(),
            v.rows
        )));
    }
    let (_server, client) = env.client()?;
    let started = std::time::Instant::now();
    let (matches, t) = client.search_vector(&v.values, model, top)?;
    let total_s = started.elapsed().as_secs_f64();
    if output.is_json() {
        let mut timing = output::timing_json(&t);
        timing["total_s"] = serde_json::json!(total_s);
        output::print_json(serde_json::json!({
            "collection": env.collection,
            "query": npy.display().to_string(),
            "matches": output::matches_json(&matches),
            "timing": timing,
        }));
    } else {
        super::print_matches(&matches, client.vectors(), &t);
    }
    Ok(())
}
