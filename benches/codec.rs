//! The frame codec on the hot path: a client `send` parsed at the gateway,
//! the `msg` encoded once by the owner, and the gateway↔node link header
//! around it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomring::protocol::client;
use roomring::protocol::link::{self, ToGateway};
use roomring::protocol::server::ServerFrame;

const SEND: &str = r#"{"t":"send","room":"chat:couple-42","id":"17.1234567","body":{"text":"see you at eight?","at":1234567}}"#;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(SEND.len() as u64));
    group.bench_function("parse_send", |b| {
        b.iter(|| black_box(client::parse(black_box(SEND)).is_ok()))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let body = serde_json::value::RawValue::from_string(
        r#"{"text":"see you at eight?","at":1234567}"#.to_string(),
    )
    .expect("body");
    c.bench_function("codec/encode_msg", |b| {
        b.iter(|| {
            black_box(
                ServerFrame::Msg {
                    room: "chat:couple-42",
                    seq: black_box(981),
                    from: "ann",
                    body: &body,
                    ts: 1_764_590_000_000,
                }
                .encode(),
            )
        })
    });
    let frame = ServerFrame::Msg {
        room: "chat:couple-42",
        seq: 981,
        from: "ann",
        body: &body,
        ts: 1_764_590_000_000,
    }
    .encode();
    let room = roomring::ids::RoomId::parse("chat:couple-42").expect("room");
    c.bench_function("codec/link_event_encode", |b| {
        b.iter(|| {
            let header = ToGateway::Event {
                room: room.clone(),
                seq: Some(981),
                skip: None,
            };
            black_box(link::encode(&header, Some(&frame)))
        })
    });
    let message = link::encode(
        &ToGateway::Event {
            room: room.clone(),
            seq: Some(981),
            skip: None,
        },
        Some(&frame),
    );
    c.bench_function("codec/link_event_decode", |b| {
        b.iter(|| black_box(link::decode::<ToGateway>(black_box(&message)).is_ok()))
    });
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
