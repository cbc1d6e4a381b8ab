//! Load scenarios.

pub mod chat;
pub mod idle;
