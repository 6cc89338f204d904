//! The `terra-sink` binary: the command line over the `terra_sink` library. Parses flags,
//! the environment and `./.env`, runs one command, and reports a failure in one clear line.

mod args;
mod commands;
mod sources;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use terra_sink::LogFormat;

use args::Cli;

/// jemalloc instead of glibc's malloc. A burst of large bodies left glibc holding most of the
/// peak for good (its arenas and raised mmap threshold keep freed multi-megabyte blocks);
/// jemalloc with its background thread (the `background_threads` feature) returns pages left
/// unused for `dirty_decay_ms` (10 s by default) to the OS even while the process is idle.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts. By default it serves requests over 8 MiB from an
/// arena of their own that returns their pages as soon as they are freed, so every large body
/// was read into, and encoded for the database from, freshly faulted-in memory: about 17 ms
/// per 9 MB copy on a VM whose page faults cost 7 µs. `oversize_threshold:0` serves them from
/// the ordinary arenas, which keep freed pages for `dirty_decay_ms` (10 s) like any others.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 21] = b"oversize_threshold:0\0";

/// A command's way to end with an exit status of its own (130 after Ctrl-C, say).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The process exit status.
    pub code: u8,
    /// What to tell the person.
    pub message: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; the environment and flags still apply.
    let sources = sources::load_dotenv();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err, &argv, &sources),
    };
    let format = LogFormat::from(cli.log.log_format);
    let telemetry = match terra_sink::init_telemetry(format, cli.log.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(problem) = &sources.problem {
        tracing::warn!("{problem}");
    }
    let result = commands::run(cli.command).await;
    // The exporter sends from its own thread; waiting for it must not block the runtime.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line for a person (each context, then its cause); log collectors reading
            // JSON also get it as an event.
            let message = one_line(&err);
            if format == LogFormat::Json {
                tracing::error!("{message}");
            }
            eprintln!("error: {message}");
            match err.downcast_ref::<Exit>() {
                Some(exit) => ExitCode::from(exit.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `err` and its causes on one line, like `{:#}`, but a cause whose text the line already ends
/// with is not repeated (many errors quote their source in their own message).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// A command line clap refused: the variable's name when the value came from the environment.
fn usage_error(err: &clap::Error, argv: &[OsString], sources: &sources::Sources) -> ExitCode {
    if let Some(message) = sources::explain(err, argv, sources) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let _ = err.print();
    if err.use_stderr() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot apply the migrations: {0}")]
        Quoting(#[source] Inner),
        #[error("cannot apply the migrations")]
        Plain(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("relation \"deliveries\" already exists")]
    struct Inner;

    #[test]
    fn a_cause_the_message_already_quotes_is_said_once() {
        let quoting = anyhow::Error::new(Outer::Quoting(Inner)).context("serve");
        let plain = anyhow::Error::new(Outer::Plain(Inner)).context("serve");
        let expected = "serve: cannot apply the migrations: relation \"deliveries\" already exists";
        assert_eq!(one_line(&quoting), expected);
        assert_eq!(one_line(&plain), expected);
    }
}
