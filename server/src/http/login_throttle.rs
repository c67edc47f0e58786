//! Password guessing on `POST /auth/token`, slowed down per user name: the
//! first [`FREE_FAILURES`] wrong passwords in a row cost nothing more than
//! the hash; after that each further failure locks the name for twice as
//! long as the last ([`FIRST_LOCK`], then 10 s, 20 s ... up to
//! [`MAX_LOCK`]), and a locked
//! name is answered 429 without a password being checked. A right password
//! clears the count. The table is per node and bounded: guessing through
//! every member at once still meets each one's lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords in a row allowed before the name is locked.
pub const FREE_FAILURES: u32 = 5;
/// The first lock.
pub const FIRST_LOCK: Duration = Duration::from_secs(5);
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(60);
/// Names remembered at most; when full, names not locked any more are
/// forgotten first, then all (an attacker spraying names cannot grow it).
const MAX_NAMES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// The failed logins of each user name on this node.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    names: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    /// How long `name` stays locked from `now` (`None`: it may try).
    pub fn locked(&self, name: &str, now: Instant) -> Option<Duration> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let until = names.get(name)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// A wrong password for `name` at `now`.
    pub fn failed(&self, name: &str, now: Instant) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() >= MAX_NAMES && !names.contains_key(name) {
            names.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
            if names.len() >= MAX_NAMES {
                names.clear();
            }
        }
        let f = names.entry(name.to_string()).or_insert(Failures {
            count: 0,
            locked_until: None,
        });
        f.count = f.count.saturating_add(1);
        if f.count > FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES - 1).min(16);
            let lock = (FIRST_LOCK * (1u32 << doublings)).min(MAX_LOCK);
            f.locked_until = Some(now + lock);
        }
    }

    /// A right password for `name`: its count starts over.
    pub fn succeeded(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_locked_after_the_free_failures_for_longer_each_time() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            t.failed("alice", t0);
            assert_eq!(t.locked("alice", t0), None);
        }
        t.failed("alice", t0);
        assert_eq!(t.locked("alice", t0), Some(FIRST_LOCK));
        let t1 = t0 + FIRST_LOCK;
        assert_eq!(t.locked("alice", t1), None);
        t.failed("alice", t1);
        assert_eq!(t.locked("alice", t1), Some(FIRST_LOCK * 2));
        // Another name is not affected; a success starts over.
        assert_eq!(t.locked("bob", t0), None);
        t.succeeded("alice");
        assert_eq!(t.locked("alice", t1), None);
    }

    #[test]
    fn the_lock_stops_growing_at_the_maximum() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            t.failed("alice", t0);
        }
        assert_eq!(t.locked("alice", t0), Some(MAX_LOCK));
    }

    #[test]
    fn sprayed_names_do_not_grow_the_table_past_its_bound() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..(MAX_NAMES + 10) {
            t.failed(&format!("user-{i}"), t0);
        }
        assert!(t.names.lock().unwrap().len() <= MAX_NAMES);
    }
}
