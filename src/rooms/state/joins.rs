//! Joining and resuming: the `joined` frame (alone, or what a gateway's
//! gathered joiners share), and the kept events a resume or a `since`
//! replays within the replay budget.

use super::*;

impl RoomState {
    /// A resuming subscription: the kept events after `since`, with seqs.
    pub(super) fn resume(&mut self, origin: &Origin, since: u64, now: u64) -> Outcome {
        let conns = [(origin.sub, origin.user.clone())];
        self.resubscribe(conns, (since, None), now, Outcome::default())
    }

    /// Subscribes again every connection of one gateway link (after their
    /// room moved or their link dropped), all at once: the kept events after
    /// `since` (in the history `epoch` names, when known), with seqs, come
    /// once for all of them. Past the replay budget, or when the room's
    /// history is another (lost or rewound: another epoch, or `since` past
    /// its seq), a `joined` marked truncated (the reply) comes in their
    /// place. Connections of the link that came with the room and are not
    /// among `conns` closed while it moved: they leave.
    pub fn resume_all(
        &mut self,
        link: LinkId,
        conns: impl IntoIterator<Item = (Sub, UserId)>,
        from: (u64, Option<&str>),
        now: u64,
    ) -> Outcome {
        let conns: Vec<(Sub, UserId)> = conns.into_iter().collect();
        let listed: std::collections::HashSet<Sub> = conns.iter().map(|(s, _)| *s).collect();
        let gone: Vec<Sub> = self
            .adopted
            .iter()
            .filter(|s| s.link == link && !listed.contains(s))
            .copied()
            .collect();
        let mut out = Outcome::default();
        self.leave_each(gone, now, &mut out);
        self.resubscribe(conns, from, now, out)
    }

    /// Subscribes connections again from `since` (see `resume_all`), adding
    /// to `out`.
    pub(super) fn resubscribe(
        &mut self,
        conns: impl IntoIterator<Item = (Sub, UserId)>,
        (since, epoch): (u64, Option<&str>),
        now: u64,
        mut out: Outcome,
    ) -> Outcome {
        for (sub, user) in conns {
            self.subscribe(&Origin { sub, user }, now, &mut out);
        }
        let other_history = since > self.seq || epoch.is_some_and(|e| e != &*self.epoch);
        let (replay, cut) = self.replay(if other_history { 0 } else { since });
        if cut || other_history {
            // More were missed than a replay holds, or the history the
            // readers knew is gone: they get a `joined` with the latest,
            // marked truncated, in place of a gap or of silence.
            let history: Vec<&[u8]> = replay.iter().map(|e| &e.frame[..]).collect();
            out.reply = Some(self.joined_frame(None, None, &history, true).into());
            out.missed = Some(Vec::new());
        } else {
            let missed = replay.iter().map(|e| (e.seq, e.frame.clone())).collect();
            out.missed = Some(missed);
        }
        out.seq = Some(self.seq);
        out
    }

    /// The kept events after `since` that the replay budget holds (the
    /// latest), and whether any after `since` are missing from them.
    pub(super) fn replay(&self, since: u64) -> (Vec<&Kept>, bool) {
        let mut bytes = 0;
        let mut events: Vec<&Kept> = self
            .log
            .iter()
            .rev()
            .take_while(|e| e.seq > since)
            .take(REPLAY_EVENTS)
            .take_while(|e| {
                bytes += e.frame.len();
                bytes <= REPLAY_BYTES
            })
            .collect();
        events.reverse();
        let first = events.first().map_or(self.seq + 1, |e| e.seq);
        (events, since.saturating_add(1) < first)
    }

    pub(super) fn join(
        &mut self,
        origin: &Origin,
        id: Option<&str>,
        since: Option<u64>,
        epoch: Option<&str>,
        now: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        self.subscribe(origin, now, &mut out);
        // A `since` from another history means nothing here: the client
        // gets all that is kept, marked truncated, and reloads.
        let other_history = epoch.is_some_and(|e| e != &*self.epoch);
        let since = if other_history { Some(0) } else { since };
        let mut cut = false;
        let history: Vec<&[u8]> = match since {
            // The kept events after `since`, board changes included, up to
            // the replay budget, so that a resuming client misses nothing
            // or knows it did.
            Some(since) => {
                let (replay, missing) = self.replay(since);
                cut = missing;
                replay.iter().map(|e| &e.frame[..]).collect()
            }
            // The latest messages; a board's state is its `widgets`.
            None => {
                let mut last: Vec<&[u8]> = self
                    .log
                    .iter()
                    .filter(|e| e.msg.is_some())
                    .rev()
                    .take(JOIN_HISTORY)
                    .map(|e| &e.frame[..])
                    .collect();
                last.reverse();
                last
            }
        };
        let truncated = other_history || cut;
        out.reply = Some(
            self.joined_frame(id, Some(&origin.user), &history, truncated)
                .into(),
        );
        out.seq = Some(self.seq);
        out
    }

    /// The `joined` frame, for `joiner` (named first) or, unasked, for
    /// every live reader of a resumed room; kept frames are spliced in as
    /// they are.
    pub(super) fn joined_frame(
        &self,
        id: Option<&str>,
        joiner: Option<&UserId>,
        history: &[&[u8]],
        truncated: bool,
    ) -> Vec<u8> {
        let size: usize = history.iter().map(|f| f.len() + 1).sum();
        let mut out = Vec::with_capacity(128 + size);
        out.extend_from_slice(br#"{"t":"joined""#);
        if let Some(id) = id {
            out.extend_from_slice(br#","id":"#);
            let _ = serde_json::to_writer(&mut out, id);
        }
        out.extend_from_slice(br#","room":""#);
        out.extend_from_slice(self.room.as_str().as_bytes());
        out.extend_from_slice(br#"","seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.seq).as_bytes());
        out.extend_from_slice(br#","history":["#);
        super::history::splice(&mut out, history);
        out.extend_from_slice(b"],");
        let tail = self.joined_tail(joiner, truncated);
        // The tail is an object; its fields continue ours.
        out.extend_from_slice(tail.get(1..).unwrap_or_default());
        out
    }

    /// The fields of a `joined` after its history, as an object: the
    /// epoch, presence (`joiner` named first), whether history is missing,
    /// read receipts and, for boards, widgets and roles.
    pub(super) fn joined_tail(&self, joiner: Option<&UserId>, truncated: bool) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Tail<'a> {
            epoch: &'a str,
            online: Vec<&'a str>,
            online_count: usize,
            truncated: bool,
            /// Latest read receipt per user (an addition to v1).
            reads: BTreeMap<&'a str, u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            widgets: Option<Vec<&'a crate::protocol::server::VersionedWidget>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            roles: Option<BTreeMap<&'a str, BoardRole>>,
        }
        let tail = Tail {
            epoch: &self.epoch,
            online: self.presence.shown(joiner, NAMES_SHOWN),
            online_count: self.presence.count(),
            truncated,
            reads: self.reads.iter().map(|(u, s)| (u.as_str(), *s)).collect(),
            widgets: self.board.as_ref().map(|b| b.widgets().collect()),
            roles: self.board.as_ref().map(Board::roles),
        };
        serde_json::to_vec(&tail).unwrap_or_default()
    }

    /// Subscribes a gateway's joiners of the room all at once and answers
    /// them once: the reply is what their `joined` frames share (the
    /// fields after `history`, no joiner named first, not truncated), and
    /// the kept events that any of them replays come once, with seqs, in
    /// `missed`; the gateway writes each joiner's frame from them as `join`
    /// would have.
    pub fn join_all<'a>(
        &mut self,
        joiners: impl IntoIterator<Item = Joiner<'a>>,
        now: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut from = self.seq;
        for joiner in joiners {
            self.subscribe(&joiner.origin, now, &mut out);
            let other_history = joiner.epoch.is_some_and(|e| e != &*self.epoch);
            let needs = match joiner.since {
                _ if other_history => 0,
                Some(since) => since,
                None => self.recent_from(),
            };
            from = from.min(needs);
        }
        let (replay, _) = self.replay(from);
        out.missed = Some(replay.iter().map(|e| (e.seq, e.frame.clone())).collect());
        out.reply = Some(self.joined_tail(None, false).into());
        out.seq = Some(self.seq);
        out
    }

    /// The seq after which a `join` without `since` finds its latest
    /// messages.
    pub(super) fn recent_from(&self) -> u64 {
        let mut msgs = self.log.iter().rev().filter(|e| e.msg.is_some());
        match msgs.nth(JOIN_HISTORY - 1) {
            Some(oldest) => oldest.seq - 1,
            None => 0,
        }
    }
}
