//! A board's changes in the room state: seqs, ids, and what a rebuild keeps.

use super::*;

/// A sticky note at (1, 2).
fn sticky(id: &str) -> crate::protocol::client::Widget {
    crate::protocol::client::Widget {
        id: id.into(),
        kind: "sticky".into(),
        x: 1.0,
        y: 2.0,
        w: None,
        h: None,
        text: None,
        color: None,
    }
}

#[test]
fn board_changes_take_seqs_and_echo_the_id() {
    use crate::protocol::client::{Widget, WidgetMove};
    let mut r = room("board");
    let ann = who("ann", 1, 1);
    join(&mut r, &ann, None);
    let w = Widget {
        text: Some("hi".into()),
        ..sticky("w1")
    };
    let widget = w.clone();
    let put = r.apply(&ann, Some("p"), &RoomOp::BoardPut { widget, base: None }, 1);
    let changed = json(&put.events[0].frame);
    let (t, seq, id) = (&changed["t"], &changed["seq"], &changed["id"]);
    assert_eq!(
        (t.as_str(), seq.as_u64(), id.as_str()),
        (Some("board.changed"), Some(1), Some("p"))
    );
    assert_eq!(changed["widgets"][0]["v"], 1);
    let stale = RoomOp::BoardPut {
        widget: w,
        base: Some(7),
    };
    let stale = r.apply(&ann, Some("q"), &stale, 1);
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
fn a_board_rebuilt_from_its_log_and_snapshot_has_the_same_widgets_and_roles() {
    use crate::protocol::client::{BoardRole, Widget};
    let mut r = RoomState::new(RoomId::parse("board:r").unwrap(), keep(1000));
    let ann = who("ann", 1, 1);
    let put = |id: &str| RoomOp::BoardPut {
        widget: Widget {
            text: Some("t".into()),
            ..sticky(id)
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
