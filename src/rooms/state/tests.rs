use bytes::Bytes;
use serde_json::Value;

use super::*;

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
fn board_changes_take_seqs_and_echo_the_id() {
    use crate::protocol::client::{Widget, WidgetMove};
    let mut r = room("board");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    let w = Widget {
        id: "w1".into(),
        kind: "sticky".into(),
        x: 1.0,
        y: 2.0,
        w: None,
        h: None,
        text: Some("hi".into()),
        color: None,
    };
    let put = r.apply(
        &ann,
        Some("p"),
        &RoomOp::BoardPut {
            widget: w.clone(),
            base: None,
        },
        1,
    );
    let changed = json(&put.events[0].frame);
    assert_eq!(
        (
            changed["t"].as_str(),
            changed["seq"].as_u64(),
            changed["id"].as_str()
        ),
        (Some("board.changed"), Some(1), Some("p"))
    );
    assert_eq!(changed["widgets"][0]["v"], 1);
    let stale = r.apply(
        &ann,
        Some("q"),
        &RoomOp::BoardPut {
            widget: w,
            base: Some(7),
        },
        1,
    );
    assert_eq!(json(stale.reply.as_deref().unwrap())["code"], "conflict");
    assert!(stale.events.is_empty());
    let moved = r.apply(
        &ann,
        None,
        &RoomOp::BoardMove {
            moves: vec![WidgetMove {
                id: "w1".into(),
                x: 9.0,
                y: 9.0,
            }],
        },
        1,
    );
    assert_eq!(json(&moved.events[0].frame)["widgets"][0]["x"], 9.0);
    let joined = join(&mut r, &ann, None);
    assert_eq!(joined["widgets"][0]["v"], 2);
    assert_eq!(
        joined["history"].as_array().unwrap().len(),
        0,
        "without since, history holds chat messages only"
    );
    assert_eq!(json(&r.info_json("n1"))["widgets"][0]["id"], "w1");
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
fn a_board_rebuilt_from_its_log_and_snapshot_has_the_same_widgets_and_roles() {
    use crate::protocol::client::{BoardRole, Widget};
    let mut r = RoomState::new(RoomId::parse("board:r").unwrap(), keep(1000));
    let ann = who("ann", 1, 1);
    let put = |id: &str| RoomOp::BoardPut {
        widget: Widget {
            id: id.into(),
            kind: "sticky".into(),
            x: 1.0,
            y: 2.0,
            w: None,
            h: None,
            text: Some("t".into()),
            color: None,
        },
        base: None,
    };
    r.apply(&ann, None, &put("a"), 1);
    // A snapshot here; what follows is only in the log.
    let snapshot = r.snapshot();
    r.apply(&ann, None, &put("b"), 1);
    let shift = RoomOp::BoardShift {
        ids: vec!["a".into(), "b".into()],
        dx: 10.0,
        dy: 0.5,
    };
    r.apply(&ann, None, &shift, 1);
    let grant = RoomOp::BoardRole {
        user: "bob".into(),
        role: BoardRole::Viewer,
    };
    r.apply(&ann, None, &grant, 1);
    let transfer = RoomOp::BoardRole {
        user: "cy".into(),
        role: BoardRole::Owner,
    };
    r.apply(&ann, None, &transfer, 1);
    let mut loaded = r.export();
    loaded.snapshot = Some(snapshot);
    let mut rebuilt = RoomState::new(RoomId::parse("board:r").unwrap(), keep(1000));
    rebuilt.restore(loaded);
    assert_eq!(rebuilt.board(), r.board());
    let board = rebuilt.board().unwrap();
    assert_eq!(board.owner(), Some("cy"));
    assert_eq!(board.role_of("ann"), BoardRole::Editor);
    assert_eq!(board.role_of("bob"), BoardRole::Viewer);
    assert_eq!(board.get("b").unwrap().widget.x, 11.0);
    assert_eq!(rebuilt.seq(), 5);
}

#[test]
fn a_join_since_the_largest_seq_gets_an_empty_history_not_an_overflow() {
    let mut r = room("chat");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    send(&mut r, &ann, "m1", "hi");
    let bob = who("bob", 1, 2);
    let joined = join(&mut r, &bob, Some(u64::MAX));
    assert_eq!(joined["t"], "joined");
    assert_eq!(joined["history"].as_array().map(Vec::len), Some(0));
    assert_eq!(joined["truncated"], false);
    assert_eq!(joined["seq"], 1);
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
fn a_replay_holds_the_last_thousand_events_in_at_most_8_mib() {
    let (mut r, ann) = chat_sent(1500, 1200, "x");
    let seqs = |joined: &Value| -> Vec<u64> {
        joined["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let all = join(&mut r, &ann, Some(0));
    assert_eq!(
        seqs(&all),
        (201..=1200).collect::<Vec<_>>(),
        "the last 1000"
    );
    assert_eq!(all["truncated"], true, "the first 200 are missing");
    let recent = join(&mut r, &ann, Some(300));
    assert_eq!(seqs(&recent).len(), 900);
    assert_eq!(recent["truncated"], false);

    // Large events: the budget's bytes end the replay first.
    let big = "b".repeat(60_000);
    for i in 0..200 {
        send(&mut r, &ann, &format!("big{i}"), &big);
    }
    let joined = join(&mut r, &ann, Some(1200));
    let kept = seqs(&joined);
    let bytes: usize = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.to_string().len())
        .sum();
    assert!(bytes <= REPLAY_BYTES, "{bytes} bytes replayed");
    assert!(
        kept.len() > 100 && kept.len() < 200,
        "{} replayed",
        kept.len()
    );
    assert_eq!(*kept.last().unwrap(), 1400, "the latest");
    assert_eq!(joined["truncated"], true);
}

#[test]
fn a_resume_past_the_replay_budget_answers_with_a_truncated_joined() {
    let bob = who("bob", 2, 1);
    let (mut r, _) = chat_sent(1500, 0, "x");
    join(&mut r, &bob, None);
    let ann = who("ann", 1, 1);
    for i in 0..1200 {
        send(&mut r, &ann, &format!("m{i}"), "x");
    }
    let near = r.resume_all(bob.sub.link, [(bob.sub, bob.user.clone())], (1100, None), 5);
    assert_eq!(near.missed.unwrap().len(), 100);
    assert!(near.reply.is_none(), "within the budget: the missed events");
    let far = r.resume_all(bob.sub.link, [(bob.sub, bob.user.clone())], (10, None), 5);
    assert_eq!(far.missed.unwrap().len(), 0);
    let joined = json(&far.reply.expect("a joined in their place"));
    assert_eq!(
        (
            joined["t"].as_str(),
            joined["truncated"].as_bool(),
            joined["seq"].as_u64()
        ),
        (Some("joined"), Some(true), Some(1200))
    );
    assert_eq!(joined["history"].as_array().unwrap().len(), 1000);
    assert!(joined.get("id").is_none(), "unasked");
    assert_eq!(joined["online_count"], 2);
}

#[test]
fn a_resume_into_a_lost_or_rewound_history_answers_with_a_truncated_joined() {
    let (mut r, ann) = chat_sent(1000, 3, "x");
    let epoch = json(&r.joined_frame(None, None, &[], false))["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    let same = r.resume_all(
        ann.sub.link,
        [(ann.sub, ann.user.clone())],
        (2, Some(&epoch)),
        5,
    );
    assert_eq!(
        same.missed.unwrap().len(),
        1,
        "the same history: what was missed"
    );
    assert!(same.reply.is_none());
    for (since, known) in [(50, Some(epoch.as_str())), (1, Some("another")), (50, None)] {
        let out = r.resume_all(
            ann.sub.link,
            [(ann.sub, ann.user.clone())],
            (since, known),
            5,
        );
        let joined = json(&out.reply.expect("a joined in place of silence"));
        assert_eq!(
            (joined["truncated"].as_bool(), joined["seq"].as_u64()),
            (Some(true), Some(3)),
            "since {since}, epoch {known:?}"
        );
        assert_eq!(joined["epoch"], epoch.as_str());
        assert_eq!(
            joined["history"].as_array().unwrap().len(),
            3,
            "all that is kept"
        );
        assert!(out.missed.unwrap().is_empty());
    }
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

#[test]
fn a_connection_that_closed_while_its_room_moved_leaves_when_its_gateway_resumes() {
    let mut r = room("chat");
    let (ann, bob, cat) = (who("ann", 1, 1), who("bob", 1, 2), who("cat", 1, 3));
    let dan = who("dan", 2, 1);
    r.adopt(vec![
        (ann.sub, ann.user.clone()),
        (bob.sub, bob.user.clone()),
        (dan.sub, dan.user.clone()),
    ]);
    join(&mut r, &cat, None);
    // Gateway 1 resumes the room: bob closed during the move.
    let out = r.resume_all(1, [(ann.sub, ann.user.clone())], (0, None), 5);
    let told: Vec<Value> = out.events.iter().map(|e| json(&e.frame)).collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (
            told[0]["t"].as_str(),
            told[0]["user"].as_str(),
            told[0]["online"].as_bool()
        ),
        (Some("presence"), Some("bob"), Some(false))
    );
    let online: Vec<String> = json(&r.info_json("n1"))["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        online,
        ["ann", "cat", "dan"],
        "cat joined here; dan's gateway did not resume yet"
    );
    // A second resume leaves the ones it confirmed alone.
    let again = r.resume_all(1, [(ann.sub, ann.user.clone())], (0, None), 6);
    assert!(again.events.is_empty());
    // Gateway 2's only connection closed during the move: it resumes with
    // nobody, and dan leaves.
    let nobody = r.resume_all(2, [], (0, None), 7);
    assert_eq!(json(&nobody.events[0].frame)["user"], "dan");
}

#[test]
fn gathered_joins_are_answered_once_with_the_events_any_of_them_replays() {
    let (mut r, ann) = chat_sent(1000, 60, "hi");
    r.apply(&ann, None, &RoomOp::Typing, 1);
    let epoch = r.epoch().to_string();
    let joiners = [
        (who("bob", 2, 1), Some(58), Some(epoch.as_str())),
        (who("cy", 2, 2), None, None),
        (who("dee", 2, 3), Some(59), None),
    ];
    let out = r.join_all(
        joiners.iter().map(|(origin, since, epoch)| Joiner {
            origin: origin.clone(),
            since: *since,
            epoch: *epoch,
        }),
        2,
    );
    let missed: Vec<u64> = out.missed.unwrap().iter().map(|(s, _)| *s).collect();
    // cy names no since: its latest 50 messages reach back to seq 11.
    assert_eq!(missed, (11..=60).collect::<Vec<u64>>());
    assert_eq!(out.seq, Some(60));
    let shared = json(&out.reply.unwrap());
    assert_eq!(shared["epoch"], epoch.as_str());
    assert_eq!(
        shared["online"],
        serde_json::json!(["ann", "bob", "cy", "dee"])
    );
    assert_eq!(
        (shared["online_count"].as_u64(), &shared["truncated"]),
        (Some(4), &Value::Bool(false))
    );
    let presence = out.events.iter().filter(|e| e.skip.is_some()).count();
    assert_eq!(presence, 3, "one presence event per user who came");

    // Another history's since replays everything kept.
    let other = [(who("eve", 2, 4), Some(60), Some("another"))];
    let out = r.join_all(
        other.iter().map(|(origin, since, epoch)| Joiner {
            origin: origin.clone(),
            since: *since,
            epoch: *epoch,
        }),
        3,
    );
    assert_eq!(out.missed.unwrap().len(), 60);
}
