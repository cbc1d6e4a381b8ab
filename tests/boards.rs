//! Boards: versioned widgets, atomic bulk moves, conflicts, cursors.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{http, Client, TestCluster};

#[tokio::test]
async fn board_operations_are_ordered_versioned_and_shared() {
    let cluster = TestCluster::start(3, 2).await;
    let mut ann = Client::connect(cluster.gateways[0].addr, "ann").await;
    let mut bob = Client::connect(cluster.gateways[1].addr, "bob").await;
    ann.join("board:plan").await;
    let joined = bob.join("board:plan").await;
    assert_eq!(joined["widgets"], json!([]));

    ann.send(json!({"t": "board.put", "room": "board:plan", "id": "p1",
        "widget": {"id": "n1", "kind": "sticky", "x": 10, "y": 20, "text": "idea", "color": "yellow"}})).await;
    let mine = ann.recv_type("board.changed").await;
    assert_eq!(
        (
            mine["id"].as_str(),
            mine["seq"].as_u64(),
            mine["by"].as_str()
        ),
        (Some("p1"), Some(1), Some("ann"))
    );
    let theirs = bob.recv_type("board.changed").await;
    assert_eq!(
        theirs["widgets"][0],
        json!({"id": "n1", "kind": "sticky", "x": 10.0, "y": 20.0, "text": "idea", "color": "yellow", "v": 1})
    );

    // A stale base is a conflict and changes nothing.
    ann.send(
        json!({"t": "board.put", "room": "board:plan", "id": "p2", "base": 0,
        "widget": {"id": "n1", "kind": "sticky", "x": 0, "y": 0}}),
    )
    .await;
    let err = ann.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("conflict"), Some("p2"))
    );
    ann.send(
        json!({"t": "board.put", "room": "board:plan", "id": "p3", "base": 1,
        "widget": {"id": "n2", "kind": "sticky", "x": 0, "y": 0}}),
    )
    .await;
    assert_eq!(
        ann.recv_type("error").await["code"],
        "conflict",
        "a base for a missing widget"
    );

    for i in 2..=50 {
        ann.send(json!({"t": "board.put", "room": "board:plan", "widget": {"id": format!("n{i}"), "kind": "sticky", "x": 0, "y": 0}})).await;
    }
    let moves: Vec<_> = (1..=60)
        .map(|i| json!({"id": format!("n{i}"), "x": i, "y": -i}))
        .collect();
    ann.send(json!({"t": "board.move", "room": "board:plan", "id": "mv", "moves": moves}))
        .await;
    let moved = loop {
        let f = bob.recv_type("board.changed").await;
        if f["id"] == "mv" {
            break f;
        }
    };
    assert_eq!(moved["seq"], 51);
    assert_eq!(
        moved["widgets"].as_array().unwrap().len(),
        50,
        "unknown ids are skipped"
    );
    ann.send(
        json!({"t": "board.delete", "room": "board:plan", "id": "del", "ids": ["n1", "nope"]}),
    )
    .await;
    let del = loop {
        let f = bob.recv_type("board.changed").await;
        if f["id"] == "del" {
            break f;
        }
    };
    assert_eq!(del["deleted"], json!(["n1"]));

    let (_, info) = http(cluster.addr(), "GET", "/api/rooms/board:plan", None).await;
    assert_eq!(info["seq"], 52);
    assert_eq!(info["widgets"].as_array().unwrap().len(), 49);
    let n2 = info["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "n2")
        .unwrap();
    assert_eq!((n2["x"].as_f64(), n2["v"].as_u64()), (Some(2.0), Some(2)));
    cluster.stop().await;
}

#[tokio::test]
async fn cursors_are_ephemeral_and_chat_works_on_boards() {
    let cluster = TestCluster::start(3, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    let mut bob = Client::connect(cluster.addr(), "bob").await;
    ann.join("board:c").await;
    bob.join("board:c").await;
    ann.recv_type("presence").await;
    ann.send(json!({"t": "board.cursor", "room": "board:c", "x": 1.5, "y": 2}))
        .await;
    assert_eq!(
        bob.recv().await,
        json!({"t": "board.cursors", "room": "board:c", "cursors": [{"user": "ann", "x": 1.5, "y": 2.0}]})
    );
    ann.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(ann.say("board:c", "m", "chat on a board").await, 1);
    // 5001 moves fit in a board.move frame (256 KiB) but not in its count.
    let moves: Vec<_> = (0..5001)
        .map(|i| json!({"id": format!("w{i}"), "x": 0, "y": 0}))
        .collect();
    ann.send(json!({"t": "board.move", "room": "board:c", "id": "many", "moves": moves}))
        .await;
    assert_eq!(ann.recv_type("error").await["code"], "too_large");
    cluster.stop().await;
}

fn sticky(id: &str, x: i64) -> serde_json::Value {
    json!({"id": id, "kind": "sticky", "x": x, "y": 0, "text": "note"})
}

/// Puts `n` widgets `w0..` and waits for the last one's change.
async fn fill(c: &mut Client, room: &str, n: usize) {
    for i in 0..n {
        let id = (i + 1 == n).then(|| "last".to_string());
        let mut frame =
            json!({"t": "board.put", "room": room, "widget": sticky(&format!("w{i}"), i as i64)});
        if let Some(id) = id {
            frame["id"] = json!(id);
        }
        c.send(frame).await;
    }
    loop {
        let f = c.recv_type("board.changed").await;
        if f["id"] == "last" {
            break;
        }
    }
}

fn fast_cluster() -> roomring::dev::DevOptions {
    let mut options = roomring::dev::DevOptions::for_test(3, 1);
    options.clients.rate_per_sec = 1_000_000;
    options.clients.rate_burst = 1_000_000;
    options
}

#[tokio::test]
async fn a_dragged_selection_of_2000_moves_in_one_change_and_late_joiners_see_it() {
    let cluster = TestCluster::with(fast_cluster()).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    ann.join("board:drag").await;
    fill(&mut ann, "board:drag", 2000).await;
    let ids: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
    ann.send(json!({"t": "board.move", "room": "board:drag", "id": "sel", "ids": ids, "dx": 5, "dy": -7}))
        .await;
    let changed = ann.recv_type("board.changed").await;
    assert_eq!(changed["id"], "sel");
    let entries = changed["widgets"].as_array().unwrap();
    assert_eq!(entries.len(), 2000);
    assert!(
        entries.iter().all(|e| e.as_object().unwrap().len() == 4),
        "compact entries"
    );
    let w7 = entries.iter().find(|e| e["id"] == "w7").unwrap();
    assert_eq!(w7, &json!({"id": "w7", "x": 12.0, "y": -7.0, "v": 2}));

    // Absolute moves of all 2000 fit in one frame too.
    let moves: Vec<_> = (0..2000)
        .map(|i| json!({"id": format!("w{i}"), "x": 1000 + i, "y": 3}))
        .collect();
    ann.send(json!({"t": "board.move", "room": "board:drag", "id": "abs", "moves": moves}))
        .await;
    let changed = ann.recv_type("board.changed").await;
    assert_eq!(
        (
            changed["id"].as_str(),
            changed["widgets"].as_array().unwrap().len()
        ),
        (Some("abs"), 2000)
    );

    let mut late = Client::connect(cluster.addr(), "late").await;
    let joined = late.join("board:drag").await;
    let w7 = joined["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "w7")
        .unwrap()
        .clone();
    assert_eq!(
        (w7["x"].as_f64(), w7["y"].as_f64(), w7["v"].as_u64()),
        (Some(1007.0), Some(3.0), Some(3))
    );
    assert_eq!(w7["text"], "note");

    // A history replay rebuilds the same board: compact entries included.
    let mut since = Client::connect(cluster.addr(), "since").await;
    since
        .send(json!({"t": "join", "room": "board:drag", "since": 1999}))
        .await;
    let replay = since.recv_type("joined").await;
    let seqs: Vec<u64> = replay["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2000, 2001, 2002]);

    let too_many: Vec<String> = (0..6000).map(|i| format!("w{i}")).collect();
    ann.send(json!({"t": "board.move", "room": "board:drag", "id": "big", "ids": too_many, "dx": 1, "dy": 1}))
        .await;
    let err = ann.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("too_large"), Some("big"))
    );
    ann.send(
        json!({"t": "board.move", "room": "board:drag", "id": "half", "ids": ["w1"], "dx": 1}),
    )
    .await;
    assert_eq!(ann.recv_type("error").await["code"], "bad_request");
    cluster.stop().await;
}

#[tokio::test]
async fn field_and_count_limits_give_clear_errors_and_keep_the_connection() {
    let cluster = TestCluster::with(fast_cluster()).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    ann.join("board:limits").await;
    let cases = [
        (
            "text",
            json!({"id": "a", "kind": "sticky", "x": 0, "y": 0, "text": "x".repeat(4097)}),
        ),
        (
            "kind",
            json!({"id": "a", "kind": "k".repeat(65), "x": 0, "y": 0}),
        ),
        (
            "color",
            json!({"id": "a", "kind": "sticky", "x": 0, "y": 0, "color": "c".repeat(65)}),
        ),
    ];
    for (field, widget) in cases {
        ann.send(json!({"t": "board.put", "room": "board:limits", "id": field, "widget": widget}))
            .await;
        let err = ann.recv_type("error").await;
        assert_eq!(
            (err["code"].as_str(), err["id"].as_str()),
            (Some("bad_request"), Some(field)),
            "{err}"
        );
    }
    ann.send(json!({"t": "board.put", "room": "board:limits", "id": "ok",
        "widget": {"id": "a", "kind": "sticky", "x": 0, "y": 0, "text": "x".repeat(4096)}}))
        .await;
    assert_eq!(ann.recv_type("board.changed").await["id"], "ok");

    // Coordinates stay within ±1e9, also after a relative move; a refused
    // move changes nothing.
    for (id, frame) in [
        (
            "far",
            json!({"t": "board.put", "room": "board:limits", "widget": sticky("far", 0), "id": "far"}),
        ),
        (
            "huge",
            json!({"t": "board.move", "room": "board:limits", "moves": [{"id": "a", "x": 1e10, "y": 0}]}),
        ),
        (
            "inf",
            json!({"t": "board.move", "room": "board:limits", "ids": ["a"], "dx": 1e308, "dy": 0}),
        ),
        (
            "past",
            json!({"t": "board.move", "room": "board:limits", "ids": ["a"], "dx": 1_000_000_001.0, "dy": 1}),
        ),
    ] {
        let mut frame = frame;
        frame["id"] = json!(id);
        if id == "far" {
            frame["widget"]["x"] = json!(1e308);
        }
        ann.send(frame).await;
        let err = ann.recv_type("error").await;
        assert_eq!(
            (err["code"].as_str(), err["id"].as_str()),
            (Some("bad_request"), Some(id)),
            "{err}"
        );
    }
    let (_, info) = http(cluster.addr(), "GET", "/api/rooms/board:limits", None).await;
    let a = &info["widgets"].as_array().unwrap()[0];
    assert_eq!(
        (a["id"].as_str(), a["x"].as_f64()),
        (Some("a"), Some(0.0)),
        "{a}"
    );

    fill(&mut ann, "board:limits", 9_999).await;
    ann.send(json!({"t": "board.put", "room": "board:limits", "id": "over", "widget": sticky("one-too-many", 0)}))
        .await;
    let err = ann.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("too_large"), Some("over"))
    );
    // Replacing an existing widget is still fine.
    ann.send(json!({"t": "board.put", "room": "board:limits", "id": "again", "widget": sticky("w5", 99)}))
        .await;
    assert_eq!(ann.recv_type("board.changed").await["id"], "again");
    let joined = ann.join("board:limits").await;
    assert_eq!(joined["widgets"].as_array().unwrap().len(), 10_000);
    cluster.stop().await;
}

async fn roles_of(addr: std::net::SocketAddr, room: &str) -> serde_json::Value {
    let mut c = Client::connect(addr, "auditor").await;
    c.join(room).await["roles"].clone()
}

#[tokio::test]
async fn roles_owner_editor_viewer_and_atomic_transfer() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let mut ann = Client::connect(g1, "ann").await;
    let mut bob = Client::connect(g2, "bob").await;
    ann.join("board:team").await;
    bob.join("board:team").await;
    ann.send(
        json!({"t": "board.put", "room": "board:team", "id": "first", "widget": sticky("n", 0)}),
    )
    .await;
    let first = ann.recv_type("board.changed").await;
    assert_eq!(
        first["roles"],
        json!({"ann": "owner"}),
        "the first change makes its author owner"
    );
    assert_eq!(
        roles_of(g1, "board:team").await,
        json!({"*": "editor", "ann": "owner"})
    );

    // Only the owner grants; a viewer cannot edit.
    bob.send(json!({"t": "board.role", "room": "board:team", "id": "grab", "user": "bob", "role": "owner"}))
        .await;
    assert_eq!(bob.recv_type("error").await["code"], "forbidden");
    ann.send(json!({"t": "board.role", "room": "board:team", "id": "ro", "user": "bob", "role": "viewer"}))
        .await;
    assert_eq!(
        ann.recv_type("board.changed").await["roles"],
        json!({"bob": "viewer"})
    );
    bob.send(
        json!({"t": "board.put", "room": "board:team", "id": "edit", "widget": sticky("m", 1)}),
    )
    .await;
    let err = bob.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("forbidden"), Some("edit"))
    );
    bob.send(json!({"t": "board.cursor", "room": "board:team", "x": 1, "y": 1}))
        .await;
    bob.send(json!({"t": "board.role", "room": "board:team", "id": "bad", "user": "bob", "role": "king"}))
        .await;
    assert_eq!(bob.recv_type("error").await["code"], "bad_request");

    // Everyone races to take ownership, and the owner hands it on, in rounds:
    // after each, exactly one owner.
    let users = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
    let mut racers = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut c = Client::connect(if i % 2 == 0 { g1 } else { g2 }, u).await;
        c.join("board:team").await;
        racers.push(c);
    }
    ann.send(json!({"t": "board.role", "room": "board:team", "id": "give", "user": "u0", "role": "owner"}))
        .await;
    let given = ann.recv_type("board.changed").await;
    assert_eq!(given["roles"], json!({"ann": "editor", "u0": "owner"}));
    for round in 0..5 {
        let sends = racers.iter_mut().enumerate().map(|(i, c)| {
            let next = users[(i + 1) % users.len()];
            let id = format!("r{round}-{i}");
            async move {
                c.send(json!({"t": "board.role", "room": "board:team", "id": id, "user": next, "role": "owner"}))
                    .await;
                loop {
                    let f = c.recv().await;
                    if f["id"] == id {
                        break f["t"] == "board.changed";
                    }
                }
            }
        });
        // The writer applies them one by one: the owner's grant wins, and
        // so may the new owner's if it comes after; the rest are refused.
        let won = futures_util::future::join_all(sends).await;
        assert!(won.iter().any(|w| *w), "round {round}: {won:?}");
        let roles = roles_of(g2, "board:team").await;
        let owners: Vec<_> = roles
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, r)| *r == "owner")
            .collect();
        assert_eq!(owners.len(), 1, "round {round}: {roles}");
    }

    // Roles move with the board: drain its node and look again.
    let before = roles_of(g1, "board:team").await;
    support::drain_owner(g1, "board:team").await;
    assert_eq!(roles_of(g1, "board:team").await, before);
    cluster.stop().await;
}

/// A board larger than any one link record (1,500 notes of 4 KB, 6 MB
/// against the 4 MiB record limit) is joined and handed off whole: the
/// link carries it in parts, and no link resets.
#[tokio::test]
async fn a_board_larger_than_a_link_record_is_joined_and_handed_off_whole() {
    let cluster = TestCluster::with(fast_cluster()).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    ann.join("board:huge").await;
    let text = "n".repeat(4096);
    for i in 0..1500 {
        let mut widget = sticky(&format!("w{i}"), i);
        widget["text"] = json!(text);
        let mut frame = json!({"t": "board.put", "room": "board:huge", "widget": widget});
        if i == 1499 {
            frame["id"] = json!("last");
        }
        ann.send(frame).await;
    }
    while ann.recv_type("board.changed").await["id"] != "last" {}
    let whole = |joined: &serde_json::Value| {
        let widgets = joined["widgets"].as_array().unwrap();
        widgets.len() == 1500 && widgets.iter().all(|w| w["text"].as_str() == Some(&text))
    };
    let mut late = Client::connect(cluster.addr(), "late").await;
    assert!(whole(&late.join("board:huge").await), "joined whole");

    // Without a store, the hand-off is the only way the board moves.
    support::drain_owner(cluster.addr(), "board:huge").await;
    let mut after = Client::connect(cluster.addr(), "after").await;
    assert!(whole(&after.join("board:huge").await), "handed off whole");
    ann.send(
        json!({"t": "board.put", "room": "board:huge", "id": "more", "widget": sticky("w1500", 0)}),
    )
    .await;
    loop {
        let f = ann.recv_type("board.changed").await;
        if f["id"] == "more" {
            break;
        }
    }

    // Past 8 MiB of widgets a put is too large; the connection stays and
    // the full board is still joined whole.
    let mut held = 1501;
    let refused = loop {
        assert!(held < 2200, "8 MiB holds fewer than 2,200 notes of 4 KiB");
        let mut widget = sticky(&format!("w{held}"), 0);
        widget["text"] = json!(text);
        ann.send(json!({"t": "board.put", "room": "board:huge", "id": "fill", "widget": widget}))
            .await;
        let f = loop {
            let f = ann.recv().await;
            if f["id"] == "fill" {
                break f;
            }
        };
        if f["t"] == "error" {
            break f;
        }
        held += 1;
    };
    assert_eq!(refused["code"], "too_large", "{refused}");
    ann.send(json!({"t": "ping", "id": "still"})).await;
    assert_eq!(ann.recv_type("pong").await["id"], "still");
    let mut full = Client::connect(cluster.addr(), "full").await;
    let joined = full.join("board:huge").await;
    assert_eq!(joined["widgets"].as_array().unwrap().len(), held);
    cluster.stop().await;
}
