//! TLS for `serve --tls-cert PEM --tls-key PEM` (rustls, ring provider), and the
//! self-signed certificate of `serve --tls-self-signed`, made once beside the database and
//! kept (its fingerprint is what clients pin).

use crate::errors::{Result, ServerError};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Largest PEM file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    blindsight_os::files::read_at_most(path, MAX_PEM_BYTES).map_err(|e| ServerError::io(path, e))
}

/// A TLS server configuration from a certificate chain and a private key, both PEM.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(&read_pem(cert)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            ServerError::Usage(format!(
                "{}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ServerError::Usage(format!(
            "{}: no certificate found (expected PEM `BEGIN CERTIFICATE` blocks)",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(|e| {
        ServerError::Usage(format!("{}: not a PEM private key: {e}", key.display()))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Usage(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            ServerError::Usage(format!(
                "{} and {} do not make a usable certificate and key: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(Arc::new(config))
}

/// A self-signed certificate kept beside a database: where its certificate and key are, and
/// the SHA-256 fingerprint of the certificate (what a client pins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfSigned {
    /// The certificate (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: std::path::PathBuf,
    /// `SHA256:` and 64 hexadecimal digits.
    pub fingerprint: String,
    /// Whether it was made now (else it was found and reused).
    pub made: bool,
}

/// The SHA-256 fingerprint of a certificate (DER), as `SHA256:` and 64 hexadecimal digits.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "SHA256:{}",
        blindsight_os::random::hex(&sha2::Sha256::digest(der))
    )
}

/// The self-signed certificate of the server of `db`: `<db>.tls-cert.pem` and
/// `<db>.tls-key.pem`, made on first use (an ECDSA P-256 key from the OS's random source,
/// the key file owner-only) for `names` (host names and IP addresses: `localhost`,
/// `127.0.0.1` and `::1` are always added) and reused afterwards, so that a fingerprint
/// clients pinned stays valid across restarts.
pub fn self_signed(db: &Path, names: &[String]) -> Result<SelfSigned> {
    let beside = |suffix: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let (cert, key) = (beside(".tls-cert.pem"), beside(".tls-key.pem"));
    let made = match (cert.exists(), key.exists()) {
        (true, true) => false,
        (false, false) => {
            let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
            for n in names {
                if !n.is_empty() && !all.contains(n) {
                    all.push(n.clone());
                }
            }
            let signing_key = rcgen::KeyPair::generate()
                .map_err(|e| ServerError::Usage(format!("making a TLS key: {e}")))?;
            let mut params = rcgen::CertificateParams::new(all)
                .map_err(|e| ServerError::Usage(format!("a TLS certificate name: {e}")))?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "blindsight server (self-signed)");
            let certificate = params
                .self_signed(&signing_key)
                .map_err(|e| ServerError::Usage(format!("making a TLS certificate: {e}")))?;
            let write = |path: &Path, text: &str| -> Result<()> {
                blindsight_os::files::write_private(path, text.as_bytes())
                    .map_err(|e| ServerError::io(path, e))
            };
            let key_pem = zeroize::Zeroizing::new(signing_key.serialize_pem());
            write(&key, &key_pem)?;
            write(&cert, &certificate.pem())?;
            true
        }
        _ => {
            return Err(ServerError::Usage(format!(
                "found only one of {} and {}: remove it to make a new self-signed certificate \
                 (clients that pinned the old one must trust the new one)",
                cert.display(),
                key.display()
            )));
        }
    };
    let der = CertificateDer::pem_slice_iter(&read_pem(&cert)?)
        .next()
        .transpose()
        .map_err(|e| ServerError::Usage(format!("{}: {e}", cert.display())))?
        .ok_or_else(|| ServerError::Usage(format!("{}: no certificate", cert.display())))?;
    Ok(SelfSigned {
        fingerprint: fingerprint(der.as_ref()),
        cert,
        key,
        made,
    })
}
