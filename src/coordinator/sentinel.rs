//! Asking Redis Sentinels which server is the primary, and checking that
//! the server they name is one (a Sentinel cut off from the others may name
//! an old primary). With `rediss+sentinel://` both the Sentinels and the
//! primary are reached over TLS, trusting the endpoint's CA when it has one,
//! so that the primary's password never travels in clear.

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError};

/// The Sentinels of one endpoint, and how to reach them and the primary.
#[derive(Clone)]
pub(super) struct Sentinels {
    /// `host:port` of each.
    pub(super) addrs: Vec<String>,
    /// Whether the Sentinels and the primary speak TLS.
    pub(super) tls: bool,
}

impl Sentinels {
    /// A client for the primary named `master`, with the credentials and
    /// database of `redis`: from the first Sentinel that names a server
    /// which says it is a primary.
    pub(super) async fn primary(
        &self,
        master: &str,
        redis: &RedisConnectionInfo,
        ca: Option<&[u8]>,
    ) -> Result<redis::Client, RedisError> {
        let mut last = None;
        for addr in &self.addrs {
            match self.ask(addr, master, redis, ca).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| refused("no Sentinel given")))
    }

    async fn ask(
        &self,
        sentinel: &str,
        master: &str,
        redis: &RedisConnectionInfo,
        ca: Option<&[u8]>,
    ) -> Result<redis::Client, RedisError> {
        let (host, port) = sentinel
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .ok_or_else(|| refused("a Sentinel is not host:port"))?;
        let asked = self.client(host, port, RedisConnectionInfo::default(), ca)?;
        let mut conn = asked.get_multiplexed_async_connection().await?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn)
            .await?;
        let (host, port) = named.ok_or_else(|| refused("the Sentinel knows no such primary"))?;
        let primary = self.client(host, port, redis.clone(), ca)?;
        let mut conn = primary.get_multiplexed_async_connection().await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(primary),
            _ => Err(refused("the server the Sentinel names is not a primary")),
        }
    }

    /// A client for `host:port`, in TLS when the endpoint says so.
    fn client(
        &self,
        host: String,
        port: u16,
        redis: RedisConnectionInfo,
        ca: Option<&[u8]>,
    ) -> Result<redis::Client, RedisError> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let info = addr.into_connection_info()?.set_redis_settings(redis);
        super::endpoint::client::client(info, ca.filter(|_| self.tls))
    }
}

fn refused(why: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotFound, why))
}
