//! The command line: flags with `ROOMRING_*` environment fallbacks, parsed by
//! one pure-ish function (`parse`) into a typed command per role. Bad flags are
//! a `UsageError` that `main` prints before exiting 64, before anything binds.
//! The flag groups, their defaults and the parsers of single values are in
//! `flags`.

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::{Parser, Subcommand};

use crate::coordinator::endpoint::Endpoint;
use crate::dev::DevOptions;
use crate::gateway::GatewayConfig;
use crate::link::Secret;
use crate::node::NodeConfig;

mod flags;
mod roles;

pub use flags::CtlAction;
use flags::*;

/// Exit code for bad flags (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "roomring",
    version,
    about = "A real-time room server that scales out by consistent hashing"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A whole cluster in one process; serves the web client at /.
    Dev(DevArgs),
    /// An application node.
    Node(NodeArgs),
    /// A gateway.
    Gateway(GatewayArgs),
    /// Inspect and steer a cluster.
    Ctl(CtlArgs),
    /// Sign a token with --jwt-secret (the current key) and print it.
    Token(TokenArgs),
    /// Health check for containers: exit 0 if the target answers.
    Probe(ProbeArgs),
    /// Print a fresh random secret for --cluster-secret or --jwt-secret.
    Secret,
}

/// A fully checked command and the threads to run it on.
#[derive(Debug)]
pub struct Invocation {
    /// What to run.
    pub command: Command,
    /// Runtime threads (`--threads`); 1 runs every task on the main thread.
    pub threads: usize,
}

/// A fully checked command.
#[derive(Debug)]
pub enum Command {
    /// `roomring dev`.
    Dev(DevOptions),
    /// `roomring node`.
    Node {
        /// The node's config.
        config: NodeConfig,
        /// Where Redis is.
        coordinator: Endpoint,
        /// What an acknowledged commit promises of replicas.
        replication: crate::node::storage::Replication,
        /// Where every stored event is archived, if anywhere.
        archive: Option<String>,
        /// How long the archive keeps events, if not for ever.
        retention: Option<std::time::Duration>,
        /// Where `GET /metrics` is served, if anywhere.
        metrics_listen: Option<SocketAddr>,
    },
    /// `roomring gateway`.
    Gateway {
        /// The gateway's config.
        config: GatewayConfig,
        /// Where Redis is.
        coordinator: Endpoint,
    },
    /// `roomring ctl`.
    Ctl {
        /// Where Redis is.
        coordinator: Endpoint,
        /// What to do.
        action: CtlAction,
    },
    /// `roomring probe`: what to check.
    Probe {
        /// `http://...` or `HOST:PORT`.
        target: String,
    },
    /// `roomring secret`: print a fresh secret.
    Secret,
    /// `roomring token`: the claims to sign, and the key.
    Token {
        /// The claims, `exp` included.
        claims: serde_json::Value,
        /// The HS256 key.
        secret: Secret,
    },
}

/// Bad flags, or `--help`/`--version` (which exit 0).
#[derive(Debug)]
pub struct UsageError {
    /// What to print.
    pub message: String,
    /// The exit code: 0 for help and version, 64 otherwise.
    pub code: i32,
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError {
        message: format!(
            "error: {}\n\nFor more information, try '--help'.",
            message.into()
        ),
        code: EXIT_USAGE,
    }
}

/// Parses the command line (program name first).
pub fn parse<I, T>(args: I) -> Result<Invocation, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| {
        let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
        UsageError {
            message: e.render().to_string(),
            code,
        }
    })?;
    let threads = match &cli.command {
        Cmd::Dev(a) => a.serving.runtime.threads,
        Cmd::Node(a) => a.serving.runtime.threads,
        Cmd::Gateway(a) => a.serving.runtime.threads,
        Cmd::Token(_) | Cmd::Probe(_) | Cmd::Secret => 1,
        Cmd::Ctl(_) => 1,
    };
    Ok(Invocation {
        command: roles::command(cli.command)?,
        threads: threads as usize,
    })
}

#[cfg(test)]
mod tests;
