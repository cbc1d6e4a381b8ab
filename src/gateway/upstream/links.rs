//! A link to a node: its task (connect with backoff, then read records
//! and fan them out to the local sockets, reporting the link up and down
//! to the supervisor), a node whose link dropped and refuses another
//! reported gone, and the answers to requests matched to what waits for
//! them.

use super::*;

impl Upstream {
    /// Connects to one node (with backoff) and serves the link until
    /// `stops` fires: its node left the view, or the gateway stops.
    pub(super) async fn keep_link(
        self: Arc<Self>,
        node: NodeId,
        addr: String,
        link: Arc<NodeLink>,
        report: Reporter,
        mut stops: Shutdown,
    ) {
        let mut backoff = Duration::from_millis(50);
        // Set when the link just dropped, with the node's generation as of
        // the link's start: the next connect, at once, decides whether that
        // process is gone.
        let mut dropped: Option<u64> = None;
        loop {
            let connected = match dropped.take() {
                Some(generation) => {
                    self.reconnect_or_suspect(&addr, &node, generation, &stops)
                        .await
                }
                None => link::client::connect(&addr, Role::Gateway, &self.me, &self.secret).await,
            };
            match connected {
                Ok(up) if up.peer.id == node => {
                    backoff = Duration::from_millis(50);
                    let generation = self.serve_link(&link, up, &report, &mut stops).await;
                    // A link this gateway ended itself (it stops, or the
                    // node left the view) is not tried again.
                    if generation.is_some() && !stops.is_fired() {
                        dropped = generation;
                        continue;
                    }
                }
                Ok(other) => {
                    tracing::warn!(addr = %addr, peer = %other.peer.id, "the node at this address is another member");
                    other.writer.close();
                }
                Err(e) => tracing::debug!(addr = %addr, error = %e, "link connect failed"),
            }
            if stops.is_fired() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stops.wait() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Serves a node's link that is up until it drops or `stops` fires,
    /// reporting it up and down to the supervisor; the node's generation as
    /// of the link's start.
    async fn serve_link(
        self: &Arc<Self>,
        link: &Arc<NodeLink>,
        up: link::Link,
        report: &Reporter,
        stops: &mut Shutdown,
    ) -> Option<u64> {
        let node = &up.peer.id;
        let generation = self.view().view.member(node).map(|m| m.generation);
        tracing::debug!(version = up.version, "link up");
        let _ = report.send(Report::Up {
            link: link.clone(),
            writer: up.writer.clone(),
            version: up.version,
        });
        tokio::select! {
            _ = self.read_link(node, up.reader) => {}
            _ = stops.wait() => {}
        }
        up.writer.close();
        tracing::debug!("link down");
        let _ = report.send(Report::Down {
            node: node.clone(),
            link: link.clone(),
        });
        generation
    }

    /// Right after a node's link dropped: a few quick tries at a new link.
    /// A refused connection says the process is gone (its port is closed;
    /// a dying process may still complete a handshake's first step, which
    /// then resets, so a reset is tried again); a slow or partitioned node
    /// is left to its lease.
    pub(super) async fn reconnect_or_suspect(
        &self,
        addr: &str,
        node: &NodeId,
        generation: u64,
        stops: &Shutdown,
    ) -> Result<link::Link, LinkError> {
        let mut last = Err(LinkError::Timeout);
        for _ in 0..SUSPECT_TRIES {
            let connect = link::client::connect(addr, Role::Gateway, &self.me, &self.secret);
            last = tokio::time::timeout(SUSPECT_WITHIN, connect)
                .await
                .unwrap_or(Err(LinkError::Timeout));
            match &last {
                Ok(_) => return last,
                Err(LinkError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    if !stops.is_fired() {
                        self.suspect(node, generation).await;
                    }
                    return last;
                }
                Err(LinkError::Io(_) | LinkError::Closed) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => return last,
            }
        }
        last
    }

    /// The node's link dropped and its port refuses a new one: the process
    /// of that generation is gone. Its lease is revoked at once, so
    /// that its rooms move now rather than when the lease would lapse; its
    /// appends are fenced if it was merely cut off.
    ///
    /// A node that drained (or already left) stopped as planned: that is not
    /// worth a warning, though its lease goes the same way.
    pub(super) async fn suspect(&self, node: &NodeId, generation: u64) {
        let planned = self
            .view()
            .view
            .member(node)
            .is_none_or(|m| m.generation != generation || m.state == MemberState::Draining);
        if planned {
            tracing::debug!(node.id = %node, generation, "a drained or departed node stopped: revoking its lease");
        } else {
            tracing::warn!(node.id = %node, generation, "link lost and the node refuses another: revoking its lease");
        }
        if let Err(e) = self.coordinator.revoke(node, generation).await {
            tracing::warn!(node.id = %node, error = %e, "revoking failed; the lease lapses instead");
        }
    }

    /// Reads the node's records until the link fails; what a batch queued
    /// on client sockets is flushed once, after the batch.
    pub(super) async fn read_link(self: &Arc<Self>, node: &NodeId, mut reader: LinkReader) {
        let mut dirty = Dirty::default();
        loop {
            let read = reader
                .read_batch(|record| self.on_record(node, &record, &mut dirty))
                .await;
            dirty.flush();
            if let Err(e) = read {
                tracing::debug!(error = %e, "link read ended");
                return;
            }
        }
    }

    /// Handles one record from a node.
    pub(super) fn on_record(self: &Arc<Self>, node: &NodeId, record: &Bytes, dirty: &mut Dirty) {
        let record: FromNode<'_> = match codec::decode(record) {
            Ok(record) => record,
            Err(e) => return tracing::warn!(error = %e, "dropping a bad link record"),
        };
        match record {
            FromNode::Event {
                room,
                seq,
                skip,
                payload,
            } => self.subs.dispatch(room, seq, skip, payload, dirty),
            FromNode::Notify { user, payload } => {
                let sent = self
                    .sessions
                    .send_to_user(user, &websocket::text(payload), dirty);
                dirty.delivered(sent as u64);
            }
            FromNode::Broadcast { payload } => {
                let sent = self.sessions.send_to_all(&websocket::text(payload), dirty);
                dirty.delivered(sent as u64);
            }
            FromNode::Part { rid, seq, payload } => self.lock_pending().part(rid, seq, payload),
            FromNode::Rewound { room } => {
                // Resumed at once: the owner answers with the room's
                // `joined` of its new history, marked truncated.
                if let Ok(room) = RoomId::parse(room) {
                    if self.subs.hold(room.as_str()) {
                        self.resume_room(room, 0);
                    }
                }
            }
            FromNode::Reply {
                rid,
                status,
                seq,
                payload,
            } => {
                // Taken out first: answering may send (and lock) again.
                let call = self.lock_pending().take(rid);
                if let Some(call) = call {
                    self.on_reply(node, rid, call, (status, seq, payload), dirty)
                }
            }
        }
    }

    /// Handles the answer to a request.
    pub(super) fn on_reply(
        self: &Arc<Self>,
        node: &NodeId,
        rid: Rid,
        call: Call<Pending>,
        (status, seq, payload): (Status, Option<u64>, &[u8]),
        dirty: &mut Dirty,
    ) {
        let mut parts = call.parts;
        match call.call {
            Pending::Query(tx) => {
                let _ = tx.send((status, parts.into_frame(payload)));
            }
            Pending::Op(op) => {
                let reply = (status, seq, payload);
                self.on_op_reply(node, rid, (op, parts), reply, dirty)
            }
            Pending::Resume(resume) => match status {
                Status::Ok => {
                    let room = resume.room.as_str();
                    let frame = parts.into_frame(payload);
                    let joined = match (seq, frame.is_empty()) {
                        (Some(seq), false) => Some((seq, joined_epoch(&frame), frame)),
                        _ => None,
                    };
                    self.subs.resumed(room, node, &parts.events, joined, dirty);
                }
                Status::Moved | Status::Failed(_) => {
                    self.retry_resume(resume.room, resume.attempt + 1)
                }
            },
        }
    }

    /// Handles the answer to a client operation: routed again, answered,
    /// or (a resume) the connection's missed events or a new `joined`.
    pub(super) fn on_op_reply(
        self: &Arc<Self>,
        owner: &NodeId,
        rid: Rid,
        (mut op, mut parts): (OpPending, Parts),
        (status, seq, payload): (Status, Option<u64>, &[u8]),
        dirty: &mut Dirty,
    ) {
        match (status, op.kind) {
            (Status::Moved, _) => self.retry(rid, op),
            (Status::Failed(_), OpKind::Resume) => {
                op.attempt += 1;
                self.retry(rid, op)
            }
            (Status::Ok, OpKind::Resume) => {
                let room = record_room(&op.record);
                let joined = parts.whole(payload);
                match seq.filter(|_| !joined.is_empty()) {
                    // Past the replay budget, or another history: this
                    // connection gets the room's `joined` in their place.
                    Some(seq) => {
                        let at = (seq, joined_epoch(joined));
                        let frame = websocket::text(joined);
                        self.subs
                            .resynced(room.as_str(), owner, op.conn, at, frame, dirty);
                    }
                    None => self
                        .subs
                        .resumed(room.as_str(), owner, &parts.events, None, dirty),
                }
            }
            (Status::Failed(f), _) => self.failed(&op, &f, Some(dirty)),
            (Status::Ok, _) if !op.joiners.is_empty() => {
                self.joins_answered(owner, (op, parts), seq, payload, dirty)
            }
            (Status::Ok, kind) => {
                let frame = parts.whole(payload);
                if !frame.is_empty() {
                    dirty.push(&op.out, websocket::text(frame));
                }
                if let (OpKind::Join, Some(seq)) = (kind, seq) {
                    // After the `joined` frame is queued, so that the
                    // connection sees exactly the events after its seq.
                    if let Ok(room) = RoomId::parse(record_room(&op.record).as_str()) {
                        let epoch = || joined_epoch(frame);
                        self.subs
                            .subscribe(&room, op.conn, &op.out, seq, owner, epoch);
                    }
                }
                if kind == OpKind::Join {
                    self.join_ended(&record_room(&op.record));
                }
            }
        }
    }
}

/// The `epoch` a `joined` frame names (its other fields skipped unread).
fn joined_epoch(frame: &[u8]) -> Option<Arc<str>> {
    #[derive(serde::Deserialize)]
    struct Joined<'a> {
        #[serde(borrow)]
        epoch: Option<&'a str>,
    }
    let joined: Joined<'_> = serde_json::from_slice(frame).ok()?;
    joined.epoch.map(Arc::from)
}
