//! Load scenarios.

pub mod board;
pub mod chat;
pub mod idle;
pub mod rolling;
pub mod rpc;
