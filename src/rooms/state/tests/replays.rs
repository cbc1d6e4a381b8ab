//! Joins and resumes: what a replay holds, and a `joined` in its place.

use super::*;

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
fn a_replay_holds_the_last_thousand_events_in_at_most_8_mib() {
    let (mut r, ann) = chat_sent(1500, 1200, "x");
    let seqs = history_seqs;
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
