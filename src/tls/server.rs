//! The HTTPS listener: TLS on accepted connections, with a certificate and key read from
//! files and read again when either file changes (a renewal needs no restart). `TlsListener`
//! implements axum's `Listener`, so `axum::serve` — or any serve loop generic over
//! `Listener` — serves HTTPS with it exactly as it serves plain TCP.

use super::{certified_key, provider, TlsError};
use axum::serve::Listener;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

/// A handshake that takes longer than this is dropped (a client that connects and stalls).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it, new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// What identifies one version of a file: a rewrite or a rename over it changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

struct Loaded {
    stamps: [Stamp; 2],
    key: Arc<CertifiedKey>,
    /// The file versions last found unusable: not tried again until either changes.
    refused: Option<[Stamp; 2]>,
}

/// The server certificate from `cert` and `key`, checked at each handshake with two `stat`
/// calls and read again when either file changed. A new pair that does not load (half
/// written, key and certificate not matching yet) is logged and the previous one kept.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

const CERT_SETTING: &str = "http.tls_cert_file";
const KEY_SETTING: &str = "http.tls_key_file";

impl ReloadingCert {
    /// Loads the pair now; an error here is a start-up error.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadingCert, TlsError> {
        let stamps = Self::stamps(cert, key)?;
        let pair = certified_key((CERT_SETTING, cert), (KEY_SETTING, key))?;
        Ok(ReloadingCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: RwLock::new(Loaded {
                stamps,
                key: Arc::new(pair),
                refused: None,
            }),
        })
    }

    fn stamps(cert: &Path, key: &Path) -> Result<[Stamp; 2], TlsError> {
        let one = |setting: &str, path: &Path| {
            stamp(path).map_err(|source| TlsError::Read {
                setting: setting.to_owned(),
                path: path.display().to_string(),
                source,
            })
        };
        Ok([one(CERT_SETTING, cert)?, one(KEY_SETTING, key)?])
    }

    /// The pair to present now, after reloading it if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let Ok(stamps) = Self::stamps(&self.cert, &self.key) else {
            // Mid-rename, or removed: keep serving what we have.
            return self.read().key.clone();
        };
        {
            let loaded = self.read();
            if loaded.stamps == stamps || loaded.refused == Some(stamps) {
                return loaded.key.clone();
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        if loaded.stamps != stamps && loaded.refused != Some(stamps) {
            match certified_key((CERT_SETTING, &self.cert), (KEY_SETTING, &self.key)) {
                Ok(pair) => {
                    loaded.key = Arc::new(pair);
                    loaded.stamps = stamps;
                    loaded.refused = None;
                    tracing::info!(cert = %self.cert.display(), "HTTPS certificate reloaded");
                }
                Err(e) => {
                    loaded.refused = Some(stamps);
                    tracing::warn!(error = %e, "new HTTPS certificate not usable; still serving the previous one");
                }
            }
        }
        loaded.key.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server configuration (HTTP/1.1, TLS 1.2 and 1.3) presenting `cert`'s current pair.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and hands on those whose TLS handshake completed. Handshakes run
/// concurrently (a slow client holds up no one) and time out; failures are logged at debug.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let shaken =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match shaken {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
