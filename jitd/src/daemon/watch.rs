//! The daemon's hooks into monitoring and certification (`crate::monitor`, `crate::certify`):
//! a grant that goes live gets its cgroup and its baseline fingerprint; a session or sudo under
//! it joins the cgroup; teardown kills the cgroup; a torn-down grant is certified. Each hook is
//! one call from daemon.rs, so the engine/effects split can move them as they are.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jit_core::time::UnixTime;
use jit_proto::certification::CertificationStatus;
use jit_proto::message::SudoReport;
use jit_proto::GrantState;
use serde_json::json;

use super::{Daemon, Peer};
use crate::audit::Severity;
use crate::certify::{diff, Done};
use crate::monitor::cgroup::KillReport;

impl Daemon {
    /// A grant went live (or armed): its cgroup is made and its baseline queued.
    pub(super) fn watch_went_live(&self, id: &str, now: UnixTime) {
        if let Err(e) = self.cgroups.create(id) {
            self.audit.record(
                now,
                Severity::Warning,
                "cgroup.create_failed",
                json!({ "grant": id, "error": e }),
            );
        }
        if let Some(c) = &self.certifier {
            c.baseline(id);
        }
    }

    /// The peer (a module's own process: sshd's session process, su, sudo) joins the grant's
    /// cgroup, so everything it starts is the grant's. Only for a live grant and a root peer.
    pub(super) fn watch_join(&self, peer: Peer, grant: &str, what: &str, now: UnixTime) {
        if peer.uid != 0
            || peer.pid <= 0
            || !matches!(self.cgroups, crate::monitor::cgroup::Cgroups::On { .. })
        {
            return;
        }
        let live = self
            .lock()
            .state
            .grants
            .get(grant)
            .is_some_and(|g| g.state_at(now) == GrantState::Live);
        if !live {
            return;
        }
        if let Err(e) = self.cgroups.join(grant, peer.pid) {
            self.audit.record(
                now,
                Severity::Warning,
                "cgroup.join_failed",
                json!({ "grant": grant, "pid": peer.pid, "for": what, "error": e }),
            );
        }
    }

    /// An approved sudo under a grant: the sudo process joins the grant's cgroup before it
    /// runs the command (it waits for this answer).
    pub(super) fn watch_sudo(&self, peer: Peer, r: &SudoReport, now: UnixTime) {
        if let (true, Some(g)) = (r.allowed, &r.grant) {
            self.watch_join(peer, g, "sudo", now);
        }
    }

    /// Teardown: every grant's cgroup is killed as a whole before the /proc scan.
    pub(super) fn watch_kill(&self, ids: &[&str]) -> Vec<KillReport> {
        ids.iter()
            .map(|id| {
                self.cgroups
                    .kill(id, Duration::from_millis(self.cfg.kill_grace_ms.max(2000)))
            })
            .collect()
    }

    /// Adds what the cgroup kill found to a teardown record; false if the cgroup is not empty.
    pub(super) fn watch_kill_fields(rep: &KillReport, fields: &mut serde_json::Value) -> bool {
        if rep.found > 0 || rep.error.is_some() {
            fields["cgroup_killed"] = json!(rep.found);
        }
        if let Some(e) = &rep.error {
            fields["cgroup_error"] = json!(e);
        }
        rep.left == 0 && (rep.removed || rep.error.is_none())
    }

    /// A grant's teardown finished: its end fingerprint is queued.
    pub(super) fn watch_torn_down(&self, id: &str) {
        if let Some(c) = &self.certifier {
            c.end(id);
        }
    }

    /// At every tick: store finished certifications with their grants (and audit them); at the
    /// first tick, resume certifications a restart interrupted and kill cgroups of grants that
    /// are gone.
    pub(super) fn watch_tick(&self, now: UnixTime) {
        let Some(c) = &self.certifier else { return };
        if !self.watch_resumed.swap(true, Ordering::SeqCst) {
            let (pending, stale): (Vec<String>, Vec<String>) = {
                let inner = self.lock();
                let pending = inner
                    .state
                    .grants
                    .values()
                    .filter(|g| g.torn_down && g.certification.is_none())
                    .map(|g| g.id.clone())
                    .collect();
                let stale = self
                    .cgroups
                    .existing()
                    .into_iter()
                    .filter(|id| {
                        inner
                            .state
                            .grants
                            .get(id)
                            .is_none_or(|g| g.state.is_ended() && g.torn_down)
                    })
                    .collect();
                (pending, stale)
            };
            for id in pending.iter().filter(|id| c.has_baseline(id)) {
                c.end(id);
            }
            for id in stale {
                let rep = self.cgroups.kill(&id, Duration::from_secs(2));
                self.audit.record(
                    now,
                    Severity::Notice,
                    "cgroup.stale_removed",
                    json!({ "grant": id, "killed": rep.found, "error": rep.error }),
                );
            }
        }
        for done in c.take_done() {
            match done {
                Done::Baseline {
                    grant,
                    items,
                    elapsed_ms,
                    error,
                } => {
                    let (sev, ev) = match error {
                        None => (Severity::Info, "certify.baseline"),
                        Some(_) => (Severity::Warning, "certify.baseline_failed"),
                    };
                    self.audit.record(
                        now,
                        sev,
                        ev,
                        json!({ "grant": grant, "items": items, "elapsed_ms": elapsed_ms, "error": error }),
                    );
                }
                Done::Certified {
                    grant,
                    cert,
                    elapsed_ms,
                } => {
                    let user = {
                        let mut inner = self.lock();
                        let user = inner.state.grants.get_mut(&grant).map(|g| {
                            g.certification = Some((*cert).clone());
                            g.user.clone()
                        });
                        let _ = self.persist(&mut inner, now);
                        user
                    };
                    let sev = match cert.status {
                        CertificationStatus::Clean => Severity::Info,
                        CertificationStatus::NoBaseline => Severity::Notice,
                        CertificationStatus::Changed => Severity::Warning,
                    };
                    let lines: Vec<String> = cert.differences.iter().map(diff::describe).collect();
                    self.audit.record(
                        now,
                        sev,
                        "grant.certification",
                        json!({
                            "grant": grant, "user": user, "status": cert.status.as_str(),
                            "baseline_at": cert.baseline_at, "items": cert.items,
                            "differences": lines, "omitted": cert.omitted,
                            "root_equivalent": cert.differences.iter().filter(|d| d.root_equivalent).count(),
                            "unreadable": cert.unreadable.len(), "elapsed_ms": elapsed_ms,
                        }),
                    );
                    if user.is_some() {
                        c.forget(&grant);
                    }
                }
            }
        }
    }
}
