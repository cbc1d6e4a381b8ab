//! The command line: flags with `ROOMRING_*` environment fallbacks, parsed by
//! one pure-ish function (`parse`) into a typed command per role. Bad flags are
//! a `UsageError` that `main` prints before exiting 64, before anything binds.

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dev::DevOptions;
use crate::gateway::{Auth, GatewayConfig};
use crate::ids::{NodeId, RoomId};
use crate::link::Secret;
use crate::node::NodeConfig;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthKind {
    None,
    Jwt,
}

#[derive(Debug, Args)]
struct Limits {
    /// Sustained client frames per second per connection.
    #[arg(long, env = "ROOMRING_RATE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Burst of client frames per connection.
    #[arg(long, env = "ROOMRING_BURST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
    /// Stored events kept per room (at least 1000).
    #[arg(long, env = "ROOMRING_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1000..=1_000_000))]
    history: u32,
    /// Threads that run the process's tasks. One is the leanest per message
    /// (no wake-up crosses a thread); scale out with more processes, or
    /// give a busy process more threads.
    #[arg(long, env = "ROOMRING_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Debug, Args)]
struct Secrets {
    /// How clients are identified (default: jwt; none in dev).
    #[arg(long, env = "ROOMRING_AUTH")]
    auth: Option<AuthKind>,
    /// HS256 key for client and API tokens.
    #[arg(long, env = "ROOMRING_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Authenticates gateway↔node and node↔node links.
    #[arg(long, env = "ROOMRING_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Gateway address (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "ROOMRING_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Application nodes to start.
    #[arg(long, env = "ROOMRING_NODES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    #[command(flatten)]
    secrets: Secrets,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Debug, Args)]
struct NodeArgs {
    /// Member id.
    #[arg(long, env = "ROOMRING_ID")]
    id: String,
    /// Link address.
    #[arg(long, env = "ROOMRING_LISTEN")]
    listen: SocketAddr,
    /// Address others reach this node at.
    #[arg(long, env = "ROOMRING_ADVERTISE")]
    advertise: Option<String>,
    /// `redis://host:port[/db]`.
    #[arg(long, env = "ROOMRING_COORDINATOR")]
    coordinator: String,
    #[command(flatten)]
    secrets: Secrets,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    /// Member id.
    #[arg(long, env = "ROOMRING_ID")]
    id: String,
    /// Client address.
    #[arg(long, env = "ROOMRING_LISTEN")]
    listen: SocketAddr,
    /// Address others reach this gateway at.
    #[arg(long, env = "ROOMRING_ADVERTISE")]
    advertise: Option<String>,
    /// `redis://host:port[/db]`.
    #[arg(long, env = "ROOMRING_COORDINATOR")]
    coordinator: String,
    #[command(flatten)]
    secrets: Secrets,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Debug, Args)]
struct CtlArgs {
    /// `redis://host:port[/db]`.
    #[arg(long, env = "ROOMRING_COORDINATOR")]
    coordinator: String,
    #[command(subcommand)]
    action: CtlAction,
}

/// What `roomring ctl` does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CtlAction {
    /// List members.
    Members,
    /// Show the ring's nodes.
    Ring,
    /// Show the owner of a room.
    Locate {
        /// The room id.
        #[arg(value_parser = parse_room)]
        room: String,
    },
    /// Drain a node.
    Drain {
        /// The node id.
        id: String,
    },
}

fn parse_room(s: &str) -> Result<String, String> {
    RoomId::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
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
        /// The coordinator URL.
        coordinator: String,
    },
    /// `roomring gateway`.
    Gateway {
        /// The gateway's config.
        config: GatewayConfig,
        /// The coordinator URL.
        coordinator: String,
    },
    /// `roomring ctl`.
    Ctl {
        /// The coordinator URL.
        coordinator: String,
        /// What to do.
        action: CtlAction,
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
        Cmd::Dev(a) => a.limits.threads,
        Cmd::Node(a) => a.limits.threads,
        Cmd::Gateway(a) => a.limits.threads,
        Cmd::Ctl(_) => 1,
    };
    Ok(Invocation {
        command: command(cli)?,
        threads: threads as usize,
    })
}

fn command(cli: Cli) -> Result<Command, UsageError> {
    match cli.command {
        Cmd::Dev(a) => {
            let auth = auth(&a.secrets, AuthKind::None)?;
            Ok(Command::Dev(DevOptions {
                listen: a.listen,
                nodes: a.nodes as usize,
                gateways: 1,
                auth,
                history_keep: a.limits.history as usize,
                rate_per_sec: a.limits.rate,
                rate_burst: a.limits.burst,
                memory_store: false,
            }))
        }
        Cmd::Node(a) => {
            check_coordinator(&a.coordinator)?;
            let cluster_secret = cluster_secret(&a.secrets)?;
            let config = NodeConfig {
                id: member_id(&a.id)?,
                listen: a.listen,
                advertise: a.advertise,
                cluster_secret,
                history_keep: a.limits.history as usize,
            };
            Ok(Command::Node {
                config,
                coordinator: a.coordinator,
            })
        }
        Cmd::Gateway(a) => {
            check_coordinator(&a.coordinator)?;
            let config = GatewayConfig {
                id: member_id(&a.id)?,
                listen: a.listen,
                advertise: a.advertise,
                auth: auth(&a.secrets, AuthKind::Jwt)?,
                cluster_secret: cluster_secret(&a.secrets)?,
                rate_per_sec: a.limits.rate,
                rate_burst: a.limits.burst,
                ..GatewayConfig::for_test("defaults", "")
            };
            Ok(Command::Gateway {
                config,
                coordinator: a.coordinator,
            })
        }
        Cmd::Ctl(a) => {
            check_coordinator(&a.coordinator)?;
            Ok(Command::Ctl {
                coordinator: a.coordinator,
                action: a.action,
            })
        }
    }
}

fn member_id(s: &str) -> Result<NodeId, UsageError> {
    NodeId::parse(s).map_err(|e| usage(format!("--id: {e}")))
}

fn check_coordinator(url: &str) -> Result<(), UsageError> {
    if url.starts_with("redis://") && url.len() > "redis://".len() {
        Ok(())
    } else {
        Err(usage(format!(
            "--coordinator must be redis://host:port[/db], not {url:?}"
        )))
    }
}

fn auth(s: &Secrets, default: AuthKind) -> Result<Auth, UsageError> {
    match s.auth.unwrap_or(default) {
        AuthKind::None => Ok(Auth::None),
        AuthKind::Jwt => match s.jwt_secret.as_deref() {
            Some(secret) if !secret.is_empty() => Ok(Auth::jwt(secret)),
            _ => Err(usage("--auth jwt needs --jwt-secret (or --auth none)")),
        },
    }
}

/// Outside dev the cluster secret is required unless `--auth none`.
fn cluster_secret(s: &Secrets) -> Result<Secret, UsageError> {
    match (&s.cluster_secret, s.auth) {
        (Some(secret), _) if !secret.is_empty() => Ok(Secret::new(secret)),
        (_, Some(AuthKind::None)) => Ok(Secret::new("")),
        _ => Err(usage("--cluster-secret is required (or --auth none)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, UsageError> {
        parse(std::iter::once("roomring").chain(args.iter().copied())).map(|i| i.command)
    }

    #[test]
    fn dev_defaults() {
        let Ok(Command::Dev(o)) = run(&["dev"]) else {
            panic!("dev parses")
        };
        assert_eq!(o.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(o.nodes, 3);
        assert!(matches!(o.auth, Auth::None));
    }

    #[test]
    fn bad_flags_exit_64() {
        for args in [
            &["dev", "--nodes", "0"][..],
            &["dev", "--listen", "nowhere"],
            &["dev", "--bogus"],
            &["nothing"],
            &[
                "node",
                "--id",
                "n1",
                "--listen",
                "127.0.0.1:0",
                "--coordinator",
                "http://x",
                "--auth",
                "none",
            ],
            &[
                "node",
                "--id",
                "n 1",
                "--listen",
                "127.0.0.1:0",
                "--coordinator",
                "redis://x",
                "--auth",
                "none",
            ],
            &[
                "gateway",
                "--id",
                "g1",
                "--listen",
                "127.0.0.1:0",
                "--coordinator",
                "redis://x",
            ],
            &["ctl", "--coordinator", "redis://x", "locate", "nope"],
        ] {
            let err = run(args).expect_err(&format!("{args:?} must fail"));
            assert_eq!(err.code, EXIT_USAGE, "{args:?}");
        }
        assert_eq!(run(&["--help"]).unwrap_err().code, 0);
    }

    #[test]
    fn secrets_outside_dev() {
        let base = [
            "gateway",
            "--id",
            "g1",
            "--listen",
            "127.0.0.1:0",
            "--coordinator",
            "redis://127.0.0.1:6379",
        ];
        let ok =
            run(&[&base[..], &["--jwt-secret", "j", "--cluster-secret", "c"]].concat()).unwrap();
        assert!(matches!(
            ok,
            Command::Gateway {
                config: GatewayConfig {
                    auth: Auth::Jwt(_),
                    ..
                },
                ..
            }
        ));
        assert!(run(&[&base[..], &["--jwt-secret", "j"]].concat()).is_err());
        assert!(run(&[&base[..], &["--auth", "none"]].concat()).is_ok());
    }
}
