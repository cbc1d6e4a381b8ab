use bytes::Bytes;
use serde_json::Value;

use super::*;
use crate::ids::ConnId;

mod boards;
mod replays;

fn room(kind: &str) -> RoomState {
    RoomState::new(RoomId::parse(&format!("{kind}:r")).unwrap(), keep(5))
}

/// A chat room keeping `kept` events in which ann (link 1, conn 1) joined
/// and sent `n` messages of `text`; and ann.
fn chat_sent(kept: usize, n: usize, text: &str) -> (RoomState, Origin) {
    let mut r = RoomState::new(RoomId::parse("chat:r").unwrap(), keep(kept));
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    for i in 0..n {
        send(&mut r, &ann, &format!("m{i}"), text);
    }
    (r, ann)
}

fn keep(keep: usize) -> Limits {
    Limits {
        keep,
        ..Limits::default()
    }
}

fn who(user: &str, link: LinkId, conn: ConnId) -> Origin {
    Origin {
        sub: Sub { link, conn },
        user: UserId::parse(user).unwrap(),
    }
}

/// The seqs of a `joined` frame's history.
pub(crate) fn history_seqs(joined: &Value) -> Vec<u64> {
    (joined["history"].as_array().unwrap().iter())
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

fn json(s: &[u8]) -> Value {
    serde_json::from_slice(s).unwrap()
}

fn body(text: &str) -> Bytes {
    format!("{{\"text\":{text:?}}}").into()
}

fn send(r: &mut RoomState, o: &Origin, id: &str, text: &str) -> Outcome {
    r.apply(o, Some(id), &RoomOp::Send { body: body(text) }, 1)
}

fn join(r: &mut RoomState, o: &Origin, since: Option<u64>) -> Value {
    json(
        &r.apply(o, Some("j"), &RoomOp::Join { since, epoch: None }, 1)
            .reply
            .unwrap()[..],
    )
}

#[test]
fn sends_get_gap_free_seqs_and_acks() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    for i in 1..=3 {
        let out = send(&mut r, &ann, &format!("m{i}"), "hi");
        assert_eq!(json(out.reply.as_deref().unwrap())["seq"], i);
        assert_eq!(out.events.len(), 1);
        let msg = json(&out.events[0].frame);
        assert_eq!(
            (msg["t"].as_str(), msg["seq"].as_u64(), msg["from"].as_str()),
            (Some("msg"), Some(i), Some("ann"))
        );
        assert_eq!(
            out.events[0].skip, None,
            "the sender's own connection gets its message too"
        );
    }
    assert_eq!(r.seq(), 3);
}

#[test]
fn a_retried_send_returns_the_first_ack_and_stores_nothing() {
    let mut r = room("chat");
    let (ann, bob) = (who("ann", 1, 1), who("bob", 1, 2));
    join(&mut r, &ann, None);
    join(&mut r, &bob, None);
    send(&mut r, &ann, "x", "first");
    let retry = send(&mut r, &ann, "x", "second");
    assert_eq!(json(retry.reply.as_deref().unwrap())["seq"], 1);
    assert!(retry.events.is_empty());
    assert_eq!(r.seq(), 1);
    // Another user may use the same id.
    let bob = send(&mut r, &bob, "x", "bob's");
    assert_eq!(json(bob.reply.as_deref().unwrap())["seq"], 2);
}

#[test]
fn history_is_trimmed_to_what_is_kept() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    for i in 0..8 {
        send(&mut r, &ann, &format!("m{i}"), "x");
    }
    let joined = join(&mut r, &ann, Some(1));
    let seqs: Vec<u64> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
    assert_eq!(joined["truncated"], true);
    let recent = join(&mut r, &ann, Some(6));
    assert_eq!(recent["history"].as_array().unwrap().len(), 2);
    assert_eq!(recent["truncated"], false);
    // A message that left history no longer blocks its id.
    assert_eq!(
        json(send(&mut r, &ann, "m0", "again").reply.as_deref().unwrap())["seq"],
        9
    );
    let msgs = json(&r.messages_json(5, 2));
    assert_eq!(
        msgs["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![6, 7]
    );
}

#[test]
fn presence_counts_connections_per_user() {
    let mut r = room("chat");
    let (ann1, ann2, bob) = (who("ann", 1, 1), who("ann", 2, 7), who("bob", 1, 2));
    let first = r.apply(
        &ann1,
        None,
        &RoomOp::Join {
            since: None,
            epoch: None,
        },
        1,
    );
    assert_eq!(first.events.len(), 1, "first connection announces ann");
    assert_eq!(first.events[0].skip, Some(ann1.sub));
    assert!(r
        .apply(
            &ann2,
            None,
            &RoomOp::Join {
                since: None,
                epoch: None
            },
            1
        )
        .events
        .is_empty());
    let joined = join(&mut r, &bob, None);
    assert_eq!(
        joined["online"],
        serde_json::json!(["bob", "ann"]),
        "the joiner first"
    );
    assert_eq!(joined["online_count"], 2);
    assert!(
        r.apply(&ann1, None, &RoomOp::Leave, 1).events.is_empty(),
        "ann is still online on link 2"
    );
    let gone = r.drop_link(2, 1);
    assert_eq!(json(&gone.events[0].frame)["online"], false);
    assert!(!r.has_link(2) && r.has_link(1));
    assert_eq!(r.online().count(), 1);
}

#[test]
fn rejoining_replies_again_without_presence() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    let again = r.apply(
        &ann,
        Some("2"),
        &RoomOp::Join {
            since: None,
            epoch: None,
        },
        1,
    );
    assert!(again.events.is_empty());
    assert_eq!(json(again.reply.as_deref().unwrap())["id"], "2");
}

#[test]
fn read_receipts_keep_the_latest_and_refuse_the_future() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    send(&mut r, &ann, "a", "x");
    send(&mut r, &ann, "b", "x");
    let out = r.apply(&ann, None, &RoomOp::Read { seq: 2 }, 1);
    assert_eq!(json(&out.events[0].frame)["seq"], 2);
    r.apply(&ann, None, &RoomOp::Read { seq: 1 }, 1);
    assert_eq!(join(&mut r, &ann, None)["reads"]["ann"], 2);
    let bad = r.apply(&ann, Some("r"), &RoomOp::Read { seq: 9 }, 1);
    assert_eq!(json(bad.reply.as_deref().unwrap())["code"], "bad_request");
}

#[test]
fn operations_of_a_connection_not_yet_known_are_applied() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    let out = send(&mut r, &ann, "early", "before my re-join arrived");
    assert_eq!(json(out.reply.as_deref().unwrap())["seq"], 1);
    assert_eq!(
        r.online().count(),
        0,
        "sending does not make anyone present"
    );
}

#[test]
fn read_receipts_are_bounded_and_the_oldest_goes_first() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    send(&mut r, &ann, "m1", "hi");
    send(&mut r, &ann, "m2", "hi");
    let read = |r: &mut RoomState, user: &str, seq: u64| {
        let o = who(user, 1, 2);
        r.apply(&o, None, &RoomOp::Read { seq }, 1);
    };
    read(&mut r, "early", 1);
    for i in 0..READS_KEPT + 10 {
        read(&mut r, &format!("u{i}"), 2);
    }
    // The one who read least long ago is gone; the newest reader is kept.
    read(&mut r, "last", 1);
    let joined = join(&mut r, &ann, None);
    let reads = joined["reads"].as_object().unwrap();
    assert_eq!(reads.len(), READS_KEPT);
    assert!(!reads.contains_key("early"));
    assert_eq!(reads["last"], 1);
}

#[test]
fn a_room_of_huge_events_keeps_at_most_its_bytes() {
    let (mut r, ann) = chat_sent(1000, 400, &"h".repeat(60_000));
    let per = KEEP_BYTES / 60_000;
    assert_eq!(r.seq(), 400);
    let history = |r: &mut RoomState| {
        json(&r.messages_json(0, 1000))["messages"]
            .as_array()
            .unwrap()
            .len()
    };
    let kept = history(&mut r);
    assert!(
        (per - 5..=per).contains(&kept),
        "{kept} kept of 400 (about {per} fit)"
    );
    for i in 0..10 {
        send(&mut r, &ann, &format!("s{i}"), "small");
    }
    assert!(
        history(&mut r) <= per + 10,
        "small events take the place of big ones"
    );
    let joined = join(&mut r, &ann, Some(395));
    assert_eq!(joined["history"].as_array().unwrap().len(), 15);
}
