//! The `oci-connector` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

/// See `oci_connector::alloc` for why mimalloc and how it is tuned.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tunes mimalloc before anything is allocated (an ELF constructor runs before
/// `main` and before the Rust runtime's first allocation).
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = oci_connector::alloc::tune;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = oci_connector::cli::Cli::parse();
    match oci_connector::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
