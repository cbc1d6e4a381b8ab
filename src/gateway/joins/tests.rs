use super::*;
use crate::gateway::outbox::OutboxLimits;
use crate::rooms::state::tests::history_seqs;

async fn joiner(conn: ConnId, user: &str, since: Option<u64>, epoch: Option<&str>) -> Joiner {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stream, _) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    Joiner {
        conn,
        out: Outbox::new(stream.unwrap(), OutboxLimits::default()),
        user: UserId::parse(user).unwrap(),
        id: Some(format!("j{conn}").into()),
        since,
        epoch: epoch.map(Box::from),
    }
}

fn msg(seq: u64) -> (u64, Bytes) {
    let frame = crate::protocol::server::msg_frame("chat:a", seq, "u", b"\"hi\"", 1);
    (seq, frame.into())
}

fn board_change(seq: u64) -> (u64, Bytes) {
    let frame = format!(r#"{{"t":"board.changed","room":"chat:a","seq":{seq}}}"#);
    (seq, frame.into_bytes().into())
}

fn conns(next: Next<&'static str>) -> (Vec<ConnId>, Vec<&'static str>) {
    match next {
        Next::Go(joiners, later) => (joiners.iter().map(|j| j.conn).collect(), later),
        _ => panic!("expected joins to go"),
    }
}

fn waits(next: Next<&'static str>) -> bool {
    matches!(next, Next::Wait)
}

#[tokio::test(start_paused = true)]
async fn joins_wait_behind_the_one_on_its_way_and_go_together_once_per_gather() {
    let gates: Gates<&str> = Gates::default();
    let room = RoomId::parse("chat:a").unwrap();
    assert_eq!(
        gates.behind("chat:a", 1, "send"),
        Some("send"),
        "no gate yet"
    );
    let first = gates.enter(&room, joiner(1, "a", None, None).await);
    assert_eq!(conns(first), (vec![1], vec![]), "the first goes at once");
    assert_eq!(
        gates.behind("chat:a", 1, "send"),
        Some("send"),
        "1 is on its way"
    );
    assert!(waits(gates.enter(&room, joiner(2, "b", None, None).await)));
    assert!(waits(gates.enter(&room, joiner(3, "c", None, None).await)));
    assert_eq!(gates.behind("chat:a", 2, "leave"), None, "2 waits");
    assert_eq!(gates.behind("chat:b", 2, "x"), Some("x"), "another room");

    // Answered at once: the others wait for the rest of `GATHER`.
    let Next::At(at, timer) = gates.answered("chat:a") else {
        panic!("expected a timer")
    };
    assert_eq!(at, Instant::now() + GATHER);
    assert!(waits(gates.answered("chat:a")), "one timer");
    assert!(waits(gates.enter(&room, joiner(4, "d", None, None).await)));
    tokio::time::advance(GATHER).await;
    assert!(waits(gates.fire("chat:a", timer + 1)), "not that timer");
    assert_eq!(
        conns(gates.fire("chat:a", timer)),
        (vec![2, 3, 4], vec!["leave"])
    );
    assert_eq!(
        gates.behind("chat:a", 2, "send"),
        Some("send"),
        "2 is on its way"
    );

    // Answered after `GATHER`: the next go at once.
    assert!(waits(gates.enter(&room, joiner(5, "e", None, None).await)));
    tokio::time::advance(GATHER).await;
    assert_eq!(conns(gates.answered("chat:a")), (vec![5], vec![]));
    assert!(waits(gates.answered("chat:a")), "nobody waited: closed");
    assert_eq!(
        conns(gates.enter(&room, joiner(6, "f", None, None).await)).0,
        [6]
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_gate_goes_without_waiting_for_its_timer() {
    let gates: Gates<&str> = Gates::default();
    let room = RoomId::parse("chat:a").unwrap();
    conns(gates.enter(&room, joiner(0, "a", None, None).await));
    assert!(waits(gates.enter(&room, joiner(1, "b", None, None).await)));
    assert!(matches!(gates.answered("chat:a"), Next::At(..)));
    for conn in 2..FULL as ConnId {
        assert!(waits(
            gates.enter(&room, joiner(conn, "b", None, None).await)
        ));
    }
    let (full, _) = conns(gates.enter(&room, joiner(FULL as ConnId, "b", None, None).await));
    assert_eq!(full.len(), FULL);
    // While those are on their way, the next wait whatever their number.
    for conn in 0..FULL as ConnId * 2 {
        assert!(waits(
            gates.enter(&room, joiner(1000 + conn, "c", None, None).await)
        ));
    }
    assert_eq!(conns(gates.answered("chat:a")).0.len(), FULL * 2);
}

#[tokio::test]
async fn each_joiner_gets_the_joined_the_owner_would_have_written() {
    let answer = br#"{"epoch":"e1","online":["a","b","c"],"online_count":3,"truncated":false,"reads":{"a":4}}"#;
    let shared = Shared::parse(answer).unwrap();
    let events: Vec<(u64, Bytes)> = (5..=9)
        .map(|s| if s == 7 { board_change(s) } else { msg(s) })
        .collect();
    let joined = |j: &Joiner| -> serde_json::Value {
        serde_json::from_slice(&shared.joined("chat:a", 9, j, &events)).unwrap()
    };

    let c = joined(&joiner(1, "c", Some(6), Some("e1")).await);
    assert_eq!(history_seqs(&c), [7, 8, 9], "everything after its since");
    assert_eq!(c["truncated"], false);
    assert_eq!(
        c["online"],
        serde_json::json!(["c", "a", "b"]),
        "the joiner first"
    );
    assert_eq!((c["id"].as_str(), c["seq"].as_u64()), (Some("j1"), Some(9)));
    assert_eq!(
        (c["online_count"].as_u64(), c["reads"]["a"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(
        (c["epoch"].as_str(), c["room"].as_str()),
        (Some("e1"), Some("chat:a"))
    );
    assert!(c.get("widgets").is_none());

    let old = joined(&joiner(2, "a", Some(2), None).await);
    assert_eq!(history_seqs(&old), [5, 6, 7, 8, 9]);
    assert_eq!(old["truncated"], true, "3 and 4 are missing");

    let ahead = joined(&joiner(3, "b", Some(9), None).await);
    assert_eq!(
        (history_seqs(&ahead), &ahead["truncated"]),
        (vec![], &serde_json::json!(false))
    );

    let other = joined(&joiner(4, "b", Some(8), Some("e0")).await);
    assert_eq!(
        history_seqs(&other),
        [5, 6, 7, 8, 9],
        "another history: all of it"
    );
    assert_eq!(other["truncated"], true);

    let fresh = joined(&joiner(5, "d", None, None).await);
    assert_eq!(
        history_seqs(&fresh),
        [5, 6, 8, 9],
        "the latest messages only"
    );
    assert_eq!(fresh["online"], serde_json::json!(["d", "a", "b", "c"]));
}

#[tokio::test]
async fn a_board_joiner_gets_widgets_and_roles_and_names_stay_within_the_limit() {
    let names: Vec<String> = (0..200).map(|i| format!("u{i:03}")).collect();
    let answer = serde_json::json!({
        "epoch": "e", "online": names, "online_count": 5000, "truncated": false,
        "reads": {}, "widgets": [{"id": "w", "v": 1}], "roles": {"*": "editor"},
    });
    let answer = serde_json::to_vec(&answer).unwrap();
    let shared = Shared::parse(&answer).unwrap();
    let j = joiner(1, "zed", None, None).await;
    let joined: serde_json::Value =
        serde_json::from_slice(&shared.joined("board:b", 3, &j, &[])).unwrap();
    let online = joined["online"].as_array().unwrap();
    assert_eq!(online.len(), 200);
    assert_eq!(
        (online[0].as_str(), online[199].as_str()),
        (Some("zed"), Some("u198"))
    );
    assert_eq!(joined["widgets"][0]["id"], "w");
    assert_eq!(joined["roles"]["*"], "editor");
    assert_eq!(joined["online_count"], 5000);
}
