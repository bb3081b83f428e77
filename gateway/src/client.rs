//! The HTTP client for calls inside the cluster (restapi → mgmt, restapi → DCN, node → mgmt,
//! mgmt → node): pooled keep-alive connections, a timeout per call, and the cluster secret on
//! every request when one is set.
//!
//! A failed call is a [`CallError`] whose text reads like the original's local error dicts,
//! `<kind> - <url> - <detail>`, because restapi passes it on to clients in #5000 / #9000.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use thiserror::Error;

/// The base URL of a pod at `ip` (IPv4 or IPv6, as mgmt's state records it) and `port`.
pub fn pod_url(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    }
}

/// The header carrying the cluster secret on internal calls.
pub const CLUSTER_SECRET_HEADER: &str = "x-ubdcc-cluster-secret";

/// The original's timeout for every internal call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a pod that is not up in this time will not come: on a LAN a live pod answers
/// the handshake in well under a millisecond, and a dead machine drops it silently, which
/// without this bound holds a call (and a reader behind it) for the whole call timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest body exchanged between pods (a full state of many thousand books fits).
pub const MAX_BODY: usize = 256 << 20;

/// `url` with the value of any `api_secret` query parameter masked, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key == "api_secret" => format!("{key}=********"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// An internal call failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CallError {
    /// No connection, a reset, a non-2xx status or an unreadable body.
    #[error("ClientError - {url} - {detail}")]
    Client {
        /// The URL called.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// No answer within the timeout.
    #[error("TimeoutError - {url} - no answer within {timeout_ms} ms")]
    Timeout {
        /// The URL called.
        url: String,
        /// The timeout.
        timeout_ms: u128,
    },
}

/// A cheap-to-clone client; see the module doc.
#[derive(Clone)]
pub struct InternalClient {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: Option<Arc<str>>,
    /// The public API's bearer token: restapi's calls to mgmt's and the DCNs' public endpoints
    /// need it like any client's.
    bearer: Option<Arc<str>>,
    timeout: Duration,
}

impl InternalClient {
    /// A client sending the cluster `secret` and the public API's `bearer` token (when set) and
    /// giving up after `timeout`.
    pub fn new(secret: Option<&str>, bearer: Option<&str>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            http,
            secret: secret.filter(|s| !s.is_empty()).map(Arc::from),
            bearer: bearer.filter(|b| !b.is_empty()).map(Arc::from),
            timeout,
        }
    }

    /// `GET url`, the raw body.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn get(&self, url: &str) -> Result<Bytes, CallError> {
        self.call(Method::GET, url, None, self.timeout).await
    }

    /// `GET url` giving up after `timeout` instead of the client's: a read of market data from
    /// a DCN, which answers in microseconds when alive, must fail over to the next replica long
    /// before a silent (dead or unplugged) machine's call would time out.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn get_within(&self, url: &str, timeout: Duration) -> Result<Bytes, CallError> {
        self.call(Method::GET, url, None, timeout.min(self.timeout))
            .await
    }

    /// `GET url`, the JSON object answered.
    ///
    /// # Errors
    /// [`CallError`], also when the answer is not a JSON object.
    pub async fn get_json(&self, url: &str) -> Result<Map<String, Value>, CallError> {
        let body = self.get(url).await?;
        json_object(url, &body)
    }

    /// `POST url` with a JSON body, the JSON object answered.
    ///
    /// # Errors
    /// [`CallError`], also when the answer is not a JSON object.
    pub async fn post_json(&self, url: &str, body: Bytes) -> Result<Map<String, Value>, CallError> {
        let answer = self
            .call(Method::POST, url, Some(body), self.timeout)
            .await?;
        json_object(url, &answer)
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let client_error = |detail: String| CallError::Client {
            url: redact(url),
            detail,
        };
        let mut request = Request::builder().method(method).uri(url);
        if let Some(secret) = &self.secret {
            request = request.header(CLUSTER_SECRET_HEADER, secret.as_ref());
        }
        if let Some(bearer) = &self.bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| client_error(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| client_error(describe(&e)))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| client_error(format!("reading the body: {e}")))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(client_error(format!("{status}, {text}")));
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                url: redact(url),
                timeout_ms: timeout.as_millis(),
            })?
    }
}

fn json_object(url: &str, body: &[u8]) -> Result<Map<String, Value>, CallError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(CallError::Client {
            url: redact(url),
            detail: "the answer is not a JSON object".into(),
        }),
    }
}

/// The error with its causes (hyper's own text is just "client error (Connect)").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_masked() {
        assert_eq!(
            redact("http://m/add_credentials?account_group=g&api_secret=S3CR3T&api_key=k"),
            "http://m/add_credentials?account_group=g&api_secret=********&api_key=k"
        );
        assert_eq!(redact("http://m/test"), "http://m/test");
    }
}
