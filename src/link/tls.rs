//! Mutual TLS on links (`--link-ca`, `--link-cert`, `--link-key`): every
//! process holds a certificate of the cluster's CA, a node takes a link
//! only from a holder of one, and the side that connects checks that the
//! node's certificate names the address it dialled. The HMAC handshake
//! still runs inside, so a certificate alone does not make a member.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::transport::Stream;
use super::LinkError;

/// A process's TLS for its links, both ways.
#[derive(Clone)]
pub struct LinkTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkTls(..)")
    }
}

impl LinkTls {
    /// TLS from PEM: the CA that signs every member's certificate, this
    /// process's certificate chain, and its private key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca) {
            let ca = ca.map_err(|e| format!("the CA: {e}"))?;
            roots.add(ca).map_err(|e| format!("the CA: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA: no certificate in it".into());
        }
        let roots = Arc::new(roots);
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate: {e}"))?;
        if chain.is_empty() {
            return Err("the certificate: none in it".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the key: {e}"))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("the CA: {e}"))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the certificate and key: {e}"))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the certificate and key: {e}"))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// TLS from PEM files.
    pub fn from_files(
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, String> {
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        Self::from_pem(&read(ca)?, &read(cert)?, &read(key)?)
    }

    /// The server side of an accepted connection: the peer must present a
    /// certificate of the CA.
    pub(super) async fn accept(&self, tcp: TcpStream) -> Result<Stream, LinkError> {
        let tls = self.acceptor.accept(tcp).await.map_err(tls_refused)?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }

    /// The client side of a connection to `addr` (`host:port`), whose
    /// certificate must name `host`.
    pub(super) async fn connect(&self, addr: &str, tcp: TcpStream) -> Result<Stream, LinkError> {
        let host = host_of(addr);
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| LinkError::Handshake(format!("{host} is not a name TLS can check")))?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(tls_refused)?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

fn tls_refused(e: std::io::Error) -> LinkError {
    LinkError::Handshake(format!("TLS: {e}"))
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_of_an_address_is_what_the_certificate_must_name() {
        assert_eq!(super::host_of("10.0.0.5:7000"), "10.0.0.5");
        assert_eq!(super::host_of("node1.internal:7000"), "node1.internal");
        assert_eq!(super::host_of("[::1]:7000"), "::1");
    }

    #[test]
    fn bad_pem_is_refused_with_what_is_wrong() {
        let e = super::LinkTls::from_pem(b"", b"", b"").unwrap_err();
        assert!(e.contains("CA"), "{e}");
    }
}
