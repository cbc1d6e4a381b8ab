//! The codecs on the hot path: a client `send` parsed at the gateway and
//! encoded as a link record, the `msg` built once by the owner, the link
//! record around it both ways, and the WebSocket frame built once for every
//! subscriber.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomring::link::codec;
use roomring::link::{FromNode, ToNode};
use roomring::protocol::client::{self, Command};
use roomring::protocol::server::msg_frame;
use serde_bytes::Bytes as Raw;

const SEND: &str = r#"{"t":"send","room":"chat:couple-42","id":"17.1234567","body":{"text":"see you at eight?","at":1234567}}"#;
const BODY: &[u8] = br#"{"text":"see you at eight?","at":1234567}"#;

fn gateway(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(SEND.len() as u64));
    group.bench_function("parse_send", |b| {
        b.iter(|| black_box(client::parse(black_box(SEND)).is_ok()))
    });
    group.bench_function("parse_send_encode_op", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            let frame = client::parse(black_box(SEND)).expect("parses");
            let Command::Room { room, op } = frame.cmd else {
                unreachable!("a send is a room command")
            };
            let record = ToNode::Op {
                rid: 7,
                room: &room,
                conn: 9,
                user: "ann",
                id: frame.id.as_deref(),
                op: op.map_body(Raw::new),
            };
            codec::encode_into(&mut buf, &record).expect("encodes");
            buf.clear();
        })
    });
    group.finish();
}

fn node(c: &mut Criterion) {
    c.bench_function("codec/encode_msg", |b| {
        b.iter(|| {
            black_box(msg_frame(
                "chat:couple-42",
                black_box(981),
                "ann",
                BODY,
                1_764_590_000_000,
            ))
        })
    });
    let frame = msg_frame("chat:couple-42", 981, "ann", BODY, 1_764_590_000_000);
    let event = FromNode::Event {
        room: "chat:couple-42",
        seq: Some(981),
        skip: None,
        payload: Raw::new(&frame),
    };
    c.bench_function("codec/link_event_encode", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            codec::encode_into(&mut buf, black_box(&event)).expect("encodes");
            buf.clear();
        })
    });
    let mut record = BytesMut::new();
    codec::encode_into(&mut record, &event).expect("encodes");
    let body = codec::split_record(&mut record)
        .expect("frames")
        .expect("whole");
    c.bench_function("codec/link_event_decode", |b| {
        b.iter(|| black_box(codec::decode::<FromNode<'_>>(black_box(&body)).is_ok()))
    });
}

criterion_group!(benches, gateway, node);
criterion_main!(benches);
