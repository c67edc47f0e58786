//! The key space: every key with its value and modification index, in key
//! order, stored compactly and persistently.
//!
//! Each key is one shared record ([`Record`]): the key and the value in one
//! allocation, the modification index beside them. The tree holds only a
//! pointer per key, so
//! - memory per key is the key and value bytes plus about 70 bytes (the
//!   record's header, the pointer in a B-tree leaf that sequential inserts
//!   leave half full, and the branches), where a map of `String` to a value
//!   struct paid about 170 (issue 15: at most 2x the raw bytes per member);
//! - a clone is O(1) (imbl's tree shares its nodes), and a node copied on
//!   write after a clone copies pointers, not strings: a snapshot being
//!   written while puts continue costs the puts little.
//!
//! Its serialized form is the same as a map of key to `{value, mod_index}`,
//! so images written before this type read back unchanged.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdSet;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::types::Index;

/// One key's record: its key and value in one string, and the index of the
/// entry that last wrote it (etcd's `mod_revision`).
struct Record {
    mod_index: Index,
    /// Where the key ends and the value starts in `text`.
    key_len: usize,
    text: Box<str>,
}

/// A shared pointer to a [`Record`], ordered (and found) by its key alone.
#[derive(Clone)]
struct Stored(Arc<Record>);

impl Stored {
    fn new(key: &str, value: &str, mod_index: Index) -> Stored {
        let mut text = String::with_capacity(key.len() + value.len());
        text.push_str(key);
        text.push_str(value);
        Stored(Arc::new(Record {
            mod_index,
            key_len: key.len(),
            text: text.into_boxed_str(),
        }))
    }

    fn key(&self) -> &str {
        // `key_len` is a char boundary: the key was a whole `str`.
        &self.0.text[..self.0.key_len]
    }

    fn value(&self) -> &str {
        &self.0.text[self.0.key_len..]
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Stored {}

impl PartialOrd for Stored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(other.key())
    }
}

/// Lookups by `&str`: consistent with `Ord`, which compares keys only.
impl Borrow<str> for Stored {
    fn borrow(&self) -> &str {
        self.key()
    }
}

/// Every key with its value and modification index.
#[derive(Clone, Default)]
pub(crate) struct Keyspace {
    set: OrdSet<Stored>,
}

impl Keyspace {
    /// `key`'s value and modification index.
    pub(crate) fn get(&self, key: &str) -> Option<(&str, Index)> {
        self.set.get(key).map(|s| (s.value(), s.0.mod_index))
    }

    /// Sets `key` to `value`, written by the entry at `mod_index`; the value
    /// it replaced.
    pub(crate) fn insert(&mut self, key: &str, value: &str, mod_index: Index) -> Option<String> {
        self.set
            .insert(Stored::new(key, value, mod_index))
            .map(|old| old.value().to_string())
    }

    /// Removes `key`; the value it had.
    pub(crate) fn remove(&mut self, key: &str) -> Option<String> {
        self.set.remove(key).map(|old| old.value().to_string())
    }

    /// `(key, value)` in key order from `start` on.
    pub(crate) fn range_from<'a>(
        &'a self,
        start: Bound<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.set
            .range::<_, str>((start, Bound::Unbounded))
            .map(|s| (s.key(), s.value()))
    }

    /// `(key, value, mod_index)` in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str, Index)> {
        self.set.iter().map(|s| (s.key(), s.value(), s.0.mod_index))
    }

    /// The number of keys.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether there is no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl PartialEq for Keyspace {
    /// The same keys with the same values and indexes (the set's own
    /// equality would compare keys only).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Keyspace {}

impl fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v, i)| (k, (v, i))))
            .finish()
    }
}

/// A record as the image has always written it: the struct `{value,
/// mod_index}` that was the map's value type.
struct SlotImage<'a> {
    value: &'a str,
    mod_index: Index,
}

impl Serialize for SlotImage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut slot = s.serialize_struct("Slot", 2)?;
        slot.serialize_field("value", self.value)?;
        slot.serialize_field("mod_index", &self.mod_index)?;
        slot.end()
    }
}

/// The owned form of [`SlotImage`], as decoded.
#[derive(serde::Deserialize)]
#[serde(rename = "Slot")]
struct SlotOwned {
    value: String,
    mod_index: Index,
}

impl Serialize for Keyspace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (key, value, mod_index) in self.iter() {
            map.serialize_entry(key, &SlotImage { value, mod_index })?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Keyspace {
    /// Trusts no length prefix: an image comes from disk or from a peer,
    /// and a corrupt length must be an error when the data runs out, not an
    /// allocation of that many entries up front.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyspaceVisitor;
        impl<'de> Visitor<'de> for KeyspaceVisitor {
            type Value = Keyspace;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of key to value and modification index")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Keyspace, A::Error> {
                let mut keys = Keyspace::default();
                while let Some((key, slot)) = access.next_entry::<String, SlotOwned>()? {
                    keys.insert(&key, &slot.value, slot.mod_index);
                }
                Ok(keys)
            }
        }
        d.deserialize_map(KeyspaceVisitor)
    }
}

impl<'a> FromIterator<(&'a str, &'a str, Index)> for Keyspace {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str, Index)>>(iter: I) -> Self {
        let mut keys = Keyspace::default();
        for (key, value, mod_index) in iter {
            keys.insert(key, value, mod_index);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imbl::OrdMap;

    /// The map type images were written from before.
    #[derive(Clone, serde::Serialize)]
    struct Slot {
        value: String,
        mod_index: Index,
    }

    #[test]
    fn serializes_to_the_same_bytes_as_the_map_it_replaced() {
        let mut old: OrdMap<String, Slot> = OrdMap::new();
        let mut new = Keyspace::default();
        for (i, (k, v)) in [("b", "2"), ("a", "1"), ("ü", "€uro"), ("", "empty key")]
            .into_iter()
            .enumerate()
        {
            let slot = Slot {
                value: v.to_string(),
                mod_index: 10 + i as Index,
            };
            old.insert(k.to_string(), slot);
            new.insert(k, v, 10 + i as Index);
        }
        let old_bytes = postcard::to_stdvec(&old).unwrap();
        assert_eq!(postcard::to_stdvec(&new).unwrap(), old_bytes);
        let back: Keyspace = postcard::from_bytes(&old_bytes).unwrap();
        assert_eq!(back, new);
        assert_eq!(back.get("ü"), Some(("€uro", 12)));
    }

    #[test]
    fn a_clone_keeps_its_values_while_the_original_changes() {
        let mut keys = Keyspace::default();
        keys.insert("k", "old", 1);
        let frozen = keys.clone();
        assert_eq!(keys.insert("k", "new", 2), Some("old".to_string()));
        assert_eq!(keys.remove("k"), Some("new".to_string()));
        assert_eq!(frozen.get("k"), Some(("old", 1)));
        assert_eq!(keys.get("k"), None);
    }

    #[test]
    fn equality_compares_values_and_indexes_not_only_keys() {
        let mut a = Keyspace::default();
        let mut b = Keyspace::default();
        a.insert("k", "v", 1);
        b.insert("k", "v", 2);
        assert_ne!(a, b);
        b.insert("k", "w", 1);
        assert_ne!(a, b);
        b.insert("k", "v", 1);
        assert_eq!(a, b);
    }

    #[test]
    fn ranges_start_at_the_bound_in_key_order() {
        let keys: Keyspace = [("a1", "x", 1), ("b", "y", 2), ("a2", "z", 3)]
            .into_iter()
            .collect();
        let from = |b| keys.range_from(b).map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(from(Bound::Included("a")), ["a1", "a2", "b"]);
        assert_eq!(from(Bound::Excluded("a1")), ["a2", "b"]);
        assert_eq!(from(Bound::Included("b")), ["b"]);
        assert_eq!(from(Bound::Excluded("b")), Vec::<&str>::new());
    }

    #[test]
    fn a_corrupt_length_prefix_is_an_error() {
        let mut keys = Keyspace::default();
        keys.insert("k", "v", 1);
        let mut bytes = postcard::to_stdvec(&keys).unwrap();
        bytes[0] = 0xff; // a length prefix far beyond the data
        bytes.truncate(bytes.len() - 1);
        assert!(postcard::from_bytes::<Keyspace>(&bytes).is_err());
    }
}
