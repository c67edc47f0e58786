//! The peer network.
pub mod chunks;
pub mod receiver;
pub mod transport;
