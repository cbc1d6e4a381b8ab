//! `DELETE /api/rooms/{room}` at the room's owner: the room's memory, its
//! Redis keys and its archived events go, and the room starts a new, empty
//! history (its readers get `joined` of it).

use std::sync::Arc;

use crate::ids::{Rid, RoomId};
use crate::protocol::Status;
use crate::rooms::store::{RoomStore, StoreError};
use crate::rooms::{Reply, Room, Sink};

/// Erases `live` and answers `rid` on `sink` once storage and the archive
/// are done (or why not).
pub(super) fn erase(
    live: Arc<Room>,
    store: Option<Arc<dyn RoomStore>>,
    sink: Arc<dyn Sink>,
    rid: Rid,
) {
    tokio::spawn(async move {
        let room: RoomId = live.id().clone();
        let stored = |epoch: Arc<str>| async move {
            let Some(store) = store else { return Ok(()) };
            store.erase(&room, &epoch).await?;
            match store.archiver() {
                Some(archiver) => archiver
                    .delete(room.as_str())
                    .await
                    .map_err(|e| StoreError(e.to_string())),
                None => Ok(()),
            }
        };
        match live.erase(stored).await {
            Ok(()) => sink.reply(rid, Reply::ok(b"{}")),
            Err(failure) => sink.reply(rid, Reply::failed(&Status::Failed(failure))),
        }
    });
}
