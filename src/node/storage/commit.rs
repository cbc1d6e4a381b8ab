//! The group-commit writer of room storage: it takes whatever appends are
//! queued, writes them in one pipeline of fenced scripts (ended by `WAIT`
//! when replicas must hold them), and answers every room at once.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{current, failed, fenced, log_key, member_key, owner_key, snap_key};
use crate::archive::archiver::Archiver;
use crate::archive::Archived;
use crate::coordinator::endpoint::Conn;
use crate::rooms::store::{Append, StoreError, Writer as FenceWriter};

/// A committed append's entries, as the archive keeps them.
fn archived(append: &Append, out: &mut Vec<Archived>) {
    let at = crate::protocol::now_ms();
    out.extend(append.entries.iter().map(|e| Archived {
        room: append.room.to_string(),
        epoch: append.epoch.to_string(),
        seq: e.seq,
        at,
        frame: e.frame.clone(),
    }));
}

/// Appends committed in one pipeline at most.
const GROUP: usize = 1024;

/// Entries of one room's log kept at most for an archive that is away.
pub(super) const KEEP_FOR_ARCHIVE: usize = 1_000_000;

/// How long a group commit waits for its replicas (`WAIT`).
const WAIT_TIMEOUT_MS: u64 = 500;

/// Appends one room's entries if the writer may: 1 when written, 0 when the
/// writer's lease lapsed, -1 when another writer holds the room with an
/// epoch at least as new, -2 when the log already holds the first entry's
/// seq (a copy of the room that fell behind storage: a seq is never written
/// twice, whoever tries).
/// KEYS: owner, member, log, snapshot. ARGV: id, generation, epoch, keep,
/// snapshot ("" for none), n, then n × (seq, frame, author, client id).
const APPEND: &str = concat!(
    fence!(),
    r#"
if tonumber(ARGV[6]) > 0 then
  local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
  if top then
    local f = top[2]
    for j = 1, #f, 2 do
      if f[j] == 's' and tonumber(f[j + 1]) >= tonumber(ARGV[7]) then return -2 end
    end
  end
end
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  local f = {'s', ARGV[i], 'f', ARGV[i + 1]}
  if ARGV[i + 2] ~= '' then f[#f + 1] = 'u'; f[#f + 1] = ARGV[i + 2] end
  if ARGV[i + 3] ~= '' then f[#f + 1] = 'c'; f[#f + 1] = ARGV[i + 3] end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(f))
  i = i + 4
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5]) end
return 1
"#
);

/// What an acknowledged commit promises of Redis replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replication {
    /// Replicas that must hold a commit (`WAIT`) before it is acknowledged.
    pub replicas: u32,
    /// Acknowledge a commit that every connected replica holds although
    /// fewer than `replicas` are connected (a write that a failover may
    /// lose), rather than fail it.
    pub allow_degraded: bool,
}

/// The group-commit writer.
pub(super) struct Committer {
    pub(super) conn: Conn,
    pub(super) prefix: String,
    /// Entries kept of a room's log at most.
    pub(super) keep: usize,
    pub(super) replication: Replication,
    pub(super) rx: mpsc::UnboundedReceiver<Append>,
    /// Who writes, shared with the store.
    pub(super) writer: Arc<Mutex<Option<FenceWriter>>>,
    /// Where committed entries go next, if the node keeps an archive.
    pub(super) archiver: Option<Arc<Archiver>>,
}

impl Committer {
    /// Commits until every journal sender is gone.
    pub(super) async fn run(mut self) {
        let script = redis::Script::new(APPEND);
        let mut batch = Vec::with_capacity(GROUP);
        while self.rx.recv_many(&mut batch, GROUP).await > 0 {
            let Some(writer) = current(&self.writer) else {
                for append in batch.drain(..) {
                    (append.done)(Err(StoreError("this node has not joined yet".into())));
                }
                continue;
            };
            let pipe = self.pipeline(&script, &writer, &batch);
            let result = self.commit(pipe).await;
            crate::telemetry::metrics().storage_commits.increment(1);
            match result {
                Ok(codes) => {
                    let outcomes: Vec<_> = batch
                        .iter()
                        .zip(codes)
                        .map(|(append, code)| fenced(code, &append.room))
                        .collect();
                    // Handed to the archiver before the rooms learn of the
                    // commit: a room that has nothing waiting for storage has
                    // nothing waiting to be archived that comes after it.
                    if let Some(archiver) = &self.archiver {
                        let mut committed = Vec::new();
                        for (append, outcome) in batch.iter().zip(&outcomes) {
                            if outcome.is_ok() {
                                archived(append, &mut committed);
                            }
                        }
                        archiver.push(committed);
                    }
                    for (append, outcome) in batch.drain(..).zip(outcomes) {
                        if let Err(e) = &outcome {
                            tracing::warn!(room.id = %append.room, error = %e, "append refused");
                        }
                        (append.done)(outcome);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, rooms = batch.len(), "group commit failed");
                    for append in batch.drain(..) {
                        (append.done)(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Entries of `append`'s room its log keeps at least: what the room
    /// asks, within the store's bound, and, with an archive, every entry
    /// from the lowest the archive does not hold yet.
    fn keep_for(&self, append: &Append) -> usize {
        let keep = append.keep.clamp(1, self.keep);
        let waiting = self
            .archiver
            .as_ref()
            .and_then(|a| a.pending().lowest(append.room.as_str()));
        let last = append.entries.last().map(|e| e.seq);
        match (waiting, last) {
            (Some(low), Some(last)) if last >= low => {
                let unarchived = usize::try_from(last - low + 1).unwrap_or(usize::MAX);
                keep.max(unarchived.min(KEEP_FOR_ARCHIVE))
            }
            _ => keep,
        }
    }

    /// One fenced script per room, all in one pipeline.
    fn pipeline(
        &self,
        script: &redis::Script,
        writer: &FenceWriter,
        batch: &[Append],
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for append in batch {
            let room = &append.room;
            let call = pipe
                .cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(4)
                .arg(owner_key(&self.prefix, room))
                .arg(member_key(&self.prefix, &writer.member))
                .arg(log_key(&self.prefix, room))
                .arg(snap_key(&self.prefix, room))
                .arg(&writer.member)
                .arg(writer.generation)
                .arg(writer.epoch)
                .arg(self.keep_for(append));
            let snapshot = append
                .snapshot
                .as_ref()
                .map(super::write_snapshot)
                .unwrap_or_default();
            call.arg(snapshot).arg(append.entries.len());
            for e in &append.entries {
                call.arg(e.seq)
                    .arg(&e.frame[..])
                    .arg(e.author.as_deref().unwrap_or(""))
                    .arg(e.cid.as_deref().unwrap_or(""));
            }
        }
        if self.replication.replicas > 0 {
            pipe.cmd("WAIT")
                .arg(self.replication.replicas)
                .arg(WAIT_TIMEOUT_MS);
        }
        pipe
    }

    /// Runs the pipeline and answers one code per room. With replicas
    /// asked for, a commit is acknowledged once that many hold it; anything
    /// less fails the commit as a whole (its rooms reload, and what it wrote
    /// is in their history if it survives; a retried send is then acked at
    /// its first seq). With `allow_degraded`, a primary with fewer replicas
    /// connected (one was lost, or a failover left it alone) acknowledges
    /// once every connected one holds the commit.
    async fn commit(&mut self, pipe: redis::Pipeline) -> Result<Vec<i64>, StoreError> {
        let mut codes = self.send(pipe).await?;
        let Replication {
            replicas,
            allow_degraded,
        } = self.replication;
        if replicas == 0 {
            return Ok(codes);
        }
        let took = codes.pop().unwrap_or(0);
        if took >= i64::from(replicas) {
            return Ok(codes);
        }
        if !allow_degraded {
            return Err(StoreError(format!(
                "{took} of {replicas} replicas took the commit within {WAIT_TIMEOUT_MS} ms"
            )));
        }
        let connected = self.connected_replicas().await?;
        if took >= connected {
            crate::telemetry::metrics()
                .storage_unreplicated
                .increment(1);
            tracing::debug!(
                took,
                wanted = replicas,
                "commit held by every connected replica"
            );
            return Ok(codes);
        }
        Err(StoreError(format!(
            "{took} of {connected} connected replicas took the commit within {WAIT_TIMEOUT_MS} ms"
        )))
    }

    /// How many replicas the primary has connected now (`ROLE`).
    async fn connected_replicas(&mut self) -> Result<i64, StoreError> {
        let role: redis::Value = redis::cmd("ROLE")
            .query_async(&mut self.conn)
            .await
            .map_err(failed)?;
        match role {
            redis::Value::Array(parts) => match parts.get(2) {
                Some(redis::Value::Array(replicas)) => Ok(replicas.len() as i64),
                _ => Ok(0),
            },
            _ => Ok(0),
        }
    }

    /// Runs the pipeline; a Redis that lost its scripts (a restart) gets
    /// the script again and the pipeline once more.
    async fn send(&mut self, pipe: redis::Pipeline) -> Result<Vec<i64>, StoreError> {
        for attempt in 0..2 {
            match pipe.query_async::<Vec<i64>>(&mut self.conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                        && attempt == 0 =>
                {
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(APPEND)
                        .query_async::<String>(&mut self.conn)
                        .await
                        .map_err(failed)?;
                }
                other => return other.map_err(failed),
            }
        }
        Err(StoreError("the append script could not be loaded".into()))
    }
}
