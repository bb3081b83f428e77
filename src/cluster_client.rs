//! The command line's client of a running cluster: finds mgmt (the `--port` flag, else the port
//! `ubdcc start` remembered, else 42080) and calls it and the pods on this machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use ubdcc_gateway::client::{CallError, InternalClient};

use crate::cli::SecretArgs;

/// mgmt's port when nothing else says.
pub const DEFAULT_MGMT_PORT: u16 = 42080;

/// Calls from the command line give up after this long.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking client of the cluster on this machine.
pub struct ClusterClient {
    runtime: tokio::runtime::Runtime,
    client: InternalClient,
    /// mgmt's port.
    pub port: u16,
}

impl ClusterClient {
    /// A client of mgmt at `port` (or the remembered or default port).
    ///
    /// # Errors
    /// When the runtime cannot be built.
    pub fn new(port: Option<u16>, secrets: &SecretArgs) -> anyhow::Result<Self> {
        let secrets = crate::secrets::for_client(secrets, port)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the runtime")?;
        let client = InternalClient::new(
            secrets.cluster_secret.as_deref(),
            secrets.api_token.as_deref(),
            TIMEOUT,
        );
        let port = port.or_else(remembered_port).unwrap_or(DEFAULT_MGMT_PORT);
        Ok(Self {
            runtime,
            client,
            port,
        })
    }

    /// `GET` mgmt's `path` (with its query).
    ///
    /// # Errors
    /// [`CallError`] when mgmt cannot be reached or answers no JSON object.
    pub fn mgmt(&self, path: &str) -> Result<Map<String, Value>, CallError> {
        self.pod(self.port, path)
    }

    /// `POST` a JSON body to mgmt's `path`.
    ///
    /// # Errors
    /// As [`ClusterClient::mgmt`].
    pub fn mgmt_post(&self, path: &str, body: &Value) -> Result<Map<String, Value>, CallError> {
        self.pod_post(self.port, path, body)
    }

    /// `POST` a JSON body to `path` of the pod listening on `port` on this machine.
    ///
    /// # Errors
    /// As [`ClusterClient::mgmt`].
    pub fn pod_post(
        &self,
        port: u16,
        path: &str,
        body: &Value,
    ) -> Result<Map<String, Value>, CallError> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let body = Bytes::from(body.to_string());
        self.runtime.block_on(self.client.post_json(&url, body))
    }

    /// Asks the pod listening on `port` (mgmt's too) to shut down.
    ///
    /// # Errors
    /// As [`ClusterClient::mgmt`].
    pub fn shutdown(&self, port: u16) -> Result<Map<String, Value>, CallError> {
        self.pod_post(port, "/shutdown", &Value::Object(Map::new()))
    }

    /// `GET` `path` from the pod listening on `port` on this machine.
    ///
    /// # Errors
    /// As [`ClusterClient::mgmt`].
    pub fn pod(&self, port: u16, path: &str) -> Result<Map<String, Value>, CallError> {
        let url = format!("http://127.0.0.1:{port}{path}");
        self.runtime.block_on(self.client.get_json(&url))
    }
}

/// The folder of `ubdcc start`'s run files (the original's place), 0700.
pub fn run_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(
        PathBuf::from(home)
            .join(".unicorn-binance-suite")
            .join("config"),
    )
}

/// Where `ubdcc start` remembers mgmt's port (the original's place and format: the port as text).
fn state_file() -> Option<PathBuf> {
    Some(run_dir()?.join("ubdcc.state"))
}

/// The port `ubdcc start` remembered, if any.
pub fn remembered_port() -> Option<u16> {
    std::fs::read_to_string(state_file()?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Remembers mgmt's port for `status`, `stop` and `credentials` from other terminals.
pub fn remember_port(port: u16) {
    let Some(file) = state_file() else {
        return;
    };
    if let Some(dir) = file.parent() {
        ubdcc_gateway::private_file::private_dir(dir).ok();
    }
    if let Err(error) =
        ubdcc_gateway::private_file::write_atomic(&file, port.to_string().as_bytes())
    {
        tracing::warn!(%error, file = %file.display(), "cannot remember mgmt's port");
    }
}

/// Forgets the remembered port and the cluster's secret (the cluster stopped).
pub fn forget_port() {
    if let Some(file) = state_file() {
        std::fs::remove_file(file).ok();
    }
    crate::secrets::forget_start_secret();
}
