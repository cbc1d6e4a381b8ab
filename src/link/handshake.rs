//! Mutual authentication of a new link. Each side sends a fresh random nonce
//! and proves that it holds the cluster secret with an HMAC-SHA256 over both
//! nonces, the client's role and both member ids; proofs are compared in
//! constant time. A recorded handshake is worthless: the other side's nonce
//! is new every time. The whole exchange must finish within a timeout.
//!
//! From version 4 the connecting side proves first, against the server's
//! fresh nonce, and the server's proof comes only with `Welcome`: a stranger
//! who connects gets nothing computed from the secret to guess it by.
//!
//! ```text
//! client                                   server
//!   Hello { role, id, nonce_c }      ───►
//!                                    ◄───  Challenge { id, nonce_s, (no proof) }
//!   Proof { proof_c }                ───►
//!                                    ◄───  Welcome + proof_s | Refused { reason }
//! ```
//!
//! Up to version 3 the server proved first (`Challenge` carried `proof_s`);
//! a node speaks that only to the older builds of a rolling update, and only
//! when told to (`--allow-old-links`).
//!
//! Versions: `Hello` says version 1 and appends the highest version the
//! client speaks; the server appends the version it chose to `Challenge`.
//! A reader of version 1 ignores what is appended, so a link between an
//! older and a newer build speaks the older's version. From version 2 the
//! chosen version is part of both proofs, so it cannot be changed on the
//! way.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::Role;

/// The version every `Hello` names; the one an older build insists on.
pub(super) const VERSION: u16 = 1;
/// The highest version of the link protocol this build speaks. Version 2
/// adds `presence.list` operations and resumes of a whole room; version 3
/// joins gathered per room (`ToNode::Join`); version 4 has the client prove
/// first.
pub const LATEST: u16 = 4;
/// The first version in which the client proves first.
pub(super) const CLIENT_FIRST: u16 = 4;
/// The longest handshake record: nonces, proofs, ids of at most 64 bytes.
pub(super) const RECORD_MAX: usize = 512;
/// Bytes of a nonce and of a proof.
const LEN: usize = 32;

/// The client's opening record.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Hello<'a> {
    pub(super) version: u16,
    pub(super) role: Role,
    pub(super) id: &'a str,
    pub(super) nonce: [u8; LEN],
}

/// The server's answer: its id, its nonce and its proof.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Challenge<'a> {
    pub(super) id: &'a str,
    pub(super) nonce: [u8; LEN],
    pub(super) proof: [u8; LEN],
}

/// The client's proof.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Proof {
    pub(super) proof: [u8; LEN],
}

/// The server's verdict.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Verdict<'a> {
    Welcome,
    Refused(&'a str),
}

/// A version appended to a handshake record, or 1 when there is none.
pub(super) fn appended_version(rest: &[u8]) -> Result<u16, super::codec::CodecError> {
    if rest.is_empty() {
        return Ok(VERSION);
    }
    super::codec::decode::<u16>(rest)
}

/// What both proofs are computed over.
pub(super) struct Transcript<'a> {
    /// The version the link speaks.
    pub(super) version: u16,
    pub(super) role: Role,
    pub(super) client: &'a str,
    pub(super) server: &'a str,
    pub(super) client_nonce: &'a [u8; LEN],
    pub(super) server_nonce: &'a [u8; LEN],
}

/// Which side a proof is from, so that one side's proof never serves as the
/// other's.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Client,
    Server,
}

impl Transcript<'_> {
    fn mac(&self, secret: &[u8], side: Side) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key");
        mac.update(match side {
            Side::Client => b"roomring link client",
            Side::Server => b"roomring link server",
        });
        mac.update(&VERSION.to_be_bytes());
        if self.version > VERSION {
            mac.update(b"speaks");
            mac.update(&self.version.to_be_bytes());
        }
        mac.update(match self.role {
            Role::Gateway => b"gateway",
            Role::Node => b"node\0\0\0",
        });
        for id in [self.client, self.server] {
            mac.update(&(id.len() as u32).to_be_bytes());
            mac.update(id.as_bytes());
        }
        mac.update(self.client_nonce);
        mac.update(self.server_nonce);
        mac
    }

    /// The proof `side` sends.
    pub(super) fn prove(&self, secret: &[u8], side: Side) -> [u8; LEN] {
        self.mac(secret, side).finalize().into_bytes().into()
    }

    /// Whether `proof` is `side`'s, compared in constant time.
    pub(super) fn verify(&self, secret: &[u8], side: Side, proof: &[u8; LEN]) -> bool {
        self.mac(secret, side).verify_slice(proof).is_ok()
    }
}

/// A fresh random nonce.
pub(super) fn nonce() -> [u8; LEN] {
    let mut n = [0u8; LEN];
    // The OS random source does not fail on the platforms we run on; if it
    // ever did, a zero nonce still yields a proof only the secret's holder
    // can make, and the peer's nonce keeps it fresh.
    let _ = getrandom::fill(&mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>(c: &'a [u8; LEN], s: &'a [u8; LEN]) -> Transcript<'a> {
        Transcript {
            version: LATEST,
            role: Role::Gateway,
            client: "gw-1",
            server: "node-1",
            client_nonce: c,
            server_nonce: s,
        }
    }

    #[test]
    fn proofs_bind_secret_side_nonces_and_ids() {
        let (c, s) = (nonce(), nonce());
        assert_ne!(c, s, "nonces are random");
        let t = transcript(&c, &s);
        let proof = t.prove(b"secret", Side::Client);
        assert!(t.verify(b"secret", Side::Client, &proof));
        assert!(!t.verify(b"other", Side::Client, &proof), "another secret");
        assert!(
            !t.verify(b"secret", Side::Server, &proof),
            "the other side's proof"
        );
        let fresh = nonce();
        let replayed = transcript(&c, &fresh);
        assert!(
            !replayed.verify(b"secret", Side::Client, &proof),
            "a new server nonce"
        );
        let as_node = Transcript {
            role: Role::Node,
            ..transcript(&c, &s)
        };
        assert!(
            !as_node.verify(b"secret", Side::Client, &proof),
            "another role"
        );
        let other_id = Transcript {
            client: "gw-2",
            ..transcript(&c, &s)
        };
        assert!(
            !other_id.verify(b"secret", Side::Client, &proof),
            "another id"
        );
        let older = Transcript {
            version: VERSION,
            ..transcript(&c, &s)
        };
        assert!(
            !older.verify(b"secret", Side::Client, &proof),
            "another version"
        );
    }
}
