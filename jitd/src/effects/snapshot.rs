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
//! **Deltas (format 1.4).** A grant *added* does not rewrite the whole files (at 10 000 grants
//! that was ~200 ms per add): [`Daemon::delta_and_unlock`] projects only the grants added since
//! the base files were projected and writes them as `gates.delta` and `snapshot.delta`, which
//! the modules read over the base. Everything else (an end, a revocation, an activation, the
//! local files changing) and a delta grown past [`DELTA_SOFT_GRANTS`] or [`DELTA_SOFT_BYTES`]
//! (the timer then writes whole files, off the add path) goes through a whole write, which
//! states a new base *serial*; a delta names the serials of every base a reader may find
//! while it is current (the one on disk and those being written), so no reader ever misses an
//! acknowledged grant, and a delta is never read over a base that ended one of its grants: a
//! base projected after the end names a serial no earlier delta names, and every later delta
//! is projected from state without the ended grant. After a whole write that left no grant
//! outside it, the deltas are removed.
//!
//! Locks: state (`Daemon::inner`) → `newest`; `written` → `newest`; `written` → `files`;
//! state → `files`; state → `book`; `written` → `book`; `delta_written` → `newest_delta`, `book`,
//! `files`. `book` is taken last. Nothing takes the state lock while holding a snapshot lock.

use std::sync::Mutex;

use jit_core::snapshot::format::MAX_DELTA_BASES;
use jit_core::snapshot::generation;
use jit_core::time::UnixTime;
use jit_core::types::SnapshotData;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Inner};
use crate::poison::lock;
use crate::snapshot_out::{self, Collision, FileId, SnapshotFiles};

/// A projection waiting to be written.
struct Projection {
    generation: u64,
    data: SnapshotData,
    at: UnixTime,
    /// A whole projection: the base serial its files state.
    serial: u32,
    /// Of a whole projection: where it cuts the added grants (sequence numbers below were in
    /// state when it was projected).
    cut: u64,
}

/// A delta projection waiting to be written.
struct DeltaProjection {
    generation: u64,
    data: SnapshotData,
    at: UnixTime,
    bases: [u32; MAX_DELTA_BASES],
}

/// A delta holds at most this many added grants before the timer writes whole files.
pub(crate) const DELTA_SOFT_GRANTS: usize = 64;
/// ... or this many bytes in the gates delta (the larger of the two: pam_jit and sudo_jit read
/// it whole at every decision, as every process's first lookup reads the public one).
pub(crate) const DELTA_SOFT_BYTES: usize = 48 * 1024;
/// Past this many added grants, an add writes whole files itself.
const DELTA_HARD_GRANTS: usize = 256;

/// What the deltas hold and which bases they may be read over.
#[derive(Default)]
struct Book {
    /// The serial of the base files on disk (0: none written by this jitd yet).
    written_serial: u32,
    /// Whole projections handed out and not yet written or given up: (serial, cut).
    pending: Vec<(u32, u64)>,
    /// Grants added since the base on disk was projected: (sequence, id).
    added: Vec<(u64, String)>,
    /// Next sequence number.
    next_seq: u64,
    /// Last serial handed out (the first one is random, so a delta left by an earlier jitd
    /// names no base of this one).
    last_serial: u32,
    /// The size of the gates delta last written (the larger of the two).
    delta_bytes: usize,
    /// A delta could not be written: the next timer pass writes whole files.
    force_whole: bool,
}

impl Book {
    fn next_serial(&mut self) -> u32 {
        if self.last_serial == 0 {
            let mut b = [0u8; 4];
            // Without randomness, a time-derived start still differs between runs.
            self.last_serial = match jit_core::host::random::fill(&mut b) {
                Ok(()) => u32::from_le_bytes(b),
                Err(_) => jit_core::time::now() as u32,
            };
        }
        self.last_serial = self.last_serial.wrapping_add(1).max(1);
        self.last_serial
    }

    /// The bases a delta projected now may be read over, if there are few enough.
    fn bases(&self) -> Option<[u32; MAX_DELTA_BASES]> {
        if self.written_serial == 0 || self.pending.len() + 1 > MAX_DELTA_BASES {
            return None;
        }
        let mut b = [0u32; MAX_DELTA_BASES];
        let serials = std::iter::once(self.written_serial).chain(self.pending.iter().map(|p| p.0));
        for (slot, s) in b.iter_mut().zip(serials) {
            *slot = s;
        }
        Some(b)
    }

    /// Whether the timer should write whole files: the delta has grown, or failed.
    fn wants_whole(&self) -> bool {
        self.force_whole
            || self.added.len() >= DELTA_SOFT_GRANTS
            || self.delta_bytes >= DELTA_SOFT_BYTES
    }
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
    /// The newest delta projection not yet written.
    newest_delta: Mutex<Option<DeltaProjection>>,
    /// Held while writing a delta; the generation of the last delta written.
    delta_written: Mutex<u64>,
    /// What the deltas hold (taken last).
    book: Mutex<Book>,
    /// The files jitd wrote last (None after a failed write: the tick writes again) and when.
    files: Mutex<(Option<SnapshotFiles>, Option<UnixTime>)>,
    /// The delta files jitd wrote last (`None`: none should be there), to notice one removed or
    /// changed by someone else: its grants would be hidden until the next whole write.
    deltas: Mutex<Option<SnapshotFiles>>,
    /// The change counter of the modules' snapshot directory (taken after `written`).
    counter: Mutex<CounterState>,
    /// The files' sizes at the last whole write and its generation, for admission's room
    /// check (effects/capacity.rs; taken last).
    pub(crate) measured: Mutex<Measured>,
}

/// What the last whole write measured.
#[derive(Default)]
pub(crate) struct Measured {
    /// Its generation and the files' sizes; `None` before the first whole write.
    pub(crate) at: Option<(u64, crate::engine::capacity::Load)>,
    /// A file above the readers' cap was audited (once, until one fits again).
    pub(crate) over_reported: bool,
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
                inner.last_local = Some(std::sync::Arc::clone(&l));
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
        self.report_collisions(inner, collisions, now);
        inner.local_sig = Some((
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        ));
        let p = &self.snapshot;
        // Handed out and stored under the state lock: a later generation is a later state.
        let generation = p.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let (serial, cut) = {
            let mut book = lock(&p.book);
            let serial = book.next_serial();
            let cut = book.next_seq;
            book.pending.push((serial, cut));
            (serial, cut)
        };
        let replaced = lock(&p.newest).replace(Projection {
            generation,
            data,
            at: now,
            serial,
            cut,
        });
        if let Some(old) = replaced {
            // Never to be written: no delta needs to name it any more.
            lock(&p.book).pending.retain(|(s, _)| *s != old.serial);
        }
        Pending(generation)
    }

    /// Under the state lock, for a grant just added (`id`, in state): writes it as part of the
    /// deltas if it can (a base this jitd wrote is on disk, the local files are those of the
    /// base, and the delta is small), else projects whole files; then releases the lock and
    /// publishes. Either way the files hold the grant when this returns (or the write failed
    /// and was audited, as for [`Daemon::snapshot_and_unlock`]).
    pub(crate) fn delta_and_unlock(
        &self,
        mut inner: std::sync::MutexGuard<'_, Inner>,
        id: &str,
        now: UnixTime,
    ) {
        match self.project_delta(&mut inner, id, now) {
            Some(pending) => {
                drop(inner);
                if !self.publish_delta(pending) {
                    // The delta could not be written (too large for readers, or the write
                    // failed): whole files now, before the add is acknowledged.
                    let inner = self.lock();
                    self.snapshot_and_unlock(inner, now);
                }
            }
            None => self.snapshot_and_unlock(inner, now),
        }
    }

    /// The delta projection with `id` added, if a delta may carry it.
    fn project_delta(&self, inner: &mut Inner, id: &str, now: UnixTime) -> Option<Pending> {
        let p = &self.snapshot;
        let local_now = (
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        );
        // The base was projected with these local files; different ones re-project everything.
        if inner.local_sig != Some(local_now) || inner.local_unreadable {
            return None;
        }
        let local = inner.last_local.as_ref()?;
        let (ids, bases) = {
            let mut book = lock(&p.book);
            if book.added.len() >= DELTA_HARD_GRANTS || book.force_whole {
                return None;
            }
            let bases = book.bases()?;
            let seq = book.next_seq;
            book.next_seq += 1;
            book.added.push((seq, id.to_string()));
            let ids: Vec<String> = book.added.iter().map(|(_, i)| i.clone()).collect();
            (ids, bases)
        };
        let grants = ids
            .iter()
            .filter_map(|i| inner.state.grants.get(i.as_str()).map(Box::as_ref));
        let (data, collisions) = snapshot_out::project_grants(&self.cfg, grants, local, now);
        self.report_collisions(inner, collisions, now);
        let generation = p.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        *lock(&p.newest_delta) = Some(DeltaProjection {
            generation,
            data,
            at: now,
            bases,
        });
        Some(Pending(generation))
    }

    /// Audits each collision once.
    fn report_collisions(&self, inner: &mut Inner, collisions: Vec<Collision>, now: UnixTime) {
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
    }

    /// Without the state lock: makes sure the deltas hold delta generation `pending` or a later
    /// one; false if they do not (the write failed, here or in the call that took this
    /// projection, audited): the caller then writes whole files.
    fn publish_delta(&self, pending: Pending) -> bool {
        let p = &self.snapshot;
        let mut written = lock(&p.delta_written);
        if *written >= pending.0 {
            return true;
        }
        // Empty: a call that held the lock before took this projection (or a later one) and
        // did not write it, or `written` would have moved past it.
        let Some(proj) = lock(&p.newest_delta).take() else {
            return false;
        };
        crate::durable::failpoint_hold(&self.cfg.snapshot_path, "hold");
        let gates = snapshot_out::gates_path(&self.cfg.snapshot_path);
        match snapshot_out::write_delta(&self.cfg.snapshot_path, &gates, &proj.data, proj.bases) {
            Ok(bytes) => {
                *written = proj.generation;
                lock(&p.book).delta_bytes = bytes;
                *lock(&p.deltas) = SnapshotFiles::of_deltas(&self.cfg.snapshot_path);
                lock(&p.files).1 = Some(proj.at);
                self.count_publication(proj.at);
                true
            }
            Err(e) => {
                lock(&p.book).force_whole = true;
                self.audit.record(
                    proj.at,
                    Severity::Error,
                    Event::SnapshotWriteFailed,
                    json!({ "error": e, "file": "delta", "then": "whole files written instead" }),
                );
                false
            }
        }
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
        match snapshot_out::write(&self.cfg.snapshot_path, &gates, proj.data, proj.serial) {
            Ok(id) => {
                *written = proj.generation;
                if let Some(files) = id {
                    self.measure(proj.generation, files.sizes(), proj.at);
                }
                *lock(&p.files) = (id, Some(proj.at));
                let nothing_outside = {
                    let mut book = lock(&p.book);
                    book.written_serial = proj.serial;
                    // Bases projected before this one are never written after it (the newest
                    // projection is the one a build takes); later ones may still be.
                    if let Some(i) = book.pending.iter().position(|(s, _)| *s == proj.serial) {
                        book.pending.drain(..=i);
                    }
                    let cut = proj.cut;
                    book.added.retain(|(seq, _)| *seq >= cut);
                    book.force_whole = false;
                    book.added.is_empty()
                };
                if nothing_outside {
                    // Under the delta lock: a delta written after this check holds a grant
                    // outside this base, and must stay.
                    let _d = lock(&p.delta_written);
                    if lock(&p.book).added.is_empty() {
                        snapshot_out::remove_deltas(&self.cfg.snapshot_path, &gates);
                        lock(&p.book).delta_bytes = 0;
                        *lock(&p.deltas) = None;
                    }
                }
                // After the rename, before the caller acknowledges: a process answering from
                // its copy sees the counter move and checks the file at its next lookup.
                self.count_publication(proj.at);
            }
            Err(e) => {
                lock(&p.book).pending.retain(|(s, _)| *s != proj.serial);
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
        // The projection went to the writer, which freed it with the build's buffers; hand the
        // pages back here, as publications also come from the timer (expiry, repairs,
        // start-up), which serves no request that would trim.
        crate::daemon::release_free_heap();
    }

    /// Under the state lock: the generation the next projection will have. A grant admitted
    /// now is in every projection of a later generation.
    pub(crate) fn generation_now(&self) -> u64 {
        self.snapshot.next.load(std::sync::atomic::Ordering::SeqCst)
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
        // A delta grown past its soft limits (or that failed) is folded into whole files here,
        // off the add path.
        let delta_full = lock(&self.snapshot.book).wants_whole();
        // A delta jitd wrote that is gone or changed: its grants are hidden (or not its own);
        // whole files hold them again. Checked only while no delta is being written.
        let delta_damaged = match self.snapshot.delta_written.try_lock() {
            Err(std::sync::TryLockError::WouldBlock) => false,
            _idle => lock(&self.snapshot.deltas).is_some_and(|want| {
                SnapshotFiles::of_deltas(&self.cfg.snapshot_path) != Some(want)
            }),
        };
        if delta_damaged {
            self.audit.record(
                now,
                Severity::Notice,
                Event::SnapshotRepaired,
                json!({
                    "path": snapshot_out::delta_path(&self.cfg.snapshot_path).display().to_string(),
                    "problem": "a delta file was removed or changed by someone else"
                }),
            );
        }
        if !(changed || local_changed || snapshot_damaged || delta_full || delta_damaged) {
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
