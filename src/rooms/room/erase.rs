//! Erasing a room's history (`DELETE /api/rooms/{room}`): its memory at
//! once, storage and the archive through the caller, and a new, empty
//! history under a new epoch that its readers are told of.

use super::*;

impl Room {
    /// Erases the room's history (its memory, then `erase_stored`: storage
    /// and archive) and starts a new, empty one under a new epoch; its
    /// readers get `joined` of it, marked truncated. Refused while the room
    /// moves, loads or waits for storage (the caller asks again).
    pub async fn erase<F>(
        self: &Arc<Self>,
        erase_stored: impl FnOnce(Arc<str>) -> F,
    ) -> Result<(), Failure>
    where
        F: std::future::Future<Output = Result<(), StoreError>>,
    {
        let epoch = crate::rooms::state::new_epoch();
        let fresh = || Loaded {
            entries: Vec::new(),
            snapshot: None,
            epoch: Some(epoch.to_string()),
        };
        let in_memory_only = {
            let mut inner = self.lock();
            let settled = inner.durable.as_ref().is_none_or(Durable::settled);
            if inner.frozen || inner.loading.is_some() || !settled {
                return Err(busy(&self.id));
            }
            if inner.durable.is_none() {
                inner.state.restore(fresh());
                for sink in inner.links.values() {
                    sink.rewound(&self.id);
                }
                true
            } else {
                // Operations wait until the erased history is in place.
                inner.loading = Some(VecDeque::new());
                false
            }
        };
        if in_memory_only {
            return erase_stored(epoch.clone())
                .await
                .map_err(|e| unavailable_because(&self.id, &e));
        }
        match erase_stored(epoch.clone()).await {
            Ok(()) => {
                self.loaded(Ok(fresh()));
                Ok(())
            }
            Err(e) => {
                self.loaded(Err(e.clone()));
                Err(unavailable_because(&self.id, &e))
            }
        }
    }
}

fn unavailable_because(room: &RoomId, e: &StoreError) -> Failure {
    Failure::new(ErrorCode::Unavailable, format!("{room}: {e}; retry"))
}
