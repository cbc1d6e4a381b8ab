//! How a gateway is run: its configuration, the limits of its HTTP API,
//! and the one home of every default (read by the flags, `dev` and tests).

use std::net::SocketAddr;
use std::time::Duration;

use super::auth::Auth;
use super::outbox::OutboxLimits;
use crate::ids::NodeId;
use crate::link::Secret;

/// New client WebSockets a gateway takes a second by default.
pub const ACCEPT_RATE: u32 = 5000;
/// Sustained client frames a second per connection, by default.
pub const RATE_PER_SEC: u32 = 1000;
/// Burst of client frames per connection, by default.
pub const RATE_BURST: u32 = 2000;
/// Client WebSockets a gateway holds at once, by default (lowered to its
/// open-files limit at start).
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Rooms one connection may have joined at once, by default.
pub const ROOMS_PER_CONN: u32 = 256;
/// Seconds of a client's silence before it is pinged, by default.
pub const PING_INTERVAL_SECS: u64 = 25;
/// Clock leeway for tokens' `exp` and `nbf`, in seconds, by default.
pub const LEEWAY_SECS: u64 = 5;
/// Milliseconds, on SIGTERM, that readiness fails before the clients are
/// closed, by default.
pub const DRAIN_DELAY_MS: u64 = 0;

/// How a gateway is run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Its member id.
    pub id: NodeId,
    /// Where it listens for clients.
    pub listen: SocketAddr,
    /// The address others reach it at, when not the bound one.
    pub advertise: Option<String>,
    /// How clients are identified.
    pub auth: Auth,
    /// Authenticates the links to the nodes.
    pub cluster_secret: Secret,
    /// What each client may do and how many may come.
    pub clients: ClientLimits,
    /// Bounds of each connection's queue of frames to write.
    pub outbox: OutboxLimits,
    /// On SIGTERM, how long `/readyz` answers 503 (and new clients are
    /// refused) while the connected ones are still served, before the
    /// first is closed: a load balancer's health check then takes the
    /// gateway out first.
    pub drain_delay: Duration,
    /// On SIGTERM, the time over which the clients are closed, one by one;
    /// `None` for max(2 s, connections / 1000 s), at most 10 s.
    pub drain_window: Option<Duration>,
}

/// What each client may do and how many may come (a gateway's, and each
/// of `dev`'s gateways').
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Sustained client frames per second per connection.
    pub rate_per_sec: u32,
    /// Burst of client frames per connection.
    pub rate_burst: u32,
    /// Rooms one connection may have joined at once.
    pub rooms_per_conn: usize,
    /// Client WebSockets open at once; past it an upgrade gets 503.
    pub max_connections: usize,
    /// New client WebSockets a second; past it an upgrade gets 503 with
    /// `Retry-After`.
    pub accept_rate: u32,
    /// A client not heard from for this long gets a ping; one that answers
    /// none within another interval is closed (1001, "no pong").
    pub ping_interval: Duration,
    /// Limits of the HTTP API.
    pub http: HttpLimits,
    /// Pages (`scheme://host[:port]`) besides the gateway's own that may
    /// call `/ws` and the API (`gateway::origin`).
    pub allowed_origins: Vec<String>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            rate_per_sec: RATE_PER_SEC,
            rate_burst: RATE_BURST,
            rooms_per_conn: ROOMS_PER_CONN as usize,
            max_connections: MAX_CONNECTIONS as usize,
            accept_rate: ACCEPT_RATE,
            ping_interval: Duration::from_secs(PING_INTERVAL_SECS),
            http: HttpLimits::default(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Limits of the HTTP API, applied as tower layers around every route but
/// the WebSocket upgrade.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Requests served at once; past it 503.
    pub concurrency: usize,
    /// How long one request may take; past it 503.
    pub timeout: Duration,
    /// Largest request body; past it 413.
    pub body_bytes: usize,
}

impl HttpLimits {
    /// HTTP API requests served at once, by default.
    pub const CONCURRENCY: u32 = 1024;
    /// Seconds an HTTP API request may take, by default.
    pub const TIMEOUT_SECS: u64 = 10;
    /// Largest HTTP request body in bytes, by default.
    pub const BODY_BYTES: u32 = 64 * 1024;
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            concurrency: Self::CONCURRENCY as usize,
            timeout: Duration::from_secs(Self::TIMEOUT_SECS),
            body_bytes: Self::BODY_BYTES as usize,
        }
    }
}

impl GatewayConfig {
    /// A gateway of member `id` with every default: the loopback on a free
    /// port, `--auth none`, and the limits of the flags' defaults.
    pub fn new(id: NodeId, cluster_secret: Secret) -> Self {
        Self {
            id,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            auth: Auth::None,
            cluster_secret,
            clients: ClientLimits::default(),
            outbox: OutboxLimits::default(),
            drain_delay: Duration::from_millis(DRAIN_DELAY_MS),
            drain_window: None,
        }
    }
}
