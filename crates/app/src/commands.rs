//! The commands of the CLI, on top of [`blindsight_client::client`]. Secrets come from the keystore
//! file (and a passphrase from a file or `BLINDSIGHT_PASSPHRASE`), collection tokens from a
//! tokens file beside it. Without `--server`, the commands start the server in-process on
//! the local SQLite file and talk to it over loopback HTTP.
//!
//! Files: the keystore's directory is created with mode 0700 (an existing one that other
//! users can enter gets a warning; blindsight's default home `~/.blindsight` is tightened);
//! the tokens file `<keystore>.tokens` is kept at 0600 and fsynced with its directory after
//! each append. Lines are `key TAB collection TAB token`. A token is filed under the endpoint
//! it was created at (`sqlite:<path>` or the URL) and sent only there; for the in-process
//! server or a loopback one it is also filed under the database's store id (`store:<id>`),
//! so that a collection created in-process and later served from the same database on this
//! machine is found with `--server http://127.0.0.1:PORT`. Store ids are public, so a token
//! filed under one is never sent to a remote URL.
//!
//! Creating a collection needs the server's admin token: the in-process server's own, or
//! for `--server` the one in `--admin-token-file` or `BLINDSIGHT_ADMIN_TOKEN`.
//!
//! Whatever comes from the server or from file names goes through [`blindsight_client::names`] before
//! it reaches the terminal or a file name; decrypted matches are written as new files
//! (mode 0600, never following or replacing an existing file) inside `--out` only.

use crate::errors::{AppError, Result};
use crate::images::walk;
use crate::report_page::{QuerySection, ReportPage, ResultColumn, ShownMatch, Thumbnail, file_of};
use blindsight_client::ClientError;
use blindsight_client::client::{Client, CompactReport, IngestReport, Match, SearchTiming};
use blindsight_client::keystore::{self, DirState, Keystore};
use blindsight_client::names;
use blindsight_client::remote::Remote;
use blindsight_client::trust::Trust;
use blindsight_search::VectorKind;
use blindsight_search::rank::RankRule;
use blindsight_server::{LocalServer, ServerOptions};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub(crate) mod listing;
pub mod output;
mod prompt;
pub mod remembered;
pub mod vectors;
pub use listing::{DEFAULT_PAGE, collections, images, info};
pub use output::Output;

/// Files or thumbnails by image id.
type ById = Vec<(i64, Vec<u8>)>;

/// The matches' thumbnails by private retrieval: (id, JPEG) of those retrieved, and how
/// many have none (or could not be placed in the batch).
pub(crate) fn private_thumbnails(client: &Client, matches: &[Match]) -> Result<(ById, usize)> {
    let wanted: Vec<(i64, Option<u64>)> =
        matches.iter().map(|m| (m.id, m.thumbnail_slot)).collect();
    let mut shown = Vec::new();
    let mut missing = 0usize;
    for (id, t) in client.private_thumbnails(&wanted)? {
        match t {
            blindsight_client::client::RetrievedThumbnail::Jpeg(jpeg) => shown.push((id, jpeg)),
            _ => missing += 1,
        }
    }
    Ok((shown, missing))
}

/// Environment variable holding the server's admin token (read when no
/// `--admin-token-file` is given).
pub const ADMIN_TOKEN_ENV: &str = "BLINDSIGHT_ADMIN_TOKEN";

/// Longest token (admin or collection) the client accepts, in bytes.
const MAX_TOKEN_BYTES: usize = 1024;

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
    /// File holding the admin token of the `server` (else [`ADMIN_TOKEN_ENV`]), sent by
    /// `create`.
    pub admin_token_file: Option<PathBuf>,
    /// An extra CA certificate (PEM) to trust for an `https` server (or its own
    /// certificate, trusted exactly).
    pub ca_file: Option<PathBuf>,
    /// The fingerprint the server's certificate must have (`SHA256:…`).
    pub fingerprint: Option<String>,
    /// Allow plain HTTP to a server that is not on a loopback address.
    pub insecure_http: bool,
}

/// Whether `token` can be sent as a bearer token and kept on one line of the tokens file:
/// 1 to [`MAX_TOKEN_BYTES`] visible ASCII characters.
fn is_usable_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The last token of `collection` filed under `key` in the text of a tokens file.
fn find_token(tokens: &str, key: &str, collection: &str) -> Option<Zeroizing<String>> {
    tokens
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(k, c, t)| *k == key && *c == collection && is_usable_token(t))
        .map(|(_, _, t)| Zeroizing::new(t.to_string()))
        .next_back()
}

impl Env {
    /// The defaults of blindsight's home `home`: its keystore and database, the collection
    /// `default`, no server.
    pub fn for_home(home: &Path) -> Self {
        Self {
            keystore: home.join("keystore"),
            passphrase_file: None,
            server: None,
            db: home.join("gallery.db"),
            collection: "default".into(),
            admin_token_file: None,
            ca_file: None,
            fingerprint: None,
            insecure_http: false,
        }
    }

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

    /// Whether `dir` is blindsight's own default home `~/.blindsight` (which it may tighten;
    /// a `BLINDSIGHT_HOME` or `--keystore` folder is the user's).
    fn is_own_home(dir: &Path) -> bool {
        let Some(home) = std::env::var_os("HOME") else {
            return false;
        };
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        abs(dir) == abs(&PathBuf::from(home).join(".blindsight"))
    }

    /// Creates the keystore's directory (mode 0700), or warns when an existing one is open
    /// to other users.
    pub(crate) fn prepare_keystore_dir(&self) -> Result<()> {
        let dir = self
            .keystore
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match keystore::prepare_private_dir(dir, Self::is_own_home(dir))? {
            DirState::Open(mode) => eprintln!(
                "warning: other users can enter {}, the folder of the keystore (mode {mode:o}); \
                 consider `chmod 700 {}`",
                dir.display(),
                dir.display()
            ),
            DirState::Tightened(mode) => eprintln!(
                "note: {} was open to other users (mode {mode:o}); set it to 700",
                dir.display()
            ),
            DirState::Created | DirState::Private => {}
        }
        Ok(())
    }

    /// Whether a passphrase was given without a prompt (a file or the environment).
    fn passphrase_given(&self) -> bool {
        self.passphrase_file.is_some() || std::env::var_os("BLINDSIGHT_PASSPHRASE").is_some()
    }

    /// A new keystore's passphrase: the one given, else, on a terminal, one typed twice
    /// (empty for none); off a terminal, none.
    pub(crate) fn new_passphrase(&self) -> Result<Option<Zeroizing<String>>> {
        if self.passphrase_given() || !prompt::on_terminal() {
            return self.passphrase();
        }
        prompt::new_passphrase(&self.keystore)
    }

    pub(crate) fn passphrase(&self) -> Result<Option<Zeroizing<String>>> {
        if let Some(f) = &self.passphrase_file {
            return Ok(Some(keystore::read_secret_file(f, "passphrase")?));
        }
        Ok(std::env::var("BLINDSIGHT_PASSPHRASE")
            .ok()
            .map(Zeroizing::new))
    }

    /// The admin token the user gave: `--admin-token-file`, else [`ADMIN_TOKEN_ENV`].
    pub(crate) fn admin_token(&self) -> Result<Option<Zeroizing<String>>> {
        let (token, origin) = match &self.admin_token_file {
            Some(f) => (
                keystore::read_secret_file(f, "admin token")?,
                f.display().to_string(),
            ),
            None => match std::env::var(ADMIN_TOKEN_ENV) {
                Ok(t) if !t.is_empty() => (Zeroizing::new(t), ADMIN_TOKEN_ENV.to_string()),
                Ok(_) | Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    (Zeroizing::new(String::new()), ADMIN_TOKEN_ENV.to_string())
                }
            },
        };
        if !is_usable_token(&token) {
            return Err(ClientError::Secret {
                what: "admin token",
                origin,
                reason: format!(
                    "a token is 1 to {MAX_TOKEN_BYTES} visible ASCII characters, without \
                     spaces; copy it exactly as the server's operator gave it"
                ),
            }
            .into());
        }
        Ok(Some(token))
    }

    pub(crate) fn load_keystore(&self) -> Result<Keystore> {
        if !self.keystore.exists() {
            return Err(AppError::Usage(format!(
                "no keystore at {}: run `blindsight create` first (it makes one), or \
                 `blindsight keygen --scheme ckks|bfv`; --keystore names another",
                self.keystore.display()
            )));
        }
        let pass = self.passphrase()?;
        match Keystore::load(&self.keystore, pass.as_deref().map(String::as_str)) {
            // protected, and nothing given: asked for on a terminal
            Err(ClientError::PassphraseRequired { .. })
                if !self.passphrase_given() && prompt::on_terminal() =>
            {
                let typed = prompt::passphrase(&self.keystore)?;
                Ok(Keystore::load(&self.keystore, Some(typed.as_str()))?)
            }
            other => Ok(other?),
        }
    }

    /// Where the commands talk to, as older versions filed tokens under it.
    pub fn endpoint(&self) -> String {
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

    pub(crate) fn tokens_path(&self) -> PathBuf {
        let mut p = self.keystore.clone().into_os_string();
        p.push(".tokens");
        PathBuf::from(p)
    }

    pub(crate) fn read_tokens(&self) -> Result<Zeroizing<String>> {
        let path = self.tokens_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Zeroizing::new(String::new())),
            Err(e) => Err(AppError::io(&path, e)),
        }
    }

    /// The key the tokens of the server behind `remote` are filed under: `store:<store id>`.
    pub(crate) fn store_key(remote: &Remote) -> Result<String> {
        // `Remote::store_id` accepts only 1 to 64 hexadecimal digits: nothing that could
        // break a line of the tokens file
        Ok(format!("store:{}", remote.store_id()?))
    }

    /// Whether tokens filed under a store id may be sent to this server: only the in-process
    /// server or one on a loopback address. (The store id is public: a remote server could
    /// claim another database's id and collect its tokens; tokens for a remote URL are
    /// filed under, and sent only to, that URL.)
    pub(crate) fn trusts_store_id(&self) -> bool {
        match &self.server {
            None => true,
            Some(url) => is_loopback_url(url),
        }
    }

    /// The token of the collection on the server behind `remote`: filed under this endpoint
    /// (the URL, or the in-process database), or, for the in-process or a loopback server,
    /// under the server's store id (a collection created in-process on a database and later
    /// served from it on this machine).
    pub(crate) fn token(&self, remote: &Remote) -> Result<Zeroizing<String>> {
        let tokens = self.read_tokens()?;
        let endpoint = self.endpoint();
        if let Some(t) = find_token(&tokens, &endpoint, &self.collection) {
            // An in-process or loopback server: file the token under the store id too (lines
            // of older versions have only the endpoint), so that the same database served
            // on this machine finds it. Best effort.
            if self.trusts_store_id() {
                let key = Self::store_key(remote)?;
                if find_token(&tokens, &key, &self.collection).is_none()
                    && let Err(e) = self.save_token(&key, &t)
                {
                    eprintln!("warning: could not file the token under {key}: {e}");
                }
            }
            return Ok(t);
        }
        let key = if self.trusts_store_id() {
            let key = Self::store_key(remote)?;
            if let Some(t) = find_token(&tokens, &key, &self.collection) {
                return Ok(t);
            }
            key
        } else {
            String::from("store id not used for remote servers")
        };
        Err(AppError::Usage(format!(
            "no token for collection `{}` on this server ({endpoint}; {key}); run `blindsight \
             create` first, or use the keystore that created it (tokens live in {})",
            self.collection,
            self.tokens_path().display()
        )))
    }

    /// Appends the token of the collection under `key` to the tokens file.
    pub(crate) fn save_token(&self, key: &str, token: &str) -> Result<()> {
        if self.collection.chars().any(char::is_control) {
            return Err(AppError::Usage(
                "a collection name cannot contain tabs, newlines or other control characters"
                    .into(),
            ));
        }
        let line = Zeroizing::new(format!("{key}\t{}\t{token}\n", self.collection));
        Ok(keystore::append_private(
            &self.tokens_path(),
            line.as_bytes(),
        )?)
    }

    /// Connects to the server, starting it in-process when no URL was given. Plain HTTP to
    /// a server that is not on a loopback address is refused unless `insecure_http` (tokens
    /// would cross the network in clear).
    pub(crate) fn connect(&self) -> Result<(Option<LocalServer>, Remote)> {
        match &self.server {
            Some(url) => {
                let plain = url
                    .get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
                if plain && !is_loopback_url(url) && !self.insecure_http {
                    return Err(AppError::Usage(format!(
                        "refusing to send tokens in clear to {}: use an https:// server (with \
                         --ca-file for a private CA), or --insecure-http if the network \
                         between you and it is trusted",
                        names::for_terminal(url)
                    )));
                }
                Ok((None, Remote::with_trust(url, &self.trust()?)?))
            }
            None => {
                if let Some(dir) = self.db.parent().filter(|d| !d.as_os_str().is_empty()) {
                    keystore::prepare_private_dir(dir, false)?;
                }
                let server = LocalServer::start(ServerOptions::new(self.db.clone()))?;
                let remote = Remote::new(server.url())?;
                Ok((Some(server), remote))
            }
        }
    }

    /// What this client trusts of the server's certificate besides the public roots.
    pub fn trust(&self) -> Result<Trust> {
        Ok(Trust::from_options(
            self.ca_file.as_deref(),
            self.fingerprint.as_deref(),
        )?)
    }

    pub(crate) fn client(&self) -> Result<(Option<LocalServer>, Client)> {
        let keystore = self.load_keystore()?;
        let (server, remote) = self.connect()?;
        let token = self.token(&remote)?;
        Ok((
            server,
            Client::new(keystore, remote.with_token(&token), &self.collection)?,
        ))
    }
}

/// Whether `url` names a server on this machine (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).ok().is_some_and(|u| {
        let host = u.host_str().unwrap_or("");
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// The preset of a keystore `create` makes when there is none and no scheme is given.
pub const DEFAULT_PRESET: &str = "ckks-8192";

/// `blindsight keygen`: the keystore's folder is created with mode 0700 (or checked). A
/// keystore without a passphrase gets a warning on stderr.
pub fn keygen(env: &Env, preset: &str) -> Result<()> {
    env.prepare_keystore_dir()?;
    let ks = Keystore::generate(preset)?;
    let pass = env.new_passphrase()?;
    ks.save(&env.keystore, pass.as_deref().map(String::as_str))?;
    if pass.is_none() {
        eprintln!(
            "warning: the keystore is not protected by a passphrase: anyone who can read {} \
             can decrypt the collection's images; --passphrase-file FILE (or \
             BLINDSIGHT_PASSPHRASE) protects a keystore when it is made",
            env.keystore.display()
        );
    }
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
/// `preset`), and refuses a keystore of another scheme. The in-process server is given its
/// own admin token; a `--server` the user's (`--admin-token-file` or
/// `BLINDSIGHT_ADMIN_TOKEN`). The collection's token is filed under the server's store id.
pub fn create(env: &Env, preset: Option<&str>, vectors: &VectorKind) -> Result<()> {
    match preset {
        _ if env.keystore.exists() => env.prepare_keystore_dir()?,
        Some(p) => keygen(env, p)?,
        None => keygen(env, DEFAULT_PRESET)?,
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
    // Read before the evaluation keys are made: a bad token file fails at once.
    let user_admin = match env.server {
        Some(_) => env.admin_token()?,
        None => None,
    };
    let (server, remote) = env.connect()?;
    register(env, &ks, server.as_ref(), &remote, user_admin, vectors)?;
    println!(
        "created collection `{}` ({}) at {}",
        env.collection,
        ks.preset,
        env.endpoint()
    );
    Ok(())
}

/// Creates `env.collection` of `vectors` on the server behind `remote` with the keystore's
/// evaluation keys and files its token: authorized by the in-process server's own admin
/// token (`local`), else by the user's (`user_admin`). The token is filed under the endpoint
/// and, for an in-process or loopback server, under its store id.
pub(crate) fn register(
    env: &Env,
    ks: &Keystore,
    local: Option<&LocalServer>,
    remote: &Remote,
    user_admin: Option<Zeroizing<String>>,
    vectors: &VectorKind,
) -> Result<()> {
    let key = if env.trusts_store_id() {
        Some(Env::store_key(remote)?)
    } else {
        None
    };
    let admin = match local {
        Some(local) => Some(Zeroizing::new(local.admin_token().to_string())),
        None => user_admin,
    };
    let authorized = match &admin {
        Some(t) => remote.with_token(t),
        None => remote.clone(),
    };
    let token = Zeroizing::new(
        Client::create(ks, &authorized, &env.collection, vectors).map_err(|e| match e {
            ClientError::Remote {
                status: 401 | 403,
                message,
            } if local.is_none() => match admin {
                Some(_) => ClientError::AdminTokenRejected {
                    server: env.endpoint(),
                    message: names::for_terminal(&message),
                },
                None => ClientError::AdminTokenRequired {
                    server: env.endpoint(),
                },
            },
            e => e,
        })?,
    );
    if !is_usable_token(&token) {
        return Err(ClientError::Malformed(format!(
            "the server answered with an unusable collection token (not 1 to \
             {MAX_TOKEN_BYTES} visible ASCII characters); nothing was saved"
        ))
        .into());
    }
    env.save_token(&env.endpoint(), &token)?;
    if let Some(key) = &key {
        env.save_token(key, &token)?;
    }
    Ok(())
}

/// `blindsight ingest PATH...`: files, and folders walked recursively (unless `recursive`
/// is false), streamed to the collection a window of files at a time with a progress bar per
/// file. Every file left out is listed with its reason; files that could not be read or
/// decoded make the command fail (after everything else is ingested), with how many.
pub fn ingest(
    env: &Env,
    paths: &[PathBuf],
    recursive: bool,
    batch_images: usize,
    output: Output,
) -> Result<IngestReport> {
    let started = std::time::Instant::now();
    let walk = walk(paths, recursive)?;
    let (_server, client) = env.client()?;
    let client = client.with_batch_images(batch_images);
    let total_bytes: u64 = walk.files.iter().map(|f| f.size).sum();
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    // a log (not a terminal) gets one line per window instead of the bar
    let log = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = client.ingest_items(&walk.files, |p| {
        if log {
            eprintln!(
                "progress files={}/{} bytes={}/{} added={} present={} failed={} elapsed_s={:.1} eta_s={}",
                p.files_done,
                p.files_total,
                p.bytes_done,
                p.bytes_total,
                p.added,
                p.duplicates,
                p.failed,
                p.elapsed_s,
                p.eta_s().map_or("?".into(), |e| format!("{e:.0}"))
            );
        }
        bar.set_position(p.bytes_done);
        bar.set_message(format!(
            "{}/{} files, {} added, {} present, {} failed",
            p.files_done, p.files_total, p.added, p.duplicates, p.failed
        ));
    })?;
    bar.finish_and_clear();
    if output.is_json() {
        let reasons = |list: &[(String, String)]| -> Vec<serde_json::Value> {
            list.iter()
                .map(|(name, reason)| serde_json::json!({ "name": name, "reason": reason }))
                .collect()
        };
        let m = &report.merged;
        output::print_json(serde_json::json!({
            "collection": env.collection,
            "files": walk.files.len(),
            "bytes": total_bytes,
            "added": report.added,
            "duplicates": report.duplicates,
            "failed": reasons(&report.failed),
            "left_out": reasons(&walk.skipped),
            "ids": report.ids.iter().map(|(name, id)| serde_json::json!({ "name": name, "id": id })).collect::<Vec<_>>(),
            "merged": {
                "replaced": m.replaced,
                "written": m.written,
                "thumbnails": m.thumbnails,
                "thumbnails_failed": m.thumbnails_failed,
                "seconds": m.elapsed.as_secs_f64(),
            },
            "merge_failed": report.merge_failed,
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        print_ingest(&report, &walk.skipped);
    }
    if !report.failed.is_empty() {
        return Err(AppError::Incomplete {
            failed: report.failed.len(),
            total: walk.files.len(),
        });
    }
    Ok(report)
}

/// An ingest's outcome for a person: counts, merging, every file left out or skipped.
pub(crate) fn print_ingest(report: &IngestReport, left_out: &[(String, String)]) {
    println!(
        "added {} images, skipped {} already present",
        report.added, report.duplicates
    );
    if let Some(why) = &report.merge_failed {
        println!(
            "merging segments failed (the images are added; the next ingest or `compact` \
             merges): {}",
            names::for_terminal_bounded(why, 300)
        );
    }
    print_thumbnails_made(&report.merged);
    if report.merged.replaced > 0 {
        println!(
            "merged {} segments into {} in {:.2} s",
            report.merged.replaced,
            report.merged.written,
            report.merged.elapsed.as_secs_f64()
        );
    }
    for (name, reason) in left_out {
        println!(
            "left out {}: {}",
            names::for_terminal(name),
            names::for_terminal_bounded(reason, 300)
        );
    }
    for (name, reason) in &report.failed {
        println!(
            "skipped {}: {}",
            names::for_terminal(name),
            names::for_terminal_bounded(reason, 300)
        );
    }
}

/// `blindsight search IMAGE`: prints the matches (names made safe for a terminal) and, with
/// `out`, writes the decrypted matches there as `<rank>-<name>` (see [`names::for_file`]),
/// new files of mode 0600, never replacing anything.
pub fn search(
    env: &Env,
    image: &Path,
    top: usize,
    rule: Option<RankRule>,
    out: Option<&Path>,
    report: Option<&Path>,
    output: Output,
) -> Result<()> {
    if top == 0 {
        return Err(AppError::Usage(
            "--top 0 asks for no match: give --top 1 or more".into(),
        ));
    }
    let (_server, client) = env.client()?;
    let bytes = std::fs::read(image).map_err(|e| AppError::io(image, e))?;
    let name = image.display().to_string();
    if rule == Some(RankRule::ChannelTriple)
        && !matches!(client.vectors(), VectorKind::Pixels { .. })
    {
        return Err(AppError::Usage(format!(
            "--rule triple ranks the three colour channels of pixel collections; collection \
             `{}` holds {}: use --rule whole (its default)",
            env.collection,
            client.vectors()
        )));
    }
    let rule = rule.unwrap_or_else(|| default_rule(client.vectors()));
    let (matches, t) = client.search(&bytes, &name, top, rule)?;
    if !output.is_json() {
        print_matches(&matches, client.vectors(), &t);
    }
    let mut notes = Vec::new();
    let ids: Vec<i64> = matches.iter().map(|m| m.id).collect();
    // the originals only when asked for (--out): the report shows the sealed thumbnails
    let files = match out {
        Some(_) => client.fetch(&ids)?,
        None => Vec::new(),
    };
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| AppError::io(dir, e))?;
        let mut written = 0usize;
        for (rank, m) in matches.iter().enumerate() {
            if let Some(data) = file_of(&files, m.id) {
                let file = format!("{:02}-{}", rank + 1, names::for_file(&m.name));
                keystore::write_new_private(dir, &file, data)?;
                written += 1;
            }
        }
        notes.push(format!(
            "wrote {written} decrypted matches to {} (fetched by id: the server learns which \
             images these are)",
            dir.display()
        ));
    }
    if let Some(path) = report {
        // by private retrieval: the server learns neither which thumbnails nor how many
        // matched (always the same requests for the same k)
        let (thumbnails, missing) = private_thumbnails(&client, &matches)?;
        if missing > 0 {
            notes.push(format!(
                "{missing} of the results have no thumbnail yet (ingested before thumbnails \
                 existed): `blindsight compact` gives them one"
            ));
        }
        let page = ReportPage {
            title: format!("blindsight search: {}", names::for_terminal(&name)),
            notes: vec![
                format!(
                    "collection {:?} on {}",
                    env.collection,
                    env.server.as_deref().unwrap_or("the in-process server")
                ),
                format!(
                    "{} · {} · ranked by {}",
                    client.vectors(),
                    client.preset(),
                    rule_name(rule)
                ),
            ],
            sections: vec![QuerySection {
                heading: name.clone(),
                query: Thumbnail::of_file(&bytes, &name).ok(),
                columns: vec![ResultColumn {
                    title: format!("top {} of the collection", matches.len()),
                    matches: ShownMatch::list(&matches, &thumbnails, &files, None),
                    timing: t,
                }],
            }],
            summary: None,
        };
        page.write(path)?;
        notes.push(format!("wrote the report to {}", path.display()));
    }
    if output.is_json() {
        output::print_json(serde_json::json!({
            "collection": env.collection,
            "query": name,
            "rule": match rule {
                RankRule::ChannelTriple => "triple",
                RankRule::WholeCosine => "whole",
            },
            "matches": output::matches_json(&matches),
            "timing": output::timing_json(&t),
            "notes": notes,
        }));
    } else {
        for n in &notes {
            println!("{n}");
        }
    }
    Ok(())
}

/// The matches as a table whose name column fits the names, and the timing.
pub(crate) fn print_matches(matches: &[Match], vectors: &VectorKind, t: &SearchTiming) {
    let pixels = matches!(vectors, VectorKind::Pixels { .. });
    let width = output::name_column("name", matches.iter().map(|m| m.name.as_str()));
    let scores = if pixels {
        "  cos R    cos G    cos B    whole"
    } else {
        " cosine"
    };
    println!(
        "rank  {:<20}  {} {scores}",
        "id",
        output::fit("name", width)
    );
    for (i, m) in matches.iter().enumerate() {
        let channels: String = if pixels {
            m.channel_cosines
                .iter()
                .map(|c| format!("{c:>7.4}  "))
                .collect()
        } else {
            String::new()
        };
        println!(
            "{:>4}  {:<20}  {} {channels}{:>7.4}",
            i + 1,
            m.id,
            output::fit(&m.name, width),
            m.whole_cosine
        );
    }
    println!("timing: {t}");
}

/// A rule's name as the CLI spells it.
pub fn rule_name(rule: RankRule) -> &'static str {
    match rule {
        RankRule::ChannelTriple => "the triple of squared channel cosines",
        RankRule::WholeCosine => "cosine",
    }
}

/// The ranking rule of a kind when none is asked for: the original demo's for pixels, the
/// cosine for an embedding.
pub fn default_rule(vectors: &VectorKind) -> RankRule {
    match vectors {
        VectorKind::Pixels { .. } => RankRule::ChannelTriple,
        _ => RankRule::WholeCosine,
    }
}

/// `blindsight delete ID...`.
pub fn delete(env: &Env, ids: &[i64]) -> Result<()> {
    let (_server, client) = env.client()?;
    let unique: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    let deleted = client.delete(ids)?;
    println!("deleted {deleted} images");
    // not an error: a delete run again after an interruption finds its ids gone
    if deleted < unique.len() as u64 {
        println!(
            "{} of the {} ids given are not images of collection `{}` (never there, or deleted \
             already; `blindsight search` prints the ids)",
            unique.len() as u64 - deleted,
            unique.len(),
            env.collection
        );
    }
    Ok(())
}

/// Says how many images ingested before thumbnails existed were given one by a merge or
/// compaction, and how many could not be.
fn print_thumbnails_made(r: &CompactReport) {
    if r.thumbnails > 0 {
        println!(
            "made thumbnails for {} images ingested before",
            r.thumbnails
        );
    }
    if r.thumbnails_failed > 0 {
        println!(
            "could not make thumbnails for {} images (their files did not decode); the next \
             compaction tries again",
            r.thumbnails_failed
        );
    }
}

/// `blindsight compact`.
pub fn compact(env: &Env) -> Result<()> {
    let (_server, client) = env.client()?;
    let r = client.compact()?;
    print_thumbnails_made(&r);
    if r.replaced == 0 && r.purged == 0 && r.skipped == 0 {
        println!("nothing to compact: the segments are merged and hold no deleted images");
        return Ok(());
    }
    println!(
        "replaced {} segments by {}, purged {} deleted images in {:.2} s",
        r.replaced,
        r.written,
        r.purged,
        r.elapsed.as_secs_f64()
    );
    if r.skipped > 0 {
        println!(
            "left {} segments for the next compaction: images were deleted meanwhile",
            r.skipped
        );
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
    /// TLS with the self-signed certificate kept beside the database (made on first use).
    pub tls_self_signed: bool,
    /// Serve plain HTTP on a non-loopback address anyway.
    pub insecure_http: bool,
    /// Per-collection quota.
    pub quota: blindsight_server::store::Quota,
    /// Searches and ingests at once.
    pub max_concurrent: usize,
}

/// Reads the admin token from `path`, or creates the file (mode 0600, fsynced with its
/// folder) with a fresh random token if it does not exist. An existing file that other
/// users may read (group or other permission bits) is refused, with the command that fixes
/// it.
pub fn admin_token(path: &Path) -> Result<Zeroizing<String>> {
    if path.exists() {
        let mode = std::fs::metadata(path)
            .map(|m| blindsight_os::files::mode_of(&m))
            .map_err(|e| AppError::io(path, e))?;
        if mode & 0o077 != 0 {
            return Err(ClientError::Secret {
                what: "admin token",
                origin: path.display().to_string(),
                reason: format!(
                    "the file is readable by other users (mode {mode:04o}); restrict it with \
                     `chmod 600 {}` and start again",
                    path.display()
                ),
            }
            .into());
        }
        let token = keystore::read_secret_file(path, "admin token")?;
        if token.trim().len() < 16 {
            return Err(AppError::Usage(format!(
                "{}: the admin token must be at least 16 characters",
                path.display()
            )));
        }
        return Ok(token);
    }
    let token = blindsight_os::random::token()?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
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
    std::io::Write::write_all(&mut f, token.as_bytes())
        .and_then(|()| std::io::Write::write_all(&mut f, b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| AppError::io(path, e))?;
    if let Some(dir) = dir {
        keystore::sync_dir(dir)?;
    }
    Ok(token)
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

/// The names a self-signed certificate for `listen` is made for (besides `localhost` and
/// the loopback addresses): the address listened on, unless it is a wildcard, and this
/// machine's host name.
fn certificate_names(listen: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((host, _)) = listen.rsplit_once(':') {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !matches!(host, "" | "0.0.0.0" | "::") {
            out.push(host.to_string());
        }
    }
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && name.len() <= 253 {
            out.push(name.to_string());
        }
    }
    out
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
        server.tls = Some(blindsight_server::tls::server_config(cert, key)?);
    }
    server.admin = if opts.open_registration {
        blindsight_server::AdminAccess::Open
    } else {
        blindsight_server::AdminAccess::token(&admin_token(&opts.admin_token_file)?)
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
    let mut opts = opts.clone();
    let self_signed = if opts.tls_self_signed {
        let made = blindsight_server::tls::self_signed(&opts.db, &certificate_names(&opts.listen))?;
        opts.tls = Some((made.cert.clone(), made.key.clone()));
        Some(made)
    } else {
        None
    };
    let opts = &opts;
    let server = server_options(opts)?;
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
        if let Some(made) = &self_signed {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            println!(
                "TLS: self-signed certificate {} ({})",
                made.cert.display(),
                if made.made {
                    "made now"
                } else {
                    "kept from before"
                }
            );
            println!("certificate fingerprint: {}", made.fingerprint);
            println!(
                "clients trust it with: blindsight remote add NAME https://HOST:{port} \
                 --server-fingerprint {}",
                made.fingerprint
            );
        }
        if opts.open_registration {
            println!("open registration: anyone who reaches this server may create collections");
        } else {
            println!(
                "admin token (creates collections): {}",
                opts.admin_token_file.display()
            );
        }
        blindsight_server::serve(listener, server, shutdown_signal()).await?;
        Ok::<(), AppError>(())
    });
    // the listener already gave requests in flight the deadline: blocking work still
    // running gets one more second
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    println!("blindsight server stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(server: Option<&str>) -> Env {
        Env {
            keystore: PathBuf::from("ks"),
            passphrase_file: None,
            admin_token_file: None,
            ca_file: None,
            fingerprint: None,
            insecure_http: false,
            server: server.map(str::to_string),
            db: PathBuf::from("g.db"),
            collection: "c".into(),
        }
    }

    #[cfg(unix)]
    #[test]
    #[allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    fn an_admin_token_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let made = admin_token(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(admin_token(&path).unwrap().as_str(), made.as_str());
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match admin_token(&path) {
                Err(e) => assert!(e.to_string().contains("chmod 600"), "{e}"),
                Ok(_) => panic!("mode {mode:o} accepted"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(admin_token(&path).unwrap().as_str(), made.as_str());
    }

    #[test]
    fn store_ids_are_trusted_only_for_local_servers() {
        for local in [
            None,
            Some("http://127.0.0.1:7878"),
            Some("http://localhost:1"),
            Some("https://[::1]:7878/"),
            Some("http://127.3.2.1"),
        ] {
            assert!(env(local).trusts_store_id(), "{local:?}");
        }
        for remote in [
            "https://gallery.example.org",
            "http://10.0.0.5:7878",
            "http://localhost.evil.example",
            "http://[2001:db8::1]:7878",
            "not a url",
        ] {
            assert!(!env(Some(remote)).trusts_store_id(), "{remote}");
        }
    }

    #[test]
    fn plain_http_to_a_remote_server_is_refused_unless_asked_for() {
        let e = env(Some("http://10.0.0.5:7878"));
        assert!(matches!(e.connect(), Err(AppError::Usage(m)) if m.contains("--insecure-http")));
        let e = Env {
            insecure_http: true,
            ..env(Some("http://10.255.255.1:9"))
        };
        // allowed: it gets as far as making the client
        assert!(e.connect().is_ok());
    }
}
