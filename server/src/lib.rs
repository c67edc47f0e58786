//! raft-kv-server library.
