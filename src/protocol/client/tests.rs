use super::*;
use proptest::prelude::*;

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("t".to_string()),
                    Just("room".to_string()),
                    Just("id".to_string()),
                    Just("body".to_string()),
                    Just("since".to_string()),
                    Just("widget".to_string()),
                    Just("moves".to_string()),
                    Just("ids".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame with a real type and room, and random other fields.
fn framed() -> impl Strategy<Value = serde_json::Value> {
    let t = prop_oneof![
        Just("join"),
        Just("leave"),
        Just("send"),
        Just("typing"),
        Just("read"),
        Just("board.put"),
        Just("board.move"),
        Just("board.delete"),
        Just("board.role"),
        Just("board.cursor"),
        Just("ping"),
        Just("nope")
    ];
    let room = prop_oneof![Just("chat:a"), Just("board:b"), Just("bad room"), Just("")];
    (
        t,
        room,
        proptest::collection::btree_map(
            prop_oneof![
                Just("id"),
                Just("body"),
                Just("since"),
                Just("epoch"),
                Just("seq"),
                Just("widget"),
                Just("base"),
                Just("moves"),
                Just("ids"),
                Just("dx"),
                Just("dy"),
                Just("x"),
                Just("y"),
                Just("user"),
                Just("role")
            ],
            json(),
            0..6,
        ),
    )
        .prop_map(|(t, room, rest)| {
            let mut frame = serde_json::json!({"t": t, "room": room});
            for (k, v) in rest {
                frame[k] = v;
            }
            frame
        })
}

fn check(text: &str) {
    match parse(text) {
        Ok(frame) => {
            if let Some(id) = frame.id.as_deref() {
                assert!(id.len() <= MAX_ID_BYTES);
            }
        }
        Err(rejected) => assert!(!rejected.failure.message.is_empty()),
    }
}

proptest! {
    #[test]
    fn random_text_is_parsed_or_refused_without_panicking(text in ".{0,300}") {
        check(&text);
    }

    #[test]
    fn random_json_shapes_are_parsed_or_refused_without_panicking(value in json()) {
        check(&value.to_string());
    }

    #[test]
    fn frames_with_random_fields_are_parsed_or_refused_without_panicking(frame in framed()) {
        check(&frame.to_string());
    }
}
