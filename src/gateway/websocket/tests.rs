use super::*;
use proptest::prelude::*;

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn decode_all(d: &mut Decoder, chunks: &[&[u8]]) -> Result<Vec<String>, Fatal> {
    let mut seen = Vec::new();
    for chunk in chunks {
        let mut data = chunk.to_vec();
        d.feed(&mut data, &mut |m| seen.push(format!("{m:?}")))?;
    }
    Ok(seen)
}

#[test]
fn frames_split_anywhere_and_fragments_reassemble() {
    let mut stream = client_frame(true, 1, br#"{"t":"ping"}"#, [1, 2, 3, 4]);
    stream.extend(client_frame(false, 1, b"hel", [9, 9, 9, 9]));
    stream.extend(client_frame(true, 9, b"p", [5, 6, 7, 8]));
    stream.extend(client_frame(true, 0, b"lo", [7, 7, 7, 7]));
    let long = "x".repeat(70_000);
    stream.extend(client_frame(true, 1, long.as_bytes(), [1, 1, 2, 2]));
    for split in [1, 2, 3, 7, 100, stream.len()] {
        let mut d = Decoder::new(1 << 20);
        let chunks: Vec<&[u8]> = stream.chunks(split).collect();
        let seen = decode_all(&mut d, &chunks).unwrap();
        assert_eq!(seen.len(), 4, "split {split}");
        assert_eq!(seen[0], r#"Text("{\"t\":\"ping\"}")"#);
        assert_eq!(seen[1], r#"Ping([112])"#, "a ping between fragments");
        assert_eq!(seen[2], r#"Text("hello")"#);
        assert_eq!(seen[3].len(), long.len() + 8);
        assert!(d.partial.is_empty() && d.message.is_none());
    }
}

#[test]
fn protocol_breaches_close_with_their_codes() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x81, 0x02, b'h', b'i'], close::PROTOCOL),
        (client_frame(true, 0, b"x", [1, 2, 3, 4]), close::PROTOCOL),
        (client_frame(true, 3, b"x", [1, 2, 3, 4]), close::PROTOCOL),
        (client_frame(false, 9, b"x", [1, 2, 3, 4]), close::PROTOCOL),
        (
            client_frame(true, 1, &[0xff, 0xfe], [1, 2, 3, 4]),
            close::INVALID,
        ),
        (
            client_frame(true, 2, &[0u8; 200], [1, 2, 3, 4]),
            close::TOO_BIG,
        ),
        (
            {
                let mut f = client_frame(true, 1, b"x", [1, 2, 3, 4]);
                f[0] |= 0x40;
                f
            },
            close::PROTOCOL,
        ),
    ];
    for (bytes, code) in cases {
        let mut d = Decoder::new(100);
        let err = decode_all(&mut d, &[&bytes]).expect_err("refused");
        assert_eq!(err.code, code, "{bytes:?}");
    }
}

#[test]
fn binary_and_close_are_reported() {
    let mut stream = client_frame(true, 2, b"\x00\x01", [1, 2, 3, 4]);
    stream.extend(client_frame(true, 8, &1000u16.to_be_bytes(), [4, 3, 2, 1]));
    let seen = decode_all(&mut Decoder::new(100), &[&stream]).unwrap();
    assert_eq!(seen, vec!["Binary", "Close(Some(1000))"]);
}

#[test]
fn server_frames_are_unmasked_with_the_right_length() {
    for n in [0, 125, 126, 65535, 65536] {
        let f = text(&vec![b'a'; n]);
        assert_eq!(f, frame(OpCode::Data(Data::Text), &vec![b'a'; n]));
        let head = match n {
            n if n < 126 => 2,
            n if n <= 0xffff => 4,
            _ => 10,
        };
        assert_eq!(f.len(), head + n);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1] & 0x80, 0, "no mask");
    }
    assert_eq!(
        &close_frame(1008, "slow")[..],
        &[0x88, 6, 0x03, 0xf0, b's', b'l', b'o', b'w']
    );
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panicking(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut d = Decoder::new(1024);
        for chunk in chunks {
            let mut data = chunk;
            if d.feed(&mut data, &mut |_| {}).is_err() {
                break;
            }
        }
    }

    #[test]
    fn masked_text_round_trips(text in "\\PC{0,300}", mask in any::<[u8; 4]>(), split in 1usize..50) {
        let frame = client_frame(true, 1, text.as_bytes(), mask);
        let mut d = Decoder::new(1 << 20);
        let mut got = Vec::new();
        for chunk in frame.chunks(split) {
            let mut data = chunk.to_vec();
            d.feed(&mut data, &mut |m| if let Incoming::Text(t) = m { got.push(t.to_string()) }).unwrap();
        }
        prop_assert_eq!(got, vec![text]);
    }
}
