//! Rooms: the pure state of a chat or board room (`state`, `board`, and
//! `presence` and `ephemeral`, which keep what one member does from costing
//! the room O(members)), the live room that is its single writer (`room`),
//! the durability pipeline between it and storage (`durable`, `store`), and
//! the `Sink` through which it hands its outcomes to the node.
//!
//! No task per room: whoever delivers an operation (a link reader, the
//! loader, the journal's answer) applies it under the room's lock, in order.
//! Loading from storage is one short task per room, started by its first
//! operation, that ends once the room is rebuilt; a room with a paced event
//! waiting (a `presence.count`, a cursor batch) has one short timer task.

pub mod board;
mod durable;
pub mod ephemeral;
pub mod presence;
pub mod room;
pub mod sink;
pub mod state;
pub mod store;

pub use room::{Arrival, Frozen, Op, Room};
pub use sink::{Reply, Sink};

/// Stored events a room keeps in memory, by default (and at least).
pub const KEEP: usize = 1000;

/// What one room keeps and how it shows its presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Stored events kept in memory.
    pub keep: usize,
    /// Online users past which presence is counted, not named.
    pub presence: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            keep: KEEP,
            presence: presence::PRESENCE_LIMIT,
        }
    }
}
