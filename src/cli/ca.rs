//! `modgate ca init` and `modgate ca bundle`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{CaCommand, usage_error};
use crate::config::Config;
use crate::core::escape::shell_word;
use crate::tls::ca;

/// Runs a `ca` subcommand.
pub(crate) fn run(command: CaCommand) -> ExitCode {
    ca_command(command)
}

fn ca_paths(config: &Config, dir: Option<PathBuf>) -> (PathBuf, PathBuf) {
    match dir {
        Some(dir) => {
            let dir = crate::config::paths::absolute(&dir);
            (dir.join("modgate-ca.pem"), dir.join("modgate-ca.key"))
        }
        None => (config.tls.ca_cert.clone(), config.tls.ca_key.clone()),
    }
}

fn ca_command(command: CaCommand) -> ExitCode {
    match command {
        CaCommand::Init { config, dir, force } => {
            let (config_arg, dir_arg) = (config, dir);
            let config = match Config::load(config_arg.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let (cert, key) = ca_paths(&config, dir_arg.clone());
            let new = match ca::generate(&config.policy.intercept) {
                Ok(new) => new,
                Err(e) => return usage_error(format!("modgate: {e}")),
            };
            if let Err(e) = ca::write(&new, &cert, &key, force) {
                return usage_error(format!("modgate: {e}"));
            }
            if new.unconstrained {
                eprintln!(
                    "modgate: warning: tls.intercept contains '*', so this CA has no name constraints and can impersonate any site; keep {} safe",
                    key.display()
                );
            }
            let hosts: Vec<String> = config.policy.intercept.iter().map(ToString::to_string).collect();
            outln!("wrote {} and {} (key mode 0600)", cert.display(), key.display());
            outln!("valid for: {}", hosts.join(", "));
            // The same config and directory, or bundle reads another CA.
            let same = same_options(config_arg.as_deref(), dir_arg.as_deref());
            outln!(
                "next: modgate ca bundle{same} > modgate-bundle.pem && export SSL_CERT_FILE=$PWD/modgate-bundle.pem"
            );
            ExitCode::SUCCESS
        }
        CaCommand::Bundle { config, dir } => {
            let (config_arg, dir_arg) = (config, dir);
            let config = match Config::load(config_arg.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let (cert, _) = ca_paths(&config, dir_arg.clone());
            let ca_pem = match std::fs::read_to_string(&cert) {
                Ok(pem) => pem,
                // `ca init` makes a CA for tls.intercept's hosts: with none,
                // there is nothing to make one for yet.
                Err(e) if config.policy.intercept.is_empty() => {
                    return usage_error(format!(
                        "modgate: {}: {e} (this config intercepts no host: set tls.intercept in a config file, then run `modgate ca init --config FILE`)",
                        cert.display()
                    ));
                }
                Err(e) => {
                    return usage_error(format!(
                        "modgate: {}: {e} (run `modgate ca init{}` first)",
                        cert.display(),
                        same_options(config_arg.as_deref(), dir_arg.as_deref())
                    ));
                }
            };
            let (bundle, system) = match ca::bundle(&ca_pem) {
                Ok(done) => done,
                Err(e) => return usage_error(format!("modgate: {}: {e}", cert.display())),
            };
            out!("{bundle}");
            eprintln!(
                "modgate: bundle of {system} system roots plus the modgate CA from {}",
                cert.display()
            );
            ExitCode::SUCCESS
        }
    }
}

/// ` --config F --dir D`, as given, for the next `ca` command to print: the
/// same options reach the same CA.
fn same_options(config: Option<&std::path::Path>, dir: Option<&std::path::Path>) -> String {
    let mut same = String::new();
    if let Some(path) = config {
        same.push_str(&format!(" --config {}", shell_word(&path.to_string_lossy())));
    }
    if let Some(path) = dir {
        same.push_str(&format!(" --dir {}", shell_word(&path.to_string_lossy())));
    }
    same
}
