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
use crate::gateway::{Auth, GatewayConfig};
use crate::ids::NodeId;
use crate::link::Secret;
use crate::node::NodeConfig;

mod flags;

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
        Cmd::Dev(a) => a.runtime.threads,
        Cmd::Node(a) => a.runtime.threads,
        Cmd::Gateway(a) => a.runtime.threads,
        Cmd::Token(_) | Cmd::Probe(_) | Cmd::Secret => 1,
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
            let auth = auth(&a.client_auth, AuthKind::None)?;
            Ok(Command::Dev(DevOptions {
                max_connections: a.edge.max_connections as usize,
                accept_rate: a.edge.accept_rate,
                rooms_per_conn: a.edge.rooms_per_connection as usize,
                http: a.edge.http(),
                ping_interval: std::time::Duration::from_secs(a.edge.ping_interval),
                allowed_origins: a.edge.allowed_origins.clone(),
                listen: a.listen,
                nodes: a.nodes as usize,
                gateways: 1,
                auth,
                rooms: a.rooms.limits(),
                room_idle: std::time::Duration::from_secs(a.rooms.room_idle),
                rate_per_sec: a.rate.rate,
                rate_burst: a.rate.burst,
                memory_store: false,
            }))
        }
        Cmd::Node(a) => {
            let coordinator = endpoint(&a.redis)?;
            let cluster_secret = cluster_secret(&a.cluster)?;
            let config = NodeConfig {
                id: member_id(&a.id)?,
                listen: a.listen,
                advertise: a.advertise,
                cluster_secret,
                rooms: a.rooms.limits(),
                room_idle: std::time::Duration::from_secs(a.rooms.room_idle),
                older_builds: if a.allow_old_links {
                    crate::link::OlderBuilds::Accept
                } else {
                    crate::link::OlderBuilds::Refuse
                },
            };
            Ok(Command::Node {
                config,
                coordinator,
                replication: crate::node::storage::Replication {
                    replicas: a.redis_wait_replicas,
                    allow_degraded: a.redis_allow_degraded,
                },
                archive: a.archive,
                retention: a.retention,
                metrics_listen: a.metrics_listen,
            })
        }
        Cmd::Gateway(a) => {
            let coordinator = endpoint(&a.redis)?;
            let id = member_id(&a.id)?;
            let secret = cluster_secret(&a.cluster)?;
            let mut config = GatewayConfig {
                listen: a.listen,
                advertise: a.advertise,
                auth: auth(&a.client_auth, AuthKind::Jwt)?,
                rate_per_sec: a.rate.rate,
                rate_burst: a.rate.burst,
                drain_delay: std::time::Duration::from_millis(a.drain_delay_ms),
                drain_window: a.drain_window_ms.map(std::time::Duration::from_millis),
                ..GatewayConfig::new(id, secret)
            };
            a.edge.apply(&mut config);
            Ok(Command::Gateway {
                config,
                coordinator,
            })
        }
        Cmd::Probe(a) => Ok(Command::Probe { target: a.target }),
        Cmd::Secret => Ok(Command::Secret),
        Cmd::Token(a) => {
            let sub =
                crate::ids::UserId::parse(&a.sub).map_err(|e| usage(format!("--sub: {e}")))?;
            long_enough("--jwt-secret", &a.jwt_secret)?;
            let mut claims = serde_json::json!({
                "sub": sub.as_str(),
                "exp": crate::protocol::now_ms() / 1000 + a.ttl,
            });
            match (a.aud, a.role) {
                (TokenAudience::Client, None) => {
                    claims["aud"] = crate::gateway::auth::CLIENT_AUDIENCE.into();
                }
                (TokenAudience::Client, Some(_)) => {
                    return Err(usage("--role is for API tokens (--aud api)"))
                }
                (TokenAudience::Api, None) => return Err(usage("--aud api needs --role")),
                (TokenAudience::Api, Some(role)) => {
                    claims["aud"] = crate::gateway::auth::API_AUDIENCE.into();
                    claims["role"] = match role {
                        TokenRole::Service => "service",
                        TokenRole::Admin => "admin",
                    }
                    .into();
                }
            }
            if let Some(rooms) = a.rooms {
                claims["rooms"] = rooms.into();
            }
            Ok(Command::Token {
                claims,
                secret: Secret::new(&a.jwt_secret),
            })
        }
        Cmd::Ctl(a) => Ok(Command::Ctl {
            coordinator: endpoint(&a.redis)?,
            action: a.action,
        }),
    }
}

fn member_id(s: &str) -> Result<NodeId, UsageError> {
    NodeId::parse(s).map_err(|e| usage(format!("--id: {e}")))
}

fn endpoint(r: &RedisArgs) -> Result<Endpoint, UsageError> {
    let endpoint: Endpoint = r
        .coordinator
        .parse()
        .map_err(|e| usage(format!("--coordinator: {e}")))?;
    let Some(path) = &r.redis_ca else {
        return Ok(endpoint);
    };
    let pem =
        std::fs::read(path).map_err(|e| usage(format!("--redis-ca {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(usage(format!(
            "--redis-ca {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(endpoint.with_ca(pem))
}

fn auth(s: &ClientAuth, default: AuthKind) -> Result<Auth, UsageError> {
    match s.auth.unwrap_or(default) {
        AuthKind::None => Ok(Auth::None),
        AuthKind::Jwt => match s.jwt_secret.as_deref() {
            Some(secret) => {
                long_enough("--jwt-secret", secret)?;
                let mut keys = vec![secret];
                if let Some(previous) = s.jwt_previous_secret.as_deref().filter(|p| !p.is_empty()) {
                    long_enough("--jwt-previous-secret", previous)?;
                    keys.push(previous);
                }
                Ok(Auth::jwt_keys(&keys, s.token_leeway))
            }
            None => Err(usage("--auth jwt needs --jwt-secret (or --auth none)")),
        },
    }
}

/// Outside dev the cluster secret is required, whatever `--auth` says:
/// `--auth` is about clients, the secret about who may speak on a link.
fn cluster_secret(s: &ClusterSecret) -> Result<Secret, UsageError> {
    let secret = match &s.cluster_secret {
        Some(secret) => long_enough("--cluster-secret", secret).map(|()| Secret::new(secret))?,
        None => return Err(usage("--cluster-secret is required outside dev")),
    };
    match (&s.link_ca, &s.link_cert, &s.link_key) {
        (None, None, None) => Ok(secret),
        (Some(ca), Some(cert), Some(key)) => crate::link::LinkTls::from_files(ca, cert, key)
            .map(|tls| secret.with_tls(tls))
            .map_err(|e| usage(format!("link TLS: {e}"))),
        _ => Err(usage("--link-ca, --link-cert and --link-key go together")),
    }
}

/// The fewest bytes a secret may have: a shorter one could be guessed
/// from one recorded proof or token.
pub const SECRET_MIN: usize = 32;

/// A secret of at least `SECRET_MIN` bytes, or a usage error naming `flag`.
fn long_enough(flag: &str, secret: &str) -> Result<(), UsageError> {
    if secret.len() >= SECRET_MIN {
        Ok(())
    } else {
        Err(usage(format!(
            "{flag} must be at least {SECRET_MIN} bytes (`roomring secret` prints a fresh one)"
        )))
    }
}

/// A fresh secret: 32 random bytes, in hex.
pub fn fresh_secret() -> String {
    let mut bytes = [0u8; SECRET_MIN];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
                "--cluster-secret",
                LONG_C,
            ],
            &[
                "node",
                "--id",
                "n 1",
                "--listen",
                "127.0.0.1:0",
                "--coordinator",
                "redis://x",
                "--cluster-secret",
                LONG_C,
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
            // A flag of another role is refused, not silently ignored.
            &[
                "node",
                "--id",
                "n1",
                "--listen",
                "127.0.0.1:0",
                "--coordinator",
                "redis://x",
                "--cluster-secret",
                LONG_C,
                "--rate",
                "5",
            ],
            &[
                "gateway",
                "--id",
                "g1",
                "--listen",
                "127.0.0.1:0",
                "--coordinator",
                "redis://x",
                "--auth",
                "none",
                "--cluster-secret",
                LONG_C,
                "--history",
                "5000",
            ],
            &["dev", "--cluster-secret", LONG_C],
        ] {
            let err = run(args).expect_err(&format!("{args:?} must fail"));
            assert_eq!(err.code, EXIT_USAGE, "{args:?}");
        }
        assert_eq!(run(&["--help"]).unwrap_err().code, 0);
    }

    const LONG_J: &str = "a-jwt-secret-of-32-bytes-at-least";
    const LONG_C: &str = "a-cluster-secret-of-32-bytes-or-more";

    #[test]
    fn a_retention_is_a_number_and_a_unit() {
        let secs = |s| retention_arg(s).map(|d| d.as_secs());
        assert_eq!(secs("90d"), Ok(90 * 86_400));
        assert_eq!(secs("12h"), Ok(12 * 3600));
        assert_eq!(secs("45s"), Ok(45));
        for bad in ["", "d", "10", "0s", "5w", "-1d", "1.5h"] {
            assert!(retention_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fresh_secret_is_long_and_new_each_time() {
        let (a, b) = (fresh_secret(), fresh_secret());
        assert_eq!(a.len(), 2 * SECRET_MIN);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(matches!(run(&["secret"]), Ok(Command::Secret)));
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
        let ok = run(&[
            &base[..],
            &["--jwt-secret", LONG_J, "--cluster-secret", LONG_C],
        ]
        .concat())
        .unwrap();
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
        assert!(run(&[&base[..], &["--jwt-secret", LONG_J]].concat()).is_err());
        for short in [
            &["--jwt-secret", "j", "--cluster-secret", LONG_C][..],
            &[
                "--jwt-secret",
                LONG_J,
                "--jwt-previous-secret",
                "p",
                "--cluster-secret",
                LONG_C,
            ],
            &["--jwt-secret", LONG_J, "--cluster-secret", &LONG_C[..31]],
        ] {
            let e = run(&[&base[..], short].concat()).expect_err("a short secret");
            assert_eq!(e.code, EXIT_USAGE);
            assert!(e.message.contains("at least 32 bytes"), "{}", e.message);
        }
        // --auth is about clients: links still need the secret.
        assert!(run(&[&base[..], &["--auth", "none"]].concat()).is_err());
        assert!(
            run(&[&base[..], &["--auth", "none", "--cluster-secret", "short"]].concat()).is_err()
        );
        assert!(
            run(&[&base[..], &["--auth", "none", "--cluster-secret", LONG_C]].concat()).is_ok()
        );
    }

    #[test]
    fn a_rejected_coordinator_url_is_not_echoed() {
        let e = run(&[
            "node",
            "--id",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--cluster-secret",
            LONG_C,
            "--coordinator",
            "http://user:hunter2@example:6379",
        ])
        .unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        for url in [
            "redis://h:1",
            "rediss://u:p@h:1/2",
            "redis+sentinel://a:1,b:2/main",
        ] {
            assert!(
                run(&["ctl", "--coordinator", url, "members"]).is_ok(),
                "{url}"
            );
        }
    }

    #[test]
    fn token_signs_client_and_api_tokens() {
        let Command::Token { claims, .. } =
            run(&["token", "--sub", "ann", "--jwt-secret", LONG_J]).unwrap()
        else {
            panic!("not a token command")
        };
        assert_eq!(claims["aud"], "roomring-client");
        let Command::Token { claims, .. } = run(&[
            "token",
            "--sub",
            "ops",
            "--aud",
            "api",
            "--role",
            "admin",
            "--jwt-secret",
            LONG_J,
        ])
        .unwrap() else {
            panic!("not a token command")
        };
        assert_eq!(claims["aud"], "roomring-api");
        assert_eq!(claims["role"], "admin");
        assert!(run(&[
            "token",
            "--sub",
            "ops",
            "--aud",
            "api",
            "--jwt-secret",
            LONG_J
        ])
        .is_err());
        assert!(run(&["token", "--sub", "bad name", "--jwt-secret", LONG_J]).is_err());
    }
}
