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
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
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
