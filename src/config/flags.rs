//! The command line's flag groups (each with its `ROOMRING_*` fallback and
//! its default, in one place) and the parsers of single values; `config`
//! turns them into a command per role.

use std::net::SocketAddr;

use clap::{Args, Subcommand, ValueEnum};

use std::time::Duration;

use crate::gateway::{ClientLimits, HttpLimits};
use crate::ids::RoomId;

#[derive(Debug, Args)]
pub(super) struct ProbeArgs {
    /// `http://HOST:PORT/PATH` (wants a 200) or `HOST:PORT` (wants a TCP
    /// connection, for a node's link port).
    #[arg(
        env = "ROOMRING_PROBE",
        default_value = "http://127.0.0.1:8080/healthz"
    )]
    pub(super) target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TokenAudience {
    /// For WebSocket clients (`aud` roomring-client).
    Client,
    /// For the HTTP API (`aud` roomring-api); needs --role.
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TokenRole {
    Service,
    Admin,
}

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// The user (`sub`).
    #[arg(long)]
    pub(super) sub: String,
    /// Who the token is for.
    #[arg(long, value_enum, default_value_t = TokenAudience::Client)]
    pub(super) aud: TokenAudience,
    /// API role (with --aud api).
    #[arg(long, value_enum)]
    pub(super) role: Option<TokenRole>,
    /// Room patterns the client may use (comma-separated; all if absent).
    #[arg(long, value_delimiter = ',')]
    pub(super) rooms: Option<Vec<String>>,
    /// Seconds until it expires.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub(super) ttl: u64,
    /// The HS256 key to sign with.
    #[arg(long, env = "ROOMRING_JWT_SECRET", hide_env_values = true)]
    pub(super) jwt_secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum AuthKind {
    None,
    Jwt,
}

/// Rooms held in memory (dev, node).
#[derive(Debug, Args)]
pub(super) struct RoomLimits {
    /// Stored events kept per room (at least 1000).
    #[arg(long, env = "ROOMRING_HISTORY", default_value_t = crate::rooms::KEEP as u32, value_parser = clap::value_parser!(u32).range(crate::rooms::KEEP as i64..=1_000_000))]
    pub(super) history: u32,
    /// Seconds a room that no connection has joined stays in a node's
    /// memory (its stored history stays).
    #[arg(long, env = "ROOMRING_ROOM_IDLE", default_value_t = crate::node::ROOM_IDLE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(super) room_idle: u64,
    /// Online users of a room past which it sends `presence.count`
    /// instead of a `presence` per user.
    #[arg(long, env = "ROOMRING_PRESENCE_LIMIT", default_value_t = crate::rooms::presence::PRESENCE_LIMIT as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(super) presence_limit: u32,
}

impl RoomLimits {
    pub(super) fn limits(&self) -> crate::rooms::Limits {
        crate::rooms::Limits {
            keep: self.history as usize,
            presence: self.presence_limit as usize,
        }
    }
}

/// What every serving role takes: how clients are identified, and the
/// process's runtime.
#[derive(Debug, Args)]
pub(super) struct Serving {
    #[command(flatten)]
    pub(super) client_auth: ClientAuth,
    #[command(flatten)]
    pub(super) runtime: Runtime,
}

/// The process's runtime (every serving role).
#[derive(Debug, Args)]
pub(super) struct Runtime {
    /// Threads that run the process's tasks. One is the leanest per message
    /// (no wake-up crosses a thread); scale out with more processes, or
    /// give a busy process more threads.
    #[arg(long, env = "ROOMRING_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(super) threads: u16,
}

/// What each client may do and how many may come (dev, gateway).
#[derive(Debug, Args)]
pub(super) struct EdgeLimits {
    /// Sustained client frames per second per connection.
    #[arg(long, env = "ROOMRING_RATE", default_value_t = crate::gateway::RATE_PER_SEC, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) rate: u32,
    /// Burst of client frames per connection.
    #[arg(long, env = "ROOMRING_BURST", default_value_t = crate::gateway::RATE_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) burst: u32,
    /// Client WebSockets open at once; past it an upgrade gets 503 with
    /// Retry-After. Lowered at start to what the open-files limit holds.
    #[arg(long, env = "ROOMRING_MAX_CONNECTIONS", default_value_t = crate::gateway::MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_connections: u32,
    /// New client WebSockets a second (in bursts of as many); past it an
    /// upgrade gets 503 with Retry-After.
    #[arg(long, env = "ROOMRING_ACCEPT_RATE", default_value_t = crate::gateway::ACCEPT_RATE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(super) accept_rate: u32,
    /// Rooms one connection may have joined at once.
    #[arg(long, env = "ROOMRING_ROOMS_PER_CONNECTION", default_value_t = crate::gateway::ROOMS_PER_CONN, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(super) rooms_per_connection: u32,
    /// HTTP API requests served at once; past it a request gets 503.
    #[arg(long, env = "ROOMRING_HTTP_CONCURRENCY", default_value_t = HttpLimits::CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) http_concurrency: u32,
    /// Seconds an HTTP API request may take before it is answered 503.
    #[arg(long, env = "ROOMRING_HTTP_TIMEOUT", default_value_t = HttpLimits::TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(super) http_timeout: u64,
    /// Largest HTTP request body, in bytes; past it 413.
    #[arg(long, env = "ROOMRING_BODY_LIMIT", default_value_t = HttpLimits::BODY_BYTES, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub(super) body_limit: u32,
    /// Seconds a client may be silent before it gets a ping; one that
    /// answers none within as long again is closed (1001).
    #[arg(long, env = "ROOMRING_PING_INTERVAL", default_value_t = crate::gateway::PING_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(super) ping_interval: u64,
    /// Pages besides the gateway's own that may call /ws and the API,
    /// comma-separated `scheme://host[:port]` (their hosts may then name the
    /// gateway too); a page of any other origin gets 403.
    #[arg(long, env = "ROOMRING_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origin_arg)]
    pub(super) allowed_origins: Vec<String>,
}

/// A duration of whole seconds, minutes, hours or days: `90d`, `12h`.
pub(super) fn retention_arg(s: &str) -> Result<std::time::Duration, String> {
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
pub(super) fn archive_url(s: &str) -> Result<String, String> {
    if (s.starts_with("postgres://") || s.starts_with("postgresql://"))
        && s.parse::<tokio_postgres::Config>().is_ok()
    {
        Ok(s.to_string())
    } else {
        Err("not a postgres://user[:password]@host:port/db URL".into())
    }
}

/// An `http://` or `https://` origin: a scheme and a host, no path.
pub(super) fn origin_arg(s: &str) -> Result<String, String> {
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
    pub(super) fn clients(&self) -> ClientLimits {
        ClientLimits {
            rate_per_sec: self.rate,
            rate_burst: self.burst,
            rooms_per_conn: self.rooms_per_connection as usize,
            max_connections: self.max_connections as usize,
            accept_rate: self.accept_rate,
            ping_interval: Duration::from_secs(self.ping_interval),
            http: HttpLimits {
                concurrency: self.http_concurrency as usize,
                timeout: Duration::from_secs(self.http_timeout),
                body_bytes: self.body_limit as usize,
            },
            allowed_origins: self.allowed_origins.clone(),
        }
    }
}

/// How clients are identified (dev, gateway; a node accepts them).
#[derive(Debug, Args)]
pub(super) struct ClientAuth {
    /// How clients are identified (default: jwt; none in dev).
    #[arg(long, env = "ROOMRING_AUTH")]
    pub(super) auth: Option<AuthKind>,
    /// HS256 key for client and API tokens (the one operators sign with).
    #[arg(long, env = "ROOMRING_JWT_SECRET", hide_env_values = true)]
    pub(super) jwt_secret: Option<String>,
    /// The previous HS256 key, still accepted during a rotation.
    #[arg(long, env = "ROOMRING_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub(super) jwt_previous_secret: Option<String>,
    /// Clock leeway for tokens' `exp` and `nbf`, in seconds.
    #[arg(long, env = "ROOMRING_TOKEN_LEEWAY", default_value_t = crate::gateway::LEEWAY_SECS, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub(super) token_leeway: u64,
}

/// Who may speak on a link (node, gateway; dev makes its own).
#[derive(Debug, Args)]
pub(super) struct ClusterSecret {
    /// Authenticates gateway↔node and node↔node links (at least 32 bytes;
    /// `roomring secret` prints one).
    #[arg(long, env = "ROOMRING_CLUSTER_SECRET", hide_env_values = true)]
    pub(super) cluster_secret: Option<String>,
    /// PEM file of the CA that signs every member's link certificate: with
    /// `--link-cert` and `--link-key`, links run in mutual TLS.
    #[arg(long, env = "ROOMRING_LINK_CA")]
    pub(super) link_ca: Option<std::path::PathBuf>,
    /// PEM file of this process's link certificate (naming the address it
    /// is reached at, for a node), signed by `--link-ca`.
    #[arg(long, env = "ROOMRING_LINK_CERT")]
    pub(super) link_cert: Option<std::path::PathBuf>,
    /// PEM file of the private key of `--link-cert`.
    #[arg(long, env = "ROOMRING_LINK_KEY", hide_env_values = true)]
    pub(super) link_key: Option<std::path::PathBuf>,
}

/// Where Redis is.
#[derive(Debug, Args)]
pub(super) struct RedisArgs {
    /// `redis://[user:password@]host:port[/db]`, `rediss://...` (TLS), or
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]`
    /// (`rediss+sentinel://...` over TLS).
    #[arg(long, env = "ROOMRING_COORDINATOR", hide_env_values = true)]
    pub(super) coordinator: String,
    /// PEM file of the roots to trust for `rediss://` (default: the system's).
    #[arg(long, env = "ROOMRING_REDIS_CA")]
    pub(super) redis_ca: Option<std::path::PathBuf>,
}

/// Who a member of a cluster is, where it listens and what it joins
/// (node, gateway).
#[derive(Debug, Args)]
pub(super) struct MemberArgs {
    /// Member id.
    #[arg(long, env = "ROOMRING_ID")]
    pub(super) id: String,
    /// Where it listens: for links on a node, for clients on a gateway.
    #[arg(long, env = "ROOMRING_LISTEN")]
    pub(super) listen: SocketAddr,
    /// Address others reach it at, when not the bound one.
    #[arg(long, env = "ROOMRING_ADVERTISE")]
    pub(super) advertise: Option<String>,
    #[command(flatten)]
    pub(super) redis: RedisArgs,
    #[command(flatten)]
    pub(super) cluster: ClusterSecret,
}

#[derive(Debug, Args)]
pub(super) struct DevArgs {
    /// Gateway address (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "ROOMRING_LISTEN", default_value = "127.0.0.1:8080")]
    pub(super) listen: SocketAddr,
    /// Application nodes to start.
    #[arg(long, env = "ROOMRING_NODES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(super) nodes: u16,
    #[command(flatten)]
    pub(super) serving: Serving,
    #[command(flatten)]
    pub(super) rooms: RoomLimits,
    #[command(flatten)]
    pub(super) edge: EdgeLimits,
}

#[derive(Debug, Args)]
pub(super) struct NodeArgs {
    #[command(flatten)]
    pub(super) member: MemberArgs,
    /// Replicas that must hold a group commit before it is acknowledged
    /// (Redis `WAIT`); 0 acknowledges once the primary has it.
    #[arg(long, env = "ROOMRING_REDIS_WAIT_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub(super) redis_wait_replicas: u32,
    /// With `--redis-wait-replicas`: acknowledge a commit that every
    /// connected replica holds although fewer are connected (degraded
    /// writes, which a failover may lose), instead of answering
    /// `unavailable`.
    #[arg(long, env = "ROOMRING_REDIS_ALLOW_DEGRADED")]
    pub(super) redis_allow_degraded: bool,
    /// Serve links from builds before link version 4, whose handshake has
    /// this node prove itself first (to anyone who connects: an offline
    /// guess at the cluster secret). Only while such builds run, during a
    /// rolling update from them.
    #[arg(long, env = "ROOMRING_ALLOW_OLD_LINKS")]
    pub(super) allow_old_links: bool,
    /// `postgres://user[:password]@host:port/db`: keep every stored event
    /// there, past the Redis tail, for `history` (the table is created at
    /// start when missing).
    #[arg(long, env = "ROOMRING_ARCHIVE", hide_env_values = true, value_parser = archive_url)]
    pub(super) archive: Option<String>,
    /// With `--archive`: how long events are kept there (`90d`, `12h`,
    /// `30m`, `45s`); none by default (for ever).
    #[arg(long, env = "ROOMRING_RETENTION", value_parser = retention_arg, requires = "archive")]
    pub(super) retention: Option<std::time::Duration>,
    /// Serve `GET /metrics` (Prometheus) on this address; none by default
    /// (a node serves no HTTP otherwise).
    #[arg(long, env = "ROOMRING_METRICS_LISTEN")]
    pub(super) metrics_listen: Option<SocketAddr>,
    /// Its client flags are accepted so that one command line serves every
    /// role; a node serves no clients, so they change nothing on it.
    #[command(flatten)]
    pub(super) serving: Serving,
    #[command(flatten)]
    pub(super) rooms: RoomLimits,
}

#[derive(Debug, Args)]
pub(super) struct GatewayArgs {
    #[command(flatten)]
    pub(super) member: MemberArgs,
    #[command(flatten)]
    pub(super) serving: Serving,
    #[command(flatten)]
    pub(super) edge: EdgeLimits,
    /// Milliseconds, on SIGTERM, that /readyz answers 503 while the gateway
    /// still serves, before it closes its clients: at least the time a load
    /// balancer's health check takes to mark it down.
    #[arg(long, env = "ROOMRING_DRAIN_DELAY_MS", default_value_t = crate::gateway::DRAIN_DELAY_MS, value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub(super) drain_delay_ms: u64,
    /// Milliseconds, on SIGTERM, over which the clients are closed one by
    /// one (0: all at once); by default max(2 s, connections / 1000 s), at
    /// most 10 s.
    #[arg(long, env = "ROOMRING_DRAIN_WINDOW_MS", value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub(super) drain_window_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub(super) struct CtlArgs {
    #[command(flatten)]
    pub(super) redis: RedisArgs,
    #[command(subcommand)]
    pub(super) action: CtlAction,
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

pub(super) fn parse_room(s: &str) -> Result<String, String> {
    RoomId::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
