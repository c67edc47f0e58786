//! The raft-kv dashboard.
