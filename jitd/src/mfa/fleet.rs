//! Fleet TOTP secrets: delivered by jit-server sealed to this host's X25519 key, opened by the
//! sync thread, and kept **in memory only** (never in state.json, the snapshot, the gates file
//! or the TOTP directory). Each is held while its person has a live server grant here that asks
//! for a code; it is zeroed when dropped ([`Secret`]), i.e. when a newer document no longer
//! carries it or the grant ends (pruned every second). Replay and lockout state for these
//! identities is the `fleet-totp` store's (no secret in it).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use jit_core::host::secret::Secret;

/// One person's secret and its enrolment version on the server.
struct Held {
    version: u64,
    secret: Secret,
}

/// The secrets held now.
#[derive(Default)]
pub struct FleetSecrets {
    held: Mutex<BTreeMap<String, Held>>,
}

impl std::fmt::Debug for FleetSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSecrets")
            .field("users", &self.users())
            .finish_non_exhaustive()
    }
}

impl FleetSecrets {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Held>> {
        crate::poison::lock(&self.held)
    }

    /// Replaces the whole set with what a verified document delivered; secrets it no longer
    /// carries are dropped (zeroed). Returns the users newly received (or with a new version)
    /// and the users whose secret was dropped.
    pub fn replace(&self, delivered: Vec<(String, u64, Secret)>) -> (Vec<String>, Vec<String>) {
        let mut m = self.lock();
        let mut changed = Vec::new();
        let mut next = BTreeMap::new();
        for (user, version, secret) in delivered {
            if m.get(&user).is_none_or(|h| h.version != version) {
                changed.push(user.clone());
            }
            next.insert(user, Held { version, secret });
        }
        let dropped = m
            .keys()
            .filter(|u| !next.contains_key(*u))
            .cloned()
            .collect();
        // The old map (and every secret only it held) is dropped here: zeroed.
        *m = next;
        (changed, dropped)
    }

    /// Drops (zeroes) every secret whose user `keep` rejects; returns those users.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut m = self.lock();
        let gone: Vec<String> = m.keys().filter(|u| !keep(u)).cloned().collect();
        for u in &gone {
            m.remove(u);
        }
        gone
    }

    /// Whether a secret is held for `user`.
    pub fn has(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// The users with a secret held (for status and tests; never the secrets).
    pub fn users(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Runs `f` with `user`'s secret bytes, under the lock (no copy leaves).
    pub fn with<R>(&self, user: &str, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.lock().get(user).map(|h| f(h.secret.bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replace_and_retain_drop_secrets() {
        let f = FleetSecrets::default();
        let got = f.replace(vec![
            ("alice".into(), 1, Secret::new(vec![1; 20])),
            ("bob".into(), 1, Secret::new(vec![2; 20])),
        ]);
        assert_eq!(got.0, vec!["alice".to_string(), "bob".to_string()]);
        assert_eq!(f.with("alice", |s| s.to_vec()).unwrap(), vec![1; 20]);
        let got = f.replace(vec![("alice".into(), 1, Secret::new(vec![1; 20]))]);
        assert!(got.0.is_empty(), "same version: nothing new");
        assert_eq!(got.1, vec!["bob".to_string()]);
        assert!(!f.has("bob"));
        assert_eq!(f.retain(|u| u != "alice"), vec!["alice".to_string()]);
        assert!(f.users().is_empty());
        assert!(f.with("alice", |_| ()).is_none());
    }
}
