use super::*;
use crate::gateway::outbox::OutboxLimits;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// An outbox on one end of a loopback connection, and the other end.
async fn socket() -> (Arc<Outbox>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, (server, _)) = tokio::join!(client, async { listener.accept().await.unwrap() });
    (
        Outbox::new(server, OutboxLimits::default()),
        client.unwrap(),
    )
}

/// The text frames the peer has been sent so far (short, unmasked).
async fn received(peer: &mut TcpStream) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 2 {
        let len = usize::from(rest[1] & 0x7f);
        frames.push(String::from_utf8(rest[2..2 + len].to_vec()).unwrap());
        rest = &rest[2 + len..];
    }
    frames
}

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

/// A connection that joins while its room resumes at a new owner gets
/// the events after the seq it joined at, once; the ones before it had
/// in `joined`. The old subscriber gets every missed event, once.
#[tokio::test]
async fn a_joiner_during_a_resume_gets_no_event_twice() {
    let subs = Subscriptions::default();
    let room = RoomId::parse("chat:r").unwrap();
    let (old, new) = (node("n1"), node("n2"));
    let ((a, mut a_peer), (b, mut b_peer)) = (socket().await, socket().await);
    subs.subscribe(&room, 1, &a, 5, &old, || None);
    let resumes = subs.to_resume(&Ring::new([new.clone()]), None);
    assert_eq!(resumes.len(), 1);
    assert_eq!(resumes[0].since, 5);
    // b joins at the new owner, at seq 8: its `joined` held 6..=8.
    subs.subscribe(&room, 2, &b, 8, &new, || None);
    let mut dirty = Dirty::default();
    subs.dispatch("chat:r", Some(9), None, b"9", &mut dirty);
    // A late join reply from the old owner, for b, at seq 6: it must
    // not open b's floor to events it already had.
    subs.subscribe(&room, 2, &b, 6, &old, || None);
    let missed: Vec<(u64, Bytes)> = (6..=9).map(|s| (s, Bytes::from(s.to_string()))).collect();
    subs.resumed("chat:r", &new, &missed, None, &mut dirty);
    subs.dispatch("chat:r", Some(10), None, b"10", &mut dirty);
    subs.dispatch("chat:r", Some(9), None, b"9", &mut dirty);
    dirty.flush();
    assert_eq!(received(&mut a_peer).await, ["6", "7", "8", "9", "10"]);
    assert_eq!(received(&mut b_peer).await, ["9", "10"]);
}

/// Connections 1 and 2 subscribed to `chat:r` at `since` on n1, the
/// room held to resume at n2: the subscriptions, n2, and the far ends
/// of the two connections.
async fn two_held_at(since: u64) -> (Subscriptions, NodeId, TcpStream, TcpStream) {
    let subs = Subscriptions::default();
    let room = RoomId::parse("chat:r").unwrap();
    let (old, new) = (node("n1"), node("n2"));
    let ((a, a_peer), (b, b_peer)) = (socket().await, socket().await);
    subs.subscribe(&room, 1, &a, since, &old, || None);
    subs.subscribe(&room, 2, &b, since, &old, || None);
    subs.to_resume(&Ring::new([new.clone()]), None);
    (subs, new, a_peer, b_peer)
}

/// When more were missed than a replay holds, every live reader gets
/// the room's `joined` (marked truncated) in their place, then only
/// the events after its seq.
#[tokio::test]
async fn a_resume_past_the_replay_budget_gives_the_readers_a_joined() {
    let (subs, new, mut a_peer, mut b_peer) = two_held_at(5).await;
    let mut dirty = Dirty::default();
    subs.dispatch("chat:r", Some(2000), None, b"2000", &mut dirty);
    subs.dispatch("chat:r", Some(2001), None, b"2001", &mut dirty);
    let joined = (2000, None, Bytes::from_static(b"J"));
    subs.resumed("chat:r", &new, &[], Some(joined), &mut dirty);
    subs.dispatch("chat:r", Some(2002), None, b"2002", &mut dirty);
    dirty.flush();
    assert_eq!(received(&mut a_peer).await, ["J", "2001", "2002"]);
    assert_eq!(received(&mut b_peer).await, ["J", "2001", "2002"]);
}

/// After the room's history was lost, its `joined` starts every count
/// again: the events of the new history reach the readers, though
/// their seqs are below those passed on before.
/// Told that a room's history was rewound where it is, the gateway
/// holds its events for the resume that follows, once, and the joined
/// of the new history restarts its count.
#[tokio::test]
async fn a_room_rewound_at_its_owner_is_held_once_and_counts_from_its_joined() {
    let subs = Subscriptions::default();
    let room = RoomId::parse("chat:r").unwrap();
    let owner = node("n1");
    let (a, mut a_peer) = socket().await;
    subs.subscribe(&room, 1, &a, 50, &owner, || Some(Arc::from("e1")));
    assert!(subs.hold("chat:r"));
    assert!(!subs.hold("chat:r"), "held already: one resume");
    assert!(!subs.hold("chat:other"), "not subscribed here");
    let mut dirty = Dirty::default();
    subs.dispatch("chat:r", Some(1), None, b"1", &mut dirty);
    let joined = (1, Some(Arc::from("e2")), Bytes::from_static(b"J"));
    subs.resumed("chat:r", &owner, &[], Some(joined), &mut dirty);
    subs.dispatch("chat:r", Some(2), None, b"2", &mut dirty);
    dirty.flush();
    assert_eq!(received(&mut a_peer).await, ["J", "2"]);
}

#[tokio::test]
async fn a_resume_into_a_new_history_counts_from_its_joined() {
    let subs = Subscriptions::default();
    let room = RoomId::parse("chat:r").unwrap();
    let (old, new) = (node("n1"), node("n2"));
    let (a, mut a_peer) = socket().await;
    subs.subscribe(&room, 1, &a, 50, &old, || Some(Arc::from("e1")));
    subs.to_resume(&Ring::new([new.clone()]), None);
    assert_eq!(subs.held("chat:r").unwrap().1.as_deref(), Some("e1"));
    let mut dirty = Dirty::default();
    let joined = (2, Some(Arc::from("e2")), Bytes::from_static(b"J"));
    subs.resumed("chat:r", &new, &[], Some(joined), &mut dirty);
    subs.dispatch("chat:r", Some(2), None, b"2", &mut dirty);
    subs.dispatch("chat:r", Some(3), None, b"3", &mut dirty);
    dirty.flush();
    assert_eq!(received(&mut a_peer).await, ["J", "3"]);
    subs.to_resume(&Ring::new([old.clone()]), None);
    assert_eq!(
        subs.held("chat:r").map(|(since, epoch, _)| (since, epoch)),
        Some((3, Some(Arc::from("e2")))),
        "the next resume counts in the new history"
    );
}

/// Resumed one by one (a node of link version 1, or a room too big for
/// one record), each connection gets the room's `joined` of a new
/// history in its own answer, and from then on that history's events.
#[tokio::test]
async fn connections_resumed_one_by_one_into_a_new_history_each_count_from_their_joined() {
    let (subs, new, mut a_peer, mut b_peer) = two_held_at(50).await;
    let mut dirty = Dirty::default();
    subs.dispatch("chat:r", Some(3), None, b"3", &mut dirty);
    let joined = |seq| (seq, Some(Arc::from("e2")));
    subs.resynced(
        "chat:r",
        &new,
        1,
        joined(2),
        websocket::text(b"Ja"),
        &mut dirty,
    );
    subs.resynced(
        "chat:r",
        &new,
        2,
        joined(3),
        websocket::text(b"Jb"),
        &mut dirty,
    );
    subs.dispatch("chat:r", Some(4), None, b"4", &mut dirty);
    dirty.flush();
    assert_eq!(received(&mut a_peer).await, ["Ja", "3", "4"]);
    assert_eq!(received(&mut b_peer).await, ["Jb", "4"]);
}

/// A room whose last connection here closed while it moved is still
/// resumed (with nobody), so that its new owner learns nobody is left;
/// then it is forgotten.
#[tokio::test]
async fn a_room_whose_last_connection_closed_while_it_moved_is_resumed_with_nobody() {
    let subs = Subscriptions::default();
    let room = RoomId::parse("chat:r").unwrap();
    let (old, new) = (node("n1"), node("n2"));
    let (a, _a_peer) = socket().await;
    subs.subscribe(&room, 1, &a, 5, &old, || None);
    subs.to_resume(&Ring::new([new.clone()]), None);
    subs.unsubscribe("chat:r", 1);
    assert_eq!(
        subs.held("chat:r").map(|(since, _, conns)| (since, conns)),
        Some((5, Vec::new()))
    );
    subs.resumed("chat:r", &new, &[], None, &mut Dirty::default());
    assert!(subs.held("chat:r").is_none());
    assert!(!subs.lock().contains_key("chat:r"), "forgotten");
}

/// When the connections a resume was for have left, the room names one
/// that joined meanwhile to resume for; without one it is gone.
#[tokio::test]
async fn a_room_held_for_a_resume_whose_connection_left_names_another() {
    let subs = Subscriptions::default();
    let room = RoomId::parse("chat:r").unwrap();
    let (old, new) = (node("n1"), node("n2"));
    let ((a, _a_peer), (b, _b_peer)) = (socket().await, socket().await);
    subs.subscribe(&room, 1, &a, 5, &old, || None);
    assert_eq!(subs.held_for("chat:r"), None, "not held");
    subs.to_resume(&Ring::new([new.clone()]), None);
    subs.subscribe(&room, 2, &b, 8, &new, || None);
    subs.unsubscribe("chat:r", 1);
    assert_eq!(subs.held_for("chat:r"), Some((2, 5)));
    subs.unsubscribe("chat:r", 2);
    assert_eq!(
        subs.held_for("chat:r"),
        None,
        "nobody left: the room is gone"
    );
}
