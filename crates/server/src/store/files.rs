//! The segment files of a store: one immutable file per segment, beside the database.
//!
//! A file is written in full under a temporary name in `tmp/` and synced ([`StagedFile`]);
//! the transaction that inserts its segment's rows renames it to `<segment id>.seg` and
//! syncs the directory before it commits ([`SegmentFiles::commit`]). So a committed
//! segment always has its whole file, and a crash at any point leaves at most a file that
//! no row names: [`SegmentFiles::collect_orphans`] removes those, under the database's
//! write lock so that it never races a writer between its rename and its commit. A
//! segment's file is removed after the transaction that drops the segment commits; a
//! search that mapped it before keeps reading it (an unlinked file lives while mapped).
//!
//! Files are never written again once renamed: what [`super::mapped`] relies on.

use crate::errors::{Result, ServerError};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Suffix of a committed segment file.
const SEGMENT_SUFFIX: &str = ".seg";
/// Temporary files older than this are another writer's leftovers (a crash), not a write in
/// progress.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// The directory of a store's segment files.
#[derive(Debug)]
pub struct SegmentFiles {
    dir: PathBuf,
    /// Held only by a store in a temporary directory (tests): removed with it.
    #[cfg(test)]
    _temp: Option<tempfile::TempDir>,
}

/// A file written under a temporary name and synced, waiting for its transaction.
#[derive(Debug)]
pub struct StagedFile {
    path: PathBuf,
    bytes: u64,
    /// Removed on drop unless committed.
    committed: bool,
}

impl StagedFile {
    /// Bytes written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes a staged file: [`StagingWriter::finish`] syncs it.
pub struct StagingWriter {
    out: BufWriter<File>,
    staged: StagedFile,
}

impl StagingWriter {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| io_error(&self.staged.path, e))?;
        self.staged.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the file: its bytes are on disk.
    pub fn finish(self) -> Result<StagedFile> {
        let Self { out, staged } = self;
        let file = out
            .into_inner()
            .map_err(|e| io_error(&staged.path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&staged.path, e))?;
        Ok(staged)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> ServerError {
    ServerError::io(path, e)
}

/// Creates `dir` (and its parents) if missing; the folder itself gets mode 0700, an
/// existing one with group or other bits is narrowed to it (the server's files are its
/// own).
fn private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io_error(dir, e))?;
    owner_only(dir, 0o700)
}

/// Narrows `path`'s mode to `mode` when it has group or other bits.
pub(crate) fn owner_only(path: &Path, mode: u32) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
    if blindsight_os::files::mode_of(&meta) & 0o077 != 0 {
        blindsight_os::files::set_mode(path, mode).map_err(|e| io_error(path, e))?;
    }
    Ok(())
}

/// Creates the database file `db` with mode 0600 if it does not exist, and narrows an
/// existing one (and its `-wal` and `-shm` files, which SQLite creates with the
/// database's mode) to 0600.
pub(crate) fn private_database(db: &Path) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(db).map_err(|e| io_error(db, e))?;
    owner_only(db, 0o600)?;
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if path.exists() {
            owner_only(&path, 0o600)?;
        }
    }
    Ok(())
}

impl SegmentFiles {
    /// The segment directory of the database at `db` (`<db>-segments`), created if missing.
    pub fn beside(db: &Path) -> Result<Self> {
        let files = Self::of_reader(db);
        private_dir(&files.dir)?;
        private_dir(&files.dir.join("tmp"))?;
        Ok(files)
    }

    /// The segment directory of the database at `db`, as a reader sees it: nothing is
    /// created (a reader only opens committed files).
    pub fn of_reader(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push("-segments");
        Self {
            dir: PathBuf::from(name),
            #[cfg(test)]
            _temp: None,
        }
    }

    /// A directory that is removed when the store is dropped (in-memory stores of tests).
    #[cfg(test)]
    pub fn temporary() -> Result<Self> {
        let temp = tempfile::tempdir().map_err(|e| io_error(Path::new("temporary"), e))?;
        let dir = temp.path().to_path_buf();
        fs::create_dir_all(dir.join("tmp")).map_err(|e| io_error(&dir, e))?;
        Ok(Self {
            dir,
            _temp: Some(temp),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where segment `id`'s file is once committed.
    pub fn path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{id}{SEGMENT_SUFFIX}"))
    }

    /// A new temporary file to write a segment into.
    pub fn stage(&self) -> Result<StagingWriter> {
        let name = blindsight_os::random::hex(&blindsight_os::random::bytes::<12>()?);
        let path = self.dir.join("tmp").join(format!("{name}.part"));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path).map_err(|e| io_error(&path, e))?;
        Ok(StagingWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            staged: StagedFile {
                path,
                bytes: 0,
                committed: false,
            },
        })
    }

    /// Gives `staged` its segment's name and syncs the directory: call inside the
    /// transaction that inserts the segment, before it commits.
    pub fn commit(&self, staged: &mut StagedFile, id: i64) -> Result<()> {
        let to = self.path(id);
        fs::rename(&staged.path, &to).map_err(|e| io_error(&to, e))?;
        staged.committed = true;
        self.sync_dir()
    }

    /// Removes segment `id`'s file (after the transaction that dropped it committed, or
    /// after one that would have added it failed). A missing file is not an error.
    pub fn remove(&self, id: i64) {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "segment file not removed")
            }
        }
    }

    /// Removes every segment file no committed segment names (`live`: the ids that have
    /// files) and stale temporary files; returns how many went. Call under the database's
    /// write lock. Files of other names are left alone.
    pub fn collect_orphans(&self, live: &HashSet<i64>) -> Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if !live.contains(&id) {
                fs::remove_file(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
                removed += 1;
            }
        }
        let tmp = self.dir.join("tmp");
        let now = SystemTime::now();
        for entry in fs::read_dir(&tmp).map_err(|e| io_error(&tmp, e))? {
            let entry = entry.map_err(|e| io_error(&tmp, e))?;
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|at| now.duration_since(at).unwrap_or_default() >= STALE_TMP)
                .unwrap_or(false);
            let ours = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".part"));
            if ours && stale {
                fs::remove_file(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    /// Bytes of every committed segment file (what the segments take on disk).
    pub fn disk_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(SEGMENT_SUFFIX))
            {
                total += entry
                    .metadata()
                    .map_err(|e| io_error(&entry.path(), e))?
                    .len();
            }
        }
        Ok(total)
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }
}
