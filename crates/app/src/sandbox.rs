//! One private collection on a loopback server, in a working directory: the setting of
//! `demo` and `eval`. A fresh keystore (saved in the directory), an SQLite store, the server
//! in a background thread, and a client of the collection, talking HTTP like any other.

use crate::errors::{AppError, Result};
use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_search::VectorKind;
use blindsight_server::{LocalServer, ServerOptions};
use std::path::Path;
use std::time::Instant;

/// A collection served from `work` on a loopback port. Dropping it stops the server.
pub struct Sandbox {
    /// The client of the collection (holds the keystore).
    pub client: Client,
    /// Seconds spent generating keys and creating the collection.
    pub keygen_s: f64,
    // dropped last: the client's requests finish first
    server: LocalServer,
}

impl Sandbox {
    /// Generates a `preset` keystore (saved as `work/keystore`), starts a server on
    /// `work/gallery.db` and creates collection `name` of `vectors` on it.
    pub fn create(work: &Path, preset: &str, name: &str, vectors: &VectorKind) -> Result<Self> {
        std::fs::create_dir_all(work).map_err(|e| AppError::io(work, e))?;
        let t = Instant::now();
        let ks = Keystore::generate(preset)?;
        ks.save(&work.join("keystore"), None)?;
        let server = LocalServer::start(ServerOptions::new(work.join("gallery.db")))?;
        let remote = Remote::new(server.url())?;
        let token = Client::create(&ks, &remote.with_token(server.admin_token()), name, vectors)?;
        let keygen_s = t.elapsed().as_secs_f64();
        let client = Client::new(ks, remote.with_token(&token), name)?;
        Ok(Self {
            client,
            keygen_s,
            server,
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.server.url()
    }
}

/// Removes a finished sandbox's store (the database and its journal files) and keystore
/// from `work`, leaving anything else written there.
pub fn remove_store(work: &Path) -> Result<()> {
    let entries = std::fs::read_dir(work).map_err(|e| AppError::io(work, e))?;
    for entry in entries {
        let path = entry.map_err(|e| AppError::io(work, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("gallery.db") || name == "keystore" {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| AppError::io(&path, e))?;
        }
    }
    Ok(())
}
