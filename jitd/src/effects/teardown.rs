//! Runs teardown plans (`crate::engine::teardown`): ends the processes, flushes nscd, sweeps
//! set-id files, removes, archives or keeps the home, audits each grant and marks it torn down.
//! Idempotent: a crash in the middle leaves `torn_down = false`, and the next start resumes it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jit_core::time::UnixTime;
use serde_json::{json, Value};

use crate::audit::{Event, Severity};
use crate::config::HomePolicy;
use crate::daemon::Daemon;
use crate::engine::teardown::{self, HomeStep, TeardownPlan};
use crate::localdb::LocalDb;
use crate::procs::end_processes;
use crate::{home, nscd};

use super::purger::{Purge, Purger};
use super::sweeper::{Batch, Sweeps, Walk, SWEEP_WAIT};

/// Wall-clock time the homes and records of one pass may take before it returns. A storm of
/// thousands of grants ending together removes thousands of homes; the next second's expiries
/// must not wait for that before their processes are ended, so the rest is finished by the
/// next passes (each grant stays `torn_down = false` until its record is durable, so a restart
/// in between resumes it).
const FINISH_BUDGET: Duration = Duration::from_millis(200);

/// Teardowns between their two stages: grant id → the fields of its teardown record from the
/// first stage (processes, cgroup, nscd), and the set-id sweeps they wait for. In memory only:
/// after a restart the first stage runs again, which is idempotent, and so does the sweep.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Grant id → (record fields, whether the first stage was complete: no survivor, cgroup
    /// emptied).
    ended: HashMap<String, (Value, bool)>,
    /// Grant id → the summary of the sweep that covered it (its record's `setid_sweep`): the
    /// second stage of a grant waits for it.
    swept: HashMap<String, Value>,
    /// The walk in flight and the one waiting (effects/sweeper.rs).
    sweeps: Sweeps,
    /// Deletes the homes teardowns moved aside (effects/purger.rs).
    purger: Purger,
    /// The purger was asked once since jitd started (for what a crash left).
    purge_started: bool,
    /// Homes were moved aside since `.jit-removing` was last found empty and removed.
    retired_dir_used: bool,
}

impl Daemon {
    /// Tears down every ended grant whose teardown has not finished, in two stages. First, for
    /// every grant not yet through it, one /proc pass for all of them ends their processes
    /// (cgroups first), then nscd is flushed and the set-id sweep handed to its own thread
    /// (waited for at most [`SWEEP_WAIT`]: however long the walk takes, the next pass ends
    /// processes on time). Then, within [`FINISH_BUDGET`], for each grant whose sweep is done,
    /// its home is removed, archived or kept and the records written (one group commit), and
    /// each grant is marked torn down after its record is durable.
    /// Returns whether grants through the first stage still wait for the second (the caller
    /// comes back soon rather than at the next deadline).
    pub(crate) fn run_teardowns(&self, now: UnixTime) -> bool {
        let mut progress = crate::poison::lock(&self.teardown);
        self.purge_housekeeping(&mut progress, now);
        let none_pending = {
            let mut inner = self.lock();
            let version = inner.state.grants.version();
            // Known clear at this version, or found clear by a walk over every grant.
            let clear = inner.teardown_clear == Some(version) || !teardown::pending(&inner.state);
            inner.teardown_clear = clear.then_some(version);
            clear
        };
        if none_pending {
            progress.ended.clear();
            progress.swept.clear();
            return false;
        }
        // Without the local files (and no earlier copy) a managed admin's uid and the gids of
        // group grants are unknown: what can be ended still is, but such teardowns stay
        // pending (retried at the next tick) rather than being recorded complete.
        let (local, local_error) = match self.local_db() {
            Ok(l) => (l, None),
            // The last copy read (ids of local users and groups rarely change) ends them now;
            // without one, the teardown is retried.
            Err(e) => match self.lock().last_local.clone() {
                Some(l) => (l, None),
                None => (Default::default(), Some(e)),
            },
        };
        // One consistent view of state, taken under one lock.
        let mut plan = teardown::plan_teardown(&self.lock().state, &local, now);
        if plan.jobs.is_empty() {
            progress.ended.clear();
            progress.swept.clear();
            return false;
        }
        // Forget what is no longer pending (torn down by another path, or pruned).
        let pending: HashSet<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        progress.ended.retain(|id, _| pending.contains(id.as_str()));
        progress.swept.retain(|id, _| pending.contains(id.as_str()));
        let fresh: Vec<usize> = (0..plan.jobs.len())
            .filter(|&i| !progress.ended.contains_key(&plan.jobs[i].id))
            .collect();
        if !fresh.is_empty() {
            self.end_what_grants_held(&mut plan, &fresh, &local, now, &mut progress);
        }
        self.take_sweeps(&mut progress, now);
        self.finish_teardowns(&plan, &local_error, now, &mut progress);
        let Some(slot) = progress.sweeps.running() else {
            return !progress.ended.is_empty() || !progress.sweeps.is_idle();
        };
        // Wait for the walk without the lock: no other pass (the next second's expiries, a
        // revocation) waits for it to end processes.
        drop(progress);
        let ended = Sweeps::wait(&slot, SWEEP_WAIT);
        let mut progress = crate::poison::lock(&self.teardown);
        if ended {
            self.take_sweeps(&mut progress, now);
            self.finish_teardowns(&plan, &local_error, now, &mut progress);
        }
        !progress.ended.is_empty() || !progress.sweeps.is_idle()
    }

    /// Starts the deletion of homes left aside by an earlier run (once after start) and audits
    /// deletions that failed.
    fn purge_housekeeping(&self, progress: &mut Progress, now: UnixTime) {
        if !progress.purge_started {
            progress.purge_started = true;
            progress.retired_dir_used = true;
            progress.purger.kick(&self.cfg.home_root);
        }
        // Once the purger is done, its directory goes too (under this lock no home is being
        // moved into it); left while something in it could not be deleted.
        if progress.retired_dir_used && !progress.purger.busy() {
            progress.retired_dir_used = false;
            let _ = home::drop_retired_dir(&self.cfg.home_root);
        }
        let failed = progress.purger.take_failed();
        if !failed.is_empty() {
            self.audit.record_all(
                now,
                failed
                    .into_iter()
                    .map(|(path, error)| {
                        (
                            Severity::Warning,
                            Event::HomePurgeFailed,
                            json!({ "path": path, "error": error }),
                        )
                    })
                    .collect(),
            );
        }
    }

    /// Replaces the deletion of removed homes (integration tests hold it, to show that
    /// nothing waits for it).
    #[doc(hidden)]
    pub fn set_home_purge(&self, purge: Purge) {
        crate::poison::lock(&self.teardown).purger.set_purge(purge);
    }

    /// Whether removed homes are being deleted (tests wait for it).
    #[doc(hidden)]
    pub fn home_purge_busy(&self) -> bool {
        crate::poison::lock(&self.teardown).purger.busy()
    }

    /// Audits the set-id walks that have ended, notes which grants they covered, and starts
    /// the waiting one.
    fn take_sweeps(&self, progress: &mut Progress, now: UnixTime) {
        for done in progress.sweeps.poll(&self.cfg.sweep_paths) {
            let summary = self.record_sweep(
                now,
                &done.report,
                &done.batch.uid_grant,
                &done.batch.pair_grant,
            );
            for id in done.batch.ids {
                progress.swept.insert(id, summary.clone());
            }
        }
    }

    /// Replaces the set-id sweep's walk (integration tests hold it, to show that ending
    /// processes never waits for it).
    #[doc(hidden)]
    pub fn set_sweep_walk(&self, walk: Walk) {
        crate::poison::lock(&self.teardown).sweeps.set_walk(walk);
    }

    /// First stage for the jobs `fresh` of `plan`: processes (the whole plan's targets, so
    /// anything that appeared under an ended uid meanwhile goes too), cgroups, nscd; then their
    /// set-id sweep is queued (the whole plan's targets, as the processes). Leaves each job's
    /// record fields in `progress`.
    fn end_what_grants_held(
        &self,
        plan: &mut TeardownPlan,
        fresh: &[usize],
        local: &LocalDb,
        now: UnixTime,
        progress: &mut Progress,
    ) {
        let ids: Vec<&str> = fresh.iter().map(|&i| plan.jobs[i].id.as_str()).collect();
        // tokenize: processes still holding an ended grant's capability (effects/tokenize.rs).
        let mut kill = std::mem::take(&mut plan.kill);
        self.tokenize_kill_targets(&ids, now, local, &mut kill);
        // Processes that left their grant's cgroup: in the same pass (effects/watch.rs).
        let escaped = self.watch_escaped_targets(&ids, &mut kill);
        plan.kill = kill;
        // Each grant's cgroup is killed as a whole first (effects/watch.rs).
        let cgroup_kills = self.watch_kill(&ids);
        let report = end_processes(
            &plan.kill,
            Duration::from_millis(self.cfg.kill_grace_ms),
            Duration::from_secs(10),
        );
        self.watch_escaped_ended(&escaped, &report.survivors, now);
        let flushed = nscd::invalidate(self.cfg.nscd);
        // After the processes are gone (none can make a new file behind the walk), before the
        // home is archived or kept (the second stage waits for it).
        if plan.sweep.is_empty() {
            for &i in fresh {
                progress.swept.insert(plan.jobs[i].id.clone(), Value::Null);
            }
        } else {
            progress.sweeps.queue(Batch {
                ids: fresh.iter().map(|&i| plan.jobs[i].id.clone()).collect(),
                targets: plan.sweep.clone(),
                uid_grant: plan.uid_grant.clone(),
                pair_grant: plan.pair_grant.clone(),
            });
        }
        for (n, &i) in fresh.iter().enumerate() {
            let job = &plan.jobs[i];
            let mut fields = json!({
                "grant": job.id, "user": job.user, "ended": job.state.as_str(),
                "processes_found": report.found, "terminated": report.terminated, "killed": report.killed,
                "kill_ms": report.elapsed_ms, "nscd_flushed": flushed,
            });
            let mut complete = report.survivors.is_empty();
            if let Some(k) = cgroup_kills.get(n) {
                complete &= Self::watch_kill_fields(k, &mut fields); // effects/watch.rs
            }
            if !report.survivors.is_empty() {
                fields["survivors"] = json!(report.survivors);
            }
            progress.ended.insert(job.id.clone(), (fields, complete));
        }
    }

    /// Second stage, within [`FINISH_BUDGET`]: homes and records for the jobs of `plan` through
    /// the first stage, in plan order; what the budget leaves is finished by the next passes.
    fn finish_teardowns(
        &self,
        plan: &TeardownPlan,
        local_error: &Option<String>,
        now: UnixTime,
        progress: &mut Progress,
    ) {
        let started = std::time::Instant::now();
        let mut retired = false;
        let mut done = HashSet::new();
        let mut records = Vec::new();
        for job in &plan.jobs {
            if !records.is_empty() && started.elapsed() >= FINISH_BUDGET {
                break;
            }
            // Not before its set-id sweep is done (the home is archived or removed after it).
            if !progress.ended.contains_key(&job.id) || !progress.swept.contains_key(&job.id) {
                continue;
            }
            // Taken out either way: a complete one is finished now, an incomplete one goes
            // through the first stage again at the next pass.
            let Some((mut fields, mut complete)) = progress.ended.remove(&job.id) else {
                continue;
            };
            fields["setid_sweep"] = progress.swept.remove(&job.id).unwrap_or(Value::Null);
            if !job.gids.is_empty() {
                fields["gids"] = json!(job.gids);
            }
            if !job.sessions.is_empty() {
                fields["sessions"] = json!(job.sessions.iter().map(|s| &s.0).collect::<Vec<_>>());
            }
            if let (Some(e), true) = (local_error, job.enable || !job.groups.is_empty()) {
                fields["local_files_error"] = json!(e);
                complete = false;
            }
            let collided = matches!(job.home, HomeStep::Collided { .. });
            match &job.home {
                HomeStep::NoAccount => {}
                HomeStep::Collided { uid, local_user } => {
                    fields["collision"] = json!(format!(
                        "uid {uid} now belongs to local user {local_user:?}: its processes and {}/{} were left alone",
                        self.cfg.home_root.display(),
                        job.user
                    ));
                }
                HomeStep::KeptForOtherGrant => {
                    fields["home"] = json!("kept: another grant for this account is live");
                }
                HomeStep::ApplyPolicy { uid } => match self.end_home(&job.user, *uid, &job.id) {
                    Ok(what) => {
                        retired |= what == "removed";
                        fields["home"] = json!(what);
                    }
                    Err(e) => fields["home_error"] = json!(e.to_string()),
                },
            }
            // A home left in place, or a uid taken by a local user, needs a person's look.
            let sev = if !complete {
                Severity::Error
            } else if collided || fields.get("home_error").is_some() {
                Severity::Warning
            } else {
                Severity::Info
            };
            let event = if complete {
                Event::GrantTeardown
            } else {
                Event::GrantTeardownIncomplete
            };
            records.push((sev, event, fields));
            if complete {
                done.insert(job.id.as_str());
            }
        }
        // Homes moved aside are deleted on the purger's thread.
        if retired {
            progress.retired_dir_used = true;
            progress.purger.kick(&self.cfg.home_root);
        }
        // Group commit: every grant's record with one fsync, and durable before any teardown
        // is marked complete below.
        self.audit.record_all(now, records);
        if !done.is_empty() {
            let mut inner = self.lock();
            for id in &done {
                if let Some(g) = inner.state.grants.get_mut(id) {
                    g.torn_down = true;
                }
            }
            for job in plan.jobs.iter().filter(|j| done.contains(j.id.as_str())) {
                for (sid, _, _) in &job.sessions {
                    inner.state.sessions.remove(sid);
                }
            }
            let _ = self.persist(&mut inner, now);
            drop(inner);
            for id in &done {
                self.watch_torn_down(id); // queue the certification (effects/watch.rs)
            }
        }
    }

    /// Applies the home policy to the home of ended account `user` (uid `uid`) of grant `id`:
    /// what was done, for the audit record.
    fn end_home(&self, user: &str, uid: u32, id: &str) -> std::io::Result<String> {
        match self.cfg.home_policy {
            // Moved aside at once (one rename); deleted by the purger.
            HomePolicy::Remove => home::retire(&self.cfg.home_root, user, uid, id).map(|gone| {
                if gone {
                    "removed".to_string()
                } else {
                    "none".to_string()
                }
            }),
            HomePolicy::Archive => home::archive(&self.cfg.home_root, user, uid, id)
                .map(|p| p.map_or("none".to_string(), |p| format!("archived to {p}"))),
            HomePolicy::Keep => Ok("kept".to_string()),
        }
    }
}
