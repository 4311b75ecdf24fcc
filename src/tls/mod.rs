//! The one TLS stack of the process: rustls with the ring provider. Owns loading PEM files
//! (certificates, keys, CA bundles) with errors that name the setting, trust roots (the
//! system's plus an optional CA file per link) and the client configuration every outgoing
//! link uses (MQTT, webhooks). PostgreSQL's handshake is sqlx's own, on the same provider.
//! `server` is the HTTPS listener with certificates reloaded from disk.

pub mod server;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {path}: cannot read: {source}")]
    Read {
        setting: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{setting} {path}: {problem}")]
    Pem {
        setting: String,
        path: String,
        problem: String,
    },
    #[error("{cert} and {key} do not belong together: {problem}")]
    Pair {
        cert: String,
        key: String,
        problem: String,
    },
    #[error("{setting} and {other} must be given together")]
    HalfPair { setting: String, other: String },
    #[error("{link}: no trusted CA: the system has no root certificates and {setting} is not set")]
    NoRoots { link: String, setting: String },
    #[error("{0}")]
    Config(String),
}

/// The provider every TLS configuration of the process is built with.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        // rustls marks ring deprecated for lacking post-quantum key exchange (only aws-lc-rs
        // has it, at the price of a C/CMake build); X25519 and the NIST curves remain.
        .get_or_init(|| {
            #[allow(deprecated)]
            let ring = rustls::crypto::ring::default_provider();
            Arc::new(ring)
        })
        .clone()
}

/// Makes ring the process default, for any library that asks rustls for the default. Call
/// first thing in `main`; calling again (tests) changes nothing.
pub fn install_default_provider() {
    // Err only when a provider is already installed: ours, the only one compiled in.
    let _ = CryptoProvider::install_default((*provider()).clone());
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting: setting.to_owned(),
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(setting: &str, path: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        setting: setting.to_owned(),
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Every certificate in a PEM file (a chain, or a CA bundle); at least one.
pub fn load_certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(setting, path, format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(pem_error(setting, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(setting, path)?;
    // The parser's error names the PEM section at most, never key material.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| pem_error(setting, path, format!("holds no usable private key ({e})")))
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(
    (cert_setting, cert): (&str, &Path),
    (key_setting, key): (&str, &Path),
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert_setting, cert)?;
    let der = load_key(key_setting, key)?;
    CertifiedKey::from_der(chain, der, &provider())
        .map_err(|e| pair_error((cert_setting, cert), (key_setting, key), e))
}

fn pair_error(
    (cert_setting, cert): (&str, &Path),
    (key_setting, key): (&str, &Path),
    e: rustls::Error,
) -> TlsError {
    let problem = match e {
        rustls::Error::InconsistentKeys(_) => {
            "the key is not the certificate's (its public key differs)".to_owned()
        }
        other => other.to_string(),
    };
    TlsError::Pair {
        cert: format!("{cert_setting} {}", cert.display()),
        key: format!("{key_setting} {}", key.display()),
        problem,
    }
}

/// The system's trust roots, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "skipping an unreadable system root certificate");
        }
        found.certs
    })
}

/// The system's roots plus every certificate in `ca_file` (`setting` names it in errors).
/// `link` says in errors which link has nothing to trust.
pub fn roots(link: &str, setting: &str, ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    // Unparseable system roots are skipped, as every TLS client does.
    let _ = store.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in load_certs(setting, path)? {
            store.add(cert).map_err(|e| {
                pem_error(setting, path, format!("not a usable CA certificate ({e})"))
            })?;
        }
    }
    if store.is_empty() {
        return Err(TlsError::NoRoots {
            link: link.to_owned(),
            setting: setting.to_owned(),
        });
    }
    Ok(store)
}

/// Where a client link's TLS material comes from; the setting names go into errors.
#[derive(Debug, Clone, Copy)]
pub struct ClientFiles<'a> {
    pub link: &'a str,
    pub ca: (&'a str, Option<&'a Path>),
    pub cert: (&'a str, Option<&'a Path>),
    pub key: (&'a str, Option<&'a Path>),
}

/// A client configuration that verifies the server (always) against the system's roots plus
/// the CA file, and presents a client certificate when one is given (mutual TLS).
pub fn client_config(files: ClientFiles<'_>) -> Result<ClientConfig, TlsError> {
    let roots = roots(files.link, files.ca.0, files.ca.1)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let ((cert_setting, cert), (key_setting, key)) = (files.cert, files.key);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert_setting, cert)?;
            let der = load_key(key_setting, key)?;
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|e| pair_error((cert_setting, cert), (key_setting, key), e))
        }
        (Some(_), None) => Err(TlsError::HalfPair {
            setting: cert_setting.to_owned(),
            other: key_setting.to_owned(),
        }),
        (None, Some(_)) => Err(TlsError::HalfPair {
            setting: key_setting.to_owned(),
            other: cert_setting.to_owned(),
        }),
    }
}
