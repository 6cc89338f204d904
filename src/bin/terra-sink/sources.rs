//! Where settings come from (a flag, the environment, or `./.env`), so that an invalid value is
//! reported under the name the user actually set, not only under its flag.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;

use crate::args::Cli;

/// The file the binary reads settings from, in its working directory.
pub const DOTENV: &str = ".env";

/// What loading `./.env` did.
#[derive(Debug, Default)]
pub struct Sources {
    /// Variables whose value came from `./.env` (the environment wins over it).
    pub from_dotenv: Vec<String>,
    /// Why `./.env` could not be read, if it exists but could not.
    pub problem: Option<String>,
}

impl Sources {
    /// Where a variable's value came from.
    pub fn origin(&self, var: &str) -> &'static str {
        if self.from_dotenv.iter().any(|v| v == var) {
            "./.env"
        } else {
            "the environment"
        }
    }
}

/// Sets every variable of `./.env` that the environment does not already set.
pub fn load_dotenv() -> Sources {
    let mut sources = Sources::default();
    let iter = match dotenvy::from_path_iter(DOTENV) {
        Ok(iter) => iter,
        Err(err) if err.not_found() => return sources,
        Err(err) => {
            sources.problem = Some(format!("cannot read {DOTENV}: {err}"));
            return sources;
        }
    };
    for item in iter {
        match item {
            Ok((key, value)) => {
                if std::env::var_os(&key).is_none() {
                    std::env::set_var(&key, value);
                    sources.from_dotenv.push(key);
                }
            }
            Err(err) => {
                // Values are never quoted: the file holds secrets.
                sources.problem = Some(format!(
                    "{DOTENV} is not fully readable: {}",
                    err_kind(&err)
                ));
                break;
            }
        }
    }
    sources
}

fn err_kind(err: &dotenvy::Error) -> String {
    match err {
        dotenvy::Error::LineParse(_, index) => format!("cannot parse it at character {index}"),
        other => other.to_string(),
    }
}

/// For a bad value that came from an environment variable (or `./.env`) rather than the
/// command line, a message naming that variable; `None` to keep clap's own message.
pub fn explain(err: &clap::Error, argv: &[OsString], sources: &Sources) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let ContextValue::String(invalid_arg) = err.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let flag = invalid_arg.split_whitespace().next()?.trim_matches('\'');
    let long = flag.strip_prefix("--")?;
    if on_command_line(argv, flag) {
        return None;
    }
    let (var, hidden) = env_of(long)?;
    std::env::var_os(&var)?;
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) if !hidden => format!(" '{v}'"),
        _ => String::new(),
    };
    let reason = match (
        err.get(ContextKind::ValidValue),
        std::error::Error::source(err),
    ) {
        (Some(ContextValue::Strings(valid)), _) => format!("expected one of {}", valid.join(", ")),
        (_, Some(source)) => source.to_string(),
        _ => "not a valid value".to_owned(),
    };
    Some(format!(
        "invalid value{value} for {var} (set in {}): {reason}",
        sources.origin(&var)
    ))
}

fn on_command_line(argv: &[OsString], flag: &str) -> bool {
    let with_value = format!("{flag}=");
    argv.iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.starts_with(&with_value))
}

/// The environment variable of the flag `--<long>`, and whether its values are secret.
fn env_of(long: &str) -> Option<(String, bool)> {
    fn walk(cmd: &clap::Command, long: &str) -> Option<(String, bool)> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long) && a.get_env().is_some())
            .and_then(|a| {
                let var = a.get_env()?.to_str()?.to_owned();
                Some((var, a.is_hide_env_values_set()))
            })
            .or_else(|| cmd.get_subcommands().find_map(|sub| walk(sub, long)))
    }
    walk(&Cli::command(), long)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_given_on_the_command_line_are_recognised() {
        let line = argv(&["terra-sink", "serve", "--workers=two"]);
        assert!(on_command_line(&line, "--workers"));
        assert!(!on_command_line(&line, "--worker"));
        assert!(on_command_line(
            &argv(&["x", "--workers", "2"]),
            "--workers"
        ));
    }

    #[test]
    fn every_flag_with_a_variable_is_found() {
        assert_eq!(
            env_of("workers"),
            Some(("TERRA_SINK_WORKERS".to_owned(), false))
        );
        assert_eq!(
            env_of("database-url"),
            Some(("DATABASE_URL".to_owned(), true))
        );
        assert_eq!(env_of("no-such-flag"), None);
    }

    #[test]
    fn a_command_line_value_keeps_clap_s_message() {
        let line = argv(&["terra-sink", "serve", "--workers", "two"]);
        let err = Cli::try_parse_from(&line).unwrap_err();
        assert_eq!(explain(&err, &line, &Sources::default()), None);
    }
}
