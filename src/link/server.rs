//! The server half: a node accepting a link. The peer proves it holds the
//! cluster secret before any record is read from it; anything else (a
//! browser, a port scan, a replayed handshake) is dropped within the
//! handshake timeout.

use tokio::net::TcpStream;

use super::handshake::{
    appended_version, nonce, Challenge, Hello, Proof, Side, Transcript, Verdict, LATEST, VERSION,
};
use super::io::{tune, write_record, LinkReader};
use super::{codec, Link, LinkError, LinkWriter, Peer, Secret, HANDSHAKE_TIMEOUT, WRITE_LIMIT};
use crate::ids::NodeId;

/// Runs the handshake on an accepted connection; `me` is this node's id.
pub async fn accept(stream: TcpStream, me: &NodeId, secret: &Secret) -> Result<Link, LinkError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, me, secret)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Timeout),
    }
}

async fn handshake(stream: TcpStream, me: &NodeId, secret: &Secret) -> Result<Link, LinkError> {
    tune(&stream);
    let (read, mut write) = stream.into_split();
    let mut reader = LinkReader::new(read);
    let record = reader.next().await?;
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
    let server_nonce = nonce();
    let transcript = Transcript {
        version,
        role: hello.role,
        client: client.as_str(),
        server: me.as_str(),
        client_nonce: &hello.nonce,
        server_nonce: &server_nonce,
    };
    let challenge = Challenge {
        id: me.as_str(),
        nonce: server_nonce,
        proof: transcript.prove(secret.bytes(), Side::Server),
    };
    write_record(&mut write, &(challenge, version)).await?;
    let record = reader.next().await?;
    let proof: Proof = codec::decode(&record)?;
    if !transcript.verify(secret.bytes(), Side::Client, &proof.proof) {
        write_record(&mut write, &Verdict::Refused("bad proof")).await?;
        return Err(LinkError::Handshake(format!(
            "{client} does not hold the cluster secret"
        )));
    }
    write_record(&mut write, &Verdict::Welcome).await?;
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
