//! Load scenarios.

pub mod chat;
