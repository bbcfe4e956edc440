//! The set-id sweep, off the path that ends processes.
//!
//! The sweep (`crate::sweep`) walks /tmp, /var/tmp, /dev/shm, the home root and `sweep_paths`,
//! up to ten million entries a root (2.7 µs an entry in a release build on the test VM:
//! 500 000 files in /tmp took 1.35 s). Any local user can fill /tmp with files. Walked inside
//! the teardown pass, it held that pass for as long as the walk took, and with it the next
//! second's expiries and every revocation behind it: every grant's processes outlived its end
//! by as long, whoever's grant it was.
//!
//! Now a pass ends the processes, hands the walk to a thread of its own and waits for it at
//! most [`SWEEP_WAIT`]; a grant's home and teardown record follow once the walk that covers it
//! is done (the home after the sweep, as before: a set-id file in a home that is archived is
//! found first). One walk runs at a time; grants that reach the first stage meanwhile are
//! swept together by the next one (their targets merged), so however many teardowns queue up,
//! one walk is in flight.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::poison::lock;
use crate::sweep::{self, Report, Targets};

/// Longest a teardown pass waits for a running walk before it returns (and the next pass, or
/// the next second's expiries, can end processes). A walk over an ordinary host's writable
/// directories ends well within it, so a teardown is still finished in the pass that started it.
pub(crate) const SWEEP_WAIT: Duration = Duration::from_millis(200);

/// The walk a [`Sweeps`] runs: [`sweep::sweep`] in jitd; a test may wrap it (to hold it).
pub type Walk = Arc<dyn Fn(&[PathBuf], &Targets) -> Report + Send + Sync>;

/// What one walk covers: the grants whose teardown waits for it and whose files it looks for.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Grant ids whose teardown records wait for this walk.
    pub ids: Vec<String>,
    /// Whose set-id files to strip.
    pub targets: Targets,
    /// Uid → the grant its set-id files are audited under.
    pub uid_grant: HashMap<u32, String>,
    /// (owner uid, gid) → the grant its set-gid files are audited under.
    pub pair_grant: HashMap<(u32, u32), String>,
}

impl Batch {
    fn merge(&mut self, other: Batch) {
        self.ids.extend(other.ids);
        self.targets.uids.extend(other.targets.uids);
        self.targets.owner_gids.extend(other.targets.owner_gids);
        self.uid_grant.extend(other.uid_grant);
        self.pair_grant.extend(other.pair_grant);
    }
}

/// A walk that ended, with the batch it covered.
pub(crate) struct Finished {
    pub batch: Batch,
    pub report: Report,
}

type Slot = Arc<(Mutex<Option<Report>>, Condvar)>;

/// The walk in flight and the batch waiting for the next one. Kept with the teardown progress
/// (under its lock).
pub(crate) struct Sweeps {
    running: Option<(Batch, Slot)>,
    pending: Option<Batch>,
    walk: Walk,
}

impl Default for Sweeps {
    fn default() -> Sweeps {
        Sweeps {
            running: None,
            pending: None,
            walk: Arc::new(sweep::sweep),
        }
    }
}

impl std::fmt::Debug for Sweeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeps")
            .field("running", &self.running.as_ref().map(|(b, _)| &b.ids))
            .field("pending", &self.pending.as_ref().map(|b| &b.ids))
            .finish_non_exhaustive()
    }
}

impl Sweeps {
    /// Adds `b` to the walk that starts next.
    pub fn queue(&mut self, b: Batch) {
        match &mut self.pending {
            Some(p) => p.merge(b),
            None => self.pending = Some(b),
        }
    }

    /// No walk running or waiting.
    pub fn is_idle(&self) -> bool {
        self.running.is_none() && self.pending.is_none()
    }

    /// Replaces the walk (tests hold it to show that nothing else waits for it).
    pub fn set_walk(&mut self, walk: Walk) {
        self.walk = walk;
    }

    /// Takes the walk that has ended, if one has, and starts the waiting one if none runs.
    /// Never blocks (but without a thread to be had, the waiting walk runs here).
    pub fn poll(&mut self, roots: &[PathBuf]) -> Vec<Finished> {
        let mut out = Vec::new();
        let report = match &self.running {
            Some((_, slot)) => lock(&slot.0).take(),
            None => None,
        };
        if let Some(report) = report {
            if let Some((batch, _)) = self.running.take() {
                out.push(Finished { batch, report });
            }
        }
        if self.running.is_none() {
            if let Some(batch) = self.pending.take() {
                out.extend(self.start(roots, batch));
            }
        }
        out
    }

    /// Starts `batch`'s walk on its own thread; without a thread, walks here and returns it.
    fn start(&mut self, roots: &[PathBuf], batch: Batch) -> Option<Finished> {
        let slot: Slot = Arc::default();
        let (done, walk, roots_owned, targets) = (
            Arc::clone(&slot),
            Arc::clone(&self.walk),
            roots.to_vec(),
            batch.targets.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("jitd-sweep".into())
            .spawn(move || {
                // A walk that panicked still ends: its report says nothing was searched, and
                // the teardowns waiting for it are finished with that on record.
                let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    walk(&roots_owned, &targets)
                }))
                .unwrap_or_else(|_| Report {
                    unsearched: roots_owned
                        .iter()
                        .map(|r| (r.clone(), "the walk failed (panicked)".to_string()))
                        .collect(),
                    ..Report::default()
                });
                let (m, cv) = &*done;
                *lock(m) = Some(report);
                cv.notify_all();
            });
        if spawned.is_err() {
            // No thread to be had: walk here, as before (slow, never skipped).
            let report = (self.walk)(roots, &batch.targets);
            return Some(Finished { batch, report });
        }
        self.running = Some((batch, slot));
        None
    }

    /// The running walk's result slot, to wait on without holding the teardown lock.
    pub fn running(&self) -> Option<Slot> {
        self.running.as_ref().map(|(_, s)| Arc::clone(s))
    }

    /// Waits up to `wait` for the walk behind `slot` to end; whether it has.
    pub fn wait(slot: &Slot, wait: Duration) -> bool {
        let (m, cv) = &**slot;
        let deadline = Instant::now() + wait;
        let mut got = lock(m);
        while got.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            got = cv
                .wait_timeout(got, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn batch(id: &str, uid: u32) -> Batch {
        Batch {
            ids: vec![id.into()],
            targets: Targets {
                uids: [uid].into(),
                ..Targets::default()
            },
            uid_grant: [(uid, id.to_string())].into(),
            pair_grant: HashMap::new(),
        }
    }

    /// A walk held until `open` is set: it counts its calls and records the uids it was given.
    fn held_walk(open: Arc<AtomicBool>, seen: Arc<Mutex<Vec<Vec<u32>>>>) -> Walk {
        Arc::new(move |_roots, t| {
            let mut uids: Vec<u32> = t.uids.iter().copied().collect();
            uids.sort_unstable();
            lock(&seen).push(uids);
            while !open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Report {
                entries: 7,
                ..Report::default()
            }
        })
    }

    /// What a pass does: take what ended and start what waits, then wait (here, in the
    /// test, up to `wait`) for the running walk, then take it if it ended.
    fn pass(s: &mut Sweeps, roots: &[PathBuf], wait: Duration) -> Vec<Finished> {
        let mut out = s.poll(roots);
        if let Some(slot) = s.running() {
            if Sweeps::wait(&slot, wait) {
                out.extend(s.poll(roots));
            }
        }
        out
    }

    #[test]
    fn a_held_walk_returns_after_the_wait_and_later_batches_go_in_one_walk() {
        let open = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = Sweeps::default();
        s.set_walk(held_walk(Arc::clone(&open), Arc::clone(&seen)));
        assert!(s.is_idle());
        s.queue(batch("g-a", 10));
        assert!(
            pass(&mut s, &[], Duration::from_millis(50)).is_empty(),
            "held"
        );
        // Two more teardowns while it runs: queued together, not started.
        s.queue(batch("g-b", 11));
        s.queue(batch("g-c", 12));
        assert!(pass(&mut s, &[], Duration::from_millis(20)).is_empty());
        assert_eq!(lock(&seen).len(), 1, "one walk in flight");
        assert!(!s.is_idle());
        open.store(true, Ordering::SeqCst);
        let first = pass(&mut s, &[], Duration::from_secs(10));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].batch.ids, vec!["g-a".to_string()]);
        assert_eq!(first[0].report.entries, 7);
        // Taking the first started the second (the merged batch).
        let second = pass(&mut s, &[], Duration::from_secs(10));
        assert_eq!(second.len(), 1);
        assert_eq!(
            second[0].batch.ids,
            vec!["g-b".to_string(), "g-c".to_string()]
        );
        assert_eq!(
            second[0].batch.uid_grant.get(&12).map(String::as_str),
            Some("g-c")
        );
        assert_eq!(*lock(&seen), vec![vec![10], vec![11, 12]]);
        assert!(s.is_idle());
        assert!(
            pass(&mut s, &[], Duration::from_millis(1)).is_empty(),
            "nothing to do"
        );
    }

    #[test]
    fn a_walk_that_panics_still_ends_with_its_roots_unsearched() {
        let mut s = Sweeps::default();
        s.set_walk(Arc::new(|_, _| panic!("walk bug")));
        s.queue(batch("g-a", 10));
        let f = pass(&mut s, &[PathBuf::from("/tmp")], Duration::from_secs(10));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].batch.ids, vec!["g-a".to_string()]);
        assert_eq!(f[0].report.unsearched.len(), 1);
        assert!(f[0].report.unsearched[0].1.contains("panicked"));
    }
}
