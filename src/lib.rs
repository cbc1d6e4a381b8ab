//! roomring: a real-time room server that scales out by consistent hashing.
//!
//! # Layout
//!
//! - `ids`: validated ids (rooms, users, members), a member's role, and the
//!   membership epoch.
//! - `protocol`: the client wire; client frames, server frames, and the
//!   plain values rooms answer with.
//! - `link`: the cluster's internal transport, and the only place that
//!   speaks it; binary records over authenticated TCP links (in mutual TLS
//!   when the cluster has a CA) between gateways and nodes and between
//!   nodes, one client and one server half, and the requests in flight on
//!   them (`calls`: ids, deadlines, the parts of long answers).
//! - `ring`: the consistent-hash ring and the pure diff of two rings.
//! - `coordinator`: the `Membership` trait, its backends and their one
//!   suite, where Redis is (one server, or the primary its Sentinels name,
//!   over TLS or not), the lease every member keeps (`keeper`), and the
//!   thread of its own that membership and leases run on, out of reach of
//!   room work.
//! - `rooms`: pure chat and board state (presence counted past its limit,
//!   ephemeral events paced), the live room (single writer,
//!   applied in place by whoever delivers an operation), its durability
//!   pipeline, the `Sink` it emits plain values through, and the
//!   durable-store trait with its in-memory twin.
//! - `node`: the application node; room registry (idle rooms released),
//!   links in, lease, live rebalancing (hand-off to peers), Redis room
//!   storage with fenced appends.
//! - `gateway`: the stateless edge; HTTP with its limits and authorization
//!   as layers, its own WebSocket framing on the sockets it owns, outboxes
//!   written in place, subscriptions and fan-out, routing, joins gathered
//!   per room, resuming moved rooms, one link per node, revoking a node
//!   whose port is closed, admission (a connection rate and cap, and a
//!   paced drain on stop), and which names and pages may call it.
//! - `archive`: every stored event kept for good, behind a trait (in
//!   memory, or PostgreSQL) with its one suite.
//! - `dev`: a whole cluster in one process; `ctl`: the operator's command
//!   (and the containers' health probe).
//! - `config`, `telemetry`, `shutdown`, `listen`: process wiring shared by
//!   the roles (the command line, metrics and logs, stopping, accepting).
//!
//! Dependencies point one way: `dev` → `gateway`, `node` → `link`, `ring`,
//! `coordinator`, `rooms` → `protocol` → `ids`. The gateway and the node never
//! import each other; they meet only on the link.

pub mod archive;
pub mod config;
pub mod coordinator;
pub mod ctl;
pub mod dev;
pub mod gateway;
pub mod ids;
pub mod link;
pub mod listen;
pub mod node;
pub mod protocol;
pub mod ring;
pub mod rooms;
pub mod shutdown;
pub mod telemetry;
