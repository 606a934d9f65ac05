//! The `neko` binary: parse flags, dispatch to one `run` function per subcommand.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    neko::cli::configure_allocator();
    neko::cli::unset_empty_twins();
    let cli = neko::cli::Cli::parse();
    neko::cli::run(cli)
}
