//! The `neko` binary: parse flags, dispatch to one `run` function per subcommand.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = neko::cli::Cli::parse();
    neko::cli::run(cli)
}
