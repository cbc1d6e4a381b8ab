//! Links from this node to other nodes, for hand-offs: one WebSocket per peer,
//! opened on first use, requests matched to replies by id.
//!
//! Task tree: each open link has a reader and a writer task; both end when
//! the connection drops (the next request opens a new link).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::ids::NodeId;
use crate::protocol::link::{self, Rid, Status, ToGateway, ToNode};

/// How long a hand-off may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests a peer link may queue.
const PEER_QUEUE: usize = 1024;

type Pending = Arc<Mutex<HashMap<Rid, oneshot::Sender<Status>>>>;

struct PeerLink {
    addr: String,
    /// Bounded; requesters wait when it is full.
    tx: mpsc::Sender<String>,
    pending: Pending,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
}

/// Why a request to a peer has no status.
#[derive(Debug, thiserror::Error)]
pub(super) enum PeerError {
    /// It never reached the peer.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// It was sent but no answer came: the peer may or may not have acted.
    #[error("{0}")]
    NoAnswer(&'static str),
}

/// One connection attempt, awaited by every request that needs the link
/// meanwhile.
type Connecting = Shared<BoxFuture<'static, Result<Arc<PeerLink>, String>>>;

/// A peer's entry: its open link, or the attempt to open one.
enum Slot {
    Open(Arc<PeerLink>),
    Connecting { addr: String, attempt: Connecting },
}

/// This node's links to its peers.
pub(super) struct Peers {
    me: NodeId,
    secret: String,
    /// Held for look-ups and inserts only. The many hand-offs of a round
    /// that start together share one attempt per peer instead of each
    /// opening a connection (dozens at once can overflow the peer's accept
    /// backlog and wait on SYN retries); an unreachable peer holds up only
    /// the requests for it.
    links: Mutex<HashMap<NodeId, Slot>>,
}

impl Peers {
    pub(super) fn new(me: NodeId, secret: String) -> Self {
        Self {
            me,
            secret,
            links: Mutex::default(),
        }
    }

    async fn link(&self, to: &NodeId, addr: &str) -> Result<Arc<PeerLink>, String> {
        let attempt = {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            match links.get(to) {
                Some(Slot::Open(link))
                    if link.alive.load(Ordering::Acquire) && link.addr == addr =>
                {
                    return Ok(link.clone());
                }
                Some(Slot::Connecting { addr: a, attempt }) if a == addr => attempt.clone(),
                _ => {
                    let attempt = connect(self.me.clone(), self.secret.clone(), addr.to_string())
                        .boxed()
                        .shared();
                    links.insert(
                        to.clone(),
                        Slot::Connecting {
                            addr: addr.to_string(),
                            attempt: attempt.clone(),
                        },
                    );
                    attempt
                }
            }
        };
        let result = attempt.clone().await;
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        // The first to see the outcome records it (unless a newer attempt
        // has taken the slot).
        if let Some(Slot::Connecting { attempt: a, .. }) = links.get(to) {
            if a.ptr_eq(&attempt) {
                match &result {
                    Ok(link) => {
                        links.insert(to.clone(), Slot::Open(link.clone()));
                    }
                    Err(_) => {
                        links.remove(to);
                    }
                }
            }
        }
        result
    }

    /// Sends a request built around a fresh request id and waits for its status.
    pub(super) async fn request(
        &self,
        to: &NodeId,
        addr: &str,
        make: impl FnOnce(Rid) -> ToNode,
    ) -> Result<Status, PeerError> {
        let link = self.link(to, addr).await.map_err(PeerError::Unreachable)?;
        let rid = link.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rid, tx);
        link.tx
            .send(link::encode(&make(rid), None))
            .await
            .map_err(|_| PeerError::Unreachable("peer link closed".into()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(PeerError::NoAnswer("peer link closed")),
            Err(_) => {
                link.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&rid);
                Err(PeerError::NoAnswer("peer did not answer in time"))
            }
        }
    }

    /// Sends a message that has no reply.
    pub(super) async fn tell(&self, to: &NodeId, addr: &str, msg: &ToNode) -> Result<(), String> {
        let link = self.link(to, addr).await?;
        link.tx
            .send(link::encode(msg, None))
            .await
            .map_err(|_| "peer link closed".to_string())
    }
}

/// Opens a link to the node at `addr` and starts its reader and writer.
async fn connect(me: NodeId, secret: String, addr: String) -> Result<Arc<PeerLink>, String> {
    let mut req = format!("ws://{addr}{}", link::LINK_PATH)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let headers = req.headers_mut();
    headers.insert(
        link::SECRET_HEADER,
        secret.parse().map_err(|_| "bad secret")?,
    );
    headers.insert(
        link::PEER_HEADER,
        me.as_str().parse().map_err(|_| "bad id")?,
    );
    headers.insert(link::ROLE_HEADER, http::HeaderValue::from_static("node"));
    let connect = tokio_tungstenite::connect_async_with_config(req, None, true);
    let (ws, _) = tokio::time::timeout(REQUEST_TIMEOUT, connect)
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<String>(PEER_QUEUE);
    let pending: Pending = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let writer_alive = alive.clone();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        writer_alive.store(false, Ordering::Release);
    });
    let (reader_pending, reader_alive) = (pending.clone(), alive.clone());
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            if let Ok((ToGateway::Reply { rid, status, .. }, _)) = link::decode::<ToGateway>(&text)
            {
                if let Some(tx) = reader_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&rid)
                {
                    let _ = tx.send(status);
                }
            }
        }
        reader_alive.store(false, Ordering::Release);
        // Requesters waiting on this link learn that it is gone.
        reader_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    });
    Ok(Arc::new(PeerLink {
        addr: addr.to_string(),
        tx,
        pending,
        next: AtomicU64::new(1),
        alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    /// A peer that counts the links opened to it and reads what comes.
    async fn peer() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.expect("ws");
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_link() {
        let (addr, accepted) = peer().await;
        let peers = Arc::new(Peers::new(NodeId::parse("node-a").expect("id"), "s".into()));
        let to = NodeId::parse("node-b").expect("id");
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (peers, to, addr) = (peers.clone(), to.clone(), addr.clone());
                tokio::spawn(async move {
                    let msg = ToNode::HandoffDone {
                        from: NodeId::parse("node-a").expect("id"),
                        epoch: crate::ids::Epoch(i),
                    };
                    peers.tell(&to, &addr, &msg).await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("told");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_holds_up_no_other() {
        // Accepts connections and never answers the WebSocket handshake.
        let hung = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hung_addr = hung.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = hung.accept().await {
                held.push(stream);
            }
        });
        let (good_addr, accepted) = peer().await;
        let peers = Arc::new(Peers::new(NodeId::parse("node-a").expect("id"), "s".into()));
        let msg = || ToNode::HandoffDone {
            from: NodeId::parse("node-a").expect("id"),
            epoch: crate::ids::Epoch(1),
        };
        let stuck = {
            let (peers, msg) = (peers.clone(), msg());
            let to = NodeId::parse("node-hung").expect("id");
            tokio::spawn(async move { peers.tell(&to, &hung_addr, &msg).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let to = NodeId::parse("node-b").expect("id");
        tokio::time::timeout(Duration::from_secs(1), peers.tell(&to, &good_addr, &msg()))
            .await
            .expect("the good peer waited on the hung one")
            .expect("told");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert!(!stuck.is_finished());
        stuck.abort();
    }
}
