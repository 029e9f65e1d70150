//! Permission bits and owner-only files: a keystore (0600 in a 0700 folder), a server's
//! database and segment files (0600).

use std::path::Path;

/// The permission bits of a file or folder (0o700 where there are none).
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0o700
    }
}

/// Sets the permission bits of `path` (nothing where there are none).
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Creates `path`, which must not exist, readable and writable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Creates `path` (which must not exist) owner-only with `bytes`, synced to disk before
/// it returns.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The bytes of `path` if it holds at most `max` (checked from its size, and again while
/// reading, so a file that grows meanwhile is not read past `max`); a larger file is an
/// `InvalidData` error saying both sizes.
pub fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_large = |len: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max} expected here"),
        )
    };
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_large(len));
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("blindsight-os-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("f");
        std::fs::write(&path, b"12345")?;
        assert_eq!(read_at_most(&path, 5)?, b"12345");
        let e = read_at_most(&path, 4).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("5 bytes, more than the 4 expected here"));
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn private_files_are_owner_only_and_never_overwritten() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("blindsight-os-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("secret");
        let _ = std::fs::remove_file(&path);
        drop(create_private(&path)?);
        if cfg!(unix) {
            assert_eq!(mode_of(&std::fs::metadata(&path)?), 0o600);
            set_mode(&path, 0o640)?;
            assert_eq!(mode_of(&std::fs::metadata(&path)?), 0o640);
        }
        assert!(
            create_private(&path).is_err(),
            "an existing file is never reused"
        );
        std::fs::remove_dir_all(&dir)
    }
}
