//! The `blindsight` command line.

use blindsight::bench::{self, BenchOptions};
use blindsight::commands::{self, Env, Output};
use blindsight::demo::{self, DemoOptions};
use blindsight::remotes::{RemoteEntry, Remotes};
use blindsight_search::rank::RankRule;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Encrypted image similarity search.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemeArg {
    Bfv,
    Ckks,
}

#[derive(Clone, Copy, ValueEnum)]
enum VectorsArg {
    /// One learned feature vector per image (EfficientNet-Lite0, embedded): finds the
    /// same photo after crops, edits and recompression, and similar content.
    Embedding,
    /// The original demo's 64×64 RGB pixels, three channels.
    Pixels,
    /// Your own vectors (`--dim`, `--model`): CLIP embeddings, face templates, document
    /// embeddings; normalized by blindsight and compared by cosine (`ingest-vectors`,
    /// `search --vector`).
    Vectors,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuleArg {
    /// Triple of squared per-channel cosines closest to (1, 1, 1) (the original demo's rule).
    Triple,
    /// Cosine of the whole vectors (for an embedding: its cosine).
    Whole,
}

/// Where the client finds its keystore, its tokens and its server.
#[derive(Args, Clone)]
struct ClientArgs {
    /// Keystore file (default: ~/.blindsight/keystore, or $BLINDSIGHT_HOME/keystore).
    #[arg(long, global = true)]
    keystore: Option<PathBuf>,
    /// File holding the keystore passphrase (or set BLINDSIGHT_PASSPHRASE).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    /// Server URL, or the name of a server remembered with `blindsight remote add`; without
    /// it the default remembered server, or, if none, the server runs in-process on --db.
    #[arg(long, global = true)]
    server: Option<String>,
    /// The SHA-256 fingerprint the server's TLS certificate must have (`SHA256:…`, as
    /// `blindsight serve --tls-self-signed` prints it): that certificate is trusted exactly.
    #[arg(long, global = true)]
    server_fingerprint: Option<String>,
    /// SQLite file of the in-process server (default: ~/.blindsight/gallery.db).
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    /// Collection name.
    #[arg(long, global = true, default_value = "default")]
    collection: String,
    /// File holding the server's admin token, which `create` needs with --server (or set
    /// BLINDSIGHT_ADMIN_TOKEN).
    #[arg(long, global = true)]
    admin_token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https --server, besides the public roots; or the
    /// server's own self-signed certificate, then trusted exactly.
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Allow plain http:// to a --server that is not on this machine (tokens in clear).
    #[arg(long, global = true)]
    insecure_http: bool,
}

impl ClientArgs {
    /// Where the command works: the options given, completed by the remembered server they
    /// name (or the default one when neither --server nor --db is given).
    fn env(&self) -> blindsight::Result<Env> {
        let home = Env::default_home();
        let remotes = Remotes::load(&Remotes::path(&home))?;
        let remembered = match (&self.server, &self.db) {
            (Some(server), _) => remotes.named(server).cloned().or_else(|| {
                // a URL given in full: the trust remembered for it still applies
                remotes.servers.values().find(|e| &e.url == server).cloned()
            }),
            (None, None) => remotes.default_entry().map(|(_, e)| e.clone()),
            (None, Some(_)) => None,
        };
        let server = match &remembered {
            Some(e) => Some(e.url.clone()),
            None => self.server.clone(),
        };
        let from_remote = |f: fn(&RemoteEntry) -> Option<PathBuf>| remembered.as_ref().and_then(f);
        Ok(Env {
            keystore: self
                .keystore
                .clone()
                .unwrap_or_else(|| home.join("keystore")),
            passphrase_file: self.passphrase_file.clone(),
            server,
            db: self.db.clone().unwrap_or_else(|| home.join("gallery.db")),
            collection: self.collection.clone(),
            admin_token_file: self
                .admin_token_file
                .clone()
                .or_else(|| from_remote(|e| e.admin_token_file.clone())),
            ca_file: self
                .ca_file
                .clone()
                .or_else(|| from_remote(|e| e.ca_file.clone())),
            fingerprint: self
                .server_fingerprint
                .clone()
                .or_else(|| remembered.as_ref().and_then(|e| e.fingerprint.clone())),
            insecure_http: self.insecure_http,
        })
    }
}

#[derive(Subcommand)]
enum RemoteAction {
    /// Remember a server (after checking that it answers with a certificate this trust
    /// accepts); the first one remembered becomes the default.
    Add {
        /// Its name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// Its URL, e.g. https://nas.local:7878.
        url: String,
        /// A CA certificate (PEM) to trust for it, or its own self-signed certificate.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The SHA-256 fingerprint its certificate must have (as `serve` prints it).
        #[arg(long)]
        server_fingerprint: Option<String>,
        /// The file holding its admin token (for `create`).
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// Make it the default server.
        #[arg(long)]
        default: bool,
        /// Remember it without checking that it answers.
        #[arg(long)]
        no_check: bool,
    },
    /// List the remembered servers.
    List,
    /// Forget a server.
    Remove {
        /// Its name.
        name: String,
    },
    /// Make a remembered server the default.
    Default {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Create the client's keystore (HE secret key and payload key), mode 0600.
    Keygen {
        /// Scheme.
        #[arg(long, value_enum, default_value = "ckks")]
        scheme: SchemeArg,
        /// Parameter preset (default: bfv-8192 / ckks-8192).
        #[arg(long)]
        preset: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a collection on the server and upload the public evaluation keys (and the
    /// keystore first, if there is none).
    Create {
        /// Scheme (default: the keystore's; with no keystore, one is made: ckks-8192).
        #[arg(long, value_enum)]
        scheme: Option<SchemeArg>,
        /// Parameter preset (default: bfv-8192 / ckks-8192 for --scheme).
        #[arg(long)]
        preset: Option<String>,
        /// What the collection encrypts.
        #[arg(long, value_enum, default_value = "embedding")]
        vectors: VectorsArg,
        /// With `--vectors vectors`: the dimension of your vectors (1 to 32 768).
        #[arg(long, required_if_eq("vectors", "vectors"))]
        dim: Option<usize>,
        /// With `--vectors vectors`: the name of the model that makes them (letters, digits,
        /// `@._-`), recorded as the collection's identity: a query of another model is refused.
        #[arg(long, required_if_eq("vectors", "vectors"))]
        model: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add your own vectors to a `vectors` collection: a `.npy` array of shape (n, dim)
    /// (float32 or float64), one name per line in a text file, and optionally a folder
    /// holding each vector's payload as a file of its name (sealed like an image file; one
    /// that is an image also gets a thumbnail).
    IngestVectors {
        /// The vectors (`.npy`, shape (n, dim)).
        npy: PathBuf,
        /// Their names, one per line (n lines).
        #[arg(long)]
        names: PathBuf,
        /// A folder holding the payload of each vector, as a file named by its name.
        #[arg(long)]
        payloads: Option<PathBuf>,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypt image files and add them to the collection: files, and folders read
    /// recursively. Files the collection holds already are skipped (by their bytes); every
    /// file left out is listed with the reason.
    Ingest {
        /// Image files and folders of images.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Read only the files directly in the folders given, not their subfolders.
        #[arg(long)]
        no_recursive: bool,
        /// Print one JSON object (added, duplicates, failed and left-out files with reasons,
        /// ids, merging) instead of lines; the progress bar stays on stderr.
        #[arg(long)]
        json: bool,
        /// Images per uploaded batch (1 to 1024): each batch is committed as it fills, so a
        /// smaller one loses less to an interruption (merging gathers the segments later).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1024))]
        batch_images: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Search the collection for the images most similar to IMAGE.
    Search {
        /// Query image.
        #[arg(required_unless_present = "vector")]
        image: Option<PathBuf>,
        /// Search a `vectors` collection with your own vector instead (`.npy`, shape (dim,)
        /// or (1, dim)).
        #[arg(long, conflicts_with_all = ["image", "out", "report", "rule"])]
        vector: Option<PathBuf>,
        /// With --vector: the model that made it (refused unless it is the collection's).
        #[arg(long, requires = "vector")]
        model: Option<String>,
        /// Number of matches.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Ranking rule (default: `triple` for pixels, `whole` (the cosine) for an embedding).
        #[arg(long, value_enum)]
        rule: Option<RuleArg>,
        /// Write the decrypted matches into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write one self-contained HTML page: the query, the decrypted matches with their
        /// scores, the timing.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print one JSON object (the matches with ids, names and scores, the timing)
        /// instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete images by id.
    Delete {
        /// Image ids (as printed by `search`).
        ids: Vec<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Purge deleted images and merge small segments into as few as fit (re-encrypted on
    /// this client; ingests merge full tiers on their own).
    Compact {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the collection: its kind, parameters, images, segments and bytes.
    Info {
        /// Print the server's JSON answer instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the collections this keystore holds tokens for on the server, or with
    /// --images the collection's images, a page at a time.
    List {
        /// List the images of --collection (id, name, state) instead of the collections.
        #[arg(long)]
        images: bool,
        /// With --images: start after this image id (the `more:` line of the previous page).
        #[arg(long, requires = "images")]
        after: Option<i64>,
        /// With --images: images per page (at most 4096).
        #[arg(long, default_value_t = commands::DEFAULT_PAGE as u64, requires = "images",
              value_parser = clap::value_parser!(u64).range(1..=4096))]
        limit: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remember servers by name (URL, certificate trust, admin token file), so that
    /// `--server NAME`, or nothing for the default one, replaces repeating them.
    Remote {
        #[command(subcommand)]
        action: RemoteAction,
    },
    /// Run the server.
    Serve {
        /// SQLite file.
        #[arg(long)]
        db: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: String,
        /// File holding the admin token that creates collections (created with a fresh
        /// random token, mode 0600, if absent; default: <db>.admin-token).
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// Let anyone who reaches the server create collections (no admin token).
        #[arg(long)]
        open_registration: bool,
        /// Serve TLS with a self-signed certificate made on first use and kept beside the
        /// database (<db>.tls-cert.pem, <db>.tls-key.pem); its fingerprint is printed for
        /// clients to trust (`blindsight remote add NAME URL --server-fingerprint …`).
        #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
        tls_self_signed: bool,
        /// TLS certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
        #[arg(long)]
        insecure_http: bool,
        /// Quota: evaluation key MiB per collection.
        #[arg(long, default_value_t = 256)]
        quota_key_mb: u64,
        /// Quota: images per collection.
        #[arg(long, default_value_t = 1 << 20)]
        quota_images: u64,
        /// Quota: stored GiB per collection.
        #[arg(long, default_value_t = 64)]
        quota_stored_gb: u64,
        /// Quota: segments per collection (ingests past it are refused until the client
        /// merges; clients accept answers of at most 1024 segments).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1024))]
        quota_segments: u64,
        /// Searches, ingests and payload reads at once (more get 503 Retry-After).
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
    },
    /// The local web app: browse, search and ingest your collections in the browser. The
    /// keys stay in this process; the page is served on loopback only, to the browser that
    /// opens the printed URL (its token is good once).
    App {
        /// Loopback address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Open the app in the default browser.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypted search end to end on ~1000 embedded images, both schemes.
    Demo {
        /// Gallery size.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Only this scheme.
        #[arg(long)]
        scheme: Option<SchemeArg>,
        /// Matches printed per query.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Keep each scheme's store and keystore in the working directory (by default they
        /// are removed at the end; the decrypted matches are always kept).
        #[arg(long)]
        keep: bool,
    },
    /// Search quality: edited copies (crop, shift, mirror, JPEG, colour, downscale,
    /// rotation, caption, grayscale) of a sample of a gallery, searched through the
    /// encrypted path; recall@1 / recall@10 per edit and vector kind.
    Eval {
        /// Folder of images (default: the embedded Twemoji images).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Gallery size: the first N images by name (content duplicates dropped).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Originals edited, spread over the gallery.
        #[arg(long, default_value_t = 50)]
        sample: usize,
        /// Scheme.
        #[arg(long, value_enum, default_value = "ckks")]
        scheme: SchemeArg,
        /// Vector kinds compared (default: both).
        #[arg(long, value_enum, value_delimiter = ',')]
        vectors: Vec<VectorsArg>,
        /// Print JSON instead of Markdown tables.
        #[arg(long)]
        json: bool,
    },
    /// The benchmark contract: one JSON object with timings, sizes, accuracy, memory.
    Bench {
        /// Folder of images (default: the embedded Twemoji images).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Gallery size: the first N images by name.
        #[arg(long, default_value_t = 1001)]
        count: usize,
        /// Scheme.
        #[arg(long, value_enum)]
        scheme: SchemeArg,
        /// Parameter preset (default: bfv-8192 / ckks-8192).
        #[arg(long)]
        preset: Option<String>,
        /// Side of the square images are resized to.
        #[arg(long, default_value_t = 64)]
        side: u32,
        /// Gallery index whose perturbed copy is the query (default: 2/3 of the way).
        #[arg(long)]
        query_index: Option<usize>,
        /// Images per ingest batch: one segment each (at most the server's 65 536). Default:
        /// the size merging and compaction build segments up to (the most images whose
        /// upload stays under 384 MiB: 65 536 vectors of 512 values under CKKS, 4 096
        /// 64×64 images under CKKS, 2 048 under BFV).
        #[arg(long)]
        segment_size: Option<usize>,
        /// Write the perturbed query as PNG (to feed the TenSEAL reference the same query).
        #[arg(long)]
        write_query: Option<PathBuf>,
        /// Keep the store (SQLite and segment files) in this new directory (default: a
        /// temporary one, removed afterwards).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Drop the page cache before the store is opened, so that the first query reads
        /// the disk (needs root).
        #[arg(long)]
        cold: bool,
        /// Score the query R times (`score_s` is the first, `score_s_runs` all of them).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Print one JSON object (otherwise, one field per line).
        #[arg(long)]
        json: bool,
        /// Random unit vectors instead of images (one channel, as an embedding collection
        /// holds): `--count` of them, of dimension `--dim`.
        #[arg(long)]
        synthetic: bool,
        /// Dimension of the synthetic vectors.
        #[arg(long, default_value_t = 1280, requires = "synthetic")]
        dim: usize,
        /// Draw the timings of this run and of the `--compare` reports as an SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Earlier reports of the same contract to draw beside this run (JSON files of
        /// `blindsight bench --json` or of the peers in shared/bench), in legend order.
        #[arg(long)]
        compare: Vec<PathBuf>,
    },
    /// Private retrieval benchmark: k records out of N by PIR, one JSON object (beside
    /// shared/bench/spiral_reference.sh).
    BenchPir {
        /// Records in the database.
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Bytes per record (a sealed thumbnail is 16 384).
        #[arg(long, default_value_t = 16_384)]
        record_bytes: usize,
        /// Records per search.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Searches measured (timings are medians).
        #[arg(long, default_value_t = 3)]
        queries: usize,
        /// Buckets of the batch layout (default 16; a multiple of --hashes): each search
        /// answers one record per bucket. For comparing layouts; the product uses the
        /// default.
        #[arg(long)]
        buckets: Option<usize>,
        /// Buckets each record is in (default 4): fewer means less work per record and
        /// more searches that cannot place all k results (reported as `unplaced`).
        #[arg(long)]
        hashes: Option<usize>,
        /// Print one JSON object (otherwise, one field per line).
        #[arg(long)]
        json: bool,
    },
    /// Loopback load test: a `serve` process, concurrent clients mixing search, ingest,
    /// fetch and hostile requests; rates, latencies, errors and the server's peak memory.
    BenchServer {
        /// Parameter preset of the collection.
        #[arg(long, default_value = "ckks-8192")]
        preset: String,
        /// Gallery size (embedded images, pixel-identical twins skipped).
        #[arg(long, default_value_t = 200)]
        gallery: usize,
        /// Concurrent client threads.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Length of the measured run (seconds).
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// The server's admission limit (passed to `serve --max-concurrent`).
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
        /// Seed of the clients' random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Working folder for the database and the server's log (default: a temporary one,
        /// removed at the end).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A hostile tenant beside the clients: the owner of a second collection holding
        /// slow uploads open and adding one-image segments past its segment cap.
        #[arg(long)]
        hostile_tenant: bool,
        /// Print one JSON object (the tables go to stderr).
        #[arg(long)]
        json: bool,
    },
}

fn preset_of(scheme: SchemeArg) -> String {
    match scheme {
        SchemeArg::Bfv => "bfv-8192".into(),
        SchemeArg::Ckks => "ckks-8192".into(),
    }
}

/// The kind `create` makes: an image kind, or the user's vectors of `dim` by `model`.
fn vector_kind(
    v: VectorsArg,
    dim: Option<usize>,
    model: Option<String>,
) -> blindsight::Result<blindsight_search::VectorKind> {
    use blindsight_client::encoder;
    match (v, dim, model) {
        (VectorsArg::Embedding, None, None) => Ok(encoder::embedding_kind()),
        (VectorsArg::Pixels, None, None) => Ok(encoder::pixels_kind()),
        (VectorsArg::Vectors, Some(dim), Some(model)) => Ok(encoder::vectors_kind(dim, &model)?),
        (VectorsArg::Vectors, _, _) => Err(blindsight::AppError::Usage(
            "--vectors vectors needs --dim D and --model NAME".into(),
        )),
        _ => Err(blindsight::AppError::Usage(
            "--dim and --model are for --vectors vectors (the image kinds fix their own)".into(),
        )),
    }
}

fn run(command: Command) -> blindsight::Result<()> {
    match command {
        Command::Keygen {
            scheme,
            preset,
            client,
        } => commands::keygen(&client.env()?, &preset.unwrap_or_else(|| preset_of(scheme))),
        Command::Create {
            scheme,
            preset,
            vectors,
            dim,
            model,
            client,
        } => {
            let preset = preset.or_else(|| scheme.map(preset_of));
            let kind = vector_kind(vectors, dim, model)?;
            commands::create(&client.env()?, preset.as_deref(), &kind)
        }
        Command::IngestVectors {
            npy,
            names,
            payloads,
            json,
            client,
        } => commands::vectors::ingest(
            &client.env()?,
            &npy,
            &names,
            payloads.as_deref(),
            Output::json_if(json),
        )
        .map(|_| ()),
        Command::Ingest {
            paths,
            no_recursive,
            json,
            batch_images,
            client,
        } => commands::ingest(
            &client.env()?,
            &paths,
            !no_recursive,
            batch_images as usize,
            Output::json_if(json),
        )
        .map(|_| ()),
        Command::Search {
            vector: Some(vector),
            model,
            top,
            json,
            client,
            ..
        } => commands::vectors::search(
            &client.env()?,
            &vector,
            model.as_deref(),
            top,
            Output::json_if(json),
        ),
        Command::Search {
            image,
            top,
            rule,
            out,
            report,
            json,
            client,
            ..
        } => {
            let rule = rule.map(|r| match r {
                RuleArg::Triple => RankRule::ChannelTriple,
                RuleArg::Whole => RankRule::WholeCosine,
            });
            let image = image.ok_or_else(|| {
                blindsight::AppError::Usage("give a query image, or --vector FILE.npy".into())
            })?;
            commands::search(
                &client.env()?,
                &image,
                top,
                rule,
                out.as_deref(),
                report.as_deref(),
                Output::json_if(json),
            )
        }
        Command::Delete { ids, client } => commands::delete(&client.env()?, &ids),
        Command::Info { json, client } => commands::info(&client.env()?, Output::json_if(json)),
        Command::List {
            images,
            after,
            limit,
            json,
            client,
        } => {
            let output = Output::json_if(json);
            if images {
                commands::images(&client.env()?, after, limit as usize, output)
            } else {
                commands::collections(&client.env()?, output)
            }
        }
        Command::Compact { client } => commands::compact(&client.env()?),
        Command::App {
            listen,
            open,
            client,
        } => blindsight::webapp::run(client.env()?, &listen, open),
        Command::Serve {
            db,
            listen,
            admin_token_file,
            open_registration,
            tls_self_signed,
            tls_cert,
            tls_key,
            insecure_http,
            quota_key_mb,
            quota_images,
            quota_stored_gb,
            quota_segments,
            max_concurrent,
        } => {
            let admin_token_file = admin_token_file.unwrap_or_else(|| {
                let mut p = db.clone().into_os_string();
                p.push(".admin-token");
                PathBuf::from(p)
            });
            commands::serve(&commands::ServeOptions {
                db,
                listen,
                admin_token_file,
                open_registration,
                tls: tls_cert.zip(tls_key),
                tls_self_signed,
                insecure_http,
                quota: blindsight_server::store::Quota {
                    key_bytes: quota_key_mb.saturating_mul(1 << 20),
                    images: quota_images,
                    stored_bytes: quota_stored_gb.saturating_mul(1 << 30),
                    segments: quota_segments,
                },
                max_concurrent,
            })
        }
        Command::Remote { action } => {
            let home = Env::default_home();
            match action {
                RemoteAction::Add {
                    name,
                    url,
                    ca_file,
                    server_fingerprint,
                    admin_token_file,
                    default,
                    no_check,
                } => {
                    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
                    commands::remembered::add(
                        &home,
                        &name,
                        RemoteEntry {
                            url,
                            ca_file: ca_file.map(absolute),
                            fingerprint: server_fingerprint,
                            admin_token_file: admin_token_file.map(absolute),
                        },
                        default,
                        !no_check,
                    )
                }
                RemoteAction::List => commands::remembered::list(&home),
                RemoteAction::Remove { name } => commands::remembered::remove(&home, &name),
                RemoteAction::Default { name } => commands::remembered::set_default(&home, &name),
            }
        }
        Command::Demo {
            count,
            scheme,
            top,
            keep,
        } => {
            let presets = match scheme {
                Some(s) => vec![preset_of(s)],
                None => vec![preset_of(SchemeArg::Bfv), preset_of(SchemeArg::Ckks)],
            };
            demo::run(&DemoOptions {
                count,
                presets,
                top,
                keep,
            })
        }
        Command::Eval {
            images,
            count,
            sample,
            scheme,
            vectors,
            json,
        } => {
            let vectors = if vectors.is_empty() {
                vec![VectorsArg::Embedding, VectorsArg::Pixels]
            } else {
                vectors
            };
            let work = std::env::temp_dir().join(format!("blindsight-eval-{}", std::process::id()));
            let report = blindsight::eval::run(&blindsight::eval::EvalOptions {
                images,
                count,
                sample,
                preset: preset_of(scheme),
                kinds: vectors
                    .into_iter()
                    .map(|v| vector_kind(v, None, None))
                    .collect::<blindsight::Result<_>>()?,
                work: work.clone(),
                progress: true,
            });
            let _ = std::fs::remove_dir_all(&work);
            report.map(|r| {
                if json {
                    println!("{}", r.to_json());
                } else {
                    print!("{}", r.markdown());
                }
            })
        }
        Command::Bench {
            images,
            count,
            scheme,
            preset,
            side,
            query_index,
            segment_size,
            write_query,
            store,
            cold,
            repeat,
            json,
            plot,
            compare,
            synthetic,
            dim,
        } => {
            let opts = BenchOptions {
                synthetic_dim: synthetic.then_some(dim),
                repeat,
                images,
                count,
                preset: preset.unwrap_or_else(|| preset_of(scheme)),
                side,
                query_index,
                segment_size,
                write_query,
                store_dir: store,
                cold,
            };
            let report = bench::run(&opts)?;
            if json {
                println!("{report}");
            } else if let Some(map) = report.as_object() {
                for (k, v) in map {
                    println!("{k}: {v}");
                }
            }
            match plot {
                Some(path) => bench::plot(&path, report, &compare),
                None => Ok(()),
            }
        }
        Command::BenchPir {
            records,
            record_bytes,
            k,
            queries,
            buckets,
            hashes,
            json,
        } => {
            let report = blindsight::bench_pir::run(&blindsight::bench_pir::BenchPirOptions {
                records,
                record_bytes,
                k,
                queries,
                buckets,
                hashes,
            })?;
            if json {
                println!("{report}");
            } else if let Some(map) = report.as_object() {
                for (k, v) in map {
                    println!("{k}: {v}");
                }
            }
            Ok(())
        }
        Command::BenchServer {
            preset,
            gallery,
            clients,
            seconds,
            max_concurrent,
            seed,
            dir,
            hostile_tenant,
            json,
        } => {
            let exe = std::env::current_exe()
                .map_err(|e| blindsight::AppError::io("the blindsight executable", e))?;
            let opts = blindsight::bench_server::BenchServerOptions {
                preset,
                gallery,
                clients,
                seconds,
                max_concurrent,
                seed,
                dir,
                hostile_tenant,
            };
            blindsight::bench_server::run(&exe, &opts).map(|report| {
                if json {
                    // the JSON object on stdout, the tables for a person on stderr
                    println!("{}", report.to_json());
                    eprint!("{}", report.table());
                } else {
                    print!("{}", report.table());
                }
            })
        }
    }
}

fn main() -> ExitCode {
    blindsight::allocator::tune();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote servers and file names: nothing reaches the terminal unfiltered.
            eprintln!(
                "error: {}",
                blindsight_client::names::for_terminal_bounded(&e.to_string(), 4000)
            );
            ExitCode::FAILURE
        }
    }
}
