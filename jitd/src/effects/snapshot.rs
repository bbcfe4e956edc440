//! The snapshot the modules read (`/run/jitd/snapshot` and the root-only gates file), projected
//! from state and the local files and rewritten after every change, and again when someone
//! removed or altered it or /etc/passwd or /etc/group changed.
//!
//! Two steps, so that building the files (most of a change's cost with many grants: the lookup
//! index and two images) never holds the state lock that every login, sudo check and status
//! request needs:
//!
//! 1. [`Daemon::project_snapshot`], under the state lock: the projection of state at this
//!    moment, numbered (a generation), left as the newest projection.
//! 2. [`Daemon::publish_snapshot`], without it: under the snapshot lock, unless a generation at
//!    least as new is already written, build and write the newest projection. Changes that
//!    arrive while a build runs share the next build (the newest projection holds them all).
//!
//! A caller returns (acknowledges a grant, a revocation, a proved code) only after its publish,
//! so the files then hold its change or a later state: `getent` right after `jitctl grant add`
//! finds the account, and a revoked one is gone when `revoke` returns.
//!
//! Locks: state (`Daemon::inner`) → `newest`; `written` → `newest`; `written` → `files`;
//! state → `files`. Nothing takes the state lock while holding a snapshot lock.

use std::sync::Mutex;

use jit_core::snapshot::generation;
use jit_core::time::UnixTime;
use jit_core::types::SnapshotData;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Inner};
use crate::snapshot_out::{self, FileId, SnapshotFiles};

/// A projection waiting to be written.
struct Projection {
    generation: u64,
    data: SnapshotData,
    at: UnixTime,
}

/// The snapshot's publishing state (see the module documentation).
#[derive(Default)]
pub(crate) struct Publisher {
    /// Generations handed out (under the state lock).
    next: std::sync::atomic::AtomicU64,
    /// The newest projection not yet taken by a build.
    newest: Mutex<Option<Projection>>,
    /// Held while building and writing; the generation in the files (0: none yet).
    written: Mutex<u64>,
    /// The files jitd wrote last (None after a failed write: the tick writes again) and when.
    files: Mutex<(Option<SnapshotFiles>, Option<UnixTime>)>,
    /// The change counter of the modules' snapshot directory (taken after `written`).
    counter: Mutex<CounterState>,
}

/// jitd's side of `jit_core::snapshot::generation`.
#[derive(Default)]
struct CounterState {
    open: Option<generation::Counter>,
    /// Setting it up failed and was audited; cleared once it works.
    failing: bool,
    /// Why it is not set up, for `status`.
    why_not: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A projection taken; publish it once the state lock is released.
#[must_use = "publish it with Daemon::publish_snapshot after releasing the state lock"]
pub(crate) struct Pending(u64);

impl Daemon {
    /// Under the state lock: projects state (with the local files, or the last copy that could
    /// be read) as the newest snapshot generation.
    pub(crate) fn project_snapshot(&self, inner: &mut Inner, now: UnixTime) -> Pending {
        // A revocation must reach the snapshot even while /etc/passwd or /etc/group cannot be
        // read: project with the last copy that could (or, before any, with none: local-group
        // memberships then drop out, which only removes privilege).
        let local = match self.local_db() {
            Ok(l) => {
                inner.last_local = Some(l.clone());
                inner.local_unreadable = false;
                l
            }
            Err(e) => {
                if !inner.local_unreadable {
                    self.audit.record(
                        now,
                        Severity::Error,
                        Event::SnapshotLocalFilesUnreadable,
                        json!({
                            "error": e,
                            "using": if inner.last_local.is_some() { "the last copy read" } else { "no local files: local-group memberships left out" },
                        }),
                    );
                }
                inner.local_unreadable = true;
                inner.last_local.clone().unwrap_or_default()
            }
        };
        let (data, collisions) = snapshot_out::project(&self.cfg, &inner.state, &local, now);
        for c in collisions {
            if inner.reported_collisions.insert(c.clone()) {
                self.audit.record(
                    now,
                    Severity::Warning,
                    Event::AccountCollision,
                    json!({
                        "grant": c.grant, "user": c.user, "with": c.with,
                        "action": "account hidden: local names and ids always win"
                    }),
                );
            }
        }
        inner.local_sig = Some((
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        ));
        let p = &self.snapshot;
        // Handed out and stored under the state lock: a later generation is a later state.
        let generation = p.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        *lock(&p.newest) = Some(Projection {
            generation,
            data,
            at: now,
        });
        Pending(generation)
    }

    /// Projects the snapshot under `inner`, releases the state lock, then publishes: the
    /// order every change that must be in the files before it is acknowledged follows.
    pub(crate) fn snapshot_and_unlock(
        &self,
        mut inner: std::sync::MutexGuard<'_, Inner>,
        now: UnixTime,
    ) {
        let pending = self.project_snapshot(&mut inner, now);
        drop(inner);
        self.publish_snapshot(pending);
    }

    /// Without the state lock: makes sure the files hold generation `pending` or a later one.
    /// Failures are audited and retried at the next tick.
    pub(crate) fn publish_snapshot(&self, pending: Pending) {
        let p = &self.snapshot;
        let mut written = lock(&p.written);
        if *written >= pending.0 {
            return; // a build that started after this projection wrote it, or a later one
        }
        // The newest projection is this one or a later one: a build that took it and failed
        // leaves none, and the tick writes again.
        let Some(proj) = lock(&p.newest).take() else {
            return;
        };
        crate::durable::failpoint_hold(&self.cfg.snapshot_path, "hold");
        let gates = snapshot_out::gates_path(&self.cfg.snapshot_path);
        match snapshot_out::write(&self.cfg.snapshot_path, &gates, &proj.data) {
            Ok(id) => {
                *written = proj.generation;
                *lock(&p.files) = (id, Some(proj.at));
                // After the rename, before the caller acknowledges: a process answering from
                // its copy sees the counter move and checks the file at its next lookup.
                self.count_publication(proj.at);
            }
            Err(e) => {
                lock(&p.files).0 = None;
                self.audit.record(
                    proj.at,
                    Severity::Error,
                    Event::SnapshotWriteFailed,
                    json!({ "error": e }),
                );
            }
        }
        drop(written);
        drop(proj);
        // The build's buffers (both images, the index) are freed now; publications also come
        // from the timer (expiry, repairs, start-up), which serves no request that would trim.
        crate::daemon::release_free_heap();
    }

    /// Whether jitd writes the snapshot the NSS module reads (its path is compile-time).
    fn snapshot_is_the_modules(&self) -> bool {
        self.cfg.snapshot_path == std::path::Path::new(jit_core::constants::DEFAULT_SNAPSHOT_PATH)
    }

    /// Counts one publication on the modules' change counter, setting it up first if needed
    /// (again after /run/jitd was made anew). Only for the directory the NSS module reads: for
    /// another `snapshot_path` no process would look.
    fn count_publication(&self, now: UnixTime) {
        if !self.snapshot_is_the_modules() {
            return;
        }
        let dir = jit_core::constants::DEFAULT_SNAPSHOT_DIR_C;
        let mut c = lock(&self.snapshot.counter);
        let here = generation::dir_identity(dir).ok();
        if c.open.as_ref().map(generation::Counter::dir) != here {
            c.open = None; // closes the old directory's counter
        }
        if c.open.is_none() {
            match generation::Counter::open(dir) {
                Ok(k) => {
                    c.open = Some(k);
                    c.failing = false;
                    c.why_not = None;
                }
                Err(e) => {
                    c.why_not = Some(e.to_string());
                    if !c.failing {
                        self.audit.record(
                            now,
                            Severity::Warning,
                            Event::SnapshotCounterUnavailable,
                            json!({ "error": e.to_string() }),
                        );
                    }
                    c.failing = true;
                    return;
                }
            }
        }
        if let Some(k) = &c.open {
            k.bump();
        }
    }

    /// The `nss counter:` line of `jitctl status`.
    pub(crate) fn counter_status(&self) -> String {
        if !self.snapshot_is_the_modules() {
            return format!(
                "off: the NSS module reads {}, not snapshot_path; it checks that file per lookup",
                jit_core::constants::DEFAULT_SNAPSHOT_PATH
            );
        }
        let c = lock(&self.snapshot.counter);
        match (&c.open, &c.why_not) {
            (Some(k), _) => format!(
                "on (System V shared memory key {:#010x}, counter {})",
                generation::key_for(k.dir().0, k.dir().1),
                k.value()
            ),
            (None, Some(why)) => {
                format!("unavailable: {why}; the NSS module checks the snapshot per lookup")
            }
            (None, None) => "not set up yet (at the first snapshot written)".to_string(),
        }
    }

    /// Closes the change counter (a clean stop): processes check the file again per lookup
    /// until the next jitd sets one up.
    pub fn close_counter(&self) {
        lock(&self.snapshot.counter).open = None;
    }

    /// When the snapshot was last written (for `status`).
    pub(crate) fn snapshot_written_at(&self) -> Option<UnixTime> {
        lock(&self.snapshot.files).1
    }

    /// Under the state lock: a projection if state `changed`, the local files changed, or the
    /// snapshot is missing or not the one jitd wrote (audited `snapshot.repaired`).
    pub(crate) fn refresh_snapshot(
        &self,
        inner: &mut Inner,
        changed: bool,
        now: UnixTime,
    ) -> Option<Pending> {
        let local_now = (
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        );
        let local_changed = inner.local_sig != Some(local_now);
        // Compared only while no publish runs (it holds `written` from build to bookkeeping):
        // files renamed into place but not yet recorded are not someone else's. A publish in
        // progress makes the check wait for the next tick; it never waits here.
        let (snapshot_damaged, snap_now, written_at) = match self.snapshot.written.try_lock() {
            Err(std::sync::TryLockError::WouldBlock) => (false, None, None),
            _idle => {
                let (id, at) = *lock(&self.snapshot.files);
                let snap_now = SnapshotFiles::of(&self.cfg.snapshot_path);
                (id.is_none() || snap_now != id, snap_now, at)
            }
        };
        if !(changed || local_changed || snapshot_damaged) {
            return None;
        }
        if snapshot_damaged && written_at.is_some() {
            self.audit.record(now, Severity::Notice, Event::SnapshotRepaired, json!({
                "path": self.cfg.snapshot_path.display().to_string(),
                "problem": if snap_now.is_none() { "missing" } else { "changed by someone else" }
            }));
        }
        Some(self.project_snapshot(inner, now))
    }
}
