//! The edge of the API: what a request must be before a handler sees it. Limits on the head
//! (target length, header count and bytes) and the body (bytes, time to arrive, JSON), and
//! text fit for PostgreSQL: path segments and query values percent-decode to UTF-8 within a
//! length, and no NUL anywhere a client can put text (PostgreSQL text cannot hold it). Each
//! refusal is a 4xx in the one error shape. hyper's own limits (`serve`) sit above these, so
//! clients meet these first.

use super::error::ApiError;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use std::time::Duration;

/// What the API accepts; `Default` is what the service runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Bytes of the request target (path and query).
    pub uri_bytes: usize,
    /// Header fields.
    pub headers: usize,
    /// Bytes of all header names and values.
    pub header_bytes: usize,
    /// Characters of one path segment, query key or query value, decoded.
    pub param_chars: usize,
    pub body_bytes: usize,
    /// Time for the whole body to arrive once the head is in.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            uri_bytes: 8 * 1024,
            headers: 100,
            header_bytes: 32 * 1024,
            // The longest text a parameter carries is a VSS signal name (256 bytes at most).
            param_chars: 256,
            body_bytes: 2 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Router layer: the head's limits and the text of the path and query. Leaves the limits in
/// the request for `body`.
pub async fn head(
    State(limits): State<Limits>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_head(&limits, request.uri(), request.headers())?;
    check_path(&limits, request.uri().path())?;
    if let Some(query) = request.uri().query() {
        check_query(&limits, query)?;
    }
    request.extensions_mut().insert(limits);
    Ok(next.run(request).await)
}

fn check_head(limits: &Limits, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.uri_bytes {
        return Err(ApiError::UriTooLong(format!(
            "the request target has {target} bytes; at most {} are accepted",
            limits.uri_bytes
        )));
    }
    if headers.len() > limits.headers {
        return Err(ApiError::HeadersTooLarge(format!(
            "{} header fields; at most {} are accepted",
            headers.len(),
            limits.headers
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > limits.header_bytes {
        return Err(ApiError::HeadersTooLarge(format!(
            "{bytes} bytes of headers; at most {} are accepted",
            limits.header_bytes
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body_bytes as u64) {
        return Err(too_large(limits));
    }
    Ok(())
}

fn too_large(limits: &Limits) -> ApiError {
    ApiError::TooLarge(format!(
        "the body is over {} bytes, the most accepted",
        limits.body_bytes
    ))
}

fn nul(what: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_text",
        format!("{what} contains a NUL character, which text here cannot hold"),
    )
}

/// Decoded text of one part of the target, or the refusal naming it as `what`.
fn decoded<'a>(
    limits: &Limits,
    raw: &'a str,
    what: impl Fn() -> String,
    code: &'static str,
) -> Result<std::borrow::Cow<'a, str>, ApiError> {
    let text = percent_decode_str(raw).decode_utf8().map_err(|_| {
        ApiError::bad_request(
            code,
            format!("{} is not UTF-8 once percent-decoded", what()),
        )
    })?;
    if text.contains('\0') {
        return Err(nul(&what()));
    }
    let chars = text.chars().count();
    if chars > limits.param_chars {
        return Err(ApiError::bad_request(
            code,
            format!(
                "{} has {chars} characters; at most {} are accepted",
                what(),
                limits.param_chars
            ),
        ));
    }
    Ok(text)
}

fn check_path(limits: &Limits, path: &str) -> Result<(), ApiError> {
    for segment in path.split('/') {
        decoded(
            limits,
            segment,
            || format!("path segment {:?}", shorten(segment)),
            "invalid_path",
        )?;
    }
    Ok(())
}

fn check_query(limits: &Limits, query: &str) -> Result<(), ApiError> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decoded(
            limits,
            key,
            || format!("query parameter name {:?}", shorten(key)),
            "invalid_parameter",
        )?;
        decoded(
            limits,
            value,
            || format!("query parameter {key}"),
            "invalid_parameter",
        )?;
    }
    Ok(())
}

/// The first characters of overlong raw text, for messages.
fn shorten(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// Route layer (inside auth, so no key, no body read): a body must be JSON, arrive within
/// the limits, and hold no NUL. Passes it on read.
pub async fn body(request: Request, next: Next) -> Result<Response, ApiError> {
    if request.body().is_end_stream() {
        return Ok(next.run(request).await);
    }
    let limits = request
        .extensions()
        .get::<Limits>()
        .copied()
        .unwrap_or_default();
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType(
            "a request body must be JSON (Content-Type: application/json)".into(),
        ));
    }
    let (parts, body) = request.into_parts();
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.body_bytes).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return Err(ApiError::Timeout(format!(
                "the body did not arrive within {} s",
                limits.body_timeout.as_secs_f64()
            )))
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large(&limits)),
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("the body could not be read: {e}"),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    if has_nul(&bytes) {
        let at = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| nul_path(&v))
            .map_or_else(|| "the body".to_owned(), |p| format!("body field {p}"));
        return Err(nul(&at));
    }
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json"
        || media == "application/x-ndjson"
        || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Whether a body holds NUL: a raw 0 byte, or JSON's only spelling of it in text, the escape
/// `\u0000` (escapes are read left to right, so in `\\u0000` the backslash is escaped).
pub fn has_nul(body: &[u8]) -> bool {
    if body.contains(&0) {
        return true;
    }
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            if body[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Where in a JSON value a string (or key) holds NUL, e.g. `[3].notes`.
fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_path(v).map(|p| format!("[{i}]{}", dotted(&p)))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(format!("{:?}", k.replace('\0', "\\u0000")))
            } else {
                nul_path(v).map(|p| format!("{k}{}", dotted(&p)))
            }
        }),
        _ => None,
    }
}

fn dotted(rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('[') {
        rest.to_owned()
    } else {
        format!(".{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_in_raw_bytes_and_escapes_but_not_in_escaped_backslashes() {
        assert!(has_nul(br#"{"a":"x\u0000"}"#));
        assert!(has_nul(b"{\"a\":\"\0\"}"));
        assert!(has_nul(br#"{"a":"\\\u0000"}"#));
        assert!(!has_nul(br#"{"a":"\\u0000"}"#));
        assert!(!has_nul(br#"{"a":"\u0001","b":"u0000"}"#));
        assert!(
            !has_nul(br#"\"#),
            "a trailing backslash is not an escape of NUL"
        );
    }

    #[test]
    fn the_path_to_a_nul_names_the_field() {
        let v: Value = serde_json::from_str(r#"[{"a":"ok"},{"b":{"notes":"x\u0000"}}]"#).unwrap();
        assert_eq!(nul_path(&v).as_deref(), Some("[1].b.notes"));
        let v: Value = serde_json::from_str(r#"{"tags":["a","\u0000"]}"#).unwrap();
        assert_eq!(nul_path(&v).as_deref(), Some("tags[1]"));
        assert_eq!(nul_path(&serde_json::json!({"a": "b"})), None);
    }

    #[test]
    fn query_and_path_text_is_checked_decoded() {
        let l = Limits::default();
        assert!(check_query(&l, "vin=ABC&limit=5").is_ok());
        for bad in ["vin=%00", "%00=1", "signal=%ff", "a=%c3&b=%a9"] {
            assert!(check_query(&l, bad).is_err(), "{bad}");
        }
        let long = format!("signal={}", "A".repeat(257));
        assert!(check_query(&l, &long).is_err());
        assert!(check_query(&l, &format!("signal={}", "é".repeat(256))).is_ok());
        assert!(check_path(&l, "/v1/workshops/WS-01").is_ok());
        for bad in ["/v1/workshops/%00", "/v1/workshops/%ff", "/v1/a%00b/x"] {
            assert!(check_path(&l, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_media_types() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(with("application/x-ndjson"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonp"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
