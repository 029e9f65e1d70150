//! The servers the app can show: the one it was started with (`--server`, the default
//! remembered one, or the in-process store on `--db`), the in-process store when it was
//! started with a server, and every server remembered with `blindsight remote add`. One is
//! active: the page's collections are its collections. They share one keystore.

use crate::commands::Env;
use crate::errors::{AppError, Result};
use crate::remotes::Remotes;
use crate::workspace::{SharedKeystore, Workspace, load_keystore};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The key of the server the app was started with.
pub const STARTED_WITH: &str = "app";

/// The key of the in-process store on `--db`.
const IN_PROCESS: &str = "local";

/// The servers of a running app and which one is active.
pub(crate) struct Servers {
    base: Env,
    keystore: SharedKeystore,
    open: Mutex<BTreeMap<String, Arc<Workspace>>>,
    active: Mutex<String>,
}

fn poisoned() -> AppError {
    AppError::Internal("a lock of the web app is poisoned".into())
}

impl Servers {
    /// Loads the keystore of `base` and connects to its server.
    pub(crate) fn open(base: Env) -> Result<Self> {
        let keystore = load_keystore(&base)?;
        let first = Arc::new(Workspace::open(base.clone(), Arc::clone(&keystore))?);
        Ok(Self {
            base,
            keystore,
            open: Mutex::new(BTreeMap::from([(STARTED_WITH.to_string(), first)])),
            active: Mutex::new(STARTED_WITH.to_string()),
        })
    }

    /// The environment of the server `key`, if the app knows it.
    fn env_of(&self, key: &str) -> Result<Option<Env>> {
        if key == STARTED_WITH {
            return Ok(Some(self.base.clone()));
        }
        let unremembered = Env {
            server: None,
            ca_file: None,
            fingerprint: None,
            admin_token_file: None,
            ..self.base.clone()
        };
        if key == IN_PROCESS {
            return Ok(self.base.server.is_some().then_some(unremembered));
        }
        let Some(name) = key.strip_prefix("remote:") else {
            return Ok(None);
        };
        let remotes = Remotes::load(&Remotes::path(&Env::default_home()))?;
        Ok(remotes.named(name).map(|e| Env {
            server: Some(e.url.clone()),
            ca_file: e.ca_file.clone(),
            fingerprint: e.fingerprint.clone(),
            admin_token_file: e.admin_token_file.clone(),
            ..unremembered
        }))
    }

    /// The servers to choose from: key, what to call it, and whether it is active.
    pub(crate) fn choices(&self) -> Result<Value> {
        let active = self.active.lock().map_err(|_| poisoned())?.clone();
        let mut out = vec![json!({
            "key": STARTED_WITH,
            "endpoint": self.base.endpoint(),
            "active": active == STARTED_WITH,
        })];
        if self.base.server.is_some()
            && let Some(env) = self.env_of(IN_PROCESS)?
        {
            out.push(json!({
                "key": IN_PROCESS,
                "endpoint": env.endpoint(),
                "active": active == IN_PROCESS,
            }));
        }
        let remotes = Remotes::load(&Remotes::path(&Env::default_home()))?;
        for (name, entry) in &remotes.servers {
            if self.base.server.as_deref() == Some(entry.url.as_str()) {
                continue;
            }
            let key = format!("remote:{name}");
            out.push(json!({
                "key": key,
                "name": name,
                "endpoint": entry.url,
                "active": active == key,
            }));
        }
        Ok(Value::Array(out))
    }

    /// The active server.
    pub(crate) fn active(&self) -> Result<Arc<Workspace>> {
        let key = self.active.lock().map_err(|_| poisoned())?.clone();
        self.open
            .lock()
            .map_err(|_| poisoned())?
            .get(&key)
            .cloned()
            .ok_or_else(|| AppError::Internal(format!("server {key} is not open")))
    }

    /// Makes `key` the active server, connecting to it first if needed.
    pub(crate) fn switch(&self, key: &str) -> Result<()> {
        let opened = self.open.lock().map_err(|_| poisoned())?.contains_key(key);
        if !opened {
            let env = self.env_of(key)?.ok_or_else(|| {
                AppError::Usage(format!(
                    "no server `{key}`: the app's own, `local`, or `remote:NAME` of one \
                     remembered with `blindsight remote add`"
                ))
            })?;
            let ws = Arc::new(Workspace::open(env, Arc::clone(&self.keystore))?);
            self.open
                .lock()
                .map_err(|_| poisoned())?
                .entry(key.to_string())
                .or_insert(ws);
        }
        *self.active.lock().map_err(|_| poisoned())? = key.to_string();
        Ok(())
    }
}
