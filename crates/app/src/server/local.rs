//! The server on a loopback port in a background thread: the CLI's in-process mode, the
//! demo, tests.

use super::{AdminAccess, ServerOptions, serve};
use crate::errors::AppError;
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
    thread: Option<std::thread::JoinHandle<crate::Result<()>>>,
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
    pub fn start(mut options: ServerOptions) -> crate::Result<Self> {
        let admin_token = crate::random::token()?;
        options.admin = AdminAccess::token(&admin_token);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| AppError::io("127.0.0.1:0", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| AppError::io("listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AppError::io("listener", e))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> crate::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| AppError::io("tokio runtime", e))?;
            let result = rt.block_on(async move {
                let listener =
                    TcpListener::from_std(listener).map_err(|e| AppError::io("listener", e))?;
                serve(listener, options, async move {
                    let _ = rx.await;
                })
                .await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
            result
        });
        let server = Self {
            url: format!("http://{addr}"),
            admin_token,
            stop: Some(tx),
            thread: Some(thread),
        };
        let remote = crate::remote::Remote::new(&server.url)?;
        for _ in 0..500 {
            if remote.health().is_ok() {
                return Ok(server);
            }
            if server.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let mut server = server;
                return match server.thread.take().map(|t| t.join()) {
                    Some(Ok(Err(e))) => Err(e),
                    _ => Err(AppError::Internal(
                        "the in-process server stopped at start".into(),
                    )),
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(AppError::Connection(format!(
            "the in-process server at {} did not start",
            server.url
        )))
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
