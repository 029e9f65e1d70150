//! `blindsight remote add|list|remove|default`: remembered servers ([`crate::remotes`]).

use super::Env;
use crate::errors::{AppError, Result};
use crate::remotes::{RemoteEntry, Remotes, describe, is_valid_name};
use blindsight_client::names;
use blindsight_client::remote::Remote;
use blindsight_client::trust::Fingerprint;

/// `blindsight remote add NAME URL`: checks that the server answers with a certificate this
/// trust accepts (unless `check` is false), then remembers it; `make_default` makes it the
/// server of commands given neither `--server` nor `--db`.
pub fn add(
    home: &std::path::Path,
    name: &str,
    entry: RemoteEntry,
    make_default: bool,
    check: bool,
) -> Result<()> {
    if !is_valid_name(name) {
        return Err(AppError::Usage(format!(
            "`{}` cannot name a server: use 1 to 64 letters, digits, `-`, `_` or `.`",
            names::for_terminal(name)
        )));
    }
    if let Some(f) = &entry.fingerprint {
        Fingerprint::parse(f)?;
    }
    if check {
        let env = Env {
            server: Some(entry.url.clone()),
            ca_file: entry.ca_file.clone(),
            fingerprint: entry.fingerprint.clone(),
            ..Env::for_home(home)
        };
        let (_none, remote): (_, Remote) = env.connect()?;
        remote.health().map_err(|e| {
            AppError::Usage(format!(
                "could not reach {} as a blindsight server with this trust ({e}); nothing was \
                 remembered (--no-check remembers it anyway)",
                names::for_terminal(&entry.url)
            ))
        })?;
    }
    let path = Remotes::path(home);
    let mut remotes = Remotes::load(&path)?;
    let replaced = remotes.servers.insert(name.to_string(), entry).is_some();
    if make_default || remotes.default.is_none() {
        remotes.default = Some(name.to_string());
    }
    std::fs::create_dir_all(home).map_err(|e| AppError::io(home, e))?;
    remotes.save(&path)?;
    let is_default = remotes.default.as_deref() == Some(name);
    println!(
        "{} server `{name}`{}",
        if replaced { "updated" } else { "remembered" },
        if is_default {
            ": commands given neither --server nor --db use it"
        } else {
            ""
        }
    );
    Ok(())
}

/// `blindsight remote list`.
pub fn list(home: &std::path::Path) -> Result<()> {
    let remotes = Remotes::load(&Remotes::path(home))?;
    if remotes.servers.is_empty() {
        println!("no remembered servers: `blindsight remote add NAME URL` remembers one");
    }
    for (name, e) in &remotes.servers {
        println!(
            "{}",
            describe(name, e, remotes.default.as_deref() == Some(name))
        );
    }
    Ok(())
}

/// `blindsight remote remove NAME`.
pub fn remove(home: &std::path::Path, name: &str) -> Result<()> {
    let path = Remotes::path(home);
    let mut remotes = Remotes::load(&path)?;
    if remotes.servers.remove(name).is_none() {
        return Err(AppError::Usage(format!(
            "no remembered server `{}` (`blindsight remote list` shows them)",
            names::for_terminal(name)
        )));
    }
    if remotes.default.as_deref() == Some(name) {
        remotes.default = None;
    }
    remotes.save(&path)?;
    println!("forgot server `{name}`");
    Ok(())
}

/// `blindsight remote default NAME`.
pub fn set_default(home: &std::path::Path, name: &str) -> Result<()> {
    let path = Remotes::path(home);
    let mut remotes = Remotes::load(&path)?;
    if !remotes.servers.contains_key(name) {
        return Err(AppError::Usage(format!(
            "no remembered server `{}` (`blindsight remote list` shows them)",
            names::for_terminal(name)
        )));
    }
    remotes.default = Some(name.to_string());
    remotes.save(&path)?;
    println!("commands given neither --server nor --db now use `{name}`");
    Ok(())
}
