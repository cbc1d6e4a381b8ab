//! The server half: a node accepting a link. The peer proves it holds the
//! cluster secret before the node proves anything or reads a record of the
//! link; anything else (a browser, a port scan, a replayed handshake) is
//! dropped within the handshake timeout, having read at most a few hundred
//! bytes.

use tokio::net::TcpStream;

use super::handshake::{
    appended_version, nonce, Challenge, Hello, Proof, Side, Transcript, Verdict, CLIENT_FIRST,
    LATEST, RECORD_MAX, VERSION,
};
use super::io::{tune, write_record};
use super::reader::LinkReader;
use super::transport::Stream;
use super::{codec, Link, LinkError, LinkWriter, Peer, Secret, ACCEPT_TIMEOUT, WRITE_LIMIT};
use crate::ids::NodeId;

/// Whether a node links with builds older than link version 4, whose
/// handshake has the node prove itself first (to anyone who connects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OlderBuilds {
    /// Refused: the default.
    #[default]
    Refuse,
    /// Served, for a rolling update from such a build.
    Accept,
}

/// Runs the handshake on an accepted connection; `me` is this node's id.
pub async fn accept(
    stream: TcpStream,
    me: &NodeId,
    secret: &Secret,
    older: OlderBuilds,
) -> Result<Link, LinkError> {
    match tokio::time::timeout(ACCEPT_TIMEOUT, handshake(stream, me, secret, older)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Timeout),
    }
}

async fn handshake(
    stream: TcpStream,
    me: &NodeId,
    secret: &Secret,
    older: OlderBuilds,
) -> Result<Link, LinkError> {
    tune(&stream);
    let stream = match &secret.tls {
        Some(tls) => tls.accept(stream).await?,
        None => Stream::Tcp(stream),
    };
    let (read, mut write) = stream.split();
    let mut reader = LinkReader::new(read);
    let record = reader.next_within(RECORD_MAX).await?;
    let not_a_link = |_| LinkError::Handshake("not a roomring link".into());
    let (hello, rest): (Hello<'_>, _) = codec::decode_front(&record).map_err(not_a_link)?;
    if hello.version != VERSION {
        let reason = format!("link version {} is not {VERSION}", hello.version);
        write_record(&mut write, &Verdict::Refused(&reason)).await?;
        return Err(LinkError::Handshake(reason));
    }
    let version = appended_version(rest).map_err(not_a_link)?.min(LATEST);
    let client = NodeId::parse(hello.id)
        .map_err(|_| LinkError::Handshake("the peer sent a bad id".into()))?;
    let client_first = version >= CLIENT_FIRST;
    if !client_first && older == OlderBuilds::Refuse {
        // An older build reads a `Challenge` here, so it cannot read why:
        // it fails its handshake and tries again later, and the log says.
        let reason = format!(
            "{client} speaks link version {version}, older than {CLIENT_FIRST}: \
             start this node with --allow-old-links while such builds run"
        );
        write_record(&mut write, &Verdict::Refused(&reason)).await?;
        return Err(LinkError::Handshake(reason));
    }
    let server_nonce = nonce();
    let transcript = Transcript {
        version,
        role: hello.role,
        client: client.as_str(),
        server: me.as_str(),
        client_nonce: &hello.nonce,
        server_nonce: &server_nonce,
    };
    let server_proof = transcript.prove(secret.bytes(), Side::Server);
    let challenge = Challenge {
        id: me.as_str(),
        nonce: server_nonce,
        // From version 4 nothing of the secret goes out before the client's
        // proof is checked.
        proof: if client_first { [0; 32] } else { server_proof },
    };
    write_record(&mut write, &(challenge, version)).await?;
    let record = reader.next_within(RECORD_MAX).await?;
    let proof: Proof = codec::decode(&record)?;
    if !transcript.verify(secret.bytes(), Side::Client, &proof.proof) {
        write_record(&mut write, &Verdict::Refused("bad proof")).await?;
        return Err(LinkError::Handshake(format!(
            "{client} does not hold the cluster secret"
        )));
    }
    if client_first {
        write_record(&mut write, &(Verdict::Welcome, server_proof)).await?;
    } else {
        write_record(&mut write, &Verdict::Welcome).await?;
    }
    Ok(Link {
        peer: Peer {
            role: hello.role,
            id: client,
        },
        reader,
        writer: LinkWriter::spawn(write, WRITE_LIMIT),
        version,
    })
}
