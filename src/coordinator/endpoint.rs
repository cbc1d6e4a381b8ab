//! Where Redis is, and a connection that follows it. An [`Endpoint`] is one
//! server (`redis://`, `rediss://` with TLS) or the primary that a set of
//! Sentinels names (`redis+sentinel://host:port,host:port/MASTER[/db]`, or
//! `rediss+sentinel://` with TLS to the Sentinels and the primary).
//! A [`Conn`] is what the coordinator and room storage talk through: a
//! reconnecting connection to the server or, behind Sentinels, to the
//! current primary. When a command fails in a way that says the primary is
//! gone (refused, dropped, timed out, `READONLY`), the connection asks the
//! Sentinels again and moves to the primary they name; the failed command
//! is still reported, and its caller retries as it does after any blip.
//!
//! Credentials in the URL are for the data servers (the Sentinels are asked
//! without them), and never appear in a message or a `Debug` print.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, RedisError, RedisFuture, Value};

use super::sentinel::Sentinels;
use client::client;

use client::install_crypto;

/// How long asking the Sentinels may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Sentinels are asked again at most this often.
const RESOLVE_EVERY: Duration = Duration::from_millis(100);

/// Connection settings shared by the coordinator and room storage: short
/// timeouts, so that an unreachable Redis is reported, never waited on.
pub fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(1000)))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(1)
}

/// Where Redis is.
#[derive(Clone)]
pub struct Endpoint {
    kind: Kind,
    /// PEM roots to trust for `rediss://` instead of the system's.
    ca: Option<Vec<u8>>,
}

#[derive(Clone)]
enum Kind {
    /// One server; the URL as given (it may hold a password).
    Server(String),
    /// The primary named `master` by these Sentinels (`host:port`), with
    /// the credentials and database to use on it.
    Sentinel {
        sentinels: Sentinels,
        master: String,
        redis: redis::RedisConnectionInfo,
    },
}

/// Why a coordinator URL was refused. The message never quotes the URL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadEndpoint(String);

const FORMS: &str = "redis://[user:password@]host:port[/db], rediss://... (TLS), redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db] or rediss+sentinel://... (TLS)";

impl FromStr for Endpoint {
    type Err = BadEndpoint;

    fn from_str(url: &str) -> Result<Self, BadEndpoint> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(BadEndpoint(format!("must be {FORMS}")));
        };
        let kind = match scheme {
            "redis" | "rediss" => {
                // The crate's parser checks host, port and db; its errors
                // may quote the URL, so only its verdict is kept.
                url.into_connection_info()
                    .map_err(|_| BadEndpoint(format!("not a valid {scheme}:// URL ({FORMS})")))?;
                Kind::Server(url.to_string())
            }
            "redis+sentinel" => sentinel(rest, false)?,
            "rediss+sentinel" => sentinel(rest, true)?,
            other => {
                return Err(BadEndpoint(format!(
                    "unsupported scheme {other:?} ({FORMS})"
                )))
            }
        };
        Ok(Self { kind, ca: None })
    }
}

/// Parses what follows `redis+sentinel://` (`rediss+sentinel://` with `tls`).
fn sentinel(rest: &str, tls: bool) -> Result<Kind, BadEndpoint> {
    let bad = |what: &str| BadEndpoint(format!("redis+sentinel://: {what} ({FORMS})"));
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((c, r)) => (Some(c), r),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no MASTER name"))?;
    let (master, db) = match path.split_once('/') {
        Some((m, db)) => (m, db.parse::<i64>().map_err(|_| bad("db is not a number"))?),
        None => (path, 0),
    };
    if master.is_empty() {
        return Err(bad("no MASTER name"));
    }
    let sentinels: Vec<String> = hosts.split(',').map(str::to_string).collect();
    for s in &sentinels {
        let port = s.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(_))) if !h.is_empty()) {
            return Err(bad("each Sentinel must be host:port"));
        }
    }
    let mut redis = redis::RedisConnectionInfo::default().set_db(db);
    if let Some(c) = credentials {
        let (user, password) = c.split_once(':').unwrap_or(("", c));
        let decode = |s: &str| percent_decode(s).ok_or_else(|| bad("bad %-escape in credentials"));
        let (user, password) = (decode(user)?, decode(password)?);
        if !user.is_empty() {
            redis = redis.set_username(user);
        }
        if !password.is_empty() {
            redis = redis.set_password(password);
        }
    }
    Ok(Kind::Sentinel {
        sentinels: Sentinels {
            addrs: sentinels,
            tls,
        },
        master: master.to_string(),
        redis,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Server(url) => {
                let scheme = url.split_once("://").map_or("", |(s, _)| s);
                write!(f, "Endpoint({scheme}://<redacted>)")
            }
            Kind::Sentinel {
                sentinels, master, ..
            } => {
                let tls = if sentinels.tls { " tls" } else { "" };
                write!(
                    f,
                    "Endpoint(sentinel{tls} {:?} {master:?})",
                    sentinels.addrs
                )
            }
        }
    }
}

impl Endpoint {
    /// Trusts these PEM roots for TLS instead of the system's.
    pub fn with_ca(mut self, pem: Vec<u8>) -> Self {
        self.ca = Some(pem);
        self
    }

    /// Connects: to the server, or to the primary the Sentinels name now.
    pub async fn connect(&self) -> Result<Conn, RedisError> {
        install_crypto();
        let shared = Arc::new(Shared {
            endpoint: self.clone(),
            current: Mutex::new(None),
            asked: Mutex::new(None),
        });
        let (client, manager) = shared.open().await?;
        *lock(&shared.current) = Some(Current {
            generation: 0,
            client,
            manager,
        });
        Ok(Conn { shared })
    }

    fn server_client(&self, url: &str) -> Result<redis::Client, RedisError> {
        client(url, self.ca.as_deref())
    }
}

/// A connection to Redis (the primary, behind Sentinels). Clones share it.
#[derive(Clone)]
pub struct Conn {
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: Endpoint,
    current: Mutex<Option<Current>>,
    /// When the Sentinels were last asked.
    asked: Mutex<Option<Instant>>,
}

struct Current {
    /// Bumped on every move to another primary.
    generation: u64,
    client: redis::Client,
    manager: ConnectionManager,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an error says the primary is gone (or is a primary no more).
fn primary_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
            )
        )
}

impl Shared {
    /// A client and a connection for the server, or the primary now named.
    async fn open(&self) -> Result<(redis::Client, ConnectionManager), RedisError> {
        let client = match &self.endpoint.kind {
            Kind::Sentinel {
                sentinels,
                master,
                redis,
            } => {
                let ca = self.endpoint.ca.as_deref();
                tokio::time::timeout(RESOLVE_TIMEOUT, sentinels.primary(master, redis, ca))
                    .await
                    .map_err(|_| {
                        RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the Sentinels did not answer",
                        ))
                    })??
            }
            Kind::Server(url) => self.endpoint.server_client(url)?,
        };
        let manager = client
            .get_connection_manager_with_config(manager_config())
            .await?;
        Ok((client, manager))
    }

    fn current(&self) -> (u64, ConnectionManager, redis::Client) {
        let guard = lock(&self.current);
        let c = guard
            .as_ref()
            .expect("a connected Conn has a current server");
        (c.generation, c.manager.clone(), c.client.clone())
    }

    /// After `e` on the connection of `generation`: behind Sentinels, asks
    /// them for the primary and moves there if it is another server.
    async fn follow(&self, generation: u64, e: &RedisError) {
        if matches!(self.endpoint.kind, Kind::Server(_)) || !primary_lost(e) {
            return;
        }
        {
            let mut asked = lock(&self.asked);
            if asked.is_some_and(|at| at.elapsed() < RESOLVE_EVERY) {
                return;
            }
            *asked = Some(Instant::now());
        }
        let addr = |c: &redis::Client| c.get_connection_info().addr().to_string();
        let (client, manager) = match self.open().await {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!(error = %e, "no Redis primary yet");
                return;
            }
        };
        let mut guard = lock(&self.current);
        let Some(current) = guard.as_mut() else {
            return;
        };
        if current.generation != generation || addr(&current.client) == addr(&client) {
            return;
        }
        tracing::info!(primary = %addr(&client), "following the Redis primary");
        crate::telemetry::metrics().redis_failovers.increment(1);
        *current = Current {
            generation: generation + 1,
            client,
            manager,
        };
    }

    async fn run<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Result<T, RedisError>
    where
        F: std::future::Future<Output = Result<T, RedisError>>,
    {
        let (generation, manager, _) = self.current();
        let result = call(manager).await;
        if let Err(e) = &result {
            self.follow(generation, e).await;
        }
        result
    }
}

impl Conn {
    /// A pub/sub connection to the server (the primary now).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        let (generation, _, client) = self.shared.current();
        let result = client.get_async_pubsub().await;
        if let Err(e) = &result {
            self.shared.follow(generation, e).await;
        }
        result
    }

    /// The address of the server now talked to (no credentials).
    pub fn server(&self) -> String {
        let (_, _, client) = self.shared.current();
        match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{host}:{port}")
            }
            other => other.to_string(),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(
            self.shared
                .run(move |mut m| async move { m.req_packed_command(cmd).await }),
        )
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(
            self.shared.run(move |mut m| async move {
                m.req_packed_commands(pipeline, offset, count).await
            }),
        )
    }

    fn get_db(&self) -> i64 {
        self.shared.current().1.get_db()
    }
}

pub(super) mod client;
#[cfg(test)]
mod tests;
