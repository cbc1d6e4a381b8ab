use proptest::prelude::*;

use super::*;

fn nodes(n: usize) -> Vec<NodeId> {
    (0..n)
        .map(|i| NodeId::parse(&format!("node-{i}")).unwrap())
        .collect()
}

fn rooms(n: usize) -> Vec<RoomId> {
    (0..n)
        .map(|i| RoomId::parse(&format!("chat:room-{i}")).unwrap())
        .collect()
}

#[test]
fn spread_over_three_nodes_is_within_20_percent() {
    let ring = Ring::new(nodes(3));
    let rooms = rooms(10_000);
    let mut counts = std::collections::HashMap::new();
    for room in &rooms {
        *counts
            .entry(ring.owner(room).unwrap().clone())
            .or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 3);
    let even = rooms.len() as f64 / 3.0;
    for (node, count) in counts {
        let off = (count as f64 - even).abs() / even;
        assert!(
            off <= 0.20,
            "{node} owns {count} of {} rooms ({off:.2} off even)",
            rooms.len()
        );
    }
}

#[test]
fn empty_ring_has_no_owner() {
    let ring = Ring::new(Vec::new());
    assert!(ring.is_empty());
    assert_eq!(ring.owner(&rooms(1)[0]), None);
}

#[test]
fn ring_ignores_order_and_duplicates() {
    let mut reversed = nodes(4);
    reversed.reverse();
    reversed.push(reversed[0].clone());
    let (a, b) = (Ring::new(nodes(4)), Ring::new(reversed));
    for room in rooms(500) {
        assert_eq!(a.owner(&room), b.owner(&room));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Adding one node moves rooms only to it, about 1/(N+1) of them.
    #[test]
    fn adding_a_node_moves_only_to_it(n in 1usize..8) {
        let all = nodes(n + 1);
        let old = Ring::new(all[..n].to_vec());
        let new = Ring::new(all.clone());
        let rooms = rooms(4000);
        let moves = diff(&old, &new, &rooms);
        for m in &moves {
            prop_assert_eq!(m.to.as_ref(), Some(&all[n]));
        }
        let share = moves.len() as f64 / rooms.len() as f64;
        let expected = 1.0 / (n + 1) as f64;
        prop_assert!((share - expected).abs() < expected * 0.35, "moved {share:.3}, expected {expected:.3}");
    }

    /// Removing one node moves only its rooms, about 1/N of them.
    #[test]
    fn removing_a_node_moves_only_from_it(n in 2usize..9, gone in 0usize..9) {
        let gone = gone % n;
        let all = nodes(n);
        let old = Ring::new(all.clone());
        let new = Ring::new(all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, id)| id.clone()));
        let rooms = rooms(4000);
        let moves = diff(&old, &new, &rooms);
        for m in &moves {
            prop_assert_eq!(m.from.as_ref(), Some(&all[gone]));
            prop_assert!(m.to.is_some() && m.to.as_ref() != Some(&all[gone]));
        }
        let owned = rooms.iter().filter(|r| old.owner(r) == Some(&all[gone])).count();
        prop_assert_eq!(moves.len(), owned);
        let share = moves.len() as f64 / rooms.len() as f64;
        let expected = 1.0 / n as f64;
        prop_assert!((share - expected).abs() < expected * 0.35, "moved {share:.3}, expected {expected:.3}");
    }
}

#[test]
fn arcs_cover_the_circle_and_agree_with_owners() {
    let ring = Ring::new(nodes(3));
    let arcs = ring.arcs();
    assert_eq!(arcs.first().map(|a| a.0), Some(0.0));
    assert_eq!(arcs.last().map(|a| a.1), Some(1.0));
    for pair in arcs.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "arcs are contiguous");
    }
    let share = |n: &NodeId| {
        arcs.iter()
            .filter(|a| &a.2 == n)
            .map(|a| a.1 - a.0)
            .sum::<f64>()
    };
    for n in nodes(3) {
        assert!(
            (share(&n) - 1.0 / 3.0).abs() < 0.1,
            "{n} has {:.3} of the circle",
            share(&n)
        );
    }
}
