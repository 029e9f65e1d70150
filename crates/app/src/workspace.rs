//! A keystore and a server seen together, as the web app and the Python package use them:
//! the keystore (loaded once), the server (connected once: the in-process one on `--db`, or
//! `--server`) and one [`Client`] per collection opened, with the collections' tokens filed
//! in the keystore's tokens file exactly as the CLI files them (so a collection created
//! here is opened by the CLI and the other way round). Every method blocks (HE work, HTTP
//! to the server).

use crate::commands::{self, Env, listing};
use crate::errors::{AppError, Result};
use blindsight_client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_search::VectorKind;
use blindsight_server::LocalServer;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use zeroize::Zeroizing;

/// The keystore every server of the app shares (none yet: the first collection makes it).
pub type SharedKeystore = Arc<Mutex<Option<Keystore>>>;

/// Loads the keystore of `env` if there is one (asking for its passphrase on a terminal
/// when it needs one).
pub fn load_keystore(env: &Env) -> Result<SharedKeystore> {
    let keystore = if env.keystore.exists() {
        Some(env.load_keystore()?)
    } else {
        None
    };
    Ok(Arc::new(Mutex::new(keystore)))
}

/// The keystore, one server and its collections' clients.
pub struct Workspace {
    env: Env,
    keystore: SharedKeystore,
    remote: Remote,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// The in-process server (kept running while the app runs; last, so that it stops after
    /// the clients above are dropped).
    local: Option<LocalServer>,
}

/// Locks `m`, turning a poisoned lock (a panic elsewhere) into an error.
fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| AppError::Internal("a lock of the web app is poisoned".into()))
}

/// The collection names the app accepts: what the tokens file can hold on one line.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(AppError::Usage(
            "a collection name is 1 to 128 characters, without tabs, newlines or other \
             control characters"
                .into(),
        ));
    }
    Ok(())
}

impl Workspace {
    /// Connects to the server of `env` (starting it in-process when `env` names none).
    pub fn open(env: Env, keystore: SharedKeystore) -> Result<Self> {
        let (local, remote) = env.connect()?;
        Ok(Self {
            env,
            keystore,
            remote,
            clients: Mutex::new(HashMap::new()),
            local,
        })
    }

    /// Where the collections live, as the CLI names it (`sqlite:<path>` or the URL).
    pub fn endpoint(&self) -> String {
        self.env.endpoint()
    }

    fn scoped(&self, collection: &str) -> Env {
        Env {
            collection: collection.to_string(),
            ..self.env.clone()
        }
    }

    /// The keystore's preset, if there is a keystore.
    pub fn preset(&self) -> Result<Option<String>> {
        Ok(lock(&self.keystore)?.as_ref().map(|k| k.preset.clone()))
    }

    /// The server, the keystore and the collections this keystore holds tokens for, each
    /// with what the server says of it (or why it cannot be opened).
    pub fn overview(&self) -> Result<Value> {
        let known = listing::known_collections(&self.env, &self.remote)?;
        let collections: Vec<Value> = known
            .iter()
            .map(|name| match self.info(name) {
                Ok(info) => listing::summary("name", name, &info),
                Err(e) => json!({ "name": name, "error": e.to_string() }),
            })
            .collect();
        Ok(json!({
            "server": self.endpoint(),
            "in_process": self.local.is_some(),
            "keystore": {
                "path": self.env.keystore.display().to_string(),
                "preset": self.preset()?,
            },
            "collections": collections,
        }))
    }

    /// What the server says of `collection` (kind, preset, images, segments, bytes, quota).
    pub fn info(&self, collection: &str) -> Result<Value> {
        let token = self.scoped(collection).token(&self.remote)?;
        Ok(self.remote.with_token(&token).info(collection)?)
    }

    /// [`Workspace::info`] with the keystore's parameters spelled out (scheme, ring degree,
    /// modulus bits against the 128-bit table, `t` or the scale): the page's info panel.
    pub fn info_with_parameters(&self, collection: &str) -> Result<Value> {
        let mut info = self.info(collection)?;
        if let Some(ks) = lock(&self.keystore)?.as_ref() {
            let p = ks.context.params();
            let n = p.degree();
            info["parameters"] = json!({
                "preset": p.name(),
                "scheme": p.scheme().name(),
                "degree": n,
                "moduli": p.moduli().len(),
                "modulus_bits": p.total_modulus_bits(),
                "max_secure_modulus_bits": blindsight_he::params::max_secure_log_q(n),
                "plain_modulus": p.plain_modulus(),
                "scale_bits": p.scale_bits(),
            });
        }
        Ok(info)
    }

    /// Creates `collection` of `vectors`: makes the keystore first (for `preset`) when
    /// there is none, and refuses a preset of another scheme than the keystore's.
    pub fn create(
        &self,
        collection: &str,
        vectors: &VectorKind,
        preset: Option<&str>,
    ) -> Result<()> {
        self.create_with_admin(collection, vectors, preset, None)
    }

    /// [`Workspace::create`], authorized by `admin` (the server's admin token) instead of
    /// the token file or variable of the environment.
    pub fn create_with_admin(
        &self,
        collection: &str,
        vectors: &VectorKind,
        preset: Option<&str>,
        admin: Option<Zeroizing<String>>,
    ) -> Result<()> {
        check_name(collection)?;
        let env = self.scoped(collection);
        if listing::known_collections(&env, &self.remote)?.contains(collection) {
            return Err(AppError::Usage(format!(
                "this keystore has a collection `{collection}` on this server already: \
                 choose another name"
            )));
        }
        let mut keystore = lock(&self.keystore)?;
        if keystore.is_none() {
            commands::keygen(&env, preset.unwrap_or(commands::DEFAULT_PRESET))?;
            *keystore = Some(env.load_keystore()?);
        }
        let ks = keystore
            .as_ref()
            .ok_or_else(|| AppError::Internal("no keystore after keygen".into()))?;
        if let Some(p) = preset
            && ks.preset != p
        {
            return Err(AppError::Usage(format!(
                "the keystore {} holds a {} key, not {p}: a collection of another scheme \
                 needs another keystore (`blindsight app --keystore OTHER`)",
                self.env.keystore.display(),
                ks.preset
            )));
        }
        let user_admin = match (&self.env.server, admin) {
            (Some(_), Some(given)) => Some(given),
            (Some(_), None) => self.env.admin_token()?,
            (None, _) => None,
        };
        commands::register(
            &env,
            ks,
            self.local.as_ref(),
            &self.remote,
            user_admin,
            vectors,
        )
    }

    fn keystore_copy(&self) -> Result<Keystore> {
        lock(&self.keystore)?
            .as_ref()
            .map(Keystore::duplicate)
            .ok_or_else(|| {
                AppError::Usage(format!(
                    "no keystore at {}: create a collection first (it makes one)",
                    self.env.keystore.display()
                ))
            })
    }

    /// A new client of `collection` (its own, not shared: an ingest sets its batch size).
    pub fn new_client(&self, collection: &str) -> Result<Client> {
        let token = self.scoped(collection).token(&self.remote)?;
        Ok(Client::new(
            self.keystore_copy()?,
            self.remote.with_token(&token),
            collection,
        )?)
    }

    /// The shared client of `collection` (made at its first use).
    pub fn client(&self, collection: &str) -> Result<Arc<Client>> {
        if let Some(c) = lock(&self.clients)?.get(collection) {
            return Ok(Arc::clone(c));
        }
        let client = Arc::new(self.new_client(collection)?);
        lock(&self.clients)?.insert(collection.to_string(), Arc::clone(&client));
        Ok(client)
    }
}
