//! The `campaignd` binary: parses the command line, sets up logging and runs the command.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CAMPAIGND_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    campaignd::cli::run(campaignd::cli::Cli::parse())
}
