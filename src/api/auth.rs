//! Bearer API keys with scopes, enforced by a route layer so no `/v1` route can forget it.

use super::{error::ApiError, AppState};
use crate::store::keys::{self, Scope};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

/// Route layer: the request must carry a valid key holding `scope` (or admin).
pub async fn require_scope(
    State((state, scope)): State<(AppState, Scope)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let secret = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(ApiError::Unauthorized)?;
    let key = keys::verify(state.store.pool(), secret)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if !key.allows(scope) {
        return Err(ApiError::Forbidden(scope.as_str()));
    }
    request.extensions_mut().insert(key);
    Ok(next.run(request).await)
}

/// The credentials of a `Bearer` authorization: the scheme matched without regard to case
/// (RFC 7235), then one or more spaces.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let secret = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in ["Bearer k", "bearer k", "BEARER k", "bEaReR   k "] {
            assert_eq!(bearer(v), Some("k"), "{v}");
        }
        for v in ["Basic k", "Bearer", "Bearer ", "Bearerk", "Token k", ""] {
            assert_eq!(bearer(v), None, "{v}");
        }
    }
}
