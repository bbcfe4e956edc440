//! The timer's pass ([`Daemon::tick`]): the engine moves grants along, then this persists the
//! change (or journals the ends), rewrites the snapshot, audits, makes homes for grants that
//! went live, closes lost sessions and runs the teardowns that are due.

use jit_core::time::UnixTime;
use jit_proto::{Grant, GrantState};
use serde_json::{json, Value};

use super::boottime;
use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::engine::tick;
use crate::home;
use crate::nscd;

impl Daemon {
    /// Moves every grant along at `now`: pending → live (home made), live → expired
    /// (persisted, snapshot rewritten, then processes, home, caches). Also repairs a missing or
    /// altered snapshot and notices changes to /etc/passwd and /etc/group. Returns the next
    /// deadline.
    pub fn tick(&self, now: UnixTime) -> Option<UnixTime> {
        self.repair_run_dirs(now);
        let boot = boottime();
        let (moved, pending) = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            // Nothing can move before the next deadline while the grants are unchanged: the
            // walk over every grant is skipped (engine::tick::Due).
            let idle = inner
                .due
                .is_some_and(|d| d.nothing_due(&inner.state, now, boot));
            let moved = if idle {
                tick::Transitions::default()
            } else {
                tick::advance(&mut inner.state, &mut inner.boot_cap, now, boot)
            };
            if moved.changed() {
                tick::prune(&mut inner.state);
                // Persist before acting; if it fails, the expiry still takes effect in memory
                // and in the snapshot (expiry is local), is recorded in the revocation journal
                // (so a boot-time-cap end survives a restart too), and the write is retried
                // next tick.
                let _ = self.persist_ends(inner, &moved.ends(), now);
            } else if !inner.state_writable || inner.dirty {
                let _ = self.persist(inner, now);
            }
            // Idle means a current one is there; after a walk it is made again.
            if !idle {
                inner.due = Some(tick::Due::of(&inner.state, &inner.boot_cap));
            }
            let pending = self.refresh_snapshot(inner, moved.changed(), now);
            (moved, pending)
        };
        if let Some(p) = pending {
            self.publish_snapshot(p);
        }
        // One group-committed write for every grant ending in this tick (one fsync, not one
        // per grant before the first teardown can start).
        // `not_after` is the original expiry even when jitd was down at that moment.
        let expired = moved.expired.iter().map(|e| (Severity::Info, Event::GrantExpired, json!({
            "grant": e.id, "user": e.user, "not_after": e.not_after, "late_secs": (now - e.not_after).max(0),
            "boot_time_cap": e.by_boot_cap,
        })));
        self.audit.record_all(now, expired.collect());
        for id in &moved.went_live {
            self.on_live(id, now);
        }
        if moved.changed() {
            nscd::invalidate(self.cfg.nscd);
        }
        self.reap_sessions(now);
        let unfinished = self.run_teardowns(now);
        self.watch_tick(now); // monitoring/certification results (effects/watch.rs)
                              // Homes and records a storm's teardown left for later (effects/teardown.rs): the timer
                              // comes back at once, not at the next deadline.
        if unfinished {
            return Some(now);
        }
        self.next_deadline()
    }

    /// The earliest `not_before`/`not_after` still ahead.
    pub fn next_deadline(&self) -> Option<UnixTime> {
        let inner = self.lock();
        match inner.due.and_then(|d| d.deadline(&inner.state)) {
            Some(known) => known,
            None => tick::next_deadline(&inner.state),
        }
    }

    pub(crate) fn on_live(&self, id: &str, now: UnixTime) {
        let Some(g) = self.lock().state.grants.get(id).cloned() else {
            return;
        };
        let records = self.went_live(&g, now);
        self.audit.record_all(now, records);
    }

    /// What grant `g` going live (or armed) needs: its watch (cgroup, baseline) and its
    /// account's home; returns its audit records for the caller to commit (an add commits
    /// them with its `grant.created`, one fsync for both).
    pub(crate) fn went_live(&self, g: &Grant, now: UnixTime) -> Vec<(Severity, Event, Value)> {
        let mut records = Vec::new();
        self.watch_went_live(&g.id, now); // cgroup + certification baseline (effects/watch.rs)
        let mut fields =
            json!({ "grant": g.id.as_str(), "user": g.user.as_str(), "not_after": g.not_after });
        // The home comes with the account, armed or not: the first login of an --mfa account
        // grant (the one that proves the code) must find it.
        if let (true, Some(uid)) = (g.account, g.uid) {
            match home::create(&self.cfg.home_root, &g.user, uid, uid, &self.cfg.skel) {
                Ok(c) => fields["home"] = json!(format!("{:?}", c).to_lowercase()),
                Err(e) => records.push((
                    Severity::Warning,
                    Event::HomeCreateFailed,
                    json!({ "grant": g.id.as_str(), "user": g.user.as_str(), "error": e.to_string() }),
                )),
            }
        }
        if g.state_at(now) == GrantState::Armed {
            fields["needs"] =
                json!("a TOTP code (at login, or jitctl activate) before it gives privilege");
            records.push((Severity::Info, Event::GrantArmed, fields));
        } else {
            records.push((Severity::Info, Event::GrantLive, fields));
        }
        records
    }
}
