//! Who may call what: the cluster secret for the internal endpoints, an optional bearer token
//! for the public API, checked by one middleware on every role.
//!
//! The original had no authentication: one GET to mgmt registered a fake pod, and mgmt then
//! pushed its whole state, API secrets included, to whatever address the caller named. Here:
//! - **Internal endpoints** ([`INTERNAL`]) need the cluster secret in the
//!   `X-Ubdcc-Cluster-Secret` header. A web page cannot send it: a cross-origin request with a
//!   custom header needs a CORS preflight no role answers, and a page that rebinds its own name
//!   to 127.0.0.1 (DNS rebinding) can send the header but does not know the secret — and is
//!   refused before that by its `Host` ([`host_is_allowed`]). The binary always configures a
//!   secret (the given one, the one `ubdcc start` made, or this machine's token file); only an
//!   explicit `--insecure` runs without one.
//! - **State-changing internal calls are POST** with a JSON body ([`Access::Post`]); a GET to
//!   them is 405 and another media type 415, so no `<img>` tag, link or form can reach them
//!   even where the secret is off (`application/json` from a page needs a CORS preflight).
//! - **The public API** needs the bearer token when one is set; `/test` stays open so probes and
//!   the original's client (which cannot send headers) find the service — it returns no secret.
//!
//! A refused call is an ERROR envelope (#1109) with HTTP 401 (no or wrong secret or token) or
//! 403 (a `Host` that is not this cluster's), 405 for a GET where POST is needed and 415 for a
//! POST that is not JSON. The
//! handlers learn whether the secret was checked from the [`Authenticated`] extension (mgmt
//! honours an advertised pod address only then).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::client::CLUSTER_SECRET_HEADER;
use crate::envelope::{ApiError, ErrorId};

/// Which methods an internal endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It changes state: POST only.
    Post,
    /// It reads (GET) and may also take a POST.
    Read,
}

/// The endpoints only pods of the cluster may call, with their methods. The seeds' public
/// aliases (`/ubdcc_add_credentials`, …) share the prefix but are public, so this is a list, not
/// a prefix rule.
pub const INTERNAL: &[(&str, Access)] = &[
    ("/ubdcc_node_registration", Access::Post),
    ("/ubdcc_node_sync", Access::Post),
    ("/ubdcc_node_cancellation", Access::Post),
    ("/ubdcc_update_depthcache_distribution", Access::Post),
    ("/ubdcc_get_responsible_dcn_addresses", Access::Read),
    ("/ubdcc_assign_credentials", Access::Read),
    // GET: the state copy (secrets included); POST: mgmt pushing its state.
    ("/ubdcc_mgmt_backup", Access::Read),
    ("/shutdown", Access::Post),
    // A peer DCN copying a synced book to start its replica from (issue 12).
    ("/ubdcc_book_copy", Access::Read),
];

/// The configured secrets and the names internal calls may be addressed to.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    cluster_secret: Option<Arc<str>>,
    bearer_token: Option<Arc<str>>,
    /// Host names (besides IP literals and `localhost`) internal calls may carry in `Host`.
    allowed_hosts: Arc<[String]>,
}

/// A request extension the middleware sets: `true` when the request carried the cluster secret
/// (always `false` where no secret is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated(pub bool);

impl Auth {
    /// Checks no secret where `None` (or empty) is given.
    pub fn new(cluster_secret: Option<&str>, bearer_token: Option<&str>) -> Self {
        let keep = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(Arc::from);
        Self {
            cluster_secret: keep(cluster_secret),
            bearer_token: keep(bearer_token),
            allowed_hosts: Arc::new([]),
        }
    }

    /// Also accepts internal calls addressed to these host names (e.g. Kubernetes service names).
    #[must_use]
    pub fn with_allowed_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.allowed_hosts = hosts
            .into_iter()
            .map(|host| host.trim().to_ascii_lowercase())
            .filter(|host| !host.is_empty())
            .collect();
        self
    }

    /// The cluster secret, for this pod's own internal calls.
    pub fn cluster_secret(&self) -> Option<&str> {
        self.cluster_secret.as_deref()
    }
}

/// The access rule of `path` when it is internal.
pub fn internal_access(path: &str) -> Option<Access> {
    INTERNAL
        .iter()
        .find(|(internal, _)| *internal == path)
        .map(|(_, access)| *access)
}

/// `true` for the endpoints only pods of the cluster may call.
pub fn is_internal(path: &str) -> bool {
    internal_access(path).is_some()
}

/// The middleware: refuses a request without what its path needs; see the module doc.
pub async fn guard(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let event = path.trim_start_matches('/').to_ascii_uppercase();
    let authenticated = match internal_access(path) {
        Some(access) => match check_internal(&auth, &request, access) {
            Ok(authenticated) => authenticated,
            Err((status, message)) => return refusal(status, &event, message),
        },
        None => {
            if path != "/test" && !has_bearer(&auth, &request) {
                let message = "Unauthorized: this endpoint needs a valid bearer token";
                return refusal(StatusCode::UNAUTHORIZED, &event, message);
            }
            false
        }
    };
    request
        .extensions_mut()
        .insert(Authenticated(authenticated));
    next.run(request).await
}

/// The checks of an internal call, in the order that reveals the least: `Host`, secret, method.
/// Returns whether the secret was checked.
fn check_internal(
    auth: &Auth,
    request: &Request,
    access: Access,
) -> Result<bool, (StatusCode, &'static str)> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !host_is_allowed(host, &auth.allowed_hosts)
    {
        return Err((
            StatusCode::FORBIDDEN,
            "Forbidden: internal endpoints answer only requests addressed to an IP address, \
             localhost or a configured host name",
        ));
    }
    let authenticated = match auth.cluster_secret.as_deref() {
        None => false,
        Some(secret) => {
            let given = request
                .headers()
                .get(CLUSTER_SECRET_HEADER)
                .and_then(|v| v.to_str().ok());
            if !given.is_some_and(|given| same(given, secret)) {
                return Err((
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized: this endpoint needs a valid cluster secret",
                ));
            }
            true
        }
    };
    if access == Access::Post && request.method() != Method::POST {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed: this endpoint changes state and takes only POST with a JSON body",
        ));
    }
    // A page can POST `text/plain` or a form to any address without a preflight; only
    // `application/json` needs one, which no role answers.
    if access == Access::Post && !is_json(request) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: this endpoint takes only a JSON body (Content-Type: application/json)",
        ));
    }
    Ok(authenticated)
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn has_bearer(auth: &Auth, request: &Request) -> bool {
    let Some(token) = auth.bearer_token.as_deref() else {
        return true;
    };
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim(), token))
}

fn refusal(status: StatusCode, event: &str, message: &str) -> Response {
    let mut response = ApiError::new(ErrorId::UNAUTHORIZED, event, message).into_response();
    *response.status_mut() = status;
    response
}

/// `true` when a `Host` header names an IP literal, `localhost` or one of `allowed` (any port).
/// A browser tricked into calling a loopback port by DNS rebinding sends its attacker's name.
pub fn host_is_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || allowed.contains(&name)
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
    }

    #[test]
    fn internal_endpoints_are_a_list_not_a_prefix() {
        assert_eq!(internal_access("/ubdcc_node_sync"), Some(Access::Post));
        assert_eq!(internal_access("/shutdown"), Some(Access::Post));
        assert_eq!(internal_access("/ubdcc_mgmt_backup"), Some(Access::Read));
        assert!(!is_internal("/get_asks"));
        // The seeds' credential aliases are public.
        assert!(!is_internal("/ubdcc_add_credentials"));
        assert!(!is_internal("/ubdcc_get_credentials_list"));
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_configured_names() {
        let allowed = ["ubdcc-mgmt".to_owned()];
        for host in [
            "127.0.0.1",
            "127.0.0.1:42080",
            "10.1.2.3:80",
            "[::1]:42080",
            "[fe80::1]",
            "localhost:42080",
            "LOCALHOST",
            "ubdcc-mgmt:42080",
            "UBDCC-MGMT.",
        ] {
            assert!(host_is_allowed(host, &allowed), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:42080",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "[not-an-ip]:1",
            "ubdcc-mgmt.evil",
        ] {
            assert!(!host_is_allowed(host, &allowed), "{host}");
        }
    }
}
