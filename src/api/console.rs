//! The web console: static pages from `web/`, compiled into the binary so the service needs no
//! files, no CDN and no build step at run time. The pages call the same `/v1` API with the
//! same keys as every other client; this module only serves bytes.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($(($path:literal, $type:expr)),* $(,)?) => {
        &[$(Asset { path: $path, content_type: $type, bytes: include_bytes!(concat!("../../web/", $path)) }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const ASSETS: &[Asset] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("app.js", JS),
    ("common.js", JS),
    ("charts.js", JS),
    ("fleet.js", JS),
    ("vehicle.js", JS),
    ("workshop.js", JS),
    ("offers.js", JS),
    ("vendor/uplot/uPlot.iife.min.js", JS),
    ("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
];

/// Scripts only from here; uPlot sizes its canvas with inline styles, hence style 'unsafe-inline'.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..16]))
            .collect()
    })
}

fn serve(path: &str, request_headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return super::error::ApiError::NotFound(format!("no console asset {path}"))
            .into_response();
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time: cheap with the ETag, and a new release is never served stale.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    let fresh = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.bytes).into_response()
}

pub async fn root() -> Redirect {
    Redirect::to("/console/")
}

pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_served() {
        // A page importing a file the binary does not carry would fail only in a browser.
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.bytes).unwrap_or_default();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(target) = line.split('"').nth(1) else {
                    continue;
                };
                let target = target.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|a| a.path == target),
                    "{} imports {target}, which is not served",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn index_references_only_served_assets() {
        let index = std::str::from_utf8(ASSETS[0].bytes).unwrap_or_default();
        for part in index.split("assets/").skip(1) {
            let target = part.split('"').next().unwrap_or_default();
            assert!(
                ASSETS.iter().any(|a| a.path == target),
                "{target} not served"
            );
        }
    }
}
