//! The `terra-sink` binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    terra_sink::cli::main().await
}
