//! A Redis client trusting the endpoint's CA, for the endpoint and its
//! Sentinels alike.

use redis::{IntoConnectionInfo, RedisError};

/// A client of `info` that trusts the PEM roots `ca` for TLS, when given,
/// instead of the system's.
pub(in crate::coordinator) fn client(
    info: impl IntoConnectionInfo,
    ca: Option<&[u8]>,
) -> Result<redis::Client, RedisError> {
    match ca {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// rustls needs one process-wide crypto provider; `ring` is ours.
pub(super) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
