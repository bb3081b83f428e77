//! `ubdcc credentials add|list|remove`: talks to mgmt directly, as the original.
//!
//! `add` takes the API secret from `UBDCC_API_SECRET`, else from a prompt without echo on a
//! terminal, else from the first line of stdin, when `--api-secret` is left out: a secret given
//! as an argument sits in the shell's history and in every `ps` listing while the command runs.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::cli::CredentialsCommand;
use crate::cluster_client::ClusterClient;
use crate::status::text;

/// `ubdcc credentials …`: talks to mgmt directly, as the original.
pub fn credentials(command: &CredentialsCommand) -> anyhow::Result<()> {
    let (client_args, answer) = match command {
        CredentialsCommand::Add {
            account_group,
            api_key,
            api_secret,
            client,
        } => {
            let api_secret = match api_secret {
                Some(secret) => secret.clone(),
                None => read_api_secret()?,
            };
            let mgmt = ClusterClient::new(client.port, &client.secrets)?;
            let body = json!({"account_group": account_group, "api_key": api_key, "api_secret": api_secret});
            (client, mgmt.mgmt_post("/add_credentials", &body))
        }
        CredentialsCommand::List(client) => {
            let mgmt = ClusterClient::new(client.port, &client.secrets)?;
            (client, mgmt.mgmt("/get_credentials_list"))
        }
        CredentialsCommand::Remove { id, client } => {
            let mgmt = ClusterClient::new(client.port, &client.secrets)?;
            let path = format!(
                "/remove_credentials?id={}",
                form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            );
            (client, mgmt.mgmt(&path))
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(_) => {
            let port = client_args
                .port
                .or_else(crate::cluster_client::remembered_port)
                .unwrap_or(crate::cluster_client::DEFAULT_MGMT_PORT);
            eprintln!("Cannot connect to mgmt on port {port}. Is the cluster running?");
            std::process::exit(1);
        }
    };
    if text(&answer, "result") != "OK" {
        eprintln!(
            "Error: {} ({})",
            text(&answer, "message"),
            text(&answer, "error_id")
        );
        std::process::exit(1);
    }
    match command {
        CredentialsCommand::Add { .. } => println!("Added. id={}", text(&answer, "id")),
        CredentialsCommand::Remove { .. } => println!("Removed."),
        CredentialsCommand::List(_) => print_credentials(&answer),
    }
    Ok(())
}

fn print_credentials(answer: &Map<String, Value>) {
    let credentials = answer
        .get("credentials")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if credentials.is_empty() {
        println!("(no credentials configured)");
        return;
    }
    for credential in credentials {
        let assigned: Vec<&str> = credential["assigned_dcns"]
            .as_array()
            .map(|uids| uids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let assigned = if assigned.is_empty() {
            "-".to_owned()
        } else {
            assigned.join(", ")
        };
        println!(
            "{}  {:<32}  {}  assigned=[{assigned}]",
            credential["id"].as_str().unwrap_or(""),
            credential["account_group"].as_str().unwrap_or(""),
            credential["api_key_preview"].as_str().unwrap_or(""),
        );
    }
}

/// The API secret from `UBDCC_API_SECRET`, a prompt (no echo) or stdin.
fn read_api_secret() -> anyhow::Result<String> {
    if let Some(secret) = std::env::var("UBDCC_API_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        return Ok(secret.trim().to_owned());
    }
    let stdin = std::io::stdin();
    let secret = if stdin.is_terminal() {
        eprint!("API secret (not shown): ");
        std::io::stderr().flush().ok();
        let line = read_line_without_echo(&stdin)?;
        eprintln!();
        line
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the API secret from stdin")?;
        line
    };
    let secret = secret.trim();
    if secret.is_empty() {
        bail!("no API secret: give it on stdin, at the prompt or in UBDCC_API_SECRET");
    }
    Ok(secret.to_owned())
}

/// One line from the terminal with echo off (restored afterwards, also on error).
fn read_line_without_echo(stdin: &std::io::Stdin) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let saved = tcgetattr(stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Now, &quiet).context("turning echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(stdin, OptionalActions::Now, &saved).context("turning echo back on")?;
    read.context("reading the API secret")?;
    Ok(line)
}
