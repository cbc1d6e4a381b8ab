//! Rooms: the pure state of a chat or board room (`state`, `board`), the
//! live room that is its single writer (`room`), the durability pipeline
//! between it and storage (`durable`, `store`), and the `Sink` through which
//! it hands its outcomes to the node.
//!
//! No task per room: whoever delivers an operation (a link reader, the
//! loader, the journal's answer) applies it under the room's lock, in order.
//! Loading from storage is one short task per room, started by its first
//! operation, that ends once the room is rebuilt.

pub mod board;
mod durable;
pub mod room;
pub mod sink;
pub mod state;
pub mod store;

pub use room::{Arrival, Frozen, Op, Room};
pub use sink::{Reply, Sink};
