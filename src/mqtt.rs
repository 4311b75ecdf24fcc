//! How every MQTT client of the process connects: the URL (plain, or TLS with `mqtts://` and
//! `ssl://`), client id, credentials and TLS material from `[mqtt]`, in one function, so that
//! ingest, the outbox publisher, the simulator and the bench connect alike.

use crate::config::MqttConfig;
use crate::secret::redact_url;
use crate::tls::{self, ClientFiles, TlsError};
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The port a URL without one means.
const PLAIN_PORT: u16 = 1883;
const TLS_PORT: u16 = 8883;

/// Options for a client named `client_id` (it replaces any `client_id` in the URL). TLS
/// verifies the broker against the system's roots plus `mqtt.ca_file`, and presents
/// `mqtt.cert_file`/`key_file` when set. Callers add their session settings.
pub fn options(m: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttError> {
    let bad = |reason: String| MqttError::Url {
        url: redact_url(&m.url),
        reason,
    };
    let mut url = url::Url::parse(&m.url).map_err(|e| bad(e.to_string()))?;
    let tls = match url.scheme() {
        "mqtts" | "ssl" => true,
        "mqtt" | "tcp" => false,
        other => {
            return Err(bad(format!(
                "{other}:// is not mqtt://, tcp://, mqtts:// or ssl://"
            )))
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if url.port().is_none() {
        let port = if tls { TLS_PORT } else { PLAIN_PORT };
        url.set_port(Some(port))
            .map_err(|()| bad("cannot take a port".into()))?;
    }
    // rumqttc's own TLS default would load roots (and panic without them): it parses a
    // plain URL, and the transport is set here.
    let rest = &url.as_str()[url.scheme().len()..];
    let mut plain = url::Url::parse(&format!("mqtt{rest}")).map_err(|e| bad(e.to_string()))?;
    let query: Vec<(String, String)> = plain
        .query_pairs()
        .filter(|(k, _)| k != "client_id")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    plain
        .query_pairs_mut()
        .clear()
        .extend_pairs(query)
        .append_pair("client_id", client_id);
    let mut options = MqttOptions::parse_url(plain.as_str()).map_err(|e| bad(e.to_string()))?;
    if let Some(user) = &m.username {
        let password = m.password.as_ref().map(|p| p.expose().to_owned());
        options.set_credentials(user.clone(), password.unwrap_or_default());
    }
    if tls {
        let config = tls::client_config(ClientFiles {
            link: "MQTT (mqtt.url)",
            ca: ("mqtt.ca_file", m.ca_file.as_deref()),
            cert: ("mqtt.cert_file", m.cert_file.as_deref()),
            key: ("mqtt.key_file", m.key_file.as_deref()),
        })?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt(url: &str) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn urls_pick_transport_port_and_client_id() {
        let o = options(&mqtt("mqtt://broker?client_id=old"), "svc").unwrap();
        assert_eq!(o.broker_address(), ("broker".to_owned(), 1883));
        assert_eq!(o.client_id(), "svc");
        assert!(matches!(o.transport(), Transport::Tcp));
        let o = options(&mqtt("mqtts://broker"), "svc").unwrap();
        assert_eq!(o.broker_address(), ("broker".to_owned(), 8883));
        assert!(matches!(o.transport(), Transport::Tls(_)));
        let o = options(&mqtt("ssl://broker:9999"), "svc").unwrap();
        assert_eq!(o.broker_address(), ("broker".to_owned(), 9999));
        assert!(matches!(o.transport(), Transport::Tls(_)));
    }

    #[test]
    fn bad_urls_and_missing_files_are_named_and_passwords_not() {
        let err = options(&mqtt("http://u:hunter2@broker"), "svc")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http:// is not") && !err.contains("hunter2"),
            "{err}"
        );
        let mut m = mqtt("mqtts://broker");
        m.ca_file = Some("/nonexistent/ca.pem".into());
        let err = options(&m, "svc").unwrap_err().to_string();
        assert!(
            err.starts_with("mqtt.ca_file /nonexistent/ca.pem: cannot read"),
            "{err}"
        );
        m.ca_file = None;
        m.cert_file = Some("/nonexistent/svc.pem".into());
        let err = options(&m, "svc").unwrap_err().to_string();
        assert!(
            err.contains("mqtt.cert_file and mqtt.key_file must be given together"),
            "{err}"
        );
    }
}
