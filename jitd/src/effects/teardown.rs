//! Runs teardown plans (`crate::engine::teardown`): ends the processes, flushes nscd, sweeps
//! set-id files, removes, archives or keeps the home, audits each grant and marks it torn down.
//! Idempotent: a crash in the middle leaves `torn_down = false`, and the next start resumes it.

use std::time::Duration;

use jit_core::time::UnixTime;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::config::HomePolicy;
use crate::daemon::Daemon;
use crate::engine::teardown::{self, HomeStep};
use crate::localdb::LocalDb;
use crate::procs::end_processes;
use crate::{home, nscd};

impl Daemon {
    /// Tears down every ended grant whose teardown has not finished.
    pub(crate) fn run_teardowns(&self, now: UnixTime) {
        let _serial = self.teardown.lock().unwrap_or_else(|p| p.into_inner());
        if !teardown::pending(&self.lock().state) {
            return;
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
                None => (LocalDb::default(), Some(e)),
            },
        };
        // One consistent view of state, taken under one lock.
        let mut plan = teardown::plan_teardown(&self.lock().state, &local, now);
        if plan.jobs.is_empty() {
            return;
        }
        // tokenize: processes still holding an ended grant's capability (effects/tokenize.rs).
        let ids: Vec<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        let mut kill = std::mem::take(&mut plan.kill);
        self.tokenize_kill_targets(&ids, now, &local, &mut kill);
        // Processes that left their grant's cgroup: in the same pass (effects/watch.rs).
        let escaped = self.watch_escaped_targets(&ids, &mut kill);
        plan.kill = kill;
        // Each grant's cgroup is killed as a whole first (effects/watch.rs).
        let cgroup_kills =
            self.watch_kill(&plan.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>());
        let report = end_processes(
            &plan.kill,
            Duration::from_millis(self.cfg.kill_grace_ms),
            Duration::from_secs(10),
        );
        self.watch_escaped_ended(&escaped, &report.survivors, now);
        let flushed = nscd::invalidate(self.cfg.nscd);
        // After the processes are gone (none can make a new file behind the walk), before the
        // home is archived or kept.
        let swept = self.sweep_setid(now, &plan.sweep, &plan.uid_grant, &plan.pair_grant);
        let mut done = Vec::new();
        let mut records = Vec::with_capacity(plan.jobs.len());
        for (i, job) in plan.jobs.iter().enumerate() {
            let mut fields = json!({
                "grant": job.id, "user": job.user, "ended": job.state.as_str(),
                "processes_found": report.found, "terminated": report.terminated, "killed": report.killed,
                "kill_ms": report.elapsed_ms, "nscd_flushed": flushed, "setid_sweep": swept,
            });
            if !job.gids.is_empty() {
                fields["gids"] = json!(job.gids);
            }
            if !job.sessions.is_empty() {
                fields["sessions"] = json!(job.sessions.iter().map(|s| &s.0).collect::<Vec<_>>());
            }
            let mut complete = report.survivors.is_empty();
            if let Some(k) = cgroup_kills.get(i) {
                complete &= Self::watch_kill_fields(k, &mut fields); // effects/watch.rs
            }
            if let (Some(e), true) = (&local_error, job.enable || !job.groups.is_empty()) {
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
                    Ok(what) => fields["home"] = json!(what),
                    Err(e) => fields["home_error"] = json!(e.to_string()),
                },
            }
            if !report.survivors.is_empty() {
                fields["survivors"] = json!(report.survivors);
                complete = false;
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
                done.push(job.id.clone());
            }
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
            for job in plan.jobs.iter().filter(|j| done.contains(&j.id)) {
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
            HomePolicy::Remove => home::remove(&self.cfg.home_root, user, uid).map(|gone| {
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
