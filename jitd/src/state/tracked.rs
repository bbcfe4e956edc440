//! A map that remembers which keys changed since it was last persisted, so a change can be made
//! durable by appending only those entries to the state journal (`state/changes.rs`) instead of
//! rewriting `state.json` whole.
//!
//! Reads go through `Deref` to the map. Every way to change an entry (`insert`, `remove`,
//! `get_mut`, `update_each`) records its key; there is no `iter_mut`/`values_mut`, so a change
//! that is not recorded does not compile (and would otherwise be lost at the next restart).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use jit_core::types::Text;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `BTreeMap` by string key with the set of keys changed since [`Tracked::take_changed`].
/// Keys are shared strings (`Text`): a grant's key is its own id, and a changed key is
/// recorded without a copy.
#[derive(Debug, Clone)]
pub struct Tracked<V> {
    map: BTreeMap<Text, V>,
    changed: BTreeSet<Text>,
    /// Changes at every change of content, to a number no map had before ([`Tracked::version`]).
    version: u64,
}

/// Versions handed out, across every map: a map made anew never shows a version an earlier
/// one had.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
            version: next_version(),
        }
    }
}

impl<V> Tracked<V> {
    /// A number that changes whenever an entry may have changed (every `insert`, `remove`,
    /// `get_mut`, and an `update_each` that changed one): what was computed from the map at one
    /// version still holds while it is the same (the tick's due times, `engine/tick.rs`).
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Equality is about content: what is pending for the journal does not make two states differ.
impl<V: PartialEq> PartialEq for Tracked<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V> Deref for Tracked<V> {
    type Target = BTreeMap<Text, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V> From<BTreeMap<String, V>> for Tracked<V> {
    /// Everything in `map` counts as unchanged (as after loading).
    fn from(map: BTreeMap<String, V>) -> Self {
        Tracked {
            map: map.into_iter().map(|(k, v)| (Text::from(k), v)).collect(),
            changed: BTreeSet::new(),
            version: next_version(),
        }
    }
}

impl<V> Tracked<V> {
    /// Replaces each key by the equal string `shared(key, value)` gives, if any (after
    /// loading: a grant's key becomes its own id, an identity's the name its grant holds, so
    /// the string is in memory once). Nothing counts as changed.
    pub fn share_keys(&mut self, shared: impl Fn(&str, &V) -> Option<Text>) {
        let map = std::mem::take(&mut self.map);
        self.map = map
            .into_iter()
            .map(|(k, v)| match shared(&k, &v) {
                Some(s) if s == *k => (s, v),
                _ => (k, v),
            })
            .collect();
    }
}

impl<V: PartialEq + Clone> Tracked<V> {
    /// Inserts or replaces `key` (a `Grant` goes in as the `Box<Grant>` the grants map holds).
    pub fn insert(&mut self, key: Text, value: impl Into<V>) -> Option<V> {
        self.version = next_version();
        self.changed.insert(key.clone());
        self.map.insert(key, value.into())
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let (key, old) = self.map.remove_entry(key)?;
        self.version = next_version();
        self.changed.insert(key);
        Some(old)
    }

    /// The entry for `key`, to change; the key counts as changed whether or not it is.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let (k, _) = self.map.get_key_value(key)?;
        self.changed.insert(k.clone());
        self.version = next_version();
        self.map.get_mut(key)
    }

    /// Calls `f` on every entry; an entry for which `f` returns true counts as changed. For the
    /// tick, which looks at every grant and changes few: marking them all would make every
    /// tick's write as big as the whole state. Debug builds check that `f` told the truth.
    pub fn update_each(&mut self, mut f: impl FnMut(&str, &mut V) -> bool) {
        for (k, v) in self.map.iter_mut() {
            #[cfg(debug_assertions)]
            let before = v.clone();
            let changed = f(k, v);
            #[cfg(debug_assertions)]
            assert!(
                changed || *v == before,
                "update_each: entry {k} changed but was reported unchanged (it would not be persisted)"
            );
            if changed {
                self.changed.insert(k.clone());
                self.version = next_version();
            }
        }
    }

    /// Keys changed since the last call, in order, and forgets them.
    pub fn take_changed(&mut self) -> BTreeSet<Text> {
        std::mem::take(&mut self.changed)
    }

    /// How many keys changed since the last [`Tracked::take_changed`].
    pub fn changed_len(&self) -> usize {
        self.changed.len()
    }

    /// Forgets what changed (after the whole map was written).
    pub fn clear_changed(&mut self) {
        self.changed.clear();
    }
}

impl<V: Serialize> Serialize for Tracked<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.map.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Tracked<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, V>::deserialize(d)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_recorded_and_reads_record_nothing() {
        let mut t: Tracked<u32> = BTreeMap::from([("a".into(), 1), ("b".into(), 2)]).into();
        assert_eq!(t.get("a"), Some(&1));
        assert_eq!(t.values().sum::<u32>(), 3);
        assert_eq!(t.changed_len(), 0);
        t.insert("c".into(), 3u32);
        if let Some(v) = t.get_mut("a") {
            *v = 10;
        }
        assert!(t.get_mut("zz").is_none());
        t.remove("b");
        t.remove("nope");
        let changed: Vec<Text> = t.take_changed().into_iter().collect();
        assert_eq!(changed, ["a", "b", "c"]);
        assert_eq!(t.changed_len(), 0);
        t.update_each(|k, v| {
            if k == "c" {
                *v += 1;
                true
            } else {
                false
            }
        });
        assert_eq!(t.take_changed().into_iter().collect::<Vec<_>>(), ["c"]);
        assert_eq!(t.get("c"), Some(&4));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "changed but was reported unchanged")]
    fn an_unreported_change_in_update_each_is_caught_in_debug_builds() {
        let mut t: Tracked<u32> = BTreeMap::from([("a".into(), 1)]).into();
        t.update_each(|_, v| {
            *v = 2;
            false
        });
    }

    #[test]
    fn serializes_as_the_plain_map() {
        let mut t: Tracked<u32> = Tracked::default();
        t.insert("x".into(), 7u32);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, r#"{"x":7}"#);
        let back: Tracked<u32> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.changed_len(), 0);
    }
}
