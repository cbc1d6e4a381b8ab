//! Links into a node, from gateways (room operations) and from other nodes
//! (hand-offs): the accept loop and one task per link that reads requests
//! and routes them to room tasks; a writer task beside it drains the link's
//! queue, flushing once per wake-up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

use super::{Node, Peer, LINK_QUEUE};
use crate::ids::{NodeId, RoomId, UserId};
use crate::protocol::link::{self, ConnId, LinkMsg, Loaded, Rid, Status, ToGateway, ToNode};
use crate::protocol::server::ServerFrame;
use crate::protocol::{ErrorCode, Failure};
use crate::rooms::state::{Origin, Sub};
use crate::rooms::{Arrival, LinkTx, RoomCmd};
use crate::shutdown::Shutdown;

/// Link ids are unique per process, so rooms never confuse two links.
static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Accepts links until shutdown.
pub(super) struct Listener {
    pub(super) node: Arc<Node>,
    pub(super) listener: TcpListener,
    pub(super) shutdown: Shutdown,
}

impl Listener {
    pub(super) async fn run(mut self) {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = self.shutdown.wait() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let span = tracing::debug_span!("link", client.addr = %peer);
                    tokio::spawn(
                        serve(self.node.clone(), stream, peer, self.shutdown.clone())
                            .instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Who is at the other end of a link, from its upgrade headers.
#[derive(Default)]
struct Hello {
    peer: Option<NodeId>,
    gateway: bool,
}

/// Serves one link until it closes or the node shuts down.
// tungstenite's handshake callback fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn serve(node: Arc<Node>, stream: TcpStream, addr: SocketAddr, mut shutdown: Shutdown) {
    let secret = node.config.cluster_secret.clone();
    let hello = Arc::new(Mutex::new(Hello::default()));
    let seen = hello.clone();
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        if req.uri().path() != link::LINK_PATH
            || header(link::SECRET_HEADER) != Some(secret.as_str())
        {
            let mut refused = ErrorResponse::new(Some("bad cluster secret".into()));
            *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
            return Err(refused);
        }
        let mut hello = seen.lock().unwrap_or_else(|e| e.into_inner());
        hello.peer = header(link::PEER_HEADER).and_then(|p| NodeId::parse(p).ok());
        hello.gateway = header(link::ROLE_HEADER) != Some("node");
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, check).await {
        Ok(ws) => ws,
        Err(e) => return tracing::warn!(client.addr = %addr, error = %e, "link refused"),
    };
    let Hello { peer, gateway } =
        std::mem::take(&mut *hello.lock().unwrap_or_else(|e| e.into_inner()));
    let (mut sink, mut stream) = ws.split();
    let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let (link, mut rx, overflow) = LinkTx::new(id, LINK_QUEUE);
    node.lock_links().insert(
        id,
        Peer {
            id: peer,
            gateway,
            tx: link.clone(),
        },
    );
    tracing::debug!(link.id = id, gateway, "link up");

    let writer = tokio::spawn(async move {
        let mut batch: Vec<LinkMsg> = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 { break }
                    for msg in batch.drain(..) {
                        if sink.feed(Message::Text(msg)).await.is_err() { return }
                    }
                    if sink.flush().await.is_err() { return }
                }
                _ = overflow.notified() => {
                    tracing::warn!("link too slow; closing it");
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });

    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = shutdown.wait() => break,
        };
        match msg {
            Some(Ok(Message::Text(text))) => handle(&node, &link, &text).await,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    writer.abort();
    node.lock_links().remove(&id);
    node.registry.broadcast(|| RoomCmd::LinkClosed(id)).await;
    tracing::debug!(link.id = id, "link down");
}

/// Routes one request.
async fn handle(node: &Node, link: &LinkTx, text: &str) {
    let request = match link::decode::<ToNode>(text) {
        Ok((request, _)) => request,
        Err(e) => return tracing::warn!(error = %e, "dropping a bad link message"),
    };
    let view = node.ring.borrow().clone();
    let (rid, room, cmd) = match request {
        ToNode::Op {
            rid,
            room,
            conn,
            user,
            id,
            op,
        } => {
            let origin = Origin {
                sub: Sub {
                    link: link.id,
                    conn,
                },
                user,
            };
            (
                rid,
                room,
                RoomCmd::Op {
                    link: link.clone(),
                    rid,
                    origin,
                    id,
                    op,
                },
            )
        }
        ToNode::Query { rid, room, query } => (
            rid,
            room,
            RoomCmd::Query {
                link: link.clone(),
                rid,
                query,
            },
        ),
        ToNode::Notify { user, body } => return notify(node, user, &body),
        ToNode::Handoff {
            rid,
            room,
            state,
            conns,
            ..
        } => return arrive(node, link, rid, room, state, conns),
        ToNode::HandoffDone { from, epoch } => {
            tracing::debug!(node.id = %from, %epoch, "hand-off done");
            return node.registry.done_from(&from, epoch);
        }
    };
    match node.registry.route(&room, &view.ring, view.ring_epoch) {
        Some(handle) => {
            if handle.send(cmd).await.is_err() {
                link.reply(rid, Status::Moved, None, None);
            }
        }
        None => link.reply(rid, Status::Moved, None, None),
    }
}

/// Relays a notification to every gateway linked to this node.
fn notify(node: &Node, user: UserId, body: &serde_json::value::RawValue) {
    let frame = ServerFrame::Notify { body }.encode();
    let msg: LinkMsg = link::encode(&ToGateway::Notify { user }, Some(&frame)).into();
    let targets: Vec<LinkTx> = node
        .lock_links()
        .values()
        .filter(|p| p.gateway)
        .map(|p| p.tx.clone())
        .collect();
    for target in targets {
        target.send(msg.clone());
    }
}

/// Installs a room handed off by another node. Connections are re-keyed on
/// this node's links from their gateways; those whose gateway is not linked
/// here yet are left for the gateway's re-subscription.
fn arrive(
    node: &Node,
    link: &LinkTx,
    rid: Rid,
    room: RoomId,
    state: Option<Loaded>,
    conns: Vec<(NodeId, ConnId, UserId)>,
) {
    let gateways: Vec<(NodeId, LinkTx)> = node
        .lock_links()
        .values()
        .filter(|p| p.gateway)
        .filter_map(|p| Some((p.id.clone()?, p.tx.clone())))
        .collect();
    let link_of = |gw: &NodeId| {
        gateways
            .iter()
            .find(|(id, _)| id == gw)
            .map(|(_, tx)| tx.clone())
    };
    let conns: Vec<(Sub, UserId)> = conns
        .into_iter()
        .filter_map(|(gw, conn, user)| {
            Some((
                Sub {
                    link: link_of(&gw)?.id,
                    conn,
                },
                user,
            ))
        })
        .collect();
    let links = gateways.iter().map(|(_, tx)| tx.clone()).collect();
    let arrival = Arrival {
        state,
        conns,
        links,
    };
    if node.ring.borrow().ring.owner(&room) != Some(&node.config.id) {
        // Our ring does not (yet, or any more) give us the room: the sender
        // asks its ring again and retries.
        return link.reply(rid, Status::Moved, None, None);
    }
    if node.registry.install(&room, arrival) {
        tracing::debug!(room.id = %room, "room arrived");
        link.reply(rid, Status::Ok, None, None);
    } else {
        let failure = Failure::new(
            ErrorCode::Conflict,
            format!("{room} is already served here"),
        );
        link.reply(rid, Status::Failed(failure), None, None);
    }
}
