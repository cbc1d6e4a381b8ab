//! Links from this node to other nodes, for hand-offs: one link per peer
//! (the client half of `link`), opened on first use, requests matched to
//! replies by id.
//!
//! Task tree: each open link has its writer task and a reader task; both
//! end when the connection drops (the next request opens a new link).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::coordinator::Role;
use crate::ids::{NodeId, Rid};
use crate::link::calls::{Calls, Ids};
use crate::link::codec::{self, CodecError};
use crate::link::{self, FromNode, LinkWriter, Secret};
use crate::protocol::Status;

/// How long a hand-off may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight on a link; each waits for its own answer, at most
/// `REQUEST_TIMEOUT`, so none has a deadline in the table.
type Pending = Arc<Mutex<Calls<oneshot::Sender<Status>>>>;

struct PeerLink {
    addr: String,
    writer: LinkWriter,
    pending: Pending,
    ids: Ids,
    alive: Arc<AtomicBool>,
}

impl PeerLink {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls<oneshot::Sender<Status>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    secret: Secret,
    /// Held for look-ups and inserts only. The many hand-offs of a round
    /// that start together share one attempt per peer instead of each
    /// opening a connection (dozens at once can overflow the peer's accept
    /// backlog and wait on SYN retries); an unreachable peer holds up only
    /// the requests for it.
    links: Mutex<HashMap<NodeId, Slot>>,
}

impl Peers {
    pub(super) fn new(me: NodeId, secret: Secret) -> Self {
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
                    let attempt = connect(
                        self.me.clone(),
                        to.clone(),
                        self.secret.clone(),
                        addr.to_string(),
                    )
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

    /// Sends a request whose records `write` encodes around a fresh request
    /// id, and waits for its status.
    pub(super) async fn request(
        &self,
        to: &NodeId,
        addr: &str,
        write: impl FnOnce(Rid, &mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<Status, PeerError> {
        let link = self.link(to, addr).await.map_err(PeerError::Unreachable)?;
        let (tx, rx) = oneshot::channel();
        let rid = link.ids.next();
        link.calls().insert(rid, to.clone(), u64::MAX, tx);
        if let Err(e) = link.writer.send_with(|buf| write(rid, buf)) {
            link.calls().take(rid);
            return Err(PeerError::Unreachable(e.to_string()));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(PeerError::NoAnswer("peer link closed")),
            Err(_) => {
                link.calls().take(rid);
                Err(PeerError::NoAnswer("peer did not answer in time"))
            }
        }
    }

    /// Sends a record that has no reply.
    pub(super) async fn tell<T: Serialize>(
        &self,
        to: &NodeId,
        addr: &str,
        record: &T,
    ) -> Result<(), String> {
        let link = self.link(to, addr).await?;
        link.writer
            .send_with(|buf| codec::encode_into(buf, record))
            .map_err(|e| e.to_string())
    }
}

/// Opens a link to the node `to` at `addr` and starts its reader.
async fn connect(
    me: NodeId,
    to: NodeId,
    secret: Secret,
    addr: String,
) -> Result<Arc<PeerLink>, String> {
    let link = link::client::connect(&addr, Role::Node, &me, &secret)
        .await
        .map_err(|e| e.to_string())?;
    if link.peer.id != to {
        link.writer.close();
        return Err(format!("{addr} is {}, not {to}", link.peer.id));
    }
    let pending: Pending = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let (reader_pending, reader_alive, writer) =
        (pending.clone(), alive.clone(), link.writer.clone());
    let reader_to = to.clone();
    let mut reader = link.reader;
    tokio::spawn(async move {
        let on_record = |record: bytes::Bytes| {
            if let Ok(FromNode::Reply { rid, status, .. }) = codec::decode::<FromNode<'_>>(&record)
            {
                let call = reader_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(rid);
                if let Some(call) = call {
                    let _ = call.call.send(status);
                }
            }
        };
        let mut on_record = on_record;
        while reader.read_batch(&mut on_record).await.is_ok() {}
        reader_alive.store(false, Ordering::Release);
        writer.close();
        // Requesters waiting on this link learn that it is gone.
        reader_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sent_to(&reader_to);
    });
    Ok(Arc::new(PeerLink {
        addr,
        writer: link.writer,
        pending,
        ids: Ids::default(),
        alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::ToNode;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    const SECRET: &str = "s";

    /// A peer `node-b` that counts the links opened to it and reads what comes.
    async fn peer() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let me = NodeId::parse("node-b").expect("id");
                    let link =
                        link::server::accept(stream, &me, &Secret::new(SECRET), Default::default())
                            .await
                            .expect("link");
                    let mut reader = link.reader;
                    while reader.read_batch(|_| {}).await.is_ok() {}
                });
            }
        });
        (addr, accepted)
    }

    fn done(epoch: u64) -> ToNode<'static> {
        ToNode::HandoffDone { epoch }
    }

    fn peers() -> Arc<Peers> {
        Arc::new(Peers::new(
            NodeId::parse("node-a").expect("id"),
            Secret::new(SECRET),
        ))
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_link() {
        let (addr, accepted) = peer().await;
        let peers = peers();
        let to = NodeId::parse("node-b").expect("id");
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (peers, to, addr) = (peers.clone(), to.clone(), addr.clone());
                tokio::spawn(async move { peers.tell(&to, &addr, &done(i)).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("told");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_holds_up_no_other() {
        // Accepts connections and never answers the handshake.
        let hung = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hung_addr = hung.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = hung.accept().await {
                held.push(stream);
            }
        });
        let (good_addr, accepted) = peer().await;
        let peers = peers();
        let stuck = {
            let peers = peers.clone();
            let to = NodeId::parse("node-hung").expect("id");
            tokio::spawn(async move { peers.tell(&to, &hung_addr, &done(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let to = NodeId::parse("node-b").expect("id");
        tokio::time::timeout(
            Duration::from_secs(1),
            peers.tell(&to, &good_addr, &done(1)),
        )
        .await
        .expect("the good peer waited on the hung one")
        .expect("told");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert!(!stuck.is_finished());
        stuck.abort();
    }

    #[tokio::test]
    async fn a_peer_at_the_wrong_address_is_refused() {
        let (addr, _) = peer().await;
        let peers = peers();
        let to = NodeId::parse("node-c").expect("id");
        let err = peers
            .tell(&to, &addr, &done(1))
            .await
            .expect_err("node-b is not node-c");
        assert!(err.contains("not node-c"), "{err}");
    }
}
