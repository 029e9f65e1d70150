//! The client's keystore: the HE secret key of a preset and the payload key, in one file
//! created with mode 0600 and never overwritten, optionally sealed under a passphrase
//! (Argon2id → XChaCha20-Poly1305).
//!
//! ```text
//! "BLSK" | version u8 = 1 | protection u8 (0 none, 1 passphrase) | preset: len u8, bytes
//! protection 1: salt [16] | m_cost u32 | t_cost u32 | p_cost u32 | nonce [24]
//! body length u32 | body | CRC-32 of everything before
//! body (after opening) = payload key [32] | secret-key envelope
//! ```
//! With a passphrase the body is the AEAD ciphertext and the whole header is associated
//! data, so any change is detected.
//!
//! The keystore file is written with `create_new` and mode 0600, fsynced, hard-linked into
//! place (never replacing a file) and its directory fsynced. The helpers below keep the
//! client's other files as private and durable: [`prepare_private_dir`] (mode 0700),
//! [`append_private`] (the tokens file: forced to 0600, fsynced with its directory) and
//! [`read_secret_file`] (a passphrase or token file, bounded, zeroized) and
//! [`write_new_private`] (a decrypted image: a new file of mode 0600, never following or
//! replacing an existing name).

use crate::errors::{ClientError, Result};
use argon2::{Algorithm, Argon2, Params, Version};
use blindsight_he::{Context, ResponseSecretKey, SecretKey};
use blindsight_os::files::{mode_of, set_mode, write_private};
use blindsight_search::he_backend::response_secret;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use zeroize::Zeroizing;

const MAGIC: [u8; 4] = *b"BLSK";
const VERSION: u8 = 1;
const PLAIN: u8 = 0;
const SEALED: u8 = 1;

/// Argon2id cost of new keystores: 64 MiB, 3 passes, 1 lane.
pub const KDF_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const KDF_PASSES: u32 = 3;

/// The client's secret material.
pub struct Keystore {
    /// Parameter preset of the secret key.
    pub preset: String,
    /// The context of the preset.
    pub context: Context,
    /// The HE secret key.
    pub secret_key: SecretKey,
    /// The key sealing image payloads (XChaCha20-Poly1305).
    pub payload_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("preset", &self.preset)
            .finish_non_exhaustive()
    }
}

impl Keystore {
    /// A second handle on the same keys (for a second client of the same collection); the
    /// copies are zeroized on drop like the original.
    pub fn duplicate(&self) -> Keystore {
        Keystore {
            preset: self.preset.clone(),
            context: self.context.clone(),
            secret_key: self.secret_key.clone(),
            payload_key: self.payload_key.clone(),
        }
    }

    /// Fresh secret material for `preset`.
    pub fn generate(preset: &str) -> Result<Self> {
        let context = Context::preset(preset)?;
        let secret_key = SecretKey::generate(&context)?;
        Ok(Self {
            preset: preset.to_string(),
            context,
            secret_key,
            payload_key: Zeroizing::new(blindsight_os::random::bytes()?),
        })
    }

    /// A public identifier of this secret material: a domain-separated SHA-256 of it (safe
    /// to show the server; used to refuse a keystore that does not match a collection).
    pub fn key_id(&self) -> String {
        use sha2::{Digest, Sha256};
        // The key and the context are built together, so this cannot fail; if it did, the id
        // would match no collection.
        let sk = self
            .secret_key
            .to_bytes(&self.context)
            .unwrap_or_else(|_| Zeroizing::new(Vec::new()));
        let digest = Sha256::new()
            .chain_update(b"blindsight/key-id/v1")
            .chain_update(&self.payload_key[..])
            .chain_update(&sk[..])
            .finalize();
        blindsight_os::random::hex(&digest[..16])
    }

    /// The response secret (`blindsight_he::ResponseSecretKey`): search responses are
    /// ring-switched to it. Expanded from a seed derived from the payload key (uniform,
    /// secret, independent of the HE secret) under its own domain, so keystores need no
    /// new field and older ones have one too.
    pub fn response_secret(&self) -> Result<ResponseSecretKey> {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"blindsight/response-secret/v1")
            .chain_update(&self.payload_key[..])
            .finalize();
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&digest);
        Ok(response_secret(&self.context, &seed)?)
    }

    /// Writes the keystore to `path` (mode 0600), refusing to overwrite an existing file.
    pub fn save(&self, path: &Path, passphrase: Option<&str>) -> Result<()> {
        if path.exists() {
            return Err(ClientError::KeystoreExists {
                path: path.display().to_string(),
            });
        }
        let bytes = self.to_bytes(passphrase)?;
        let dir = parent_or_dot(path);
        let tmp = dir.join(format!(
            ".blindsight-keystore-{:016x}.tmp",
            u64::from_le_bytes(blindsight_os::random::bytes()?)
        ));
        let write = || -> std::io::Result<()> {
            write_private(&tmp, &bytes)?;
            // hard_link fails if `path` appeared meanwhile: never overwrites.
            std::fs::hard_link(&tmp, path)
        };
        let result = write();
        let _ = std::fs::remove_file(&tmp);
        result.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ClientError::KeystoreExists {
                path: path.display().to_string(),
            },
            _ => ClientError::io(path, e),
        })?;
        // The new name (and the removal of the temporary one) must survive a crash.
        sync_dir(dir)
    }

    /// Serializes the keystore, sealed under `passphrase` if given.
    pub fn to_bytes(&self, passphrase: Option<&str>) -> Result<Vec<u8>> {
        let sk = self.secret_key.to_bytes(&self.context)?;
        let mut body = Zeroizing::new(Vec::with_capacity(32 + sk.len()));
        body.extend_from_slice(&self.payload_key[..]);
        body.extend_from_slice(&sk);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if passphrase.is_some() { SEALED } else { PLAIN });
        let name = self.preset.as_bytes();
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        let body = match passphrase {
            None => body.to_vec(),
            Some(pass) => {
                let salt: [u8; 16] = blindsight_os::random::bytes()?;
                let nonce: [u8; 24] = blindsight_os::random::bytes()?;
                out.extend_from_slice(&salt);
                for v in [KDF_MEMORY_KIB, KDF_PASSES, 1] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&nonce);
                let key = derive_key(pass, &salt, KDF_MEMORY_KIB, KDF_PASSES, 1)?;
                let cipher = XChaCha20Poly1305::new(key.as_slice().into());
                cipher
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: &body,
                            aad: &out,
                        },
                    )
                    .map_err(|_| ClientError::Usage("keystore encryption failed".into()))?
            }
        };
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Reads a keystore.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<Self> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| ClientError::io(path, e))?);
        Self::from_bytes(&bytes, passphrase, &path.display().to_string())
    }

    /// Parses keystore bytes (`name` is used in error messages).
    pub fn from_bytes(bytes: &[u8], passphrase: Option<&str>, name: &str) -> Result<Self> {
        let bad = |reason: &str| ClientError::Keystore {
            path: name.to_string(),
            reason: reason.to_string(),
        };
        if bytes.len() < 4 + 2 + 1 + 4 + 4 || bytes[..4] != MAGIC {
            return Err(bad("not a blindsight keystore"));
        }
        let (content, crc_bytes) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(content).to_le_bytes() != crc_bytes {
            return Err(bad("checksum mismatch: the file is corrupted"));
        }
        let mut r = Cursor {
            buf: content,
            pos: 4,
        };
        if r.u8().ok_or_else(|| bad("truncated"))? != VERSION {
            return Err(bad("unsupported keystore version"));
        }
        let protection = r.u8().ok_or_else(|| bad("truncated"))?;
        let name_len = r.u8().ok_or_else(|| bad("truncated"))? as usize;
        let preset = std::str::from_utf8(r.take(name_len).ok_or_else(|| bad("truncated"))?)
            .map_err(|_| bad("preset name is not UTF-8"))?
            .to_string();
        let body = match protection {
            PLAIN => Zeroizing::new(r.body().ok_or_else(|| bad("truncated"))?.to_vec()),
            SEALED => {
                let salt = r.take(16).ok_or_else(|| bad("truncated"))?.to_vec();
                let m = r.u32().ok_or_else(|| bad("truncated"))?;
                let t = r.u32().ok_or_else(|| bad("truncated"))?;
                let p = r.u32().ok_or_else(|| bad("truncated"))?;
                let nonce = r.take(24).ok_or_else(|| bad("truncated"))?.to_vec();
                let header_end = r.pos;
                let sealed = r.body().ok_or_else(|| bad("truncated"))?;
                let pass = passphrase.ok_or_else(|| ClientError::PassphraseRequired {
                    path: name.to_string(),
                })?;
                if !(8..=1024 * 1024).contains(&m)
                    || !(1..=16).contains(&t)
                    || !(1..=16).contains(&p)
                {
                    return Err(bad("key-derivation parameters out of range"));
                }
                let key = derive_key(pass, &salt, m, t, p)?;
                let cipher = XChaCha20Poly1305::new(key.as_slice().into());
                Zeroizing::new(
                    cipher
                        .decrypt(
                            XNonce::from_slice(&nonce),
                            Payload {
                                msg: sealed,
                                aad: &content[..header_end],
                            },
                        )
                        .map_err(|_| ClientError::WrongPassphrase {
                            path: name.to_string(),
                        })?,
                )
            }
            _ => return Err(bad("unknown protection")),
        };
        if r.pos != content.len() {
            return Err(bad("trailing bytes"));
        }
        if body.len() < 32 {
            return Err(bad("truncated secret material"));
        }
        let context = Context::preset(&preset)?;
        let mut payload_key = Zeroizing::new([0u8; 32]);
        payload_key.copy_from_slice(&body[..32]);
        let secret_key = SecretKey::from_bytes(&context, &body[32..])
            .map_err(|e| bad(&format!("secret key: {e}")))?;
        Ok(Self {
            preset,
            context,
            secret_key,
            payload_key,
        })
    }
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(m, t, p, Some(32))
        .map_err(|e| ClientError::Usage(format!("Argon2 parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| ClientError::Usage(format!("Argon2: {e}")))?;
    Ok(key)
}

/// Largest passphrase or token file [`read_secret_file`] accepts, in bytes.
pub const MAX_SECRET_FILE_BYTES: usize = 4096;

/// Reads a secret (a passphrase, a token) from `path`: at most [`MAX_SECRET_FILE_BYTES`]
/// bytes of UTF-8, trailing newlines (`\n`, `\r\n`) dropped, never empty; the bytes
/// are zeroized after use. Pipes work (`--passphrase-file <(pass show blindsight)`).
/// `what` names the secret in errors.
pub fn read_secret_file(path: &Path, what: &'static str) -> Result<Zeroizing<String>> {
    use std::io::Read;
    let secret_error = |reason: String| ClientError::Secret {
        what,
        origin: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| ClientError::io(path, e))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE_BYTES + 1));
    file.take(MAX_SECRET_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ClientError::io(path, e))?;
    if bytes.len() > MAX_SECRET_FILE_BYTES {
        return Err(secret_error(format!(
            "the file is larger than {MAX_SECRET_FILE_BYTES} bytes; it must hold only the {what}"
        )));
    }
    let end = bytes
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |last| last + 1);
    if end == 0 {
        return Err(secret_error(format!(
            "the file is empty; write the {what} into it"
        )));
    }
    let text = std::str::from_utf8(&bytes[..end])
        .map_err(|_| secret_error("the file is not UTF-8 text".into()))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// What [`prepare_private_dir`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    /// The directory was created, mode 0700 (with any missing parents, also 0700).
    Created,
    /// It exists and only its owner can enter it.
    Private,
    /// It existed with group or other access (this mode) and was tightened to 0700.
    Tightened(u32),
    /// It exists with group or other access (this mode) and was left as it is.
    Open(u32),
}

/// Makes sure the directory `dir` that holds secrets exists: creates it with mode 0700 (and
/// fsyncs its parent), or reports an existing one that other users can enter — tightening
/// it to 0700 only when `tighten` (blindsight's own default home; a directory the user
/// chose is theirs to change).
pub fn prepare_private_dir(dir: &Path, tighten: bool) -> Result<DirState> {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(ClientError::io(
                    dir,
                    std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        "not a directory; choose another --keystore",
                    ),
                ));
            }
            let mode = mode_of(&meta);
            if mode & 0o077 == 0 {
                Ok(DirState::Private)
            } else if tighten {
                set_mode(dir, 0o700).map_err(|e| ClientError::io(dir, e))?;
                Ok(DirState::Tightened(mode))
            } else {
                Ok(DirState::Open(mode))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(|e| ClientError::io(dir, e))?;
            // A umask cannot widen 0700, but make sure of the mode the tests check.
            set_mode(dir, 0o700).map_err(|e| ClientError::io(dir, e))?;
            sync_dir(parent_or_dot(dir))?;
            Ok(DirState::Created)
        }
        Err(e) => Err(ClientError::io(dir, e)),
    }
}

/// Appends `bytes` to the private file `path` (created with mode 0600; an existing file
/// with wider permissions is forced to 0600 first), then fsyncs the file and its directory.
pub fn append_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| ClientError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = f.metadata().map_err(|e| ClientError::io(path, e))?;
        if mode_of(&meta) != 0o600 {
            // fchmod on the open file: no race with a rename of the path.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| ClientError::io(path, e))?;
        }
    }
    f.write_all(bytes).map_err(|e| ClientError::io(path, e))?;
    f.sync_all().map_err(|e| ClientError::io(path, e))?;
    sync_dir(parent_or_dot(path))
}

/// `name` with `-n` before its extension (`cat.png` → `cat-2.png`).
fn with_suffix(name: &str, n: u32) -> String {
    match name.rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => format!("{}-{n}{}", &name[..dot], &name[dot..]),
        None => format!("{name}-{n}"),
    }
}

/// Writes `data` to a new file named `name` (one path component, e.g. from
/// [`crate::names::for_file`]; anything else is refused) in `dir`, mode 0600. An existing
/// file or symbolic link of that name is never followed nor replaced: the next free name
/// `<stem>-2.<ext>`, `-3`, … is taken instead. Returns the path written.
pub fn write_new_private(dir: &Path, name: &str, data: &[u8]) -> Result<PathBuf> {
    const ATTEMPTS: u32 = 1000;
    if !matches!(
        Path::new(name).components().collect::<Vec<_>>()[..],
        [Component::Normal(_)]
    ) || name.contains(['/', '\\'])
    {
        return Err(ClientError::Usage(format!(
            "`{}` is not a single file name",
            crate::names::for_terminal(name)
        )));
    }
    for n in 1..=ATTEMPTS {
        let path = dir.join(if n == 1 {
            name.to_string()
        } else {
            with_suffix(name, n)
        });
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        let mut opts = std::fs::OpenOptions::new();
        // create_new (O_CREAT | O_EXCL) fails on any existing name, a symbolic link
        // included, dangling or not: it never follows one.
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ClientError::io(&path, e)),
        };
        if let Err(e) = file.write_all(data) {
            let _ = std::fs::remove_file(&path);
            return Err(ClientError::io(&path, e));
        }
        return Ok(path);
    }
    Err(ClientError::Usage(format!(
        "{}: {ATTEMPTS} files named like {name} exist already; choose another --out folder",
        dir.display()
    )))
}

/// Fsyncs the directory `dir`, so that names created or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ClientError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_or_dot(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn body(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blindsight_he::{BfvEncoder, Ciphertext};

    fn encrypt_ramp(ks: &Keystore) -> (Ciphertext, Vec<u64>) {
        let enc = BfvEncoder::new(&ks.context).unwrap();
        let v: Vec<u64> = (0..8192).map(|i| i % 251).collect();
        (
            ks.secret_key
                .encrypt(&ks.context, &enc.encode(&v).unwrap())
                .unwrap(),
            v,
        )
    }

    #[test]
    fn round_trip_plain_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::generate("bfv-8192").unwrap();
        for (file, pass) in [("plain.key", None), ("sealed.key", Some("correct horse"))] {
            let path = dir.path().join(file);
            ks.save(&path, pass).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                    0o600
                );
            }
            let back = Keystore::load(&path, pass).unwrap();
            assert_eq!(back.preset, "bfv-8192");
            assert_eq!(*back.payload_key, *ks.payload_key);
            let (ct, v) = encrypt_ramp(&ks);
            let enc = BfvEncoder::new(&back.context).unwrap();
            assert_eq!(
                enc.decode(&back.secret_key.decrypt(&back.context, &ct).unwrap())
                    .unwrap(),
                v
            );
            // never overwritten
            assert!(matches!(
                ks.save(&path, pass),
                Err(ClientError::KeystoreExists { .. })
            ));
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left behind");
    }

    #[test]
    fn wrong_missing_passphrase_and_corruption_are_errors() {
        let ks = Keystore::generate("ckks-8192").unwrap();
        let sealed = ks.to_bytes(Some("pw")).unwrap();
        assert!(matches!(
            Keystore::from_bytes(&sealed, Some("nope"), "k"),
            Err(ClientError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            Keystore::from_bytes(&sealed, None, "k"),
            Err(ClientError::PassphraseRequired { .. })
        ));
        let plain = ks.to_bytes(None).unwrap();
        for bytes in [&sealed, &plain] {
            for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
                assert!(Keystore::from_bytes(&bytes[..cut], Some("pw"), "k").is_err());
            }
            for pos in [0, 5, 8, bytes.len() / 2, bytes.len() - 2] {
                let mut bad = bytes.clone();
                bad[pos] ^= 0x10;
                assert!(
                    Keystore::from_bytes(&bad, Some("pw"), "k").is_err(),
                    "flip at {pos}"
                );
            }
        }
        assert!(Keystore::from_bytes(b"hello world, not a key", None, "k").is_err());
    }

    #[test]
    fn secret_files_are_bounded_trimmed_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        for (content, want) in [
            (&b"hunter2\n"[..], Some("hunter2")),
            (b"hunter2\r\n", Some("hunter2")),
            (b"two words  \n\n", Some("two words  ")),
            (b"\n\r\n", None),
            (b"no newline", Some("no newline")),
            (b"\n", None),
            (b"", None),
            (b"\xff\xfe\n", None),
        ] {
            std::fs::write(&f, content).unwrap();
            let got = read_secret_file(&f, "passphrase");
            match want {
                Some(w) => assert_eq!(got.unwrap().as_str(), w),
                None => assert!(
                    matches!(
                        got,
                        Err(ClientError::Secret {
                            what: "passphrase",
                            ..
                        })
                    ),
                    "{content:?}: {got:?}"
                ),
            }
        }
        std::fs::write(&f, vec![b'a'; MAX_SECRET_FILE_BYTES]).unwrap();
        assert_eq!(read_secret_file(&f, "admin token").unwrap().len(), 4096);
        std::fs::write(&f, vec![b'a'; MAX_SECRET_FILE_BYTES + 1]).unwrap();
        let err = read_secret_file(&f, "admin token").unwrap_err().to_string();
        assert!(err.contains("larger than 4096 bytes"), "{err}");
        assert!(matches!(
            read_secret_file(&dir.path().join("missing"), "passphrase"),
            Err(ClientError::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_and_appended_files_get_owner_only_modes() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("a/b");
        assert_eq!(prepare_private_dir(&new, false).unwrap(), DirState::Created);
        assert_eq!(mode(&new), 0o700);
        assert_eq!(prepare_private_dir(&new, false).unwrap(), DirState::Private);

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            prepare_private_dir(&open, false).unwrap(),
            DirState::Open(0o755)
        );
        assert_eq!(
            mode(&open),
            0o755,
            "a directory the user chose is left alone"
        );
        assert_eq!(
            prepare_private_dir(&open, true).unwrap(),
            DirState::Tightened(0o755)
        );
        assert_eq!(mode(&open), 0o700);
        let file = open.join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(prepare_private_dir(&file, false).is_err());

        let tokens = new.join("tokens");
        append_private(&tokens, b"one\n").unwrap();
        assert_eq!(mode(&tokens), 0o600);
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_private(&tokens, b"two\n").unwrap();
        assert_eq!(
            mode(&tokens),
            0o600,
            "a wider existing file is forced to 0600"
        );
        assert_eq!(std::fs::read_to_string(&tokens).unwrap(), "one\ntwo\n");
    }

    #[cfg(unix)]
    #[test]
    fn new_private_files_never_follow_or_replace() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, out.join("01-cat.png")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), out.join("01-cat-2.png")).unwrap();
        std::fs::write(out.join("02-dog"), "old").unwrap();

        let a = write_new_private(&out, "01-cat.png", b"cat").unwrap();
        assert_eq!(a, out.join("01-cat-3.png"));
        let b = write_new_private(&out, "02-dog", b"dog").unwrap();
        assert_eq!(b, out.join("02-dog-2"));
        let c = write_new_private(&out, ".x", b"x").unwrap();
        assert_eq!(c, out.join(".x"));
        assert_eq!(
            write_new_private(&out, ".x", b"y").unwrap(),
            out.join(".x-2")
        );
        for p in [&a, &b, &c] {
            let meta = std::fs::symlink_metadata(p).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
        assert_eq!(std::fs::read(&a).unwrap(), b"cat");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert!(
            !tmp.path().join("nowhere").exists(),
            "a dangling link is not followed"
        );
        assert_eq!(std::fs::read_to_string(out.join("02-dog")).unwrap(), "old");
        for bad in ["../escape", "a/b", "..", ".", "", "/abs"] {
            assert!(write_new_private(&out, bad, b"z").is_err(), "{bad:?}");
        }
        assert!(!tmp.path().join("escape").exists());
    }
}
