//! The commands of the CLI, on top of [`crate::client`]. Secrets come from the keystore
//! file (and a passphrase from a file or `BLINDSIGHT_PASSPHRASE`), collection tokens from a
//! tokens file beside it (mode 0600). Without `--server`, the commands start the server
//! in-process on the local SQLite file and talk to it over loopback HTTP.

use crate::client::{Client, IngestReport};
use crate::errors::{AppError, Result};
use crate::images::list_images;
use crate::keystore::Keystore;
use crate::remote::Remote;
use crate::server::{LocalServer, ServerOptions};
use blindsight_search::rank::RankRule;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where the commands find their files and their server.
#[derive(Clone, Debug)]
pub struct Env {
    /// Keystore file.
    pub keystore: PathBuf,
    /// File holding the passphrase of the keystore, if any.
    pub passphrase_file: Option<PathBuf>,
    /// Server URL (None: in-process server on `db`).
    pub server: Option<String>,
    /// SQLite file of the in-process server.
    pub db: PathBuf,
    /// Collection name.
    pub collection: String,
}

impl Env {
    /// The default home: `$BLINDSIGHT_HOME`, else `~/.blindsight`, else `./.blindsight`.
    pub fn default_home() -> PathBuf {
        if let Some(h) = std::env::var_os("BLINDSIGHT_HOME") {
            return PathBuf::from(h);
        }
        std::env::var_os("HOME").map_or_else(
            || PathBuf::from(".blindsight"),
            |h| PathBuf::from(h).join(".blindsight"),
        )
    }

    fn passphrase(&self) -> Result<Option<Zeroizing<String>>> {
        if let Some(f) = &self.passphrase_file {
            let text = Zeroizing::new(std::fs::read_to_string(f).map_err(|e| AppError::io(f, e))?);
            return Ok(Some(Zeroizing::new(
                text.trim_end_matches(['\n', '\r']).to_string(),
            )));
        }
        Ok(std::env::var("BLINDSIGHT_PASSPHRASE")
            .ok()
            .map(Zeroizing::new))
    }

    fn load_keystore(&self) -> Result<Keystore> {
        let pass = self.passphrase()?;
        Keystore::load(&self.keystore, pass.as_deref().map(String::as_str))
    }

    fn endpoint(&self) -> String {
        match &self.server {
            Some(url) => url.clone(),
            None => format!(
                "sqlite:{}",
                std::path::absolute(&self.db)
                    .unwrap_or_else(|_| self.db.clone())
                    .display()
            ),
        }
    }

    fn tokens_path(&self) -> PathBuf {
        let mut p = self.keystore.clone().into_os_string();
        p.push(".tokens");
        PathBuf::from(p)
    }

    fn token(&self) -> Result<String> {
        let path = self.tokens_path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let endpoint = self.endpoint();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?, f.next()?, f.next()?))
            })
            .filter(|(e, c, _)| *e == endpoint && *c == self.collection)
            .map(|(_, _, t)| t.to_string())
            .next_back()
            .ok_or_else(|| AppError::Usage(format!(
                "no token for collection `{}` at {endpoint}; run `blindsight create` first (tokens live in {})",
                self.collection,
                path.display()
            )))
    }

    fn save_token(&self, token: &str) -> Result<()> {
        let path = self.tokens_path();
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).map_err(|e| AppError::io(&path, e))?;
        writeln!(f, "{}\t{}\t{token}", self.endpoint(), self.collection)
            .map_err(|e| AppError::io(&path, e))
    }

    /// Connects to the server, starting it in-process when no URL was given.
    fn connect(&self) -> Result<(Option<LocalServer>, Remote)> {
        match &self.server {
            Some(url) => Ok((None, Remote::new(url)?)),
            None => {
                if let Some(dir) = self.db.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| AppError::io(dir, e))?;
                }
                let server = LocalServer::start(ServerOptions::new(self.db.clone()))?;
                let remote = Remote::new(server.url())?;
                Ok((Some(server), remote))
            }
        }
    }

    fn client(&self) -> Result<(Option<LocalServer>, Client)> {
        let keystore = self.load_keystore()?;
        let (server, remote) = self.connect()?;
        let token = self.token()?;
        Ok((
            server,
            Client::new(keystore, remote.with_token(&token), &self.collection)?,
        ))
    }
}

/// `blindsight keygen`.
pub fn keygen(env: &Env, preset: &str) -> Result<()> {
    if let Some(dir) = env.keystore.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| AppError::io(dir, e))?;
    }
    let ks = Keystore::generate(preset)?;
    let pass = env.passphrase()?;
    ks.save(&env.keystore, pass.as_deref().map(String::as_str))?;
    println!(
        "wrote {} keystore {} (mode 0600{})",
        preset,
        env.keystore.display(),
        if pass.is_some() {
            ", passphrase-protected"
        } else {
            ""
        }
    );
    Ok(())
}

/// `blindsight create [--scheme S]`: creates the keystore first if there is none (for
/// `preset`), and refuses a keystore of another scheme.
pub fn create(env: &Env, preset: Option<&str>) -> Result<()> {
    if let Some(p) = preset
        && !env.keystore.exists()
    {
        keygen(env, p)?;
    }
    let ks = env.load_keystore()?;
    if let Some(p) = preset
        && ks.preset != p
    {
        return Err(AppError::Usage(format!(
            "the keystore {} holds a {} key, not {p}; use another --keystore",
            env.keystore.display(),
            ks.preset
        )));
    }
    let (server, remote) = env.connect()?;
    let remote = match &server {
        Some(local) => remote.with_token(local.admin_token()),
        None => match std::env::var("BLINDSIGHT_ADMIN_TOKEN") {
            Ok(t) => remote.with_token(&t),
            Err(_) => remote,
        },
    };
    let token = Client::create(&ks, &remote, &env.collection)?;
    env.save_token(&token)?;
    println!(
        "created collection `{}` ({}) at {}",
        env.collection,
        ks.preset,
        env.endpoint()
    );
    Ok(())
}

/// `blindsight ingest DIR`.
pub fn ingest(env: &Env, dir: &Path) -> Result<IngestReport> {
    let (_server, client) = env.client()?;
    let paths = list_images(dir)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut unreadable = Vec::new();
    for p in &paths {
        let name = p
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match std::fs::read(p) {
            Ok(b) => files.push((name, b)),
            Err(e) => unreadable.push((name, e.to_string())),
        }
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} encrypting and uploading [{bar:30}] {pos}/{len} images",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut report = client.ingest(&files, |added| bar.set_position(added as u64))?;
    bar.finish_and_clear();
    report.failed.extend(unreadable);
    println!(
        "added {} images, skipped {} already present",
        report.added, report.duplicates
    );
    for (name, reason) in &report.failed {
        println!("skipped {name}: {reason}");
    }
    Ok(report)
}

/// `blindsight search IMAGE`.
pub fn search(
    env: &Env,
    image: &Path,
    top: usize,
    rule: RankRule,
    out: Option<&Path>,
) -> Result<()> {
    let (_server, client) = env.client()?;
    let bytes = std::fs::read(image).map_err(|e| AppError::io(image, e))?;
    let name = image.display().to_string();
    let (matches, t) = client.search(&bytes, &name, top, rule)?;
    println!(
        "rank  id                    name                          cos R    cos G    cos B    whole"
    );
    for (i, m) in matches.iter().enumerate() {
        println!(
            "{:>4}  {:<20}  {:<28} {:>7.4}  {:>7.4}  {:>7.4}  {:>7.4}",
            i + 1,
            m.id,
            m.name,
            m.channel_cosines[0],
            m.channel_cosines[1],
            m.channel_cosines[2],
            m.whole_cosine
        );
    }
    println!("timing: {t}");
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| AppError::io(dir, e))?;
        let ids: Vec<i64> = matches.iter().map(|m| m.id).collect();
        let files = client.fetch(&ids)?;
        for (rank, m) in matches.iter().enumerate() {
            if let Some((_, data)) = files.iter().find(|(id, _)| *id == m.id) {
                let safe: String = m
                    .name
                    .chars()
                    .map(|c| if c == '/' || c == '\\' { '_' } else { c })
                    .collect();
                let path = dir.join(format!("{:02}-{safe}", rank + 1));
                std::fs::write(&path, data).map_err(|e| AppError::io(&path, e))?;
            }
        }
        println!(
            "wrote {} decrypted matches to {}",
            files.len(),
            dir.display()
        );
    }
    Ok(())
}

/// `blindsight delete ID...`.
pub fn delete(env: &Env, ids: &[i64]) -> Result<()> {
    let (_server, client) = env.client()?;
    println!("deleted {} images", client.delete(ids)?);
    Ok(())
}

/// `blindsight compact`.
pub fn compact(env: &Env) -> Result<()> {
    let (_server, client) = env.client()?;
    let (segments, purged) = client.compact()?;
    println!("rebuilt {segments} segments, purged {purged} deleted images");
    Ok(())
}

/// `blindsight info`.
pub fn info(env: &Env) -> Result<()> {
    let (_server, remote) = env.connect()?;
    let token = env.token()?;
    let info = remote.with_token(&token).info(&env.collection)?;
    for key in [
        "collection",
        "preset",
        "dim",
        "segments",
        "images",
        "deleted",
    ] {
        if let Some(v) = info.get(key) {
            println!("{key}: {v}");
        }
    }
    Ok(())
}

/// How `blindsight serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// SQLite file.
    pub db: PathBuf,
    /// Address to listen on.
    pub listen: String,
    /// File holding the admin token (created with a fresh token, mode 0600, if absent).
    pub admin_token_file: PathBuf,
    /// Anyone may create collections (no admin token).
    pub open_registration: bool,
    /// TLS certificate chain and private key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP on a non-loopback address anyway.
    pub insecure_http: bool,
    /// Per-collection quota.
    pub quota: crate::store::Quota,
    /// Searches and ingests at once.
    pub max_concurrent: usize,
}

/// Reads the admin token from `path`, or creates the file (mode 0600, fsynced) with a fresh
/// random token if it does not exist.
pub fn admin_token(path: &Path) -> Result<Zeroizing<String>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            if bytes.len() > 4096 {
                return Err(AppError::Usage(format!(
                    "{} is too large for an admin token file",
                    path.display()
                )));
            }
            let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
            let token = Zeroizing::new(text.trim().to_string());
            if token.len() < 16 {
                return Err(AppError::Usage(format!(
                    "{}: the admin token must be at least 16 characters",
                    path.display()
                )));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = Zeroizing::new([0u8; 32]);
            rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut *raw)
                .map_err(|e| AppError::Internal(format!("operating system randomness: {e}")))?;
            let token: Zeroizing<String> =
                Zeroizing::new(raw.iter().map(|b| format!("{b:02x}")).collect());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| AppError::io(dir, e))?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(|e| AppError::io(path, e))?;
            writeln!(f, "{}", token.as_str()).map_err(|e| AppError::io(path, e))?;
            f.sync_all().map_err(|e| AppError::io(path, e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(token)
        }
        Err(e) => Err(AppError::io(path, e)),
    }
}

/// Whether `listen` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// The server options `serve` runs with (admin access, TLS, quota), checked: a
/// non-loopback address needs TLS or `--insecure-http`.
pub fn server_options(opts: &ServeOptions) -> Result<ServerOptions> {
    if opts.tls.is_none() && !opts.insecure_http && !is_loopback(&opts.listen) {
        return Err(AppError::Usage(format!(
            "refusing to serve plain HTTP on {} (not a loopback address): give --tls-cert and \
             --tls-key, or --insecure-http if a TLS proxy in front of this server terminates TLS",
            opts.listen
        )));
    }
    let mut server = ServerOptions::new(opts.db.clone());
    server.quota = opts.quota;
    server.limits.max_concurrent = opts.max_concurrent.max(1);
    if let Some((cert, key)) = &opts.tls {
        server.tls = Some(crate::server::tls::server_config(cert, key)?);
    }
    server.admin = if opts.open_registration {
        crate::server::AdminAccess::Open
    } else {
        crate::server::AdminAccess::token(&admin_token(&opts.admin_token_file)?)
    };
    Ok(server)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `blindsight serve`: runs until Ctrl-C or SIGTERM, then gives requests in flight the
/// shutdown deadline to finish.
pub fn serve(opts: &ServeOptions) -> Result<()> {
    let server = server_options(opts)?;
    let deadline = server.limits.shutdown_deadline;
    let rt = tokio::runtime::Runtime::new().map_err(|e| AppError::io("tokio runtime", e))?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&opts.listen)
            .await
            .map_err(|e| AppError::io(&opts.listen, e))?;
        let scheme = if server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        println!(
            "blindsight serving {} on {scheme}://{}",
            opts.db.display(),
            listener
                .local_addr()
                .map_err(|e| AppError::io(&opts.listen, e))?
        );
        if opts.open_registration {
            println!("open registration: anyone who reaches this server may create collections");
        } else {
            println!(
                "admin token (creates collections): {}",
                opts.admin_token_file.display()
            );
        }
        crate::server::serve(listener, server, shutdown_signal()).await
    });
    rt.shutdown_timeout(deadline);
    println!("blindsight server stopped");
    result
}
