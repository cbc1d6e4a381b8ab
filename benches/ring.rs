//! Ring lookups: the owner of a room, asked on every operation at the
//! gateway and the node, and the diff computed on every membership change.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use roomring::ids::{NodeId, RoomId};
use roomring::ring::{self, Ring};

fn nodes(n: usize) -> Vec<NodeId> {
    (1..=n)
        .map(|i| NodeId::parse(&format!("node-{i}")).expect("node id"))
        .collect()
}

fn rooms(n: usize) -> Vec<RoomId> {
    (0..n)
        .map(|i| RoomId::parse(&format!("chat:couple-{i}")).expect("room id"))
        .collect()
}

fn lookup(c: &mut Criterion) {
    let rooms = rooms(10_000);
    let mut group = c.benchmark_group("ring_owner");
    for n in [3, 10, 50] {
        let ring = Ring::new(nodes(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &ring, |b, ring| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % rooms.len();
                black_box(ring.owner(&rooms[i]))
            })
        });
    }
    group.finish();
}

fn diff(c: &mut Criterion) {
    let rooms = rooms(10_000);
    let old = Ring::new(nodes(3));
    let new = Ring::new(nodes(4));
    c.bench_function("ring_diff_10k_rooms_3_to_4_nodes", |b| {
        b.iter(|| black_box(ring::diff(&old, &new, rooms.iter())))
    });
}

criterion_group!(benches, lookup, diff);
criterion_main!(benches);
