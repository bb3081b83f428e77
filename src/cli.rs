//! The command line of the `ubdcc` binary.

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand};

/// UNICORN Binance DepthCache Cluster, rebuilt in Rust.
#[derive(Debug, Parser)]
#[command(name = "ubdcc", version, about)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), also read from UBDCC_LOG.
    #[arg(long, global = true, default_value = "info", env = "UBDCC_LOG")]
    pub log_level: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and exercise the shared-memory book segments on this host.
    #[command(subcommand)]
    Shm(ShmCommand),
    /// Run a local exchange that speaks Binance's depth protocol (REST and WebSocket on one
    /// port), with fault injection under /sim/control.
    Sim(SimArgs),
    /// Run a DepthCache node: keep books in sync with the exchange and publish them into shared
    /// memory and over HTTP; with mgmt (default) it keeps the books mgmt places on it.
    // Boxed: its many settings make it far the largest variant.
    Dcn(Box<DcnArgs>),
    /// Run the management service: cluster state, placement of books on DCNs, heartbeats,
    /// backups and recovery.
    Mgmt(MgmtArgs),
    /// Run the public REST API (the original's endpoints), reading books from shared memory on
    /// this host or from the DCNs over HTTP.
    Restapi(RestapiArgs),
    /// Start a whole cluster on this machine (mgmt, restapi, N DCNs) and open its console
    /// (status, add-dcn, remove-dcn, restart, stop, help); without a terminal it runs until
    /// SIGTERM. `--demo` adds the exchange simulator and a few books, no internet needed.
    Start(StartArgs),
    /// Print the status table of the running cluster.
    Status(ClientArgs),
    /// Shut the running cluster down.
    Stop(ClientArgs),
    /// Add, list or remove API credentials.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// A table of every DepthCache: replicas, status, best bid and ask, age.
    Books(ClientArgs),
    /// A live view of one book, read from shared memory on this machine.
    Top(TopArgs),
    /// Print the OpenAPI 3 document of the public API (restapi serves it at /openapi.json).
    Openapi,
    /// Serve a recording (`ubdcc dcn --record DIR`) through Binance's protocol, so a cluster or
    /// any other Binance client reproduces the recorded period (docs/recording.md).
    Replay(ReplayArgs),
    /// Rebuild every recorded book and write its top N levels at every update id.
    Export(ExportArgs),
}

/// Arguments of `ubdcc replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording's directory (one DCN's `--record DIR`).
    pub dir: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port for REST and WebSocket (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Pace: 1 is the recorded pace, 10 ten times faster.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start here: Unix seconds, Unix ms, or UTC `YYYY-MM-DDTHH:MM:SS` (earlier records only
    /// build the books).
    #[arg(long, value_parser = crate::replay::parse_time)]
    pub from: Option<u64>,
    /// Stop after this time (same forms as --from).
    #[arg(long, value_parser = crate::replay::parse_time)]
    pub to: Option<u64>,
}

/// The formats `ubdcc export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One CSV row per book and update id.
    Csv,
    /// Apache Parquet, the same columns (needs --out).
    Parquet,
}

/// Arguments of `ubdcc export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The recording's directory.
    pub dir: std::path::PathBuf,
    /// Levels per side written at every update id.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub top: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Output file (default for CSV: standard output).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// How the client commands find the cluster.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// mgmt's port (default: the one `ubdcc start` remembered, else 42080).
    #[arg(long)]
    pub port: Option<u16>,
    #[command(flatten)]
    pub secrets: SecretArgs,
}

/// `ubdcc credentials …`
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Add an API key (and secret) for an account group; prints its id.
    Add {
        /// binance.com, binance.com-futures-testnet, binance.com-testnet, binance.tr or binance.us.
        #[arg(long)]
        account_group: String,
        /// The API key.
        #[arg(long)]
        api_key: String,
        /// The API secret (never shown again). Better left out: it is then read from
        /// UBDCC_API_SECRET, else asked for without echo on a terminal, else read from stdin —
        /// never in shell history or `ps`.
        #[arg(long)]
        api_secret: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the credentials (keys masked, no secrets).
    List(ClientArgs),
    /// Remove credentials by id.
    Remove {
        /// The id `add` printed.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Arguments of `ubdcc top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Exchange, e.g. binance.com.
    pub exchange: String,
    /// Market, e.g. BTCUSDT.
    pub market: String,
    /// Cluster name (whose shared-memory segments are read).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Levels shown per side.
    #[arg(long, default_value_t = 10)]
    pub levels: usize,
    /// Refresh interval in ms.
    #[arg(long, default_value_t = 250)]
    pub interval_ms: u64,
    /// Print one frame and exit (for scripts).
    #[arg(long)]
    pub once: bool,
}

/// Arguments of `ubdcc start`. Every setting also comes from `--config FILE` (TOML, the same
/// names with `_`) and from `UBDCC_*` variables; flags win over variables, variables over the
/// file.
#[derive(Debug, Args, Default)]
pub struct StartArgs {
    /// A TOML file with any of the settings below.
    #[arg(long, env = "UBDCC_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// DCNs to start (default 1).
    #[arg(long, env = "UBDCC_DCN")]
    pub dcn: Option<usize>,
    /// mgmt's port (default: the first free one from 42080).
    #[arg(long, env = "UBDCC_MGMT_PORT")]
    pub port: Option<u16>,
    /// restapi's port (default: the first free one from 42081).
    #[arg(long, env = "UBDCC_RESTAPI_PORT")]
    pub restapi_port: Option<u16>,
    /// Where the roles' logs go (default: ~/.unicorn-binance-suite/logs).
    #[arg(long, env = "UBDCC_LOGDIR")]
    pub logdir: Option<std::path::PathBuf>,
    /// Cluster name (shared-memory segments are `ubdcc.<cluster>.<dcn>`; default "default").
    #[arg(long, env = "UBDCC_CLUSTER")]
    pub cluster: Option<String>,
    /// Pin DCN k to CPU core k (default: when there are at least as many cores as DCNs).
    #[arg(long, env = "UBDCC_PIN")]
    pub pin: Option<bool>,
    /// Also start the exchange simulator, point the exchanges at it and create a few books.
    #[arg(long)]
    pub demo: bool,
    /// Point an exchange at another URL (EXCHANGE=URL), repeated.
    #[arg(long)]
    pub exchange_endpoint: Vec<String>,
    /// Books to create once the cluster is up (EXCHANGE:MARKET, comma-separated or repeated).
    #[arg(long)]
    pub markets: Vec<String>,
    /// Replicas of each of those books (default: 2 when there are 2 or more DCNs, else 1).
    #[arg(long)]
    pub desired_quantity: Option<u32>,
    /// Record every DCN's frames, starting books and sync markers under this directory, one
    /// subdirectory per DCN (`DIR/dcn-1`, ...; docs/recording.md).
    #[arg(long, conflicts_with = "record_books")]
    pub record: Option<std::path::PathBuf>,
    /// Like `--record`, but each DCN records only the books created with `record=true`
    /// (`DIR/dcn-1`, ...).
    #[arg(long)]
    pub record_books: Option<std::path::PathBuf>,
    /// Secrets handed to every role.
    #[command(flatten)]
    pub secrets: SecretArgs,
}

/// Settings every pod that talks to mgmt shares.
#[derive(Debug, Args)]
pub struct PodArgs {
    /// mgmt's base URL.
    #[arg(long, env = "UBDCC_MGMT_URL", default_value = "http://127.0.0.1:42080")]
    pub mgmt_url: String,
    /// Longest time between two heartbeats to mgmt, in ms.
    #[arg(long, env = "UBDCC_HEARTBEAT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
    pub heartbeat_ms: u64,
    /// The address other pods reach this one at (default: the address mgmt sees).
    #[arg(long, env = "UBDCC_ADVERTISE_IP")]
    pub advertise_ip: Option<String>,
    /// The machine this pod runs on (default: /etc/machine-id); DCNs and restapi on the same
    /// machine share shared memory, and replicas of a book prefer different machines.
    #[arg(long, env = "UBDCC_NODE")]
    pub node: Option<String>,
    /// This pod's name (default: role and a random suffix).
    #[arg(long, env = "UBDCC_POD_NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub secrets: SecretArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// Secrets every role checks.
#[derive(Debug, Args, Default, Clone)]
pub struct SecretArgs {
    /// Secret that internal calls between pods must carry, the same on every pod (at least 16
    /// characters). Unset: this machine's token file (~/.ubdcc/machine.token, or
    /// UBDCC_TOKEN_FILE), and the role stays on loopback.
    #[arg(long, env = "UBDCC_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Bearer token the public API requires (`Authorization: Bearer <token>`; off when unset;
    /// `/test` stays open).
    #[arg(long, env = "UBDCC_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

/// How a role's internal endpoints take calls.
#[derive(Debug, Args, Default, Clone)]
pub struct ListenArgs {
    /// Take internal calls without a cluster secret, even beyond loopback (anyone who reaches
    /// the port can then register pods, read the API secrets and stop the cluster).
    #[arg(long, env = "UBDCC_INSECURE")]
    pub insecure: bool,
    /// Host names internal calls may be addressed to besides IP addresses and localhost (e.g.
    /// the Kubernetes service name of mgmt), comma-separated: others are refused (DNS rebinding).
    #[arg(long, env = "UBDCC_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
}

/// Arguments of `ubdcc mgmt`.
#[derive(Debug, Args)]
pub struct MgmtArgs {
    /// Address to listen on (0.0.0.0 in containers).
    #[arg(long, env = "UBDCC_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, env = "UBDCC_PORT", default_value_t = 42080)]
    pub port: u16,
    /// Directory of the durable state file (default: ~/.ubdcc/mgmt-PORT).
    #[arg(long, env = "UBDCC_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Keep the state in memory and the pods' copies only.
    #[arg(long, conflicts_with = "data_dir")]
    pub ephemeral: bool,
    /// Evict a pod (and re-place its replicas) after this long without a heartbeat, in ms.
    #[arg(long, env = "UBDCC_POD_TIMEOUT_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..))]
    pub pod_timeout_ms: u64,
    /// After a start, wait this long for pods to offer their state copies, in ms.
    #[arg(long, env = "UBDCC_RECOVERY_WINDOW_MS", default_value_t = 3000)]
    pub recovery_window_ms: u64,
    /// This pod's name.
    #[arg(long, default_value = "ubdcc-mgmt")]
    pub name: String,
    /// Point an exchange at another URL (EXCHANGE=URL), as the DCNs are: creates are checked
    /// against its `exchangeInfo`; also read comma-separated from UBDCC_EXCHANGE_ENDPOINTS.
    #[arg(long)]
    pub exchange_endpoint: Vec<String>,
    /// Do not check creates against the exchanges' `exchangeInfo` (markets are then only
    /// checked for their form).
    #[arg(long, env = "UBDCC_NO_MARKET_CHECK")]
    pub no_market_check: bool,
    #[command(flatten)]
    pub secrets: SecretArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// Arguments of `ubdcc restapi`.
#[derive(Debug, Args)]
pub struct RestapiArgs {
    /// Cluster name (whose shared-memory segments are read locally).
    #[arg(long, env = "UBDCC_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// Address to listen on (0.0.0.0 in containers).
    #[arg(long, env = "UBDCC_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, env = "UBDCC_PORT", default_value_t = 42081)]
    pub port: u16,
    /// Never read books from shared memory on this host; always ask the DCNs over HTTP.
    #[arg(long)]
    pub no_local_reads: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub pod: PodArgs,
}

/// `ubdcc shm …`
#[derive(Debug, Subcommand)]
pub enum ShmCommand {
    /// List every book of a cluster in shared memory, with its status.
    List(ListArgs),
    /// Write self-checking pattern books at full speed (for reader torture tests and benchmarks;
    /// not market data).
    TestPattern(TestPatternArgs),
}

/// Arguments of `ubdcc shm list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Cluster name.
    #[arg(long, default_value = "default")]
    pub cluster: String,
}

/// Arguments of `ubdcc shm test-pattern`.
#[derive(Debug, Args)]
pub struct TestPatternArgs {
    /// Cluster name.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// DCN name (the segment is `ubdcc.<cluster>.<dcn>`).
    #[arg(long, default_value = "pattern")]
    pub dcn: String,
    /// Number of books (`binance.com` / `PATTERN0`, `PATTERN1`, ...).
    #[arg(long, default_value_t = 4)]
    pub books: u32,
    /// Levels per side the segment holds (1..=5000).
    #[arg(long, default_value_t = 1000)]
    pub levels: u32,
    /// Publishes per second over all books; 0 means as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Stop after this many seconds (0 runs until killed).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
}

/// Arguments of `ubdcc sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port for REST and WebSocket (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Markets per family (spot and futures SIM{i}USDT, options SIM{i}-260626-STRIKE-C).
    #[arg(long, default_value_t = 10)]
    pub markets: usize,
    /// Events per second per market (0: only on POST /sim/advance).
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
    /// Seed of every market and event sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How far the options REST snapshot lags the stream, in milliseconds (Binance's cache lags
    /// by 25-30 s).
    #[arg(long, default_value_t = 3000)]
    pub options_snapshot_lag_ms: u64,
}

/// Arguments of `ubdcc dcn`.
#[derive(Debug, Args)]
pub struct DcnArgs {
    /// Cluster name (shared-memory segments are `ubdcc.<cluster>.<name>`).
    #[arg(long, env = "UBDCC_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// Address of the HTTP endpoints (0.0.0.0 in containers).
    #[arg(long, env = "UBDCC_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the HTTP endpoints (0 picks a free one; the address is printed).
    #[arg(long, env = "UBDCC_PORT", default_value_t = 42082)]
    pub port: u16,
    /// Pin the process to this CPU core.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Run without mgmt, keeping the books given by --markets.
    #[arg(long)]
    pub standalone: bool,
    #[command(flatten)]
    pub pod: PodArgs,
    /// Books to keep, as EXCHANGE:SYMBOL, comma-separated or repeated.
    #[arg(long)]
    pub markets: Vec<String>,
    /// Stream update interval in ms for every book (default: the exchange's default stream).
    #[arg(long)]
    pub update_interval_ms: Option<u32>,
    /// Resync every synced book after this many seconds.
    #[arg(long)]
    pub refresh_interval_secs: Option<u64>,
    /// Point an exchange at another URL serving its REST and WebSocket (EXCHANGE=URL); also read
    /// comma-separated from UBDCC_EXCHANGE_ENDPOINTS.
    #[arg(long)]
    pub exchange_endpoint: Vec<String>,
    /// API key for an exchange's REST snapshots (EXCHANGE=KEY; trbinance.com requires one); also
    /// read comma-separated from UBDCC_API_KEYS. Never logged.
    #[arg(long)]
    pub api_key: Vec<String>,
    /// Share (0..1) of each REST host's per-minute weight limit this DCN may use for snapshots;
    /// the hosts' used-weight headers are respected on top of it.
    #[arg(long, default_value_t = 0.5, value_parser = share)]
    pub weight_share: f64,
    /// Books the shared-memory segment can hold.
    #[arg(long, default_value_t = 1024)]
    pub max_books: u32,
    /// Levels per side kept in shared memory.
    #[arg(long, default_value_t = 1000)]
    pub levels: u32,
    /// Levels a book's first snapshot asks for (1..=1000). Below 1000 a book starts shallow —
    /// 100 levels weigh 5 on spot instead of 50 — is served at once within that depth (deeper
    /// reads are refused, never silently short), and is deepened to 1000 from spare weight or a
    /// peer without leaving sync.
    #[arg(long, env = "UBDCC_INITIAL_DEPTH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub initial_depth: u32,
    /// Never start a book from a synced replica on another DCN (shared memory on this host, or
    /// the peer over HTTP); always download the exchange's snapshot.
    #[arg(long)]
    pub no_peer_seeding: bool,
    /// Permission bits of the shared-memory segment, in octal: 0600 lets only this user read
    /// it, 0640 also the --shm-group (a subset of 0644; group or others may never write).
    #[arg(long, env = "UBDCC_SHM_MODE", default_value = "0600", value_parser = crate::shm::parse_segment_mode)]
    pub shm_mode: u32,
    /// Group (name or gid) to give the segment to, so its members can read it with --shm-mode
    /// 0640 (they trust it with UBDCC_SHM_TRUST=gid:GID).
    #[arg(long, env = "UBDCC_SHM_GROUP", value_parser = crate::shm::parse_group)]
    pub shm_group: Option<u32>,
    /// Interval of the connections' own pings, in ms.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub ping_interval_ms: u64,
    /// Reconnect a connection that brings no data message at all for this long, in ms (single
    /// silent streams are caught sooner by --book-silence-secs).
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub silence_timeout_ms: u64,
    /// Verify a synced book with a snapshot after its stream has brought nothing for this many
    /// seconds (doubling for quiet markets up to an hour); a book that missed events resyncs.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub book_silence_secs: u64,
    /// Audit each synced book against a REST snapshot at most every this many seconds (0: never),
    /// from spare request weight only; a book found wrong is replaced without leaving sync.
    #[arg(long, default_value_t = 30)]
    pub audit_interval_secs: u64,
    /// Replace each stream connection after this many seconds, opening the new one before
    /// closing the old one (Binance cuts connections at 24 h; the default is 23.5 h).
    #[arg(long, default_value_t = 84_600, value_parser = clap::value_parser!(u64).range(1..=86_000))]
    pub connection_lifetime_secs: u64,
    /// Record raw frames, starting books and sync markers into this directory (zstd, hourly
    /// files, private; docs/recording.md), for `ubdcc replay` and `ubdcc export`.
    #[arg(long, env = "UBDCC_RECORD", conflicts_with = "record_books")]
    pub record: Option<std::path::PathBuf>,
    /// Like `--record`, but only for the books created with `record=true` through the API
    /// (`create_depthcache(s)`); the other books' frames are left out.
    #[arg(long, env = "UBDCC_RECORD_BOOKS")]
    pub record_books: Option<std::path::PathBuf>,
    /// The most the recording directory may hold, in MB; the oldest files go first.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub record_max_mb: u64,
}

/// A share in (0, 1].
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        _ => Err(format!("{text:?} is not a share in (0, 1]")),
    }
}
