//! Connecting to PostgreSQL: the URL (libpq's grammar, TLS parameters included) made into
//! connection options, the TLS mode when the URL names none, and connection errors that say
//! why a TLS connection failed. The handshake itself is sqlx's, on the process's ring provider.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::str::FromStr;

const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Parameters naming files (or inline PEM) the TLS handshake reads.
const FILE_PARAMS: [&str; 3] = ["sslrootcert", "sslcert", "sslkey"];

fn param<'a>(pairs: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

fn pairs(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Checks what can be checked without the network: the URL parses, `sslmode` is one libpq
/// knows, `sslcert` and `sslkey` come together.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let pairs = pairs(&parsed);
    if let Some(mode) = param(&pairs, &["sslmode", "ssl-mode"]) {
        if !SSL_MODES.contains(&mode.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unknown sslmode {mode:?} (disable, allow, prefer, require, verify-ca or verify-full)"
            ));
        }
    }
    let cert = param(&pairs, &["sslcert", "ssl-cert"]).is_some();
    let key = param(&pairs, &["sslkey", "ssl-key"]).is_some();
    if cert != key {
        return Err("sslcert and sslkey must be given together".into());
    }
    Ok(())
}

/// Loopback connections are plain unless the URL (or `PGSSLMODE`) asks for TLS: there is
/// nothing on the wire to protect, and encryption would cost the write path CPU. Other hosts
/// get libpq's default, `prefer`.
fn default_plain(url: &url::Url, pgsslmode_set: bool) -> bool {
    let pairs = pairs(url);
    if param(&pairs, &["sslmode", "ssl-mode"]).is_some() || pgsslmode_set {
        return false;
    }
    // postgres:// is not a scheme the URL standard knows: its host is text, IPs included.
    match url.host_str() {
        // A Unix socket (`host=` parameter, or a percent-encoded path as the host).
        None | Some("") => true,
        Some(host) => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host.starts_with("%2F")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

fn config_error(message: String) -> sqlx::Error {
    sqlx::Error::Configuration(message.into())
}

/// Connection options from a URL, with the TLS files it names checked readable now (so a
/// typo is a start-up error, not a failure at the first query).
pub(super) fn options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    check_url(url).map_err(config_error)?;
    let parsed = url::Url::parse(url).map_err(|e| config_error(e.to_string()))?;
    let pairs = pairs(&parsed);
    for name in FILE_PARAMS {
        let Some(value) = param(&pairs, &[name]) else {
            continue;
        };
        let inline = value.trim_start().starts_with("-----BEGIN");
        if !inline {
            if let Err(e) = std::fs::File::open(value) {
                return Err(config_error(format!("{name} {value}: cannot read: {e}")));
            }
        }
    }
    let options = PgConnectOptions::from_str(url)?;
    Ok(
        if default_plain(&parsed, std::env::var_os("PGSSLMODE").is_some()) {
            options.ssl_mode(PgSslMode::Disable)
        } else {
            options
        },
    )
}

/// The error, with what it means when it is a TLS or TLS-policy failure.
pub(super) fn describe(e: &sqlx::Error) -> String {
    match hint(e) {
        Some(hint) => format!("{e} ({hint})"),
        None => e.to_string(),
    }
}

fn hint(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::Tls(inner) => match inner.downcast_ref::<rustls::Error>() {
            Some(tls) => tls_hint(tls),
            None => inner
                .to_string()
                .contains("does not support TLS")
                .then_some("the server offers no TLS, which this sslmode requires"),
        },
        // The handshake runs on the socket: its failures come as I/O errors.
        sqlx::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(tls_hint),
        sqlx::Error::Database(db) if db.code().as_deref() == Some("28000") => {
            let message = db.message();
            if message.contains("no encryption") {
                Some("the server accepts only TLS connections: use sslmode=require, verify-ca or verify-full")
            } else if message.contains("certificate") {
                Some("the server wants a client certificate it trusts: sslcert and sslkey")
            } else {
                None
            }
        }
        _ => None,
    }
}

fn tls_hint(e: &rustls::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => Some(
            "the server's certificate is not signed by a CA in sslrootcert or the system's roots",
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            // sqlx 0.8's verify-ca verifier lets only rustls's older form of this error pass.
            Some(
                "the server's certificate does not name the host in the URL; verify-full checks \
                 it, and so does verify-ca with this build's sqlx 0.8",
            )
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            Some("the server's certificate has expired")
        }
        rustls::Error::AlertReceived(_) => Some(
            "the server refused the handshake: does it want a client certificate (sslcert, sslkey) it trusts?",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_connecting() {
        assert!(check_url("postgres://h/db?sslmode=verify-full").is_ok());
        let err = check_url("postgres://h/db?sslmode=bogus").unwrap_err();
        assert!(err.starts_with("unknown sslmode \"bogus\""), "{err}");
        let err = check_url("postgres://h/db?sslcert=/a.pem").unwrap_err();
        assert!(err.contains("together"), "{err}");
        let err = options("postgres://h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslrootcert /nonexistent/ca.pem: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn loopback_is_plain_unless_asked() {
        let plain = |url: &str, env: bool| default_plain(&url::Url::parse(url).unwrap(), env);
        assert!(plain("postgres://u@127.0.0.1/db", false));
        assert!(plain("postgres://u@localhost/db", false));
        assert!(plain("postgres://u@[::1]/db", false));
        assert!(!plain("postgres://u@db.example/db", false));
        assert!(!plain("postgres://u@127.0.0.1/db?sslmode=require", false));
        assert!(
            !plain("postgres://u@127.0.0.1/db", true),
            "PGSSLMODE decides"
        );
        let explicit = options("postgres://u@127.0.0.1/db?sslmode=verify-full").unwrap();
        assert!(matches!(explicit.get_ssl_mode(), PgSslMode::VerifyFull));
    }
}
