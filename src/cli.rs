//! The command line of the `ubdcc` binary.

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
