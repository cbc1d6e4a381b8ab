//! Room storage in Redis: each room's kept log is a stream
//! `PREFIX:room:ROOM:log` (trimmed to about what history keeps) and its latest
//! snapshot a string `PREFIX:room:ROOM:snap`. One writer task per node commits
//! the appends of all rooms together: it takes whatever is queued, writes it
//! in one pipeline, and answers every room at once (group commit).
//!
//! Appends are fenced. `PREFIX:room:ROOM:owner` names the room's writer of
//! record (member id, lease generation, and the membership epoch it claimed
//! at). Each room's append is one Lua script that refuses it unless the
//! writer's lease is alive (its member key holds its generation) and it is
//! the writer of record, or claims the room with a newer epoch than the
//! record's. A node paused or cut off past its lease, whose rooms a newer
//! view gave to another node, can then never append again: its rooms stop
//! at their next append and reload, and the reload's claim is refused too.
//!
//! Stored formats carry a version: a snapshot is JSON with `"v"` (a
//! snapshot without one was written by a release before versions, and is
//! version 1); a log entry may carry a field `v`, and one without is
//! version 1. A release reads every version up to its own and refuses a
//! room stored in a newer one (it says so and serves nothing of that room)
//! rather than misread it; a reader of an older release ignores `"v"`.
//!
//! Here: keys, loads, claims and forgetting; the group-commit writer and
//! its append script are `commit`'s.
//!
//! Task tree: `RedisStore::connect` spawns the writer; it ends when every
//! journal sender (the store and its rooms) is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::archive::archiver::Archiver;
use crate::coordinator::endpoint::{Conn, Endpoint};
use crate::ids::RoomId;
use crate::rooms::store::{
    Append, Entry, Loaded, RoomStore, Snapshot, StoreError, Writer as FenceWriter,
};

/// The fence both scripts start with: KEYS[1] is the room's owner record,
/// KEYS[2] the writer's member key; ARGV[1..3] the writer's id, generation
/// and epoch. Returns 0 (lease lapsed) or -1 (another writer holds the room
/// with an epoch at least as new), or makes the writer the owner of record.
macro_rules! fence {
    () => {
        r#"
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[2] then return 0 end
local o = redis.call('HMGET', KEYS[1], 'id', 'gen', 'epoch')
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then
  if o[3] and tonumber(o[3]) >= tonumber(ARGV[3]) then return -1 end
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'gen', ARGV[2], 'epoch', ARGV[3])
end
"#
    };
}

// After `fence!`, which its append script starts with.
mod commit;

use commit::Committer;
pub use commit::Replication;

/// Claims a room for a writer about to serve it (the same checks as
/// `APPEND`, nothing written): 1, 0 or -1 as there.
/// KEYS: owner, member. ARGV: id, generation, epoch.
const CLAIM: &str = concat!(fence!(), "return 1\n");

/// Deletes the owner record and the epoch of a room that holds no event
/// and no snapshot, if the writer still owns it: 1 when deleted, else 0.
/// KEYS: owner, log, snapshot, epoch. ARGV: id, generation.
const FORGET: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'id', 'gen')
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[4])
return 1
"#;

/// Why a fenced script refused.
fn fenced(code: i64, room: &RoomId) -> Result<(), StoreError> {
    match code {
        1 => Ok(()),
        0 => Err(StoreError(format!(
            "fenced: this node's lease lapsed; {room} is not written"
        ))),
        -2 => Err(StoreError(format!(
            "{room}'s log already holds that seq: this copy fell behind storage"
        ))),
        _ => Err(StoreError(format!("fenced: another node owns {room} now"))),
    }
}

/// Redis-backed room storage.
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    /// Who writes, shared with the group-commit writer.
    writer: Arc<Mutex<Option<FenceWriter>>>,
    /// Unbounded, but a room has at most one append queued or in flight, so
    /// it holds at most one per room.
    journal: mpsc::UnboundedSender<Append>,
    /// Where committed events are archived, if anywhere.
    archiver: Option<Arc<Archiver>>,
}

fn failed(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

impl RedisStore {
    /// Connects and starts the group-commit writer; `keep` bounds each log,
    /// and a commit is acknowledged only once `replicas` replicas hold it.
    pub async fn connect(
        endpoint: &Endpoint,
        prefix: &str,
        keep: usize,
        replication: Replication,
        archiver: Option<Arc<Archiver>>,
    ) -> Result<Arc<Self>, StoreError> {
        let conn = endpoint.connect().await.map_err(failed)?;
        let (journal, rx) = mpsc::unbounded_channel();
        let fence = Arc::new(Mutex::new(None));
        tokio::spawn(
            Committer {
                conn: conn.clone(),
                prefix: prefix.to_string(),
                keep,
                replication,
                rx,
                writer: fence.clone(),
                archiver: archiver.clone(),
            }
            .run(),
        );
        Ok(Arc::new(Self {
            conn,
            prefix: prefix.to_string(),
            writer: fence,
            journal,
            archiver,
        }))
    }
}

fn log_key(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}:log")
}

fn snap_key(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}:snap")
}

fn epoch_key(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}:epoch")
}

fn owner_key(prefix: &str, room: &RoomId) -> String {
    format!("{prefix}:room:{room}:owner")
}

fn member_key(prefix: &str, member: &str) -> String {
    format!("{prefix}:member:{member}")
}

fn current(writer: &Mutex<Option<FenceWriter>>) -> Option<FenceWriter> {
    writer.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[async_trait::async_trait]
impl RoomStore for RedisStore {
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError> {
        let writer = current(&self.writer)
            .ok_or_else(|| StoreError("this node has not joined yet".into()))?;
        let claimed: i64 = redis::Script::new(CLAIM)
            .key(owner_key(&self.prefix, room))
            .key(member_key(&self.prefix, &writer.member))
            .arg(&writer.member)
            .arg(writer.generation)
            .arg(writer.epoch)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        fenced(claimed, room)?;
        // The epoch is set once, by whoever loads the room first; a history
        // lost with Redis's data gets a new one.
        let epoch_key = epoch_key(&self.prefix, room);
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
        if let Some(v) = log
            .iter()
            .find_map(|(_, f)| newer(f.get("v").map(Vec::as_slice)))
        {
            return Err(stored_by_a_newer_release(room, "log entry", v));
        }
        let entries: Vec<Entry> = log.into_iter().filter_map(|(_, f)| entry(f)).collect();
        let snapshot = match snap {
            Some(s) => Some(read_snapshot(room, &s)?),
            None => None,
        };
        if let Some(archiver) = &self.archiver {
            // What the previous owner may not have archived yet.
            let events: Vec<(u64, bytes::Bytes)> = entries
                .iter()
                .map(|e: &Entry| (e.seq, e.frame.clone()))
                .collect();
            archiver.ensure(room.as_str(), &epoch, events);
        }
        Ok(Loaded {
            entries,
            snapshot,
            epoch: Some(epoch),
        })
    }

    async fn forget(&self, room: &RoomId) {
        let Some(writer) = current(&self.writer) else {
            return;
        };
        let forgot: Result<i64, _> = redis::Script::new(FORGET)
            .key(owner_key(&self.prefix, room))
            .key(log_key(&self.prefix, room))
            .key(snap_key(&self.prefix, room))
            .key(epoch_key(&self.prefix, room))
            .arg(&writer.member)
            .arg(writer.generation)
            .invoke_async(&mut self.conn.clone())
            .await;
        if let Err(e) = forgot {
            tracing::debug!(room.id = %room, error = %e, "could not forget an empty room");
        }
    }

    fn append(&self, append: Append) {
        if let Err(mpsc::error::SendError(append)) = self.journal.send(append) {
            (append.done)(Err(StoreError("the journal writer is gone".into())));
        }
    }

    async fn erase(&self, room: &RoomId, epoch: &str) -> Result<(), StoreError> {
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(log_key(&self.prefix, room))
            .arg(snap_key(&self.prefix, room))
            .ignore()
            .cmd("SET")
            .arg(epoch_key(&self.prefix, room))
            .arg(epoch)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(failed)
    }

    async fn stored_below(
        &self,
        room: &RoomId,
        below: u64,
        from: u64,
        limit: usize,
        top: u64,
    ) -> Result<Vec<(u64, bytes::Bytes)>, StoreError> {
        // A log holds one entry per seq, ascending: the page's entries are
        // within the last `top - below + 1 + limit`.
        let depth = top.saturating_sub(below).saturating_add(1 + limit as u64);
        let log: StreamEntries = redis::cmd("XREVRANGE")
            .arg(log_key(&self.prefix, room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(depth.min(commit::KEEP_FOR_ARCHIVE as u64 + limit as u64))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        let mut page: Vec<(u64, bytes::Bytes)> = log
            .into_iter()
            .filter_map(|(_, f)| entry(f))
            .filter(|e| (from..below).contains(&e.seq))
            .take(limit)
            .map(|e| (e.seq, e.frame))
            .collect();
        page.reverse();
        Ok(page)
    }

    fn archiver(&self) -> Option<Arc<Archiver>> {
        self.archiver.clone()
    }

    fn fence(&self, writer: FenceWriter) {
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
    }
}

type StreamEntries = Vec<(String, HashMap<String, Vec<u8>>)>;

/// A log entry's fields as an entry (`None`: not one this release wrote).
fn entry(mut f: HashMap<String, Vec<u8>>) -> Option<Entry> {
    let text = |v: Vec<u8>| String::from_utf8(v).ok();
    Some(Entry {
        seq: std::str::from_utf8(f.get("s")?).ok()?.parse().ok()?,
        frame: f.remove("f")?.into(),
        author: f.remove("u").and_then(text),
        cid: f.remove("c").and_then(text),
    })
}

/// The version of the stored formats this release writes, and the newest
/// it reads.
pub(super) const FORMAT: u16 = 1;

/// A snapshot as stored: its format's version, then its fields.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Stored<T> {
    /// Absent in what releases before versions wrote: 1.
    #[serde(default = "first_format")]
    pub(super) v: u16,
    #[serde(flatten)]
    pub(super) snapshot: T,
}

fn first_format() -> u16 {
    1
}

/// A snapshot's stored text, in this release's format.
pub(super) fn write_snapshot(snapshot: &Snapshot) -> String {
    serde_json::to_string(&Stored {
        v: FORMAT,
        snapshot,
    })
    .unwrap_or_default()
}

/// A stored snapshot of any version up to this release's.
fn read_snapshot(room: &RoomId, text: &str) -> Result<Snapshot, StoreError> {
    let stored: Stored<Snapshot> =
        serde_json::from_str(text).map_err(|e| StoreError(format!("{room}'s snapshot: {e}")))?;
    if stored.v > FORMAT {
        return Err(stored_by_a_newer_release(room, "snapshot", stored.v));
    }
    Ok(stored.snapshot)
}

/// A log entry's version, if newer than this release reads.
fn newer(v: Option<&[u8]>) -> Option<u16> {
    let v: u16 = std::str::from_utf8(v?).ok()?.parse().ok()?;
    (v > FORMAT).then_some(v)
}

fn stored_by_a_newer_release(room: &RoomId, what: &str, v: u16) -> StoreError {
    StoreError(format!(
        "{room}'s {what} is in stored format {v}, newer than this release reads ({FORMAT}): run the newer release"
    ))
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn a_snapshot_is_written_with_its_version_and_read_back_whole() {
        let room = RoomId::parse("board:v").unwrap();
        let mut snapshot = Snapshot {
            seq: 7,
            ..Snapshot::default()
        };
        snapshot.reads.insert("ann".into(), 7);
        let text = write_snapshot(&snapshot);
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        assert_eq!(read_snapshot(&room, &text).unwrap(), snapshot);
        assert_eq!(newer(Some(b"1")), None);
        assert_eq!(newer(Some(b"2")), Some(2));
        assert_eq!(newer(None), None);
    }
}
