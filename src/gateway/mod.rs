//! The gateway: the stateless edge. It terminates client WebSockets and HTTP,
//! authenticates and validates, and forwards room operations to each room's
//! owner over one link per node, subscribing once per room and fanning events
//! out to its local sockets.
//!
//! Task tree (all ended by the gateway's `Trigger`):
//! - `listener::Listener::run`: one task per HTTP connection (hyper), and
//!   one per client WebSocket once upgraded (`upgrade`, then
//!   `conn::Connection::run`);
//! - `Upstream`'s supervisor, its sweeper, and one link task per node, which
//!   reads the node's records and fans events out to the local sockets;
//! - `lease::keep`: renews membership and reports the connection count, on
//!   the membership thread (`coordinator::isolated`).
//!
//! On SIGTERM it leaves readiness and refuses new clients at once, closes
//! each socket once with 1012, spread evenly over the drain window
//! (`admission`), waits a short grace period for them to go, and leaves the
//! cluster.

mod admission;
mod assets;
pub mod auth;
mod config;
mod conn;
mod http;
mod joins;
mod layers;
mod lease;
mod listener;
mod origin;
pub mod outbox;
mod sessions;
mod subs;
mod upgrade;
mod upstream;
mod websocket;

use crate::protocol::Failure;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::coordinator::isolated::{self, Liveness};
use crate::coordinator::{CoordError, Coordinator, Lease, Role};
use crate::ids::NodeId;
use crate::shutdown::{self, Shutdown, Trigger};
use auth::ApiRole;
pub use auth::Auth;
use outbox::Close;
use sessions::Sessions;
use subs::Subscriptions;
use upstream::Upstream;

pub use config::{
    ClientLimits, GatewayConfig, HttpLimits, ACCEPT_RATE, DRAIN_DELAY_MS, LEEWAY_SECS,
    MAX_CONNECTIONS, PING_INTERVAL_SECS, RATE_BURST, RATE_PER_SEC, ROOMS_PER_CONN,
};

/// How long sockets get to close on shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What only `dev` can do, offered to the HTTP API.
#[async_trait::async_trait]
pub trait DevControl: Send + Sync {
    /// Starts one more in-process node.
    async fn add_node(&self) -> Result<NodeId, Failure>;
}

/// State shared by the gateway's handlers.
pub(crate) struct Gateway {
    config: GatewayConfig,
    coordinator: Coordinator,
    sessions: Arc<Sessions>,
    subs: Arc<Subscriptions>,
    upstream: Arc<Upstream>,
    dev: Option<Arc<dyn DevControl>>,
    /// Why the gateway stopped by itself, for `run` to return.
    fatal: shutdown::Fatal<CoordError>,
    /// One permit per open client WebSocket (`max_connections`).
    conn_limit: Arc<Semaphore>,
    /// The connection rate, and whether the gateway stops (then `/readyz`
    /// answers 503 and nobody is admitted).
    admission: admission::Admission,
    /// Which names and pages may call `/ws` and the API.
    guard: origin::Guard,
    /// Spawns the connections' tasks, which a stop waits for.
    tasks: Shutdown,
}

/// The gateway's HTTP and WebSocket routes, with their limits and
/// authorization as layers; a `tower::Service` that needs no socket to be
/// called (`tower::ServiceExt::oneshot`).
pub(crate) fn app(gw: Arc<Gateway>) -> Router {
    let service = Router::new()
        .route("/api/rooms/{room}", get(http::room_info))
        .route(
            "/api/rooms/{room}/messages",
            get(http::room_messages).post(http::post_message),
        )
        .route("/api/users/{user}/notify", post(http::notify));
    let admin = Router::new()
        .route("/api/cluster", get(http::cluster))
        .route("/api/broadcast", post(http::broadcast))
        .route("/api/cluster/nodes", post(http::add_node))
        .route("/api/cluster/nodes/{id}/drain", post(http::drain))
        .route(
            "/api/rooms/{room}",
            axum::routing::delete(http::delete_room),
        );
    let api = layers::require(&gw, service, ApiRole::Service)
        .merge(layers::require(&gw, admin, ApiRole::Admin))
        .route("/api/config", get(http::config))
        .route("/api", any(http::not_found))
        .route("/api/{*rest}", any(http::not_found));
    let guarded = Router::new()
        .route("/ws", get(upgrade::upgrade))
        .merge(layers::limit(api, gw.config.clients.http));
    Router::new()
        .merge(layers::guard(&gw, guarded))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        .method_not_allowed_fallback(http::method_not_allowed)
        .fallback(assets::serve)
        .with_state(gw)
}

/// A running gateway.
pub struct GatewayHandle {
    /// Its id.
    pub id: NodeId,
    /// The bound client address.
    pub addr: SocketAddr,
    gateway: Arc<Gateway>,
    trigger: Trigger,
    task: JoinHandle<()>,
}

impl GatewayHandle {
    /// The gateway's routes, to call without a socket (`oneshot` in tests).
    pub fn app(&self) -> Router {
        app(self.gateway.clone())
    }

    /// Lets the clients go: says unready and refuses new clients at once,
    /// serves the others for `drain_delay`, then closes each once with
    /// 1012, spread evenly over the drain window.
    pub async fn drain(&self) {
        let gw = &self.gateway;
        gw.admission.stop();
        let delay = gw.config.drain_delay;
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "draining: /readyz answers 503 and new clients are refused"
        );
        tokio::time::sleep(delay).await;
        admission::close_paced(&gw.sessions, gw.config.drain_window).await;
    }

    /// Closes every client with 1012, leaves the cluster, and waits (for
    /// its tasks, at most `shutdown::TASK_GRACE`).
    pub async fn stop(self) {
        self.trigger.fire();
        let _ = self.task.await;
        self.trigger.stopped(crate::shutdown::TASK_GRACE).await;
    }
}

/// A gateway failed to start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The coordinator refused or could not be reached.
    #[error(transparent)]
    Coordinator(#[from] CoordError),
}

/// Binds, joins the cluster and starts serving.
pub async fn start(
    config: GatewayConfig,
    coordinator: Coordinator,
    dev: Option<Arc<dyn DevControl>>,
) -> Result<GatewayHandle, GatewayError> {
    // Metrics recorded before the recorder exists would be lost.
    crate::telemetry::prometheus();
    let (listener, addr) =
        listener::bound(config.listen).map_err(|e| GatewayError::Bind(config.listen, e))?;
    let advertise = config.advertise.clone().unwrap_or_else(|| addr.to_string());
    let lease = coordinator
        .join(Role::Gateway, &config.id, &advertise)
        .await?;
    let (trigger, shutdown) = shutdown::channel();
    let id = config.id.clone();
    let span = tracing::info_span!("gateway", node.id = %id);
    let sessions = Arc::new(Sessions::default());
    let subs = Arc::new(Subscriptions::default());
    let ring = crate::coordinator::watch_ring(coordinator.as_ref());
    let upstream = span.in_scope(|| {
        Upstream::spawn(
            id.clone(),
            coordinator.clone(),
            config.cluster_secret.clone(),
            ring,
            subs.clone(),
            sessions.clone(),
            shutdown.clone(),
        )
    });
    let mut config = config;
    admission::cap_connections(&mut config.clients.max_connections);
    let origins = &config.clients.allowed_origins;
    let open = matches!(config.auth, Auth::None);
    let gw = Arc::new(Gateway {
        guard: origin::Guard::new(open, addr, Some(&advertise), origins),
        conn_limit: Arc::new(Semaphore::new(config.clients.max_connections)),
        admission: admission::Admission::new(config.clients.accept_rate),
        config,
        coordinator,
        sessions,
        subs,
        upstream,
        dev,
        fatal: shutdown::Fatal::default(),
        tasks: shutdown.clone(),
    });
    let task =
        tokio::spawn(serve(gw.clone(), listener, lease, shutdown, advertise).instrument(span));
    Ok(GatewayHandle {
        id,
        addr,
        gateway: gw,
        trigger,
        task,
    })
}

async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    lease: Lease,
    shutdown: Shutdown,
    advertise: String,
) {
    let live = Liveness::start(shutdown.clone());
    let keeper = isolated::spawn(
        lease::keep(gw.clone(), lease, advertise, live, shutdown.clone()).in_current_span(),
    );
    if matches!(gw.config.auth, Auth::Jwt(_)) {
        shutdown.spawn(close_expired(gw.clone(), shutdown.clone()).in_current_span());
    }
    shutdown.spawn(heartbeat(gw.clone(), shutdown.clone()).in_current_span());
    let server = listener::Listener {
        listener,
        router: app(gw.clone()),
        shutdown: shutdown.clone(),
    };
    let closer = {
        let (gw, mut shutdown) = (gw.clone(), shutdown.clone());
        async move {
            shutdown.wait().await;
            gw.sessions.close_all(Close {
                code: websocket::close::RESTART,
                reason: "service restart",
            });
            if tokio::time::timeout(CLOSE_GRACE, gw.sessions.all_closed())
                .await
                .is_err()
            {
                tracing::info!(
                    open = gw.sessions.len(),
                    "connections still open after the grace period; leaving anyway"
                );
            }
        }
    };
    tokio::join!(server.run(), closer);
    let _ = keeper.await;
    tracing::info!("gateway stopped");
}

/// Closes (1008) the connections whose token expired, once a second.
async fn close_expired(gw: Arc<Gateway>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => break,
        }
        let closed = gw.sessions.close_expired(crate::protocol::now_ms() / 1000);
        if closed > 0 {
            tracing::debug!(closed, "closed connections whose token expired");
        }
    }
}

/// Pings idle clients and closes those that answer none, once per
/// `ping_interval` (`Sessions::heartbeat`).
async fn heartbeat(gw: Arc<Gateway>, mut shutdown: Shutdown) {
    let every = gw.config.clients.ping_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ping = websocket::ping();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => break,
        }
        let (pinged, closed) = gw.sessions.heartbeat(&ping);
        if closed > 0 {
            tracing::info!(pinged, closed, "closed connections that answered no ping");
        }
    }
}

/// Runs a gateway until SIGINT/SIGTERM.
pub async fn run(config: GatewayConfig, coordinator: Coordinator) -> Result<(), GatewayError> {
    let gateway = start(config, coordinator, None).await?;
    println!("ready gateway {} {}", gateway.id, gateway.addr);
    let fatal = gateway.gateway.clone();
    tokio::select! {
        () = shutdown::signal() => gateway.drain().await,
        () = fatal.fatal.raised() => {}
    }
    gateway.stop().await;
    match fatal.fatal.take() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
