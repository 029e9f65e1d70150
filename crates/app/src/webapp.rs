//! `blindsight app`: the local web app, served by the client process (this side of the
//! trust boundary: it holds the keystore and decrypts for the page).
//!
//! The browser talks to a small JSON API on loopback ([`api`]); the page and its assets are
//! embedded in the binary ([`assets`]); [`guard`] keeps every other page and host out (the
//! Host check, Origin on state changes, a one-time token exchanged for an `HttpOnly`,
//! `SameSite=Strict` cookie, a strict CSP); [`crate::workspace`] holds the keystore, the
//! server connection and the collections' clients, [`servers`] which servers the page may switch
//! between; [`jobs`] runs ingests in the background.
//!
//! What the page is sent: names, ids, scores, timings and decrypted thumbnails or originals.
//! Never key material. Results' thumbnails come by private retrieval (the server does not
//! learn which images matched); opening an original fetches it by id, and the page says so
//! before it does.

pub mod api;
pub mod assets;
pub mod guard;
pub mod jobs;
pub(crate) mod servers;

use crate::commands::Env;
use crate::errors::{AppError, Result};
use axum::Router;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A running app (the server thread stops when this is dropped or [`RunningApp::stop`]ped).
pub struct RunningApp {
    address: SocketAddr,
    token: Zeroizing<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningApp {
    /// The app's base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The URL to open once: the base URL with the one-time token.
    pub fn login_url(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}/?token={}",
            self.base_url(),
            self.token.as_str()
        ))
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// Serves until the process is interrupted (Ctrl-C or SIGTERM).
    pub fn wait_for_signal(mut self) {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(crate::commands::shutdown_signal());
        }
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The address to listen on: `listen` resolved, and refused unless it is a loopback address
/// (the app decrypts for whoever reaches it: it must not be reachable from the network).
pub fn loopback_address(listen: &str) -> Result<SocketAddr> {
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| AppError::Usage(format!("--listen {listen}: {e}")))?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            AppError::Usage(format!(
                "--listen {listen} is not a loopback address: the app decrypts your images \
                 for whoever reaches it, so it listens on 127.0.0.1 or ::1 only"
            ))
        })?;
    Ok(addr)
}

/// The app's whole router: the routes of [`api`] behind [`guard`], with the security
/// headers on every response.
pub fn router(state: Arc<api::AppState>, guard: Arc<guard::Guard>) -> Router {
    api::routes(state)
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(axum::middleware::from_fn(guard::headers))
}

/// Opens the keystore and the server of `env`, listens on `listen` (loopback only) and
/// serves the app on a thread of its own.
pub fn start(env: Env, listen: &str) -> Result<RunningApp> {
    let addr = loopback_address(listen)?;
    let servers = servers::Servers::open(env)?;
    let staging = tempfile::Builder::new()
        .prefix("blindsight-app-")
        .tempdir()
        .map_err(|e| AppError::io(std::env::temp_dir(), e))?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| AppError::io(addr.to_string(), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AppError::io("listener", e))?;
    let address = listener
        .local_addr()
        .map_err(|e| AppError::io("listener", e))?;
    let token = blindsight_os::random::token()?;
    let guard = Arc::new(guard::Guard::new(
        address.port(),
        token.clone(),
        address.is_ipv6(),
    ));
    let state = Arc::new(api::AppState {
        servers,
        jobs: jobs::Jobs::default(),
        staging,
    });
    let kept = Arc::clone(&state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AppError::Internal(format!("cannot start the app's runtime: {e}")))?;
    let thread = std::thread::Builder::new()
        .name("blindsight-app".into())
        .spawn(move || {
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router(state, guard))
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
            });
            if let Err(e) = served {
                eprintln!("blindsight app: the server stopped: {e}");
            }
            // the runtime first: the workspaces' HTTP clients must not be dropped on it
            drop(rt);
            drop(kept);
        })
        .map_err(|e| AppError::Internal(format!("cannot start the app's thread: {e}")))?;
    Ok(RunningApp {
        address,
        token,
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// Opens `url` in the user's browser without putting the token on a command line (where
/// other users could read it): a private file beside the keystore redirects to it. Returns
/// that file, for the caller to remove once the browser has read it.
fn open_browser(env: &Env, url: &str) -> Result<std::path::PathBuf> {
    let dir = env
        .keystore
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = format!("app-open-{}.html", std::process::id());
    let page = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={url}\">\
         <title>blindsight</title><a href=\"{url}\">open blindsight</a>\n"
    );
    let _ = std::fs::remove_file(dir.join(&name));
    let file = blindsight_client::keystore::write_new_private(dir, &name, page.as_bytes())?;
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| AppError::Usage(format!("cannot run {opener} to open the browser: {e}")))?;
    Ok(file)
}

/// How long the redirect file of `--open` stays for the browser to read it.
const REDIRECT_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// `blindsight app`: serves the app until interrupted; prints the URL to open (with its
/// one-time token) and, with `open`, opens it in the browser.
pub fn run(env: Env, listen: &str, open: bool) -> Result<()> {
    let endpoint = env.endpoint();
    let app = start(env.clone(), listen)?;
    let url = app.login_url();
    println!("blindsight app: your collections on {endpoint}");
    println!("open this URL in your browser (its token is good once):");
    println!("    {}", url.as_str());
    println!("press Ctrl-C to stop");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut redirect = None;
    if open {
        match open_browser(&env, &url) {
            Ok(file) => redirect = Some(file),
            Err(e) => eprintln!("{e}"),
        }
    }
    // the redirect file holds the token: gone once the browser has had time to read it
    if let Some(file) = redirect.clone() {
        let _ = std::thread::Builder::new()
            .name("app-open-cleanup".into())
            .spawn(move || {
                std::thread::sleep(REDIRECT_KEPT);
                let _ = std::fs::remove_file(file);
            });
    }
    app.wait_for_signal();
    if let Some(file) = redirect {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}
