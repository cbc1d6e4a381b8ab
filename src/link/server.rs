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
use super::transport::{Stream, WriteHalf};
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
    let (mut reader, mut write) = secured(stream, secret).await?;
    let record = reader.next_within(RECORD_MAX).await?;
    let not_a_link = |_| LinkError::Handshake("not a roomring link".into());
    let (hello, rest): (Hello<'_>, _) = codec::decode_front(&record).map_err(not_a_link)?;
    if hello.version != VERSION {
        let reason = format!("link version {} is not {VERSION}", hello.version);
        return Err(refuse(&mut write, reason).await);
    }
    let version = appended_version(rest).map_err(not_a_link)?.min(LATEST);
    let client = NodeId::parse(hello.id)
        .map_err(|_| LinkError::Handshake("the peer sent a bad id".into()))?;
    let client_first = version >= CLIENT_FIRST;
    if let Some(reason) = too_old(&client, version, older) {
        return Err(refuse(&mut write, reason).await);
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
    let proof: Proof = codec::decode(&reader.next_within(RECORD_MAX).await?)?;
    if !transcript.verify(secret.bytes(), Side::Client, &proof.proof) {
        write_record(&mut write, &Verdict::Refused("bad proof")).await?;
        let reason = format!("{client} does not hold the cluster secret");
        return Err(LinkError::Handshake(reason));
    }
    // From version 4 the node proves itself with its welcome.
    match client_first {
        true => write_record(&mut write, &(Verdict::Welcome, server_proof)).await?,
        false => write_record(&mut write, &Verdict::Welcome).await?,
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

/// Tells the peer why its link is refused; the error to return.
async fn refuse(write: &mut WriteHalf, reason: String) -> LinkError {
    match write_record(write, &Verdict::Refused(&reason)).await {
        Ok(()) => LinkError::Handshake(reason),
        Err(e) => e,
    }
}

/// The stream of an accepted connection, in TLS when the cluster has a CA,
/// as the halves of a link.
async fn secured(stream: TcpStream, secret: &Secret) -> Result<(LinkReader, WriteHalf), LinkError> {
    tune(&stream);
    let stream = match &secret.tls {
        Some(tls) => tls.accept(stream).await?,
        None => Stream::Tcp(stream),
    };
    let (read, write) = stream.split();
    Ok((LinkReader::new(read), write))
}

/// Why a link of an older build is refused, when this node refuses them.
/// An older build reads a `Challenge` here, so it cannot read why: it
/// fails its handshake and tries again later, and the log says.
fn too_old(client: &NodeId, version: u16, older: OlderBuilds) -> Option<String> {
    (version < CLIENT_FIRST && older == OlderBuilds::Refuse).then(|| {
        format!(
            "{client} speaks link version {version}, older than {CLIENT_FIRST}: \
             start this node with --allow-old-links while such builds run"
        )
    })
}
