//! TLS for `serve --tls-cert PEM --tls-key PEM` (rustls, ring provider).

use crate::errors::{Result, ServerError};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Largest PEM file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| ServerError::io(path, e))?
        .len();
    if len > MAX_PEM_BYTES {
        return Err(ServerError::Usage(format!(
            "{} is {len} bytes, too large for a PEM certificate or key",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| ServerError::io(path, e))
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
