//! The consistent-hash ring: which active node owns which room. A pure
//! function of the member list, so every process that sees the same list
//! computes the same owners without talking; `diff` says which rooms move
//! when the list changes.

use hashring::HashRing;

use crate::ids::{NodeId, RoomId};

/// Virtual nodes per node: enough that 3 nodes share 10k rooms within a few
/// percent of even.
pub const VNODES: u32 = 160;

/// One point of a node on the ring; `hashring` hashes it into a position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VNode {
    node: NodeId,
    replica: u32,
}

/// The ring over a set of active nodes.
#[derive(Clone, Default)]
pub struct Ring {
    ring: HashRing<VNode>,
    nodes: Vec<NodeId>,
}

impl Ring {
    /// Builds the ring of these nodes (order and duplicates do not matter).
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        let mut nodes: Vec<NodeId> = nodes.into_iter().collect();
        nodes.sort();
        nodes.dedup();
        let mut ring = HashRing::new();
        ring.batch_add(
            nodes
                .iter()
                .flat_map(|node| {
                    (0..VNODES).map(move |replica| VNode {
                        node: node.clone(),
                        replica,
                    })
                })
                .collect(),
        );
        Self { ring, nodes }
    }

    /// The owner of a room, `None` on an empty ring.
    pub fn owner(&self, room: &RoomId) -> Option<&NodeId> {
        self.owner_of(room.as_str())
    }

    /// The owner of any key (user notifications are keyed `user:NAME`).
    pub fn owner_of(&self, key: &str) -> Option<&NodeId> {
        self.ring.get(&key).map(|v| &v.node)
    }

    /// The nodes on the ring, sorted.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The ring as arcs (fractions of the hash space, merged where one node
    /// owns consecutive points): `(start, end, owner)`, for drawing it.
    pub fn arcs(&self) -> Vec<(f64, f64, NodeId)> {
        use std::hash::BuildHasher;
        let mut points: Vec<(u64, &NodeId)> = self
            .nodes
            .iter()
            .flat_map(|node| {
                (0..VNODES).map(move |replica| {
                    let v = VNode {
                        node: node.clone(),
                        replica,
                    };
                    (hashring::DefaultHashBuilder.hash_one(&v), node)
                })
            })
            .collect();
        points.sort();
        let frac = |p: u64| p as f64 / u64::MAX as f64;
        let mut arcs: Vec<(f64, f64, NodeId)> = Vec::new();
        let mut start = 0.0;
        for (pos, node) in &points {
            // A key hashing at or before a point belongs to that point's node.
            match arcs.last_mut() {
                Some(last) if last.2 == **node => last.1 = frac(*pos),
                _ => arcs.push((start, frac(*pos), (*node).clone())),
            }
            start = frac(*pos);
        }
        if let Some((_, first)) = points.first() {
            // Past the last point the ring wraps to the first point's node.
            arcs.push((start, 1.0, (*first).clone()));
        }
        arcs
    }

    /// Whether the ring has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// One room changing owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The room.
    pub room: RoomId,
    /// Its owner on the old ring.
    pub from: Option<NodeId>,
    /// Its owner on the new ring.
    pub to: Option<NodeId>,
}

/// The rooms among `rooms` whose owner differs between `old` and `new`.
pub fn diff<'a>(old: &Ring, new: &Ring, rooms: impl IntoIterator<Item = &'a RoomId>) -> Vec<Move> {
    rooms
        .into_iter()
        .filter_map(|room| {
            let (from, to) = (old.owner(room), new.owner(room));
            (from != to).then(|| Move {
                room: room.clone(),
                from: from.cloned(),
                to: to.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
