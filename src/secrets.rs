//! Where each role and each client command gets the cluster secret: there is always one.
//!
//! - A role (mgmt, restapi, DCN) takes `--cluster-secret` / `UBDCC_CLUSTER_SECRET` (what
//!   `ubdcc start`, the Helm chart and the systemd units hand it). Without one it uses this
//!   machine's token file ([`machine_token_path`], 0600, created on first use), which every role
//!   the same user starts on this machine shares — and stays on loopback: binding beyond it
//!   without an explicit secret is a start-up error unless `--insecure` turns the internal
//!   endpoints' check off altogether.
//! - `ubdcc start` makes a random secret per cluster ([`start_secret_path`], 0600 beside the
//!   port it remembers) and hands it to its children in their environment, never in argv.
//! - The client commands (`status`, `stop`, `credentials`, `books`) take the flag or variable,
//!   else the secret of the cluster `ubdcc start` runs, else the machine token.
//!
//! The placeholder of `deploy/k8s` is refused: a secret everyone can read in our repository is
//! no secret.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use ubdcc_gateway::private_file;

use crate::cli::{ListenArgs, SecretArgs};

/// The cluster secret of `deploy/k8s/ubdcc.yaml` before the user changes it.
const PLACEHOLDER: &str = "CHANGE-ME-to-a-long-random-string";

/// Shortest explicit cluster secret accepted.
const MIN_SECRET_LEN: usize = 16;

/// This machine's token file for this user: `UBDCC_TOKEN_FILE`, else `~/.ubdcc/machine.token`.
pub fn machine_token_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("UBDCC_TOKEN_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".ubdcc").join("machine.token"))
}

/// Where `ubdcc start` keeps the secret of the cluster it runs.
pub fn start_secret_path() -> Option<PathBuf> {
    Some(crate::cluster_client::run_dir()?.join("ubdcc.secret"))
}

/// The secrets a role runs with, listening on `host`; see the module doc.
///
/// # Errors
/// The placeholder or a too short secret; beyond loopback without a secret and without
/// `--insecure`; a machine token that cannot be read or created.
pub fn for_role(
    secrets: &SecretArgs,
    listen: &ListenArgs,
    host: IpAddr,
) -> anyhow::Result<SecretArgs> {
    let mut resolved = secrets.clone();
    if let Some(secret) = explicit(secrets)? {
        resolved.cluster_secret = Some(secret);
        return Ok(resolved);
    }
    if listen.insecure {
        tracing::warn!(
            %host,
            "--insecure: internal endpoints take calls without a cluster secret; anyone who \
             reaches this port can register pods, read the cluster's API secrets and stop it"
        );
        resolved.cluster_secret = None;
        return Ok(resolved);
    }
    if !host.is_loopback() {
        bail!(
            "listening on {host} (beyond this machine) needs a cluster secret: pass \
             --cluster-secret or UBDCC_CLUSTER_SECRET (the same on every pod), or --insecure to \
             run without one"
        );
    }
    let path = machine_token_path()
        .context("no cluster secret and no HOME for this machine's token file: pass --cluster-secret or set UBDCC_TOKEN_FILE")?;
    let token = private_file::load_or_create_secret(&path)
        .with_context(|| format!("reading or creating {}", path.display()))?;
    tracing::info!(file = %path.display(), "no --cluster-secret: internal calls use this machine's token file");
    resolved.cluster_secret = Some(token);
    Ok(resolved)
}

/// The secrets a client command calls mgmt at `port` with; see the module doc.
///
/// # Errors
/// The placeholder or a too short explicit secret.
pub fn for_client(secrets: &SecretArgs, port: Option<u16>) -> anyhow::Result<SecretArgs> {
    let mut resolved = secrets.clone();
    resolved.cluster_secret = match explicit(secrets)? {
        Some(secret) => Some(secret),
        None => started_cluster_secret(port).or_else(machine_token),
    };
    Ok(resolved)
}

/// The secret of the cluster `ubdcc start` runs: `given` (checked) or a new random one; stored
/// 0600 for the client commands.
///
/// # Errors
/// A placeholder or too short `given` secret; no random bytes; the file cannot be written.
pub fn for_start(given: Option<&str>) -> anyhow::Result<String> {
    let given = SecretArgs {
        cluster_secret: given.map(str::to_owned),
        api_token: None,
    };
    let secret = match explicit(&given)? {
        Some(secret) => secret,
        None => private_file::random_hex(32).context("reading random bytes")?,
    };
    if let Some(path) = start_secret_path() {
        if let Some(dir) = path.parent() {
            private_file::private_dir(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        private_file::write_atomic(&path, secret.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(secret)
}

/// Removes the secret of a cluster that stopped.
pub fn forget_start_secret() {
    if let Some(path) = start_secret_path() {
        std::fs::remove_file(path).ok();
    }
}

/// The explicitly given secret, checked.
fn explicit(secrets: &SecretArgs) -> anyhow::Result<Option<String>> {
    let Some(secret) = secrets
        .cluster_secret
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    if secret == PLACEHOLDER {
        bail!(
            "the cluster secret is still the placeholder of deploy/k8s/ubdcc.yaml; set a long \
             random one (e.g. `openssl rand -hex 32`)"
        );
    }
    if secret.len() < MIN_SECRET_LEN {
        bail!(
            "the cluster secret is shorter than {MIN_SECRET_LEN} characters; use a long random one"
        );
    }
    Ok(Some(secret.to_owned()))
}

/// The secret `ubdcc start` made, when the client talks to that cluster's mgmt.
fn started_cluster_secret(port: Option<u16>) -> Option<String> {
    let remembered = crate::cluster_client::remembered_port()?;
    if port.is_some_and(|port| port != remembered) {
        return None;
    }
    private_file::read_secret(&start_secret_path()?)
        .ok()
        .flatten()
}

fn machine_token() -> Option<String> {
    private_file::read_secret(&machine_token_path()?)
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(secret: &str) -> SecretArgs {
        SecretArgs {
            cluster_secret: Some(secret.to_owned()),
            api_token: None,
        }
    }

    #[test]
    fn the_placeholder_and_short_secrets_are_refused() {
        let listen = ListenArgs::default();
        let loopback = IpAddr::from([127, 0, 0, 1]);
        assert!(for_role(&given(PLACEHOLDER), &listen, loopback).is_err());
        assert!(for_role(&given("short"), &listen, loopback).is_err());
        let resolved = for_role(&given("a-long-enough-secret"), &listen, loopback).unwrap();
        assert_eq!(
            resolved.cluster_secret.as_deref(),
            Some("a-long-enough-secret")
        );
    }

    #[test]
    fn beyond_loopback_a_secret_is_needed_unless_insecure() {
        let anywhere = IpAddr::from([0, 0, 0, 0]);
        let none = SecretArgs::default();
        let error = for_role(&none, &ListenArgs::default(), anywhere).unwrap_err();
        assert!(
            error.to_string().contains("needs a cluster secret"),
            "{error}"
        );
        let insecure = ListenArgs {
            insecure: true,
            ..ListenArgs::default()
        };
        let resolved = for_role(&none, &insecure, anywhere).unwrap();
        assert_eq!(resolved.cluster_secret, None);
        assert!(
            for_role(
                &given("a-long-enough-secret"),
                &ListenArgs::default(),
                anywhere
            )
            .is_ok()
        );
    }
}
