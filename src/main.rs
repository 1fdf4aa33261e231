//! The `campaignd` binary: sets up memory and logging, parses the command line and runs the command.

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    campaignd::memory::one_arena();
    campaignd::logs::init().context("could not open CAMPAIGND_LOG_FILE")?;
    campaignd::cli::run(campaignd::cli::Cli::parse())
}
