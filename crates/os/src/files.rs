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

#[cfg(test)]
mod tests {
    use super::*;

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
