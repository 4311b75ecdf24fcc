//! Secrets in configuration: a `Secret` that never prints its value, secrets read from files
//! (the `…_FILE` convention), and URLs printed with their password masked.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::Path;

/// What is printed in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret value: Debug, Display and Serialize show `[redacted]`; `expose` is the only way in.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {setting} from {path}: {source}")]
pub struct SecretFileError {
    pub setting: String,
    pub path: String,
    pub source: std::io::Error,
}

/// Reads a secret from a file, without the line end an editor or `echo` leaves (the
/// PostgreSQL image's convention). The error names the setting and file, never the content.
pub fn read_file(setting: &str, path: &Path) -> Result<Secret, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretFileError {
        setting: setting.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    Ok(Secret(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// The URL with any password replaced by `[redacted]`, for logs and messages. Text that does
/// not parse as a URL is returned unchanged only when it has no `@` (it could hold one).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some(REDACTED)).is_err() {
                return REDACTED.to_owned();
            }
            let has_secret_param = parsed
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"));
            if has_secret_param {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            REDACTED.to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            // The URL encoder escapes the brackets in user info.
            parsed.to_string().replace("%5Bredacted%5D", REDACTED)
        }
        Err(_) if !url.contains('@') && !url.contains("password") => url.to_owned(),
        Err(_) => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_passwords() {
        let shown =
            redact_url("postgres://app:s3cr%40t@db.example:5432/aftercare?sslmode=verify-full");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("app:") && shown.contains("sslmode=verify-full"),
            "{shown}"
        );
        let shown = redact_url("postgres://db/x?user=app&password=s3cret");
        assert!(
            !shown.contains("s3cret") && shown.contains("user=app"),
            "{shown}"
        );
        assert_eq!(redact_url("mqtts://broker:8883"), "mqtts://broker:8883");
        assert_eq!(redact_url("not a url with p@ss"), REDACTED);
    }

    #[test]
    fn secret_files_lose_the_line_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, " two words \n").unwrap();
        assert_eq!(read_file("x", &path).unwrap().expose(), " two words ");
        let err = read_file("mqtt.password_file", &dir.path().join("absent")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read mqtt.password_file from"));
    }
}
