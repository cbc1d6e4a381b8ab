//! A room frozen for a hand-off (and thawed if the hand-off fails), and
//! released when no one has used it for a while.

use super::*;

impl Room {
    /// Stops applying operations (they are answered `Moved`); once nothing
    /// waits for storage, the receiver gets the room's state to move, or
    /// `None` when storage failed (the next owner then loads it).
    pub fn freeze(&self) -> oneshot::Receiver<Option<Frozen>> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.frozen = true;
        inner.freezing.push(tx);
        inner.export_if_settled();
        rx
    }

    /// Serves again (the hand-off did not happen).
    pub fn thaw(&self) {
        self.lock().frozen = false;
    }

    /// Serves again if it is frozen and the node has not let it go; whether
    /// it was frozen. With a store it serves what storage holds: the node
    /// it was handed to may have taken it and written to it, so it reloads
    /// rather than go on from what it held.
    pub fn thaw_if_frozen(&self) -> bool {
        if self.is_retired() {
            return false;
        }
        let mut inner = self.lock();
        let was = std::mem::replace(&mut inner.frozen, false);
        if was {
            // A freeze still waiting on storage never went out: nothing of
            // it can be elsewhere, and its append settles as usual.
            if let Some(d) = inner.durable.as_mut().filter(|d| d.settled()) {
                d.reload();
            }
        }
        was
    }

    /// Whether the room never stored an event (its seq is 0).
    pub fn stored_nothing(&self) -> bool {
        self.lock().state.seq() == 0
    }

    /// Whether the room is frozen (for a move, or left so by one that got
    /// no answer).
    pub fn is_frozen(&self) -> bool {
        self.lock().frozen
    }

    /// Lets the room go from memory if it is idle and nothing would be lost:
    /// with a store, its history is there; without one, only a room that
    /// never stored an event goes. From then on it answers `Moved`, so an
    /// operation already routed to it is retried on a fresh room.
    pub fn release_if_idle(&self) -> bool {
        let mut inner = self.lock();
        let idle = inner.state.is_idle()
            && inner.loading.is_none()
            && inner.freezing.is_empty()
            && !inner.frozen;
        let nothing_lost = match &inner.durable {
            Some(d) => d.settled(),
            None => inner.state.seq() == 0,
        };
        if !(idle && nothing_lost) {
            return false;
        }
        inner.frozen = true;
        self.retire();
        true
    }

    /// Whether no connection is subscribed and nothing is under way, so that
    /// the room may be released from memory.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.state.is_idle()
            && inner.loading.is_none()
            && inner.freezing.is_empty()
            && inner.durable.as_ref().is_none_or(Durable::settled)
    }
}
