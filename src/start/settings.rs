//! `ubdcc start`'s settings: flags, then `UBDCC_*` variables (clap reads both), then the TOML
//! file, then defaults.

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

use crate::cli::{SecretArgs, StartArgs};

/// The file form: every flag of `ubdcc start`, `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    dcn: Option<usize>,
    port: Option<u16>,
    restapi_port: Option<u16>,
    logdir: Option<PathBuf>,
    cluster: Option<String>,
    pin: Option<bool>,
    demo: Option<bool>,
    #[serde(default)]
    exchange_endpoint: Vec<String>,
    #[serde(default)]
    markets: Vec<String>,
    desired_quantity: Option<u32>,
    record: Option<PathBuf>,
    record_books: Option<PathBuf>,
    cluster_secret: Option<String>,
    api_token: Option<String>,
}

/// Everything `ubdcc start` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DCNs to start.
    pub dcn: usize,
    /// mgmt's port.
    pub mgmt_port: u16,
    /// restapi's port.
    pub restapi_port: u16,
    /// Where logs go.
    pub logdir: PathBuf,
    /// Cluster name.
    pub cluster: String,
    /// Pin DCN k to core k.
    pub pin: bool,
    /// Start the simulator and demo books.
    pub demo: bool,
    /// `EXCHANGE=URL` overrides for the DCNs.
    pub endpoints: Vec<String>,
    /// `EXCHANGE:MARKET` books to create.
    pub markets: Vec<String>,
    /// Replicas of each.
    pub desired_quantity: u32,
    /// Where the DCNs record (one subdirectory each), if they do.
    pub record: Option<PathBuf>,
    /// Where the DCNs record the books created with `record=true` (one subdirectory each).
    pub record_books: Option<PathBuf>,
    /// Secrets for every role.
    pub secrets: SecretArgs,
    /// The roles' log filter.
    pub log_level: String,
}

impl Settings {
    /// Resolves `args` over the file over the defaults; picks free ports.
    ///
    /// # Errors
    /// An unreadable or invalid file, or no free port.
    pub fn resolve(args: &StartArgs, log_level: &str) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileSettings>(&text).with_context(|| {
                    format!("{} is not a valid ubdcc configuration", path.display())
                })?
            }
            None => FileSettings::default(),
        };
        let dcn = args.dcn.or(file.dcn).unwrap_or(1);
        let demo = args.demo || file.demo.unwrap_or(false);
        let cores = core_affinity::get_core_ids().map_or(1, |cores| cores.len());
        let mgmt_port = match args.port.or(file.port) {
            Some(port) => port,
            None => free_port(42080, &[])?,
        };
        let restapi_port = match args.restapi_port.or(file.restapi_port) {
            Some(port) => port,
            None => free_port(42081, &[mgmt_port])?,
        };
        let mut endpoints = file.exchange_endpoint;
        endpoints.extend(args.exchange_endpoint.iter().cloned());
        let mut markets = file.markets;
        markets.extend(args.markets.iter().cloned());
        let secrets = SecretArgs {
            cluster_secret: args.secrets.cluster_secret.clone().or(file.cluster_secret),
            api_token: args.secrets.api_token.clone().or(file.api_token),
        };
        let record = args.record.clone().or(file.record);
        let record_books = args.record_books.clone().or(file.record_books);
        if record.is_some() && record_books.is_some() {
            // From the file, or one from each: clap refuses both flags at once.
            anyhow::bail!(
                "record and record_books exclude each other: a DCN records all its books or the chosen ones"
            );
        }
        Ok(Self {
            dcn,
            mgmt_port,
            restapi_port,
            logdir: args
                .logdir
                .clone()
                .or(file.logdir)
                .unwrap_or_else(default_logdir),
            // The demo is a cluster of its own: its books never mix with the user's.
            cluster: args
                .cluster
                .clone()
                .or(file.cluster)
                .unwrap_or_else(|| if demo { DEMO_CLUSTER } else { "default" }.into()),
            pin: args.pin.or(file.pin).unwrap_or(dcn <= cores),
            demo,
            endpoints,
            markets,
            desired_quantity: args
                .desired_quantity
                .or(file.desired_quantity)
                .unwrap_or(if dcn >= 2 { 2 } else { 1 }),
            record,
            record_books,
            secrets,
            log_level: log_level.to_owned(),
        })
    }
}

/// The cluster name of `--demo` unless `--cluster` says otherwise.
pub const DEMO_CLUSTER: &str = "demo";

fn default_logdir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".unicorn-binance-suite").join("logs")
}

/// The first port from `from` that can be bound on 127.0.0.1 and is not in `taken`.
pub fn free_port(from: u16, taken: &[u16]) -> anyhow::Result<u16> {
    (from..=u16::MAX)
        .filter(|port| !taken.contains(port))
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .with_context(|| format!("no free port from {from}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("ubdcc-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ubdcc.toml");
        std::fs::write(
            &path,
            "dcn = 3\nport = 45000\nrestapi_port = 45001\ncluster = \"file\"\nmarkets = [\"binance.com:BTCUSDT\"]\napi_token = \"t\"\n",
        )
        .unwrap();
        let args = StartArgs {
            config: Some(path.clone()),
            dcn: Some(2),
            ..StartArgs::default()
        };
        let settings = Settings::resolve(&args, "info").unwrap();
        assert_eq!(settings.dcn, 2, "the flag wins");
        assert_eq!((settings.mgmt_port, settings.restapi_port), (45000, 45001));
        assert_eq!(settings.cluster, "file");
        assert_eq!(settings.markets, ["binance.com:BTCUSDT"]);
        assert_eq!(settings.secrets.api_token.as_deref(), Some("t"));
        assert_eq!(settings.desired_quantity, 2);
        std::fs::write(&path, "dcns = 3\n").unwrap();
        let error = Settings::resolve(&args, "info").unwrap_err();
        assert!(format!("{error:#}").contains("unknown field"), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_demo_is_a_cluster_of_its_own_unless_named() {
        let demo = StartArgs {
            demo: true,
            port: Some(45100),
            restapi_port: Some(45101),
            ..StartArgs::default()
        };
        assert_eq!(
            Settings::resolve(&demo, "info").unwrap().cluster,
            DEMO_CLUSTER
        );
        let named = StartArgs {
            cluster: Some("mine".into()),
            ..demo
        };
        assert_eq!(Settings::resolve(&named, "info").unwrap().cluster, "mine");
    }

    #[test]
    fn a_file_asking_for_both_recordings_is_refused() {
        let dir = std::env::temp_dir().join(format!("ubdcc-rec-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ubdcc.toml");
        std::fs::write(&path, "record_books = \"/tmp/books\"\n").unwrap();
        let args = StartArgs {
            config: Some(path.clone()),
            port: Some(45200),
            restapi_port: Some(45201),
            ..StartArgs::default()
        };
        let settings = Settings::resolve(&args, "info").unwrap();
        assert_eq!(settings.record_books, Some(PathBuf::from("/tmp/books")));
        let both = StartArgs {
            record: Some("/tmp/all".into()),
            ..args
        };
        let error = Settings::resolve(&both, "info").unwrap_err();
        assert!(
            format!("{error:#}").contains("exclude each other"),
            "{error:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
