//! Remembered servers (`blindsight remote add NAME URL …`): a name for a server's URL and
//! how to trust and administer it (CA file or certificate fingerprint, admin token file),
//! so that `--server NAME` (or nothing, for the default one) replaces repeating
//! `--server URL --ca-file … --admin-token-file …` on every command.
//!
//! They live in `remotes.json` in blindsight's home (`~/.blindsight`, or
//! `$BLINDSIGHT_HOME`), mode 0600, replaced atomically:
//!
//! ```json
//! {"default": "home",
//!  "servers": {"home": {"url": "https://nas.local:7878",
//!                       "fingerprint": "SHA256:…", "ca_file": null,
//!                       "admin_token_file": "/home/me/.blindsight/nas.admin-token"}}}
//! ```

use crate::errors::{AppError, Result};
use blindsight_client::names;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest remotes file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One remembered server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Its URL.
    pub url: String,
    /// A CA certificate (or its own certificate) to trust, PEM.
    pub ca_file: Option<PathBuf>,
    /// The fingerprint its certificate must have.
    pub fingerprint: Option<String>,
    /// The file holding its admin token.
    pub admin_token_file: Option<PathBuf>,
}

/// The remembered servers and which is the default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remotes {
    /// The server commands use when given neither `--server` nor `--db`.
    pub default: Option<String>,
    /// By name.
    pub servers: BTreeMap<String, RemoteEntry>,
}

/// Whether `name` can name a remembered server: 1 to 64 letters, digits, `-`, `_`, `.`,
/// never a URL.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Remotes {
    /// Where they are kept in `home`.
    pub fn path(home: &Path) -> PathBuf {
        home.join("remotes.json")
    }

    /// Reads them (none if the file does not exist); a damaged file is an error that says
    /// where it is.
    pub fn load(path: &Path) -> Result<Self> {
        let damaged = |why: String| {
            AppError::Usage(format!(
                "{} is not a remotes file ({why}): fix or remove it, then `blindsight remote \
                 add` again",
                path.display()
            ))
        };
        let bytes = match blindsight_os::files::read_at_most(path, MAX_FILE_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(damaged(e.to_string()));
            }
            Err(e) => return Err(AppError::io(path, e)),
        };
        let text = String::from_utf8_lossy(&bytes);
        let v: Value = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        let mut out = Self {
            default: v.get("default").and_then(Value::as_str).map(str::to_string),
            servers: BTreeMap::new(),
        };
        let servers = v
            .get("servers")
            .and_then(Value::as_object)
            .ok_or_else(|| damaged("no `servers` object".into()))?;
        for (name, s) in servers {
            let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
            let url = text("url").ok_or_else(|| damaged(format!("`{name}` has no url")))?;
            out.servers.insert(
                name.clone(),
                RemoteEntry {
                    url,
                    ca_file: text("ca_file").map(PathBuf::from),
                    fingerprint: text("fingerprint"),
                    admin_token_file: text("admin_token_file").map(PathBuf::from),
                },
            );
        }
        Ok(out)
    }

    /// Writes them to `path` (owner-only, written beside it and renamed over it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut servers = Map::new();
        for (name, e) in &self.servers {
            let shown = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            servers.insert(
                name.clone(),
                json!({
                    "url": e.url,
                    "ca_file": shown(&e.ca_file),
                    "fingerprint": e.fingerprint,
                    "admin_token_file": shown(&e.admin_token_file),
                }),
            );
        }
        let text = serde_json::to_string_pretty(&json!({
            "default": self.default,
            "servers": servers,
        }))
        .map_err(|e| AppError::Internal(e.to_string()))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        blindsight_os::files::write_private(&tmp, format!("{text}\n").as_bytes())
            .map_err(|e| AppError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| AppError::io(path, e))
    }

    /// The server `--server` names: a remembered one by its name (`None` for a URL).
    pub fn named(&self, server: &str) -> Option<&RemoteEntry> {
        if server.contains("://") {
            return None;
        }
        self.servers.get(server)
    }

    /// The default server, if one is set and remembered.
    pub fn default_entry(&self) -> Option<(&str, &RemoteEntry)> {
        let name = self.default.as_deref()?;
        self.servers.get(name).map(|e| (name, e))
    }
}

/// A remembered server for a person: its name, URL and how it is trusted.
pub fn describe(name: &str, e: &RemoteEntry, default: bool) -> String {
    let mut s = format!(
        "{}{}  {}",
        names::for_terminal(name),
        if default { " (default)" } else { "" },
        names::for_terminal(&e.url)
    );
    if let Some(f) = &e.fingerprint {
        s.push_str(&format!("  certificate {}", names::for_terminal(f)));
    }
    if let Some(c) = &e.ca_file {
        s.push_str(&format!(
            "  ca-file {}",
            names::for_terminal(&c.display().to_string())
        ));
    }
    if let Some(t) = &e.admin_token_file {
        s.push_str(&format!(
            "  admin token {}",
            names::for_terminal(&t.display().to_string())
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().map_err(|e| AppError::io("tmp", e)).ok();
        let Some(dir) = dir else { return };
        let path = Remotes::path(dir.path());
        assert_eq!(Remotes::load(&path).ok(), Some(Remotes::default()));
        let mut r = Remotes::default();
        r.servers.insert(
            "nas".into(),
            RemoteEntry {
                url: "https://nas.local:7878".into(),
                fingerprint: Some(format!("SHA256:{}", "ab".repeat(32))),
                admin_token_file: Some(PathBuf::from("/tmp/t")),
                ca_file: None,
            },
        );
        r.default = Some("nas".into());
        assert!(r.save(&path).is_ok());
        assert_eq!(Remotes::load(&path).ok(), Some(r.clone()));
        assert_eq!(
            r.named("nas").map(|e| e.url.as_str()),
            Some("https://nas.local:7878")
        );
        assert!(r.named("https://nas").is_none());
        assert_eq!(r.default_entry().map(|(n, _)| n), Some("nas"));
        let _ = std::fs::write(&path, "{not json");
        assert!(
            matches!(Remotes::load(&path), Err(AppError::Usage(m)) if m.contains("remotes.json"))
        );
        assert!(is_valid_name("home-nas.2") && !is_valid_name("a/b") && !is_valid_name(""));
    }
}
