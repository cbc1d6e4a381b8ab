//! The client half: connect to a node and run the handshake. Gateways open
//! one link per node this way, nodes one per peer.

use tokio::net::TcpStream;

use super::handshake::{
    appended_version, nonce, Challenge, Hello, Proof, Side, Transcript, Verdict, CLIENT_FIRST,
    LATEST, RECORD_MAX, VERSION,
};
use super::io::{tune, write_record};
use super::reader::LinkReader;
use super::transport::{Stream, WriteHalf};
use super::{codec, Link, LinkError, LinkWriter, Peer, Secret, HANDSHAKE_TIMEOUT, WRITE_LIMIT};
use crate::ids::NodeId;
use crate::ids::Role;

/// Opens a link to the node at `addr` as member `me` of `role`.
pub async fn connect(
    addr: &str,
    role: Role,
    me: &NodeId,
    secret: &Secret,
) -> Result<Link, LinkError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, open(addr, role, me, secret)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Timeout),
    }
}

async fn open(addr: &str, role: Role, me: &NodeId, secret: &Secret) -> Result<Link, LinkError> {
    let (mut reader, mut write) = secured(addr, secret).await?;
    let client_nonce = nonce();
    let hello = Hello {
        version: VERSION,
        role,
        id: me.as_str(),
        nonce: client_nonce,
    };
    write_record(&mut write, &(hello, LATEST)).await?;
    let record = reader.next_within(RECORD_MAX).await?;
    let (challenge, rest): (Challenge<'_>, _) = codec::decode_front(&record)?;
    let version = appended_version(rest)?;
    if version > LATEST {
        return Err(LinkError::Handshake(format!(
            "the node chose link version {version}, above {LATEST}"
        )));
    }
    let server = NodeId::parse(challenge.id)
        .map_err(|_| LinkError::Handshake("the node sent a bad id".into()))?;
    let transcript = Transcript {
        version,
        role,
        client: me.as_str(),
        server: server.as_str(),
        client_nonce: &client_nonce,
        server_nonce: &challenge.nonce,
    };
    let not_the_node = || LinkError::Handshake("the node does not hold the cluster secret".into());
    let client_first = version >= CLIENT_FIRST;
    // An older node proves itself first (its proof is in the challenge).
    if !client_first && !transcript.verify(secret.bytes(), Side::Server, &challenge.proof) {
        return Err(not_the_node());
    }
    let proof = Proof {
        proof: transcript.prove(secret.bytes(), Side::Client),
    };
    write_record(&mut write, &proof).await?;
    let record = reader.next_within(RECORD_MAX).await?;
    // A newer node proves itself last (its proof comes with its verdict).
    let rest = verdict(&record)?;
    if client_first {
        let proof: [u8; 32] = codec::decode(rest)?;
        if !transcript.verify(secret.bytes(), Side::Server, &proof) {
            return Err(not_the_node());
        }
    }
    Ok(Link {
        peer: Peer {
            role: Role::Node,
            id: server,
        },
        reader,
        writer: LinkWriter::spawn(write, WRITE_LIMIT),
        version,
    })
}

/// A connection to `addr`, in TLS when the cluster has a CA, as the halves
/// of a link.
async fn secured(addr: &str, secret: &Secret) -> Result<(LinkReader, WriteHalf), LinkError> {
    let stream = TcpStream::connect(addr).await?;
    tune(&stream);
    let stream = match &secret.tls {
        Some(tls) => tls.connect(addr, stream).await?,
        None => Stream::Tcp(stream),
    };
    let (read, write) = stream.split();
    Ok((LinkReader::new(read), write))
}

/// The node's verdict on this side's proof: refused, or taken with what
/// follows it (the node's own proof, from link version 4).
fn verdict(record: &[u8]) -> Result<&[u8], LinkError> {
    let (verdict, rest): (Verdict<'_>, _) = codec::decode_front(record)?;
    if let Verdict::Refused(reason) = verdict {
        return Err(LinkError::Handshake(reason.to_string()));
    }
    Ok(rest)
}
