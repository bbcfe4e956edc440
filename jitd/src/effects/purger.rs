//! Deleting removed homes, off the teardown pass.
//!
//! A grantee can fill the home jit made for them with millions of files; deleted inside the
//! teardown pass (a few µs a file), that home held the pass, and with it the next second's
//! expiries and every revocation behind it, for as long as the deletion took. So a teardown
//! only moves the home aside (`home::retire`: one rename into the root-only
//! `<home_root>/.jit-removing`), which takes it away from the account at once, and this
//! deletes what waits there on a thread of its own. One deletion runs at a time; a request
//! while it runs makes it go round once more. What cannot be deleted stays there, is reported
//! once, and is tried again at the next request (each teardown that removes a home, and the
//! first pass after jitd starts).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::home;
use crate::poison::lock;

/// The deletion a [`Purger`] runs: [`home::purge_retired`] in jitd; a test may wrap it.
pub type Purge = Arc<dyn Fn(&Path) -> Vec<(String, String)> + Send + Sync>;

#[derive(Default)]
struct State {
    running: bool,
    again: bool,
    /// Failures not yet audited.
    failed: Vec<(String, String)>,
    /// Paths already reported (a failure is audited once, not at every round).
    reported: HashSet<String>,
}

/// Runs the deletion of retired homes on its own thread.
pub(crate) struct Purger {
    state: Arc<Mutex<State>>,
    purge: Purge,
}

impl Default for Purger {
    fn default() -> Purger {
        Purger {
            state: Arc::default(),
            purge: Arc::new(home::purge_retired),
        }
    }
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger").finish_non_exhaustive()
    }
}

/// Keeps the failures of one round that were not reported before.
fn note(state: &Mutex<State>, failed: Vec<(String, String)>) {
    let mut s = lock(state);
    for (path, why) in failed {
        if s.reported.insert(path.clone()) {
            s.failed.push((path, why));
        }
    }
}

impl Purger {
    /// Deletes what waits under `<home_root>/.jit-removing`, on a thread of its own; while a
    /// deletion runs, it goes round once more when it is done.
    pub fn kick(&self, home_root: &Path) {
        {
            let mut s = lock(&self.state);
            if s.running {
                s.again = true;
                return;
            }
            s.running = true;
        }
        let (state, purge, root): (_, _, PathBuf) = (
            Arc::clone(&self.state),
            Arc::clone(&self.purge),
            home_root.to_path_buf(),
        );
        let spawned = std::thread::Builder::new()
            .name("jitd-purge".into())
            .spawn(move || loop {
                let failed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| purge(&root)))
                        .unwrap_or_else(|_| {
                            vec![(
                                root.display().to_string(),
                                "the deletion panicked".to_string(),
                            )]
                        });
                note(&state, failed);
                let mut s = lock(&state);
                if !s.again {
                    s.running = false;
                    return;
                }
                s.again = false;
            });
        if spawned.is_err() {
            // No thread to be had: delete here (slow, as before, but nothing is left behind).
            let failed = (self.purge)(home_root);
            note(&self.state, failed);
            lock(&self.state).running = false;
        }
    }

    /// Failures of past rounds not yet audited: (path, why).
    pub fn take_failed(&self) -> Vec<(String, String)> {
        std::mem::take(&mut lock(&self.state).failed)
    }

    /// Replaces the deletion (tests hold it, to show that nothing waits for it).
    pub fn set_purge(&mut self, purge: Purge) {
        self.purge = purge;
    }

    /// A deletion is running (tests wait for it to end).
    pub fn busy(&self) -> bool {
        lock(&self.state).running
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn until(f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn one_deletion_at_a_time_a_request_meanwhile_makes_one_more_round_failures_once() {
        let open = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let mut p = Purger::default();
        {
            let (open, rounds) = (Arc::clone(&open), Arc::clone(&rounds));
            p.set_purge(Arc::new(move |_| {
                rounds.fetch_add(1, Ordering::SeqCst);
                while !open.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                vec![("/h/.jit-removing/a-g".into(), "busy".into())]
            }));
        }
        p.kick(Path::new("/h"));
        until(|| rounds.load(Ordering::SeqCst) == 1);
        // Three more requests while it is held: one more round, not three.
        for _ in 0..3 {
            p.kick(Path::new("/h"));
        }
        assert!(p.busy());
        open.store(true, Ordering::SeqCst);
        until(|| !p.busy());
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        // The same failure in both rounds is reported once.
        assert_eq!(p.take_failed().len(), 1);
        assert!(p.take_failed().is_empty());
    }
}
