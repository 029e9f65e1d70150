//! Which server certificates the client trusts: the public roots (webpki-roots), a private
//! CA given by file, or one exact certificate, given by file or by its SHA-256 fingerprint.
//!
//! A self-signed certificate made the usual way (`openssl req -x509 …`) is marked as a CA
//! (`basicConstraints CA:TRUE`), which path validation refuses as a server's own certificate
//! (`CaUsedAsEndEntity`), and often names no `subjectAltName`. So a certificate the user
//! trusts *exactly* (the same bytes are in `--ca-file`, or its fingerprint is pinned) is
//! accepted as that server's, like an SSH host key: whatever its names or CA flag, because
//! the user said which certificate this server must present. The handshake signature is
//! always verified with the certificate's key, so only the holder of its private key can
//! answer. Anything else goes through ordinary path validation.

use crate::errors::{ClientError, Result};
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Largest PEM file of certificates read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A certificate's SHA-256 fingerprint, as `blindsight serve` prints it and `openssl x509
/// -fingerprint -sha256` does: 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate (its DER bytes).
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Parses `SHA256:` followed by 64 hexadecimal digits, with or without colons between
    /// bytes (OpenSSL's `sha256 Fingerprint=AB:CD:…` is accepted too).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            ClientError::Usage(format!(
                "`{}` is not a SHA-256 certificate fingerprint: give `SHA256:` and 64 \
                 hexadecimal digits, as `blindsight serve --tls-self-signed` prints it or \
                 `openssl x509 -noout -fingerprint -sha256 -in CERT` shows it",
                crate::names::for_terminal(text)
            ))
        };
        let t = text.trim();
        let t = t
            .split_once('=')
            .filter(|(k, _)| k.to_ascii_lowercase().contains("fingerprint"))
            .map_or(t, |(_, v)| v);
        let t = match t.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sha256:") => &t[7..],
            _ => t,
        };
        let digits: String = t.chars().filter(|&c| c != ':').collect();
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SHA256:{}", blindsight_os::random::hex(&self.0))
    }
}

/// What the client trusts beyond the public roots.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Certificates of a PEM file: private CAs, or a server's own certificate (trusted
    /// exactly).
    pub certificates: Vec<CertificateDer<'static>>,
    /// The fingerprint the server's certificate must have (then nothing else is trusted).
    pub fingerprint: Option<Fingerprint>,
}

impl Trust {
    /// Reads the certificates of a PEM file (a CA, a chain, or the server's own).
    pub fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
        let pem = blindsight_os::files::read_at_most(path, MAX_PEM_BYTES)
            .map_err(|e| ClientError::io(path, e))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                ClientError::Usage(format!("{}: not a PEM certificate: {e}", path.display()))
            })?;
        if certs.is_empty() {
            return Err(ClientError::Usage(format!(
                "{}: no certificate found (expected `BEGIN CERTIFICATE` blocks)",
                path.display()
            )));
        }
        Ok(certs)
    }

    /// The trust the options give: the certificates of the PEM file `ca_file`, and the
    /// fingerprint `fingerprint` (`SHA256:…`, see [`Fingerprint::parse`]).
    pub fn from_options(ca_file: Option<&Path>, fingerprint: Option<&str>) -> Result<Self> {
        Ok(Self {
            certificates: match ca_file {
                Some(path) => Self::read_pem(path)?,
                None => Vec::new(),
            },
            fingerprint: fingerprint.map(Fingerprint::parse).transpose()?,
        })
    }

    /// Whether anything beyond the public roots is trusted.
    pub fn is_default(&self) -> bool {
        self.certificates.is_empty() && self.fingerprint.is_none()
    }

    /// A TLS client configuration trusting the public roots, the certificates given (as CAs
    /// and exactly), or only the pinned fingerprint.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for c in &self.certificates {
            // a certificate that cannot be a trust anchor is still trusted exactly
            let _ = roots.add(c.clone());
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ClientError::Usage(format!("TLS roots: {e}")))?;
        let verifier = ExactOrPath {
            webpki,
            exact: self.certificates.clone(),
            fingerprint: self.fingerprint,
            provider: provider.clone(),
        };
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Usage(format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }
}

/// Accepts the server's certificate when its fingerprint is the pinned one (and nothing
/// else when one is pinned), or when it is exactly one of the trusted certificates, or when
/// path validation to the roots succeeds.
#[derive(Debug)]
struct ExactOrPath {
    webpki: Arc<WebPkiServerVerifier>,
    exact: Vec<CertificateDer<'static>>,
    fingerprint: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ExactOrPath {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(pinned) = self.fingerprint {
            let actual = Fingerprint::of(end_entity.as_ref());
            return if actual == pinned {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(format!(
                    "the server's certificate has fingerprint {actual}, not the trusted \
                     {pinned}: if the server's certificate changed, check the new one with its \
                     operator and trust it again"
                )))
            };
        }
        if self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_every_usual_spelling() {
        let f = Fingerprint([0xab; 32]);
        let plain = f.to_string();
        assert_eq!(plain, format!("SHA256:{}", "ab".repeat(32)));
        assert_eq!(Fingerprint::parse(&plain).unwrap(), f);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::parse(&colons).unwrap(), f);
        assert_eq!(
            Fingerprint::parse(&format!("sha256 Fingerprint={colons}")).unwrap(),
            f
        );
        for bad in [
            "",
            "SHA256:abc",
            &"zz".repeat(32),
            &"ab".repeat(33),
            "é".repeat(32).as_str(),
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad}");
        }
    }
}
