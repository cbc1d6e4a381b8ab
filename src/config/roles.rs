//! Each role's flags turned into its command: every value checked, the
//! role's own config built from its own flag groups.

use std::time::Duration;

use super::flags::*;
use super::{usage, Cmd, Command, UsageError};
use crate::coordinator::endpoint::Endpoint;
use crate::dev::DevOptions;
use crate::gateway::{Auth, GatewayConfig};
use crate::ids::NodeId;
use crate::link::{OlderBuilds, Secret};
use crate::node::storage::Replication;
use crate::node::NodeConfig;

/// The command a parsed command line names.
pub(super) fn command(cmd: Cmd) -> Result<Command, UsageError> {
    match cmd {
        Cmd::Dev(a) => a.command(),
        Cmd::Node(a) => a.command(),
        Cmd::Gateway(a) => a.command(),
        Cmd::Token(a) => a.command(),
        Cmd::Ctl(a) => Ok(Command::Ctl {
            coordinator: endpoint(&a.redis)?,
            action: a.action,
        }),
        Cmd::Probe(a) => Ok(Command::Probe { target: a.target }),
        Cmd::Secret => Ok(Command::Secret),
    }
}

impl DevArgs {
    fn command(self) -> Result<Command, UsageError> {
        Ok(Command::Dev(DevOptions {
            listen: self.listen,
            nodes: self.nodes as usize,
            gateways: 1,
            auth: auth(&self.serving.client_auth, AuthKind::None)?,
            rooms: self.rooms.limits(),
            room_idle: Duration::from_secs(self.rooms.room_idle),
            memory_store: false,
            clients: self.edge.clients(),
        }))
    }
}

impl MemberArgs {
    /// The member's id, its Redis and its link secret, checked.
    fn checked(&self) -> Result<(NodeId, Endpoint, Secret), UsageError> {
        let id = NodeId::parse(&self.id).map_err(|e| usage(format!("--id: {e}")))?;
        Ok((id, endpoint(&self.redis)?, cluster_secret(&self.cluster)?))
    }
}

impl NodeArgs {
    fn command(self) -> Result<Command, UsageError> {
        let (id, coordinator, secret) = self.member.checked()?;
        let config = NodeConfig {
            listen: self.member.listen,
            advertise: self.member.advertise,
            rooms: self.rooms.limits(),
            room_idle: Duration::from_secs(self.rooms.room_idle),
            older_builds: if self.allow_old_links {
                OlderBuilds::Accept
            } else {
                OlderBuilds::Refuse
            },
            ..NodeConfig::new(id, secret)
        };
        Ok(Command::Node {
            config,
            coordinator,
            replication: Replication {
                replicas: self.redis_wait_replicas,
                allow_degraded: self.redis_allow_degraded,
            },
            archive: self.archive,
            retention: self.retention,
            metrics_listen: self.metrics_listen,
        })
    }
}

impl GatewayArgs {
    fn command(self) -> Result<Command, UsageError> {
        let (id, coordinator, secret) = self.member.checked()?;
        let config = GatewayConfig {
            listen: self.member.listen,
            advertise: self.member.advertise,
            auth: auth(&self.serving.client_auth, AuthKind::Jwt)?,
            clients: self.edge.clients(),
            drain_delay: Duration::from_millis(self.drain_delay_ms),
            drain_window: self.drain_window_ms.map(Duration::from_millis),
            ..GatewayConfig::new(id, secret)
        };
        Ok(Command::Gateway {
            config,
            coordinator,
        })
    }
}

impl TokenArgs {
    fn command(self) -> Result<Command, UsageError> {
        let sub = crate::ids::UserId::parse(&self.sub).map_err(|e| usage(format!("--sub: {e}")))?;
        long_enough("--jwt-secret", &self.jwt_secret)?;
        let mut claims = serde_json::json!({
            "sub": sub.as_str(),
            "exp": crate::protocol::now_ms() / 1000 + self.ttl,
        });
        let (aud, role) = match (self.aud, self.role) {
            (TokenAudience::Client, None) => (crate::gateway::auth::CLIENT_AUDIENCE, None),
            (TokenAudience::Client, Some(_)) => {
                return Err(usage("--role is for API tokens (--aud api)"))
            }
            (TokenAudience::Api, None) => return Err(usage("--aud api needs --role")),
            (TokenAudience::Api, Some(TokenRole::Service)) => {
                (crate::gateway::auth::API_AUDIENCE, Some("service"))
            }
            (TokenAudience::Api, Some(TokenRole::Admin)) => {
                (crate::gateway::auth::API_AUDIENCE, Some("admin"))
            }
        };
        claims["aud"] = aud.into();
        if let Some(role) = role {
            claims["role"] = role.into();
        }
        if let Some(rooms) = self.rooms {
            claims["rooms"] = rooms.into();
        }
        Ok(Command::Token {
            claims,
            secret: Secret::new(&self.jwt_secret),
        })
    }
}

fn endpoint(r: &RedisArgs) -> Result<Endpoint, UsageError> {
    let endpoint: Endpoint = r
        .coordinator
        .parse()
        .map_err(|e| usage(format!("--coordinator: {e}")))?;
    let Some(path) = &r.redis_ca else {
        return Ok(endpoint);
    };
    let pem =
        std::fs::read(path).map_err(|e| usage(format!("--redis-ca {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(usage(format!(
            "--redis-ca {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(endpoint.with_ca(pem))
}

fn auth(s: &ClientAuth, default: AuthKind) -> Result<Auth, UsageError> {
    match s.auth.unwrap_or(default) {
        AuthKind::None => Ok(Auth::None),
        AuthKind::Jwt => match s.jwt_secret.as_deref() {
            Some(secret) => {
                long_enough("--jwt-secret", secret)?;
                let mut keys = vec![secret];
                if let Some(previous) = s.jwt_previous_secret.as_deref().filter(|p| !p.is_empty()) {
                    long_enough("--jwt-previous-secret", previous)?;
                    keys.push(previous);
                }
                Ok(Auth::jwt_keys(&keys, s.token_leeway))
            }
            None => Err(usage("--auth jwt needs --jwt-secret (or --auth none)")),
        },
    }
}

/// Outside dev the cluster secret is required, whatever `--auth` says:
/// `--auth` is about clients, the secret about who may speak on a link.
fn cluster_secret(s: &ClusterSecret) -> Result<Secret, UsageError> {
    let secret = match &s.cluster_secret {
        Some(secret) => long_enough("--cluster-secret", secret).map(|()| Secret::new(secret))?,
        None => return Err(usage("--cluster-secret is required outside dev")),
    };
    match (&s.link_ca, &s.link_cert, &s.link_key) {
        (None, None, None) => Ok(secret),
        (Some(ca), Some(cert), Some(key)) => crate::link::LinkTls::from_files(ca, cert, key)
            .map(|tls| secret.with_tls(tls))
            .map_err(|e| usage(format!("link TLS: {e}"))),
        _ => Err(usage("--link-ca, --link-cert and --link-key go together")),
    }
}

/// A secret of at least `Secret::MIN_BYTES` bytes, or a usage error
/// naming `flag`.
fn long_enough(flag: &str, secret: &str) -> Result<(), UsageError> {
    if secret.len() >= Secret::MIN_BYTES {
        Ok(())
    } else {
        Err(usage(format!(
            "{flag} must be at least {} bytes (`roomring secret` prints a fresh one)",
            Secret::MIN_BYTES
        )))
    }
}
