use super::*;

fn sticky(id: &str, x: f64) -> Widget {
    Widget {
        id: id.into(),
        kind: "sticky".into(),
        x,
        y: 0.0,
        w: None,
        h: None,
        text: None,
        color: None,
    }
}

#[test]
fn widgets_past_the_byte_limit_are_too_large_and_change_nothing() {
    let mut b = Board::default();
    let note = |id: &str| Widget {
        text: Some("n".repeat(4000)),
        ..sticky(id, 0.0)
    };
    let mut n = 0;
    while b.put(note(&format!("w{n}")), None).is_ok() {
        n += 1;
    }
    assert!((1900..2100).contains(&n), "{n} notes of 4 KB in 8 MiB");
    let before = b.clone();
    let refused = b.put(note("one-more"), None).unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooLarge);
    assert_eq!(b, before, "a refused put changes nothing");
    b.put(sticky("w0", 1.0), Some(1))
        .expect("a smaller replacement fits");
    b.put(note("one-more"), None).expect("and frees room");
    let encoded: usize = b
        .widgets()
        .map(|w| serde_json::to_vec(w).unwrap().len())
        .sum();
    assert!(encoded <= MAX_BOARD_BYTES);
    let moves: Vec<WidgetMove> = b
        .widgets()
        .map(|w| WidgetMove {
            id: w.widget.id.clone(),
            x: -999_999_999.123_456_7,
            y: 999_999_999.987_654_3,
        })
        .collect();
    b.apply_moves(&moves);
    let encoded: usize = b
        .widgets()
        .map(|w| serde_json::to_vec(w).unwrap().len())
        .sum();
    assert!(encoded <= MAX_BOARD_BYTES, "moves cannot take it past");
    b.delete(&["w1".to_string(), "w2".to_string()]);
    let rebuilt = Board::from_widgets(b.widgets().cloned().collect());
    assert_eq!(rebuilt.bytes(), b.bytes(), "counted the same when rebuilt");
}

#[test]
fn a_move_that_takes_a_widget_out_of_bounds_changes_nothing() {
    let mut b = Board::default();
    b.put(sticky("edge", MAX_COORD), None).unwrap();
    b.put(sticky("mid", 0.0), None).unwrap();
    let before = b.clone();
    let ids = ["edge".to_string(), "mid".to_string()];
    let refused = b.shift(&ids, 1.0, 0.0).unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    assert_eq!(b, before, "not even the widget that would fit moved");
    assert_eq!(b.shift(&ids, -1.0, 0.0).unwrap(), ids);
    assert_eq!(b.get("edge").unwrap().widget.x, MAX_COORD - 1.0);
}

#[test]
fn versions_and_conflicts() {
    let mut b = Board::default();
    b.put(sticky("a", 1.0), None).unwrap();
    assert_eq!(b.get("a").unwrap().v, 1);
    b.put(sticky("a", 2.0), Some(1)).unwrap();
    assert_eq!(b.get("a").unwrap().v, 2);
    let stale = b.put(sticky("a", 3.0), Some(1)).unwrap_err();
    assert_eq!(stale.code, ErrorCode::Conflict);
    assert_eq!(
        b.get("a").unwrap().widget.x,
        2.0,
        "a refused write changes nothing"
    );
    let missing = b.put(sticky("zz", 3.0), Some(1)).unwrap_err();
    assert_eq!(missing.code, ErrorCode::Conflict);
    assert!(b.get("zz").is_none());
}

#[test]
fn moves_and_deletes_skip_unknown_ids() {
    let mut b = Board::default();
    b.put(sticky("a", 0.0), None).unwrap();
    b.put(sticky("b", 0.0), None).unwrap();
    let moves = [
        WidgetMove {
            id: "a".into(),
            x: 5.0,
            y: 6.0,
        },
        WidgetMove {
            id: "nope".into(),
            x: 1.0,
            y: 1.0,
        },
    ];
    assert_eq!(b.apply_moves(&moves), vec!["a".to_string()]);
    assert_eq!(
        (b.get("a").unwrap().widget.x, b.get("a").unwrap().v),
        (5.0, 2)
    );
    assert_eq!(
        b.delete(&["b".into(), "nope".into()]),
        vec!["b".to_string()]
    );
    assert_eq!(b.widgets().count(), 1);
}
