//! The Redis coordinator, for a real multi-process cluster. Each member is a
//! hash `PREFIX:member:ID` with a TTL (its lease); `PREFIX:members` indexes
//! them; `PREFIX:epoch` counts changes. Every change runs as one Lua script
//! (atomic), bumps the epoch and is announced on `PREFIX:changes`. Watchers
//! also re-read the list every `POLL`, because pub/sub loses messages across
//! reconnects and because a lapsed lease announces nothing: the first reader
//! that sees it gone removes it and bumps the epoch.
//!
//! Task tree: `Redis::connect` spawns one watcher; it listens to the channel
//! and polls, publishes views on the `watch` channel, and ends when the last
//! `Redis` handle is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Script;
use tokio::sync::watch;

use super::endpoint::{Conn, Endpoint};
use super::{CoordError, Lease, Member, MemberState, Membership, Role, View};
use crate::ids::{Epoch, NodeId};

/// Key prefix of a cluster's coordinator keys.
pub const PREFIX: &str = "roomring";
/// Lease TTL of cluster members (renewed every third of it).
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// How often watchers re-read the member list.
pub const POLL: Duration = Duration::from_millis(300);

/// Joins unless another process's live lease holds the id: two processes
/// started with the same id at once both find it free before either
/// joins, and only one of them may have it. A lease this process took
/// itself (a join that timed out but landed) is taken over. Returns the new
/// generation, or 0.
const JOIN: &str = r#"
local holder = redis.call('HGET', KEYS[1], 'instance')
if holder and holder ~= ARGV[5] then return 0 end
local gen = redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'role', ARGV[1], 'addr', ARGV[2], 'state', 'active', 'generation', gen, 'load', 0, 'instance', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
local epoch = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', KEYS[5], epoch)
return gen
"#;

const RENEW: &str = r#"
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'load', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

const SET_STATE: &str = r#"
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return 0 end
if current ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[1])
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', KEYS[3], epoch)
end
return 1
"#;

const LEAVE: &str = r#"
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
local epoch = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], epoch)
return 1
"#;

/// Raises the epoch to at least ARGV[1]: after Redis lost its data (a
/// restart without persistence, FLUSHALL, a stale replica promoted), the
/// processes that remember a later epoch carry it forward, so that views
/// keep increasing and nobody ignores the new ones.
const CARRY_FORWARD: &str = r#"
local e = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if e < floor then
  redis.call('SET', KEYS[1], floor)
  redis.call('PUBLISH', KEYS[2], floor)
  return floor
end
return e
"#;

/// Reads the epoch and every live member in one atomic step, removing the
/// members whose lease lapsed (and bumping the epoch if any did).
const SNAPSHOT: &str = r#"
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
local gone = 0
for _, id in ipairs(ids) do
  local m = redis.call('HGETALL', ARGV[1] .. id)
  if #m == 0 then
    redis.call('SREM', KEYS[1], id)
    gone = gone + 1
  else
    table.insert(out, {id, m})
  end
end
local epoch
if gone > 0 then
  epoch = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', KEYS[3], epoch)
else
  epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {epoch, out}
"#;

/// A member's hash fields.
type Fields = HashMap<String, String>;

/// The Redis coordinator.
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    prefix: String,
    ttl: Duration,
    /// Publishes views; receivers never block it.
    view_tx: watch::Sender<Arc<View>>,
    /// Names this process in the member keys it writes (`JOIN`).
    instance: String,
}

/// A random name for this process's coordinator connection.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without the OS random source every process is "0…": joins then
    // simply take over each other's keys, as before the check.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unreachable(e: redis::RedisError) -> CoordError {
    CoordError::Unreachable(e.to_string())
}

impl Redis {
    /// Connects to Redis (or the primary its Sentinels name) and starts
    /// watching.
    pub async fn connect(
        endpoint: &Endpoint,
        prefix: &str,
        ttl: Duration,
    ) -> Result<Self, CoordError> {
        let conn = endpoint.connect().await.map_err(unreachable)?;
        let (view_tx, _) = watch::channel(Arc::new(View::default()));
        let inner = Arc::new(Inner {
            conn,
            prefix: prefix.to_string(),
            ttl,
            view_tx,
            instance: instance_id(),
        });
        inner.refresh().await?;
        tokio::spawn(watch_loop(inner.conn.clone(), Arc::downgrade(&inner)));
        Ok(Self { inner })
    }
}

impl Inner {
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    fn member_key(&self, id: &NodeId) -> String {
        format!("{}:member:{id}", self.prefix)
    }

    /// Reads the member list and publishes it if it is news.
    async fn refresh(&self) -> Result<(), CoordError> {
        let (epoch, flat): (u64, Vec<(String, Fields)>) = Script::new(SNAPSHOT)
            .key(self.key("members"))
            .key(self.key("epoch"))
            .key(self.key("changes"))
            .arg(self.key("member:"))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unreachable)?;
        let mut members: Vec<Member> = flat
            .into_iter()
            .filter_map(|(id, fields)| parse_member(&id, &fields))
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let known = self.view_tx.borrow().epoch;
        let epoch = if epoch < known.0 {
            tracing::warn!(
                coordinator.epoch = epoch,
                known = known.0,
                "the coordinator's epoch went back (Redis lost its data?); carrying it forward"
            );
            crate::telemetry::metrics().coordinator_resets.increment(1);
            Script::new(CARRY_FORWARD)
                .key(self.key("epoch"))
                .key(self.key("changes"))
                .arg(known.0 + 1)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unreachable)?
        } else {
            epoch
        };
        let view = View {
            epoch: Epoch(epoch),
            members,
        };
        self.view_tx.send_if_modified(|current| {
            let news =
                view.epoch > current.epoch || (view.epoch == current.epoch && view != **current);
            if news {
                *current = Arc::new(view);
            }
            news
        });
        Ok(())
    }
}

fn parse_member(id: &str, fields: &HashMap<String, String>) -> Option<Member> {
    let get = |name: &str| fields.get(name).map(String::as_str);
    Some(Member {
        id: NodeId::parse(id).ok()?,
        role: match get("role")? {
            "node" => Role::Node,
            "gateway" => Role::Gateway,
            _ => return None,
        },
        addr: get("addr")?.to_string(),
        state: match get("state")? {
            "draining" => MemberState::Draining,
            _ => MemberState::Active,
        },
        generation: get("generation")?.parse().ok()?,
        load: get("load").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// Listens for announcements and polls, until the coordinator is dropped.
async fn watch_loop(conn: Conn, inner: Weak<Inner>) {
    let channel = match inner.upgrade() {
        Some(i) => i.key("changes"),
        None => return,
    };
    loop {
        // (Re)subscribe; while that fails, polling alone keeps views fresh.
        let mut pubsub = match conn.pubsub().await {
            Ok(mut p) => match p.subscribe(&channel).await {
                Ok(()) => Some(p),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let mut tick = tokio::time::interval(POLL);
        loop {
            let announced = async {
                match pubsub.as_mut() {
                    Some(p) => p.on_message().next().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            let lost_channel = tokio::select! {
                alive = announced => !alive,
                _ = tick.tick() => false,
            };
            let Some(inner) = inner.upgrade() else { return };
            if let Err(e) = inner.refresh().await {
                tracing::debug!(error = %e, "member list refresh failed");
            }
            if lost_channel || pubsub.is_none() {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[async_trait::async_trait]
impl Membership for Redis {
    async fn join(&self, role: Role, id: &NodeId, addr: &str) -> Result<Lease, CoordError> {
        let i = &self.inner;
        let role = match role {
            Role::Node => "node",
            Role::Gateway => "gateway",
        };
        let generation: u64 = Script::new(JOIN)
            .key(i.member_key(id))
            .key(i.key("members"))
            .key(i.key("generation"))
            .key(i.key("epoch"))
            .key(i.key("changes"))
            .arg(role)
            .arg(addr)
            .arg(i.ttl.as_millis() as u64)
            .arg(id.as_str())
            .arg(&i.instance)
            .invoke_async(&mut i.conn.clone())
            .await
            .map_err(unreachable)?;
        if generation == 0 {
            return Err(CoordError::InUse(id.clone()));
        }
        i.refresh().await?;
        Ok(Lease { generation })
    }

    async fn renew(&self, id: &NodeId, lease: Lease, load: u64) -> Result<(), CoordError> {
        let i = &self.inner;
        let kept: u64 = Script::new(RENEW)
            .key(i.member_key(id))
            .arg(lease.generation)
            .arg(load)
            .arg(i.ttl.as_millis() as u64)
            .invoke_async(&mut i.conn.clone())
            .await
            .map_err(unreachable)?;
        if kept == 1 {
            Ok(())
        } else {
            Err(CoordError::LeaseLost)
        }
    }

    async fn set_state(&self, id: &NodeId, state: MemberState) -> Result<(), CoordError> {
        let i = &self.inner;
        let state = match state {
            MemberState::Active => "active",
            MemberState::Draining => "draining",
        };
        let found: u64 = Script::new(SET_STATE)
            .key(i.member_key(id))
            .key(i.key("epoch"))
            .key(i.key("changes"))
            .arg(state)
            .invoke_async(&mut i.conn.clone())
            .await
            .map_err(unreachable)?;
        i.refresh().await?;
        if found == 1 {
            Ok(())
        } else {
            Err(CoordError::NoMember(id.clone()))
        }
    }

    async fn leave(&self, id: &NodeId, lease: Lease) -> Result<(), CoordError> {
        let i = &self.inner;
        let _: u64 = Script::new(LEAVE)
            .key(i.member_key(id))
            .key(i.key("members"))
            .key(i.key("epoch"))
            .key(i.key("changes"))
            .arg(lease.generation)
            .arg(id.as_str())
            .invoke_async(&mut i.conn.clone())
            .await
            .map_err(unreachable)?;
        i.refresh().await
    }

    fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.inner.view_tx.subscribe()
    }

    fn lease_ttl(&self) -> Duration {
        self.inner.ttl
    }
}

/// Reads the live member list once (for `roomring ctl`).
pub async fn snapshot(m: &Redis) -> Result<Arc<View>, CoordError> {
    m.inner.refresh().await?;
    Ok(m.inner.view_tx.borrow().clone())
}
