//! The server on a loopback port in a background thread: the CLI's in-process mode, the
//! demo, tests.

use crate::errors::{Result, ServerError};
use crate::{AdminAccess, Opened, ServerOptions};
use std::time::Duration;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

/// A server on `127.0.0.1:<random port>` in a background thread. It is started with a fresh
/// random admin token that only this process knows ([`LocalServer::admin_token`]). Stops,
/// letting requests finish, when dropped.
pub struct LocalServer {
    url: String,
    admin_token: Zeroizing<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl LocalServer {
    /// Starts a server on `127.0.0.1:0` with `options` (its admin access is replaced by a
    /// fresh token, see [`LocalServer::admin_token`]).
    pub fn start(mut options: ServerOptions) -> Result<Self> {
        let admin_token = blindsight_os::random::token()?;
        options.admin = AdminAccess::token(&admin_token);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| ServerError::io("127.0.0.1:0", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::io("listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::io("listener", e))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // The store is opened (and upgraded) in the server's thread; its outcome comes back
        // before `start` returns, so a store that does not open is this call's error.
        let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
        let thread = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| ServerError::io("tokio runtime", e))?;
            let result = rt.block_on(async move {
                let opened = match Opened::open(options) {
                    Ok(opened) => {
                        let _ = opened_tx.send(Ok(()));
                        opened
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let listener =
                    TcpListener::from_std(listener).map_err(|e| ServerError::io("listener", e))?;
                opened
                    .run(listener, async move {
                        let _ = rx.await;
                    })
                    .await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
            result
        });
        let mut server = Self {
            url: format!("http://{addr}"),
            admin_token,
            stop: Some(tx),
            thread: Some(thread),
        };
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(e),
            // the thread ended before it opened the store: its runtime did not start
            Err(_) => match server.thread.take().map(std::thread::JoinHandle::join) {
                Some(Ok(Err(e))) => Err(e),
                _ => Err(ServerError::Internal(
                    "the in-process server stopped at start".into(),
                )),
            },
        }
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin token that creates collections on this server.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
