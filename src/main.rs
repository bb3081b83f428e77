//! The `ubdcc` binary: one command for every role of the cluster.
//!
//! `main` only installs logging and maps `run`'s result to an exit code; each subcommand lives in
//! the module named for it.

mod books;
mod cli;
mod cluster_client;
mod credentials;
mod dcn;
mod export;
mod mgmt;
mod replay;
mod restapi;
mod secrets;
mod serve;
mod shm;
mod sim;
mod start;
mod status;
mod stop;
mod top;

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, ShmCommand};

// mimalloc: the DCNs and the gateway allocate many small, short-lived buffers (JSON, HTTP) on
// several threads, where it is measurably faster than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Shm(ShmCommand::List(args)) => shm::list(args),
        Command::Shm(ShmCommand::TestPattern(args)) => shm::test_pattern(args),
        Command::Sim(args) => sim::run(args),
        Command::Dcn(args) => dcn::run(args),
        Command::Mgmt(args) => mgmt::run(args),
        Command::Restapi(args) => restapi::run(args),
        Command::Start(args) => start::run(args, &cli.log_level),
        Command::Status(args) => status::status(args),
        Command::Stop(args) => stop::stop(args),
        Command::Credentials(command) => credentials::credentials(command),
        Command::Books(args) => books::books(args),
        Command::Top(args) => top::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Export(args) => export::run(args),
        Command::Openapi => {
            let document = ubdcc_gateway::restapi::endpoints::openapi();
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
    }
}
