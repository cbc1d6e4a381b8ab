//! The cluster's internal transport: gateway↔node and node↔node links. A
//! link is one TCP connection (`transport`; in mutual TLS when the cluster
//! has a CA, `tls`) carrying length-prefixed binary records (`codec`,
//! `records`), opened by a mutual HMAC handshake (`handshake`) on the
//! client half (`client::connect`) and the server half (`server::accept`),
//! both used by every role. After the handshake each side has a
//! `LinkReader` (`reader`) and a cloneable `LinkWriter` (`io`); requests
//! in flight and the parts of long answers are tracked by `calls`. This
//! module is the only place that speaks the link.

pub mod calls;
pub mod client;
pub mod codec;
mod handshake;
mod io;
mod reader;
pub mod records;
pub mod server;
mod tls;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use handshake::LATEST;
pub(crate) use io::keepalive;
pub use io::{Hold, LinkWriter};
pub use reader::LinkReader;
pub use records::{ConnId, FromNode, HandoffEntry, HandoffState, Rid, ToNode};
pub use server::OlderBuilds;
pub use tls::LinkTls;

use crate::ids::NodeId;
use crate::ids::Role;

/// How long a side that connects waits for its handshake to finish.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node lets a connection take to authenticate before it
/// closes it.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a link may buffer for writing before it counts as overloaded.
pub const WRITE_LIMIT: usize = 64 << 20;

/// The cluster secret that authenticates links, and the TLS they run in
/// when the cluster has a CA (`tls`). Its `Debug` hides it.
#[derive(Clone)]
pub struct Secret {
    key: Arc<[u8]>,
    tls: Option<LinkTls>,
}

impl Secret {
    /// The fewest bytes a secret may have: a shorter one could be guessed
    /// from one recorded proof or token.
    pub const MIN_BYTES: usize = 32;

    /// A fresh secret's text form: `MIN_BYTES` random bytes, in hex.
    pub fn fresh_text() -> String {
        let mut bytes = [0u8; Self::MIN_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random source");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A secret from its text form, for links without TLS.
    pub fn new(secret: &str) -> Self {
        Self {
            key: secret.as_bytes().into(),
            tls: None,
        }
    }

    /// The same secret, with links in TLS.
    pub fn with_tls(self, tls: LinkTls) -> Self {
        Self {
            tls: Some(tls),
            ..self
        }
    }

    /// Whether the secret is empty (no secret was configured).
    pub fn is_empty(&self) -> bool {
        self.key.is_empty()
    }

    /// The secret's bytes, for the few places that must use it as a key.
    pub fn reveal(&self) -> &[u8] {
        &self.key
    }

    fn bytes(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The authenticated other end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Gateway or node.
    pub role: Role,
    /// Its member id, as proven in the handshake.
    pub id: NodeId,
}

/// An established link.
pub struct Link {
    /// Who is at the other end.
    pub peer: Peer,
    /// Records from the peer.
    pub reader: LinkReader,
    /// Records to the peer.
    pub writer: LinkWriter,
    /// The link protocol version both sides speak (`LATEST` at most).
    pub version: u16,
}

/// Why a link could not be opened or went down.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("link i/o: {0}")]
    Io(std::io::Error),
    /// The peer closed the link, or it was closed here.
    #[error("link closed")]
    Closed,
    /// The peer sent something that is not a record.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// The handshake failed: a wrong secret, version or identity.
    #[error("link handshake failed: {0}")]
    Handshake(String),
    /// The handshake did not finish in time.
    #[error("link handshake timed out")]
    Timeout,
}

#[cfg(test)]
mod tests {
    use super::handshake::{nonce, Challenge, Hello, Proof, Side, Transcript, Verdict, VERSION};
    use super::io::write_record;
    use super::reader::LinkReader;
    use super::*;
    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn two_builds_of_this_version_speak_the_latest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let secret = Secret::new(SECRET);
        let server = async {
            let (stream, _) = listener.accept().await.unwrap();
            server::accept(stream, &id("n1"), &secret, OlderBuilds::Refuse)
                .await
                .unwrap()
        };
        let me = id("g1");
        let client = client::connect(&addr, Role::Gateway, &me, &secret);
        let (server, client) = tokio::join!(server, client);
        assert_eq!((server.version, client.unwrap().version), (LATEST, LATEST));
    }

    /// A client of version 1 (it appends nothing to `Hello` and reads only
    /// the front of `Challenge`) gets a link of version 1 from a node told
    /// to serve older builds.
    #[tokio::test]
    async fn a_client_of_version_1_is_served_version_1() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let secret = Secret::new(SECRET);
        let server = async {
            let (stream, _) = listener.accept().await.unwrap();
            server::accept(stream, &id("n1"), &secret, OlderBuilds::Accept).await
        };
        let old_client = async {
            let (read, mut write) = transport::tcp_halves(TcpStream::connect(addr).await.unwrap());
            let mut reader = LinkReader::new(read);
            let client_nonce = nonce();
            let hello = Hello {
                version: VERSION,
                role: Role::Gateway,
                id: "g1",
                nonce: client_nonce,
            };
            write_record(&mut write, &hello).await.unwrap();
            let record = reader.next().await.unwrap();
            let challenge: Challenge<'_> = codec::decode(&record).unwrap();
            let transcript = Transcript {
                version: VERSION,
                role: Role::Gateway,
                client: "g1",
                server: challenge.id,
                client_nonce: &client_nonce,
                server_nonce: &challenge.nonce,
            };
            assert!(
                transcript.verify(secret.bytes(), Side::Server, &challenge.proof),
                "the server proves itself as version 1 does"
            );
            let proof = Proof {
                proof: transcript.prove(secret.bytes(), Side::Client),
            };
            write_record(&mut write, &proof).await.unwrap();
            let record = reader.next().await.unwrap();
            matches!(codec::decode(&record).unwrap(), Verdict::Welcome)
        };
        let (server, welcomed) = tokio::join!(server, old_client);
        assert!(welcomed);
        assert_eq!(server.unwrap().version, VERSION);
    }

    const SECRET: &str = "a-cluster-secret-of-32-bytes-or-more";

    /// A stranger's `Hello`, naming `speaks` as its highest version: what
    /// the node answers (the record's body).
    async fn stranger(speaks: Option<u16>, older: OlderBuilds) -> (Bytes, Result<Link, LinkError>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async {
            let (stream, _) = listener.accept().await.unwrap();
            server::accept(stream, &id("n1"), &Secret::new(SECRET), older).await
        };
        let client = async {
            let (read, mut write) = transport::tcp_halves(TcpStream::connect(addr).await.unwrap());
            let hello = Hello {
                version: VERSION,
                role: Role::Gateway,
                id: "g1",
                nonce: nonce(),
            };
            match speaks {
                Some(v) => write_record(&mut write, &(hello, v)).await.unwrap(),
                None => write_record(&mut write, &hello).await.unwrap(),
            }
            let answer = LinkReader::new(read).next().await.unwrap();
            drop(write);
            answer
        };
        let (link, answer) = tokio::join!(server, client);
        (answer, link)
    }

    #[tokio::test]
    async fn a_stranger_gets_nothing_computed_from_the_secret() {
        let (answer, link) = stranger(Some(LATEST), OlderBuilds::Refuse).await;
        let (challenge, _): (Challenge<'_>, _) = codec::decode_front(&answer).unwrap();
        assert_eq!(challenge.proof, [0; 32], "no proof before the client's");
        assert!(link.is_err(), "the stranger proved nothing");
        // Claiming an older version does not get the proof either.
        for older in [Some(3), None] {
            let (answer, link) = stranger(older, OlderBuilds::Refuse).await;
            assert!(
                matches!(codec::decode(&answer), Ok(Verdict::Refused(why)) if why.contains("--allow-old-links")),
                "{older:?}"
            );
            assert!(link.is_err());
        }
    }

    #[tokio::test]
    async fn a_handshake_record_says_at_most_a_few_hundred_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        use tokio::io::AsyncWriteExt;
        // A length prefix of 4 MiB - 1, then nothing.
        client
            .write_all(&((4u32 << 20) - 1).to_le_bytes())
            .await
            .unwrap();
        let (me, secret) = (id("n1"), Secret::new(SECRET));
        let refused = server::accept(stream, &me, &secret, OlderBuilds::Refuse).await;
        assert!(matches!(
            refused,
            Err(LinkError::Codec(codec::CodecError::TooLarge(_)))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_does_not_authenticate_is_closed_after_10_s() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let began = tokio::time::Instant::now();
        let result =
            server::accept(stream, &id("n1"), &Secret::new(SECRET), OlderBuilds::Refuse).await;
        assert!(matches!(result, Err(LinkError::Timeout)));
        assert_eq!(began.elapsed(), ACCEPT_TIMEOUT);
    }
}
