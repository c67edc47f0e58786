//! raft-kv-server library.
pub mod storage;
