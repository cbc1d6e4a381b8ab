//! Who may link to a node: the accept loop, and each new connection's
//! authentication (`link::server::accept`) under a bound of how many may be
//! authenticating at once; refusals are counted and logged at a bounded
//! rate. An authenticated link is served by `serve`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::{serve, Node};
use crate::link::{self, Link};
use crate::shutdown::Shutdown;

/// Link connections at most that may be authenticating at once; past it
/// a new one is closed at once.
const PRE_AUTH_MAX: usize = 64;

/// Accepts links until shutdown.
pub(super) struct Listener {
    pub(super) node: Arc<Node>,
    pub(super) listener: TcpListener,
    pub(super) shutdown: Shutdown,
}

impl Listener {
    pub(super) async fn run(self) {
        let unproven = Arc::new(tokio::sync::Semaphore::new(PRE_AUTH_MAX));
        let log = Arc::new(RefusalLog::default());
        let shutdown = self.shutdown.clone();
        crate::listen::accept_until(&self.listener, shutdown, "link", |stream, peer| {
            let Ok(permit) = unproven.clone().try_acquire_owned() else {
                log.refused(peer, "too many links authenticating at once");
                return None;
            };
            let span = tracing::debug_span!("link", client.addr = %peer);
            let node = self.node.clone();
            let (log, shutdown) = (log.clone(), self.shutdown.clone());
            let link = async move {
                if let Some(link) = authenticate(&node, stream, peer, permit, &log).await {
                    serve::serve(node, link, shutdown).await;
                }
            };
            Some((link, span))
        })
        .await;
    }
}

/// Authenticates a new connection, holding its place among those
/// authenticating until it has; a refusal is counted and logged.
async fn authenticate(
    node: &Node,
    stream: TcpStream,
    addr: SocketAddr,
    place: OwnedSemaphorePermit,
    log: &RefusalLog,
) -> Option<Link> {
    let config = &node.config;
    let accepted = link::server::accept(
        stream,
        &config.id,
        &config.cluster_secret,
        config.older_builds,
    )
    .await;
    drop(place);
    accepted.map_err(|e| log.refused(addr, &e.to_string())).ok()
}

/// Counts the link connections refused before they authenticated, and logs
/// them at most once a second (a flood of strangers is one line a second).
#[derive(Default)]
struct RefusalLog {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    unlogged: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, addr: SocketAddr, why: &str) {
        crate::telemetry::metrics().link_refusals.increment(1);
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < std::time::Duration::from_secs(1)) {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let more = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(client.addr = %addr, error = why, more_since_last = more, "link refused");
    }
}
