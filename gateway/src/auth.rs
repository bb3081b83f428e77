//! Who may call what: an optional bearer token for the public API and an optional cluster secret
//! for the internal endpoints (`/ubdcc_*`, `/shutdown`), checked by one middleware on every role.
//!
//! The original had no authentication at all. Both checks are off unless configured; `/test`
//! stays open so probes and the original's client (which cannot send headers) can find the
//! service — it returns no secret. A refused call is HTTP 401 with an ERROR envelope (#1109).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::client::CLUSTER_SECRET_HEADER;
use crate::envelope::{ApiError, ErrorId};

/// The configured secrets.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    cluster_secret: Option<Arc<str>>,
    bearer_token: Option<Arc<str>>,
}

impl Auth {
    /// Checks nothing when both are `None` (or empty).
    pub fn new(cluster_secret: Option<&str>, bearer_token: Option<&str>) -> Self {
        let keep = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(Arc::from);
        Self {
            cluster_secret: keep(cluster_secret),
            bearer_token: keep(bearer_token),
        }
    }

    /// The cluster secret, for this pod's own internal calls.
    pub fn cluster_secret(&self) -> Option<&str> {
        self.cluster_secret.as_deref()
    }
}

/// `true` for the endpoints only pods of the cluster may call.
pub fn is_internal(path: &str) -> bool {
    path.starts_with("/ubdcc_") || path == "/shutdown"
}

/// The middleware: refuses a request without the secret its path needs.
pub async fn guard(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let headers = request.headers();
    let refused = if is_internal(path) {
        auth.cluster_secret.as_deref().is_some_and(|secret| {
            let given = headers
                .get(CLUSTER_SECRET_HEADER)
                .and_then(|v| v.to_str().ok());
            !given.is_some_and(|given| same(given, secret))
        })
    } else if path == "/test" {
        false
    } else {
        auth.bearer_token.as_deref().is_some_and(|token| {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            !given.is_some_and(|given| same(given.trim(), token))
        })
    };
    if refused {
        let what = if is_internal(path) {
            "a valid cluster secret"
        } else {
            "a valid bearer token"
        };
        let event = path.trim_start_matches('/').to_ascii_uppercase();
        return ApiError::new(
            ErrorId::UNAUTHORIZED,
            &event,
            format!("Unauthorized: this endpoint needs {what}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn same(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("ab", "abc"));
        assert!(is_internal("/ubdcc_node_sync") && is_internal("/shutdown"));
        assert!(!is_internal("/get_asks"));
    }
}
