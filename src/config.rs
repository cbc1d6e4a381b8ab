//! The command line: flags with `ROOMRING_*` environment fallbacks, parsed by
//! one pure-ish function (`parse`) into a typed command per role. Bad flags are
//! a `UsageError` that `main` prints before exiting 64, before anything binds.

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::coordinator::endpoint::Endpoint;
use crate::dev::DevOptions;
use crate::gateway::{Auth, GatewayConfig, HttpLimits};
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
    /// Sign a token with --jwt-secret (the current key) and print it.
    Token(TokenArgs),
    /// Health check for containers: exit 0 if the target answers.
    Probe(ProbeArgs),
    /// Print a fresh random secret for --cluster-secret or --jwt-secret.
    Secret,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// `http://HOST:PORT/PATH` (wants a 200) or `HOST:PORT` (wants a TCP
    /// connection, for a node's link port).
    #[arg(
        env = "ROOMRING_PROBE",
        default_value = "http://127.0.0.1:8080/healthz"
    )]
    target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TokenAudience {
    /// For WebSocket clients (`aud` roomring-client).
    Client,
    /// For the HTTP API (`aud` roomring-api); needs --role.
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TokenRole {
    Service,
    Admin,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The user (`sub`).
    #[arg(long)]
    sub: String,
    /// Who the token is for.
    #[arg(long, value_enum, default_value_t = TokenAudience::Client)]
    aud: TokenAudience,
    /// API role (with --aud api).
    #[arg(long, value_enum)]
    role: Option<TokenRole>,
    /// Room patterns the client may use (comma-separated; all if absent).
    #[arg(long, value_delimiter = ',')]
    rooms: Option<Vec<String>>,
    /// Seconds until it expires.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    ttl: u64,
    /// The HS256 key to sign with.
    #[arg(long, env = "ROOMRING_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthKind {
    None,
    Jwt,
}

/// Client frame rates (dev, gateway).
#[derive(Debug, Args)]
struct ClientRate {
    /// Sustained client frames per second per connection.
    #[arg(long, env = "ROOMRING_RATE", default_value_t = crate::gateway::RATE_PER_SEC, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Burst of client frames per connection.
    #[arg(long, env = "ROOMRING_BURST", default_value_t = crate::gateway::RATE_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
}

/// Rooms held in memory (dev, node).
#[derive(Debug, Args)]
struct RoomLimits {
    /// Stored events kept per room (at least 1000).
    #[arg(long, env = "ROOMRING_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1000..=1_000_000))]
    history: u32,
    /// Seconds a room that no connection has joined stays in a node's
    /// memory (its stored history stays).
    #[arg(long, env = "ROOMRING_ROOM_IDLE", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    room_idle: u64,
    /// Online users of a room past which it sends `presence.count`
    /// instead of a `presence` per user.
    #[arg(long, env = "ROOMRING_PRESENCE_LIMIT", default_value_t = crate::rooms::presence::PRESENCE_LIMIT as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    presence_limit: u32,
}

impl RoomLimits {
    fn limits(&self) -> crate::rooms::Limits {
        crate::rooms::Limits {
            keep: self.history as usize,
            presence: self.presence_limit as usize,
        }
    }
}

/// The process's runtime (every serving role).
#[derive(Debug, Args)]
struct Runtime {
    /// Threads that run the process's tasks. One is the leanest per message
    /// (no wake-up crosses a thread); scale out with more processes, or
    /// give a busy process more threads.
    #[arg(long, env = "ROOMRING_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Debug, Args)]
struct EdgeLimits {
    /// Client WebSockets open at once; past it an upgrade gets 503 with
    /// Retry-After. Lowered at start to what the open-files limit holds.
    #[arg(long, env = "ROOMRING_MAX_CONNECTIONS", default_value_t = crate::gateway::MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// New client WebSockets a second (in bursts of as many); past it an
    /// upgrade gets 503 with Retry-After.
    #[arg(long, env = "ROOMRING_ACCEPT_RATE", default_value_t = crate::gateway::ACCEPT_RATE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    accept_rate: u32,
    /// Rooms one connection may have joined at once.
    #[arg(long, env = "ROOMRING_ROOMS_PER_CONNECTION", default_value_t = crate::gateway::ROOMS_PER_CONN, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rooms_per_connection: u32,
    /// HTTP API requests served at once; past it a request gets 503.
    #[arg(long, env = "ROOMRING_HTTP_CONCURRENCY", default_value_t = HttpLimits::CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..))]
    http_concurrency: u32,
    /// Seconds an HTTP API request may take before it is answered 503.
    #[arg(long, env = "ROOMRING_HTTP_TIMEOUT", default_value_t = HttpLimits::TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_timeout: u64,
    /// Largest HTTP request body, in bytes; past it 413.
    #[arg(long, env = "ROOMRING_BODY_LIMIT", default_value_t = HttpLimits::BODY_BYTES, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    body_limit: u32,
    /// Seconds a client may be silent before it gets a ping; one that
    /// answers none within as long again is closed (1001).
    #[arg(long, env = "ROOMRING_PING_INTERVAL", default_value_t = crate::gateway::PING_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    ping_interval: u64,
    /// Pages besides the gateway's own that may call /ws and the API,
    /// comma-separated `scheme://host[:port]` (their hosts may then name the
    /// gateway too); a page of any other origin gets 403.
    #[arg(long, env = "ROOMRING_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origin_arg)]
    allowed_origins: Vec<String>,
}

/// A duration of whole seconds, minutes, hours or days: `90d`, `12h`.
fn retention_arg(s: &str) -> Result<std::time::Duration, String> {
    let unit = s.chars().last().ok_or("empty")?;
    let n: u64 = s[..s.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| "a number and a unit: 90d, 12h, 30m or 45s")?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err("the unit is s, m, h or d".into()),
    };
    if secs == 0 {
        return Err("at least one second".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// A PostgreSQL URL, never echoed (it may hold a password).
fn archive_url(s: &str) -> Result<String, String> {
    if (s.starts_with("postgres://") || s.starts_with("postgresql://"))
        && s.parse::<tokio_postgres::Config>().is_ok()
    {
        Ok(s.to_string())
    } else {
        Err("not a postgres://user[:password]@host:port/db URL".into())
    }
}

/// An `http://` or `https://` origin: a scheme and a host, no path.
fn origin_arg(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or("an origin starts with http:// or https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("an origin is scheme://host[:port], with no path".into());
    }
    Ok(s.trim_end_matches('/').to_string())
}

impl EdgeLimits {
    fn http(&self) -> HttpLimits {
        HttpLimits {
            concurrency: self.http_concurrency as usize,
            timeout: std::time::Duration::from_secs(self.http_timeout),
            body_bytes: self.body_limit as usize,
        }
    }

    fn apply(&self, config: &mut GatewayConfig) {
        config.max_connections = self.max_connections as usize;
        config.accept_rate = self.accept_rate;
        config.rooms_per_conn = self.rooms_per_connection as usize;
        config.http = self.http();
        config.ping_interval = std::time::Duration::from_secs(self.ping_interval);
        config.allowed_origins = self.allowed_origins.clone();
    }
}

/// How clients are identified (dev, gateway; a node accepts them).
#[derive(Debug, Args)]
struct ClientAuth {
    /// How clients are identified (default: jwt; none in dev).
    #[arg(long, env = "ROOMRING_AUTH")]
    auth: Option<AuthKind>,
    /// HS256 key for client and API tokens (the one operators sign with).
    #[arg(long, env = "ROOMRING_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The previous HS256 key, still accepted during a rotation.
    #[arg(long, env = "ROOMRING_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    jwt_previous_secret: Option<String>,
    /// Clock leeway for tokens' `exp` and `nbf`, in seconds.
    #[arg(long, env = "ROOMRING_TOKEN_LEEWAY", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=300))]
    token_leeway: u64,
}

/// Who may speak on a link (node, gateway; dev makes its own).
#[derive(Debug, Args)]
struct ClusterSecret {
    /// Authenticates gateway↔node and node↔node links (at least 32 bytes;
    /// `roomring secret` prints one).
    #[arg(long, env = "ROOMRING_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// PEM file of the CA that signs every member's link certificate: with
    /// `--link-cert` and `--link-key`, links run in mutual TLS.
    #[arg(long, env = "ROOMRING_LINK_CA")]
    link_ca: Option<std::path::PathBuf>,
    /// PEM file of this process's link certificate (naming the address it
    /// is reached at, for a node), signed by `--link-ca`.
    #[arg(long, env = "ROOMRING_LINK_CERT")]
    link_cert: Option<std::path::PathBuf>,
    /// PEM file of the private key of `--link-cert`.
    #[arg(long, env = "ROOMRING_LINK_KEY", hide_env_values = true)]
    link_key: Option<std::path::PathBuf>,
}

/// Where Redis is.
#[derive(Debug, Args)]
struct RedisArgs {
    /// `redis://[user:password@]host:port[/db]`, `rediss://...` (TLS), or
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]`
    /// (`rediss+sentinel://...` over TLS).
    #[arg(long, env = "ROOMRING_COORDINATOR", hide_env_values = true)]
    coordinator: String,
    /// PEM file of the roots to trust for `rediss://` (default: the system's).
    #[arg(long, env = "ROOMRING_REDIS_CA")]
    redis_ca: Option<std::path::PathBuf>,
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
    client_auth: ClientAuth,
    #[command(flatten)]
    rate: ClientRate,
    #[command(flatten)]
    rooms: RoomLimits,
    #[command(flatten)]
    runtime: Runtime,
    #[command(flatten)]
    edge: EdgeLimits,
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
    #[command(flatten)]
    redis: RedisArgs,
    /// Replicas that must hold a group commit before it is acknowledged
    /// (Redis `WAIT`); 0 acknowledges once the primary has it.
    #[arg(long, env = "ROOMRING_REDIS_WAIT_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    redis_wait_replicas: u32,
    /// With `--redis-wait-replicas`: acknowledge a commit that every
    /// connected replica holds although fewer are connected (degraded
    /// writes, which a failover may lose), instead of answering
    /// `unavailable`.
    #[arg(long, env = "ROOMRING_REDIS_ALLOW_DEGRADED")]
    redis_allow_degraded: bool,
    /// Serve links from builds before link version 4, whose handshake has
    /// this node prove itself first (to anyone who connects: an offline
    /// guess at the cluster secret). Only while such builds run, during a
    /// rolling update from them.
    #[arg(long, env = "ROOMRING_ALLOW_OLD_LINKS")]
    allow_old_links: bool,
    /// `postgres://user[:password]@host:port/db`: keep every stored event
    /// there, past the Redis tail, for `history` (the table is created at
    /// start when missing).
    #[arg(long, env = "ROOMRING_ARCHIVE", hide_env_values = true, value_parser = archive_url)]
    archive: Option<String>,
    /// With `--archive`: how long events are kept there (`90d`, `12h`,
    /// `30m`, `45s`); none by default (for ever).
    #[arg(long, env = "ROOMRING_RETENTION", value_parser = retention_arg, requires = "archive")]
    retention: Option<std::time::Duration>,
    /// Serve `GET /metrics` (Prometheus) on this address; none by default
    /// (a node serves no HTTP otherwise).
    #[arg(long, env = "ROOMRING_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Accepted so that one command line serves every role; a node serves
    /// no clients, so they change nothing on it.
    #[command(flatten)]
    client_auth: ClientAuth,
    #[command(flatten)]
    cluster: ClusterSecret,
    #[command(flatten)]
    rooms: RoomLimits,
    #[command(flatten)]
    runtime: Runtime,
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
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    client_auth: ClientAuth,
    #[command(flatten)]
    cluster: ClusterSecret,
    #[command(flatten)]
    rate: ClientRate,
    #[command(flatten)]
    runtime: Runtime,
    #[command(flatten)]
    edge: EdgeLimits,
    /// Milliseconds, on SIGTERM, that /readyz answers 503 while the gateway
    /// still serves, before it closes its clients: at least the time a load
    /// balancer's health check takes to mark it down.
    #[arg(long, env = "ROOMRING_DRAIN_DELAY_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300_000))]
    drain_delay_ms: u64,
    /// Milliseconds, on SIGTERM, over which the clients are closed one by
    /// one (0: all at once); by default max(2 s, connections / 1000 s), at
    /// most 10 s.
    #[arg(long, env = "ROOMRING_DRAIN_WINDOW_MS", value_parser = clap::value_parser!(u64).range(0..=300_000))]
    drain_window_ms: Option<u64>,
}

#[derive(Debug, Args)]
struct CtlArgs {
    #[command(flatten)]
    redis: RedisArgs,
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
