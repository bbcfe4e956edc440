//! Failure counters kept per source, for the TOTP and break-glass stores: who typed wrong codes
//! locks itself out, not the person everyone else is trying to log in as.
//!
//! A source is a key jitd derives from where the attempt came from (`uid:<n>` for a local user
//! running su, `rhost:<addr>` for sshd; see `daemon::login::lockout_source`). Each record keeps
//! the person's own counter (attempts with no source) and a map of sources, bounded at
//! [`MAX_SOURCES`]: a new source finds room by dropping one idle and unlocked for longer than
//! the longest lockout, and otherwise shares one overflow counter, so a flood of sources can
//! neither grow the record without bound nor wipe a locked source's count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Sources whose failures are counted separately per record.
pub const MAX_SOURCES: usize = 32;
/// Longest source key kept (longer ones are cut). Small and printable so that a record with
/// every source at its longest still fits one slot of `durable::write_slotted` (8 KiB): a
/// TOTP record that cannot be written would stop codes being checked.
pub const MAX_SOURCE_KEY: usize = 64;
/// The shared counter of sources that found no room.
pub const OVERFLOW_SOURCE: &str = "overflow";

/// One source's consecutive failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strikes {
    /// Consecutive failures.
    pub failures: u32,
    /// Locked until this unix time (0: not locked).
    pub locked_until: i64,
    /// Last attempt (unix time), to find idle sources.
    pub last: i64,
}

/// The per-source counters of one record.
pub type Sources = BTreeMap<String, Strikes>;

/// A source key: printable ASCII (anything else becomes `?`, so JSON never escapes it into
/// more bytes), cut to [`MAX_SOURCE_KEY`] bytes.
pub fn source_key(source: &str) -> String {
    source
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(MAX_SOURCE_KEY)
        .collect()
}

fn stale(st: &Strikes, now: i64, idle_secs: i64) -> bool {
    now >= st.locked_until && now.saturating_sub(st.last) > idle_secs
}

/// The key an attempt from `source` is counted under, and that counter now.
pub fn pick(sources: &Sources, source: &str, now: i64, idle_secs: i64) -> (String, Strikes) {
    let source = source_key(source);
    if let Some(st) = sources.get(&source) {
        return (source, *st);
    }
    let room = sources.len() < MAX_SOURCES
        || sources
            .iter()
            .any(|(k, st)| k != OVERFLOW_SOURCE && stale(st, now, idle_secs));
    if room {
        (source, Strikes::default())
    } else {
        let st = sources.get(OVERFLOW_SOURCE).copied().unwrap_or_default();
        (OVERFLOW_SOURCE.to_string(), st)
    }
}

/// Stores `st` under `key`; a counter back at zero is dropped, and an idle source makes room
/// for a new one.
pub fn store(sources: &mut Sources, key: String, st: Strikes, now: i64, idle_secs: i64) {
    if st.failures == 0 && st.locked_until == 0 {
        sources.remove(&key);
        return;
    }
    if !sources.contains_key(&key) && sources.len() >= MAX_SOURCES {
        let oldest = sources
            .iter()
            .filter(|(k, s)| k.as_str() != OVERFLOW_SOURCE && stale(s, now, idle_secs))
            .min_by_key(|(_, s)| s.last)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            sources.remove(&k);
        }
    }
    sources.insert(key, st);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_overflow_and_idle_eviction() {
        let mut s = Sources::new();
        let locked = Strikes {
            failures: 5,
            locked_until: 130,
            last: 100,
        };
        for i in 0..MAX_SOURCES {
            let (k, _) = pick(&s, &format!("rhost:10.0.0.{i}"), 100, 900);
            store(&mut s, k, locked, 100, 900);
        }
        let (k, st) = pick(&s, "rhost:10.9.9.9", 100, 900);
        assert_eq!((k.as_str(), st), (OVERFLOW_SOURCE, Strikes::default()));
        store(&mut s, k, locked, 100, 900);
        assert_eq!(s.len(), MAX_SOURCES + 1);
        // Idle and unlocked long enough: room for a new source, the oldest goes.
        let (k, st) = pick(&s, "rhost:10.8.8.8", 2000, 900);
        assert_eq!((k.as_str(), st), ("rhost:10.8.8.8", Strikes::default()));
        store(&mut s, k, locked, 2000, 900);
        assert_eq!(s.len(), MAX_SOURCES + 1);
        assert!(s.contains_key("rhost:10.8.8.8"));
        // Back at zero: dropped.
        store(
            &mut s,
            "rhost:10.8.8.8".into(),
            Strikes::default(),
            2000,
            900,
        );
        assert!(!s.contains_key("rhost:10.8.8.8"));
        assert_eq!(source_key(&"é".repeat(400)).len(), MAX_SOURCE_KEY);
        assert_eq!(source_key("rhost:a\nb\u{1b}"), "rhost:a?b?");
    }
}
