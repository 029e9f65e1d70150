//! Ingests running in the background, one thread each, whose progress the page polls: files
//! done of the total, what was added, and every file left out or skipped with its reason.

use crate::errors::{AppError, Result};
use crate::images::walk;
use crate::workspace::Workspace;
use blindsight_client::client::IngestReport;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Finished jobs kept for the page to read.
const KEPT: usize = 32;

/// The ingests of a running app, by id.
#[derive(Default)]
pub struct Jobs {
    next: Mutex<u64>,
    jobs: Mutex<BTreeMap<u64, Arc<Mutex<Value>>>>,
}

impl Jobs {
    /// The state of job `id` (as the page shows it), if it exists.
    pub fn state(&self, id: u64) -> Option<Value> {
        let jobs = self.jobs.lock().ok()?;
        let job = jobs.get(&id)?;
        job.lock().ok().map(|v| v.clone())
    }

    /// Starts ingesting `path` (a folder, read recursively unless `recursive` is false, or a
    /// file) into `collection`, removing `remove_after` when done (the staging folder of
    /// dropped files); returns the job's id.
    pub(crate) fn start_ingest(
        &self,
        workspace: Arc<Workspace>,
        collection: String,
        path: PathBuf,
        recursive: bool,
        remove_after: Option<PathBuf>,
    ) -> Result<u64> {
        let poisoned = || AppError::Internal("the jobs lock is poisoned".into());
        let id = {
            let mut next = self.next.lock().map_err(|_| poisoned())?;
            *next += 1;
            *next
        };
        let state = Arc::new(Mutex::new(json!({
            "id": id,
            "kind": "ingest",
            "collection": collection,
            "path": path.display().to_string(),
            "state": "listing",
            "done": 0,
            "total": 0,
            "bytes_done": 0,
            "bytes_total": 0,
            "added": 0,
            "duplicates": 0,
            "failed": [],
            "left_out": [],
        })));
        {
            let mut jobs = self.jobs.lock().map_err(|_| poisoned())?;
            while jobs.len() >= KEPT {
                jobs.pop_first();
            }
            jobs.insert(id, Arc::clone(&state));
        }
        std::thread::Builder::new()
            .name(format!("app-ingest-{id}"))
            .spawn(move || {
                let outcome = run_ingest(&workspace, &collection, path, recursive, &state);
                // dropped files: their staging folder goes once they are in (or failed)
                if let Some(dir) = remove_after {
                    let _ = std::fs::remove_dir_all(dir);
                }
                if let Ok(mut s) = state.lock() {
                    match outcome {
                        Ok(()) => s["state"] = json!("done"),
                        Err(e) => {
                            s["state"] = json!("failed");
                            s["error"] = json!(e.to_string());
                        }
                    }
                }
            })
            .map_err(|e| AppError::Internal(format!("cannot start the ingest: {e}")))?;
        Ok(id)
    }
}

fn reasons(list: &[(String, String)]) -> Value {
    list.iter()
        .map(|(name, reason)| json!({ "name": name, "reason": reason }))
        .collect()
}

fn run_ingest(
    workspace: &Workspace,
    collection: &str,
    path: PathBuf,
    recursive: bool,
    state: &Mutex<Value>,
) -> Result<()> {
    let update = |f: &dyn Fn(&mut Value)| {
        if let Ok(mut s) = state.lock() {
            f(&mut s);
        }
    };
    let listed = walk(&[path], recursive)?;
    let bytes_total: u64 = listed.files.iter().map(|f| f.size).sum();
    update(&|s| {
        s["state"] = json!("running");
        s["total"] = json!(listed.files.len());
        s["bytes_total"] = json!(bytes_total);
        s["left_out"] = reasons(&listed.skipped);
    });
    let client = workspace.new_client(collection)?;
    let report: IngestReport = client.ingest_items(&listed.files, |p| {
        update(&|s| {
            s["done"] = json!(p.files_done);
            s["bytes_done"] = json!(p.bytes_done);
            s["added"] = json!(p.added);
            s["duplicates"] = json!(p.duplicates);
            s["failed_count"] = json!(p.failed);
            s["eta_s"] = json!(p.eta_s());
        });
    })?;
    let m = &report.merged;
    update(&|s| {
        s["done"] = json!(listed.files.len());
        s["bytes_done"] = json!(bytes_total);
        s["added"] = json!(report.added);
        s["duplicates"] = json!(report.duplicates);
        s["failed"] = reasons(&report.failed);
        s["merged"] = json!({
            "replaced": m.replaced,
            "written": m.written,
            "thumbnails": m.thumbnails,
            "thumbnails_failed": m.thumbnails_failed,
            "seconds": m.elapsed.as_secs_f64(),
        });
        s["merge_failed"] = json!(report.merge_failed);
    });
    Ok(())
}
