//! Room storage in Redis: each room's kept log is a stream
//! `PREFIX:room:ROOM:log` (trimmed to about what history keeps) and its latest
//! snapshot a string `PREFIX:room:ROOM:snap`. One writer task per node commits
//! the appends of all rooms together: it takes whatever is queued, writes it
//! in one MULTI/EXEC pipeline, and answers every room at once (group commit).
//!
//! Task tree: `RedisStore::connect` spawns the writer; it ends when every
//! journal sender (the store and its rooms) is gone.

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::coordinator::redis::manager_config;
use crate::ids::RoomId;
use crate::rooms::store::{Append, Entry, Loaded, RoomStore, Snapshot, StoreError};

/// Appends committed in one pipeline at most.
const GROUP: usize = 1024;

/// Redis-backed room storage.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// Unbounded, but a room has at most one append queued or in flight, so
    /// it holds at most one per room.
    journal: mpsc::UnboundedSender<Append>,
}

fn failed(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

impl RedisStore {
    /// Connects and starts the group-commit writer; `keep` bounds each log.
    pub async fn connect(url: &str, prefix: &str, keep: usize) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(url).map_err(failed)?;
        let conn = client
            .get_connection_manager_with_config(manager_config())
            .await
            .map_err(failed)?;
        let (journal, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            conn: conn.clone(),
            prefix: prefix.to_string(),
            keep,
            rx,
        };
        tokio::spawn(writer.run());
        Ok(Arc::new(Self {
            conn,
            prefix: prefix.to_string(),
            journal,
        }))
    }
}

fn log_key(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}:log")
}

fn snap_key(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}:snap")
}

#[async_trait::async_trait]
impl RoomStore for RedisStore {
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError> {
        type StreamEntries = Vec<(String, HashMap<String, Vec<u8>>)>;
        // The epoch is set once, by whoever loads the room first; a history
        // lost with Redis's data gets a new one.
        let epoch_key = format!("{}:room:{room}:epoch", self.prefix);
        let (log, snap, epoch): (StreamEntries, Option<String>, String) = redis::pipe()
            .cmd("XRANGE")
            .arg(log_key(&self.prefix, room))
            .arg("-")
            .arg("+")
            .cmd("GET")
            .arg(snap_key(&self.prefix, room))
            .cmd("SET")
            .arg(&epoch_key)
            .arg(&*crate::rooms::state::new_epoch())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&epoch_key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        let entries = log
            .into_iter()
            .filter_map(|(_, mut f)| {
                let text = |v: Vec<u8>| String::from_utf8(v).ok();
                Some(Entry {
                    seq: std::str::from_utf8(f.get("s")?).ok()?.parse().ok()?,
                    frame: f.remove("f")?.into(),
                    author: f.remove("u").and_then(text),
                    cid: f.remove("c").and_then(text),
                })
            })
            .collect();
        let snapshot = match snap {
            Some(s) => {
                Some(serde_json::from_str::<Snapshot>(&s).map_err(|e| StoreError(e.to_string()))?)
            }
            None => None,
        };
        Ok(Loaded {
            entries,
            snapshot,
            epoch: Some(epoch),
        })
    }

    fn append(&self, append: Append) {
        if let Err(mpsc::error::SendError(append)) = self.journal.send(append) {
            (append.done)(Err(StoreError("the journal writer is gone".into())));
        }
    }
}

/// The group-commit writer.
struct Writer {
    conn: ConnectionManager,
    prefix: String,
    keep: usize,
    rx: mpsc::UnboundedReceiver<Append>,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(GROUP);
        while self.rx.recv_many(&mut batch, GROUP).await > 0 {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for append in &batch {
                let log = log_key(&self.prefix, &append.room);
                for e in &append.entries {
                    let cmd = pipe
                        .cmd("XADD")
                        .arg(&log)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.keep)
                        .arg("*");
                    cmd.arg("s").arg(e.seq).arg("f").arg(&e.frame[..]);
                    if let Some(u) = &e.author {
                        cmd.arg("u").arg(u);
                    }
                    if let Some(c) = &e.cid {
                        cmd.arg("c").arg(c);
                    }
                    cmd.ignore();
                }
                if let Some(snapshot) = &append.snapshot {
                    let json = serde_json::to_string(snapshot).unwrap_or_default();
                    pipe.cmd("SET")
                        .arg(snap_key(&self.prefix, &append.room))
                        .arg(json)
                        .ignore();
                }
            }
            let result: Result<(), StoreError> =
                pipe.query_async(&mut self.conn).await.map_err(failed);
            crate::telemetry::metrics().storage_commits.increment(1);
            if let Err(e) = &result {
                tracing::warn!(error = %e, rooms = batch.len(), "group commit failed");
            }
            for append in batch.drain(..) {
                (append.done)(result.clone());
            }
        }
    }
}
