//! The daemon's hooks into monitoring and certification (`crate::monitor`, `crate::certify`):
//! a grant that goes live gets its cgroup and its baseline fingerprint; a session or sudo under
//! it joins the cgroup; teardown kills the cgroup; a torn-down grant is certified. Each hook is
//! one call from the executor (`effects/tick.rs`, `effects/teardown.rs`) or the dispatch
//! (`api/mod.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use jit_core::time::UnixTime;
use jit_core::types::Text;
use jit_proto::certification::CertificationStatus;
use jit_proto::message::SudoReport;
use jit_proto::GrantState;
use serde_json::json;

use crate::api::Peer;
use crate::audit::{Event, Severity};
use crate::certify::{diff, Done};
use crate::daemon::Daemon;
use crate::monitor::cgroup::KillReport;
use crate::monitor::events::loss::Loss;
use crate::monitor::events::{Hit, Watched};
use crate::poison::lock;

/// `notice` records of monitored events kept per grant (a build that trips a class on every
/// file must not flood the trail); the rest are counted in the last one.
const NOTICES_PER_GRANT: usize = 50;

impl Daemon {
    /// The `cgroups:` line of `jitctl status`: per-grant cgroups, or why there are none.
    pub(crate) fn watch_status(&self) -> String {
        self.cgroups.describe()
    }

    /// Whether live monitoring of grants' processes runs here and sees `classes` (all of them
    /// when empty): per-grant cgroups (membership is what it watches) and the event sources
    /// those classes come from. The error says why not.
    pub(crate) fn watch_available(&self, classes: &[String]) -> Result<(), String> {
        let Some(m) = &self.monitor else {
            return Err(match &self.cgroups {
                crate::monitor::cgroup::Cgroups::Off(why) => {
                    format!("no per-grant cgroups ({why})")
                }
                crate::monitor::cgroup::Cgroups::On { .. } => {
                    "the monitor could not start (see monitor.unavailable in the audit)".into()
                }
            });
        };
        if classes.is_empty() {
            let p = lock(&m.problems);
            return match p.first() {
                None => Ok(()),
                Some(_) => Err(format!(
                    "a source could not start: {}",
                    p.iter()
                        .map(|(s, e)| format!("{}: {e}", s.as_str()))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            };
        }
        crate::monitor::events::sources_for(m, classes)
    }

    /// The `monitoring:` line of `jitctl status`: on, unavailable or incomplete and why, and
    /// the episodes of lost events so far.
    pub(crate) fn watch_monitoring_status(&self) -> String {
        let mut s = match self.watch_available(&[]) {
            Ok(()) => "on (proc connector, fanotify, tcp scan)".to_string(),
            Err(why) if self.monitor.is_some() => format!("incomplete: {why}"),
            Err(why) => format!(
                "unavailable: {why}; grants' processes are not watched and --revoke-on needs --sudo"
            ),
        };
        if let Some(m) = &self.monitor {
            let (episodes, last) = *lock(&m.lost_summary);
            if let Some((source, at)) = last {
                s.push_str(&format!(
                    "; events lost in {episodes} episode(s), the last by {} at {}",
                    source.as_str(),
                    jit_core::time::format_utc(at)
                ));
            }
        }
        s
    }

    /// A grant may have started or stopped being live (activated, torn down): the watch set
    /// takes it at the next tick.
    pub(crate) fn watch_changed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut d = lock(&self.watch_dirty);
        d.ids.extend(ids.into_iter().map(str::to_string));
    }

    /// A grant went live (or armed): its cgroup is made and its baseline queued.
    pub(crate) fn watch_went_live(&self, id: &str, now: UnixTime) {
        self.watch_changed([id]);
        if let Err(e) = self.cgroups.create(id) {
            self.audit.record(
                now,
                Severity::Warning,
                Event::CgroupCreateFailed,
                json!({ "grant": id, "error": e }),
            );
        }
        if let Some(c) = &self.certifier {
            c.baseline(id);
        }
    }

    /// The peer (a module's own process: sshd's session process, su, sudo) joins the grant's
    /// cgroup, so everything it starts is the grant's. Only for a live grant and a root peer.
    pub(crate) fn watch_join(&self, peer: Peer, grant: &str, what: &str, now: UnixTime) {
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
        match self.cgroups.join(grant, peer.pid) {
            Ok(()) => {
                if let Some(m) = &self.monitor {
                    lock(&m.joined).push((peer.pid, grant.to_string()));
                }
            }
            Err(e) => {
                self.audit.record(
                    now,
                    Severity::Warning,
                    Event::CgroupJoinFailed,
                    json!({ "grant": grant, "pid": peer.pid, "for": what, "error": e }),
                );
            }
        }
    }

    /// An approved sudo under a grant: the sudo process joins the grant's cgroup before it
    /// runs the command (it waits for this answer).
    pub(crate) fn watch_sudo(&self, peer: Peer, r: &SudoReport, now: UnixTime) {
        if let (true, Some(g)) = (r.allowed, &r.grant) {
            self.watch_join(peer, g, "sudo", now);
        }
    }

    /// Teardown: the processes the monitor saw leave these grants' cgroups (pinned by their
    /// start time) join the teardown's own /proc pass, one for every grant ended in this run,
    /// as `targets.sessions`. Returns them per grant, alive ones only, for
    /// [`Daemon::watch_escaped_ended`] after the pass.
    pub(crate) fn watch_escaped_targets(
        &self,
        ids: &[&str],
        targets: &mut crate::procs::KillTargets,
    ) -> Vec<(String, Vec<(i32, u64)>)> {
        let Some(m) = &self.monitor else {
            return Vec::new();
        };
        let mut escaped = lock(&m.escaped);
        ids.iter()
            .filter_map(|id| {
                let alive: Vec<(i32, u64)> = escaped
                    .remove(*id)?
                    .into_iter()
                    .filter(|(pid, start)| crate::procs::start_time(*pid) == Some(*start))
                    .collect();
                targets.sessions.extend(alive.iter().copied());
                Some((id.to_string(), alive))
            })
            .collect()
    }

    /// After the teardown's pass: what became of each grant's escaped processes (audited);
    /// `survivors` are the pass's (a killed process not yet reaped counts as ended, as there).
    pub(crate) fn watch_escaped_ended(
        &self,
        escaped: &[(String, Vec<(i32, u64)>)],
        survivors: &[i32],
        now: UnixTime,
    ) {
        for (id, procs) in escaped {
            let left: Vec<i32> = procs
                .iter()
                .map(|(pid, _)| *pid)
                .filter(|pid| survivors.contains(pid))
                .collect();
            // The teardown is incomplete then and retried: they stay its targets.
            if let (false, Some(m)) = (left.is_empty(), &self.monitor) {
                lock(&m.escaped)
                    .entry(id.clone())
                    .or_default()
                    .extend(procs.iter().filter(|(pid, _)| left.contains(pid)).copied());
            }
            self.audit.record(
                now,
                Severity::Notice,
                Event::MonitorEscapedEnded,
                json!({ "grant": id, "found": procs.len(), "ended": procs.len() - left.len(), "survivors": left }),
            );
        }
    }

    /// Teardown: every grant's cgroup is killed as a whole before the /proc scan; all
    /// cgroups killed, then waited for together (one wait for a mass expiry).
    pub(crate) fn watch_kill(&self, ids: &[&str]) -> Vec<KillReport> {
        self.watch_changed(ids.iter().copied());
        self.cgroups
            .kill_all(ids, Duration::from_millis(self.cfg.kill_grace_ms.max(2000)))
    }

    /// Adds what the cgroup kill found to a teardown record; false if the cgroup is not empty.
    pub(crate) fn watch_kill_fields(rep: &KillReport, fields: &mut serde_json::Value) -> bool {
        if rep.found > 0 || rep.error.is_some() {
            fields["cgroup_killed"] = json!(rep.found);
        }
        if let Some(e) = &rep.error {
            fields["cgroup_error"] = json!(e);
        }
        rep.left == 0 && (rep.removed || rep.error.is_none())
    }

    /// `grant show`: the full certification from its file in place of the stored summary.
    pub(crate) fn watch_full_certification(&self, mut g: jit_proto::Grant) -> jit_proto::Grant {
        if let (Some(c), Some(_)) = (&self.certifier, &g.certification) {
            if let Some(full) = c.load_full(&g.id) {
                g.certification = Some(Box::new(full));
            }
        }
        g
    }

    /// A grant's teardown finished: its end fingerprint is queued.
    pub(crate) fn watch_torn_down(&self, id: &str) {
        if let Some(c) = &self.certifier {
            c.end(id);
        }
    }

    /// At every tick: store finished certifications with their grants (and audit them); at the
    /// first tick, resume certifications a restart interrupted and kill cgroups of grants that
    /// are gone.
    pub(crate) fn watch_tick(&self, now: UnixTime) {
        self.watch_monitor(now);
        let Some(c) = &self.certifier else { return };
        if !self.watch_resumed.swap(true, Ordering::SeqCst) {
            let (pending, stale): (Vec<String>, Vec<String>) = {
                let inner = self.lock();
                let pending = inner
                    .state
                    .grants
                    .values()
                    .filter(|g| g.torn_down && g.certification.is_none())
                    .map(|g| g.id.to_string())
                    .collect();
                let stale = self
                    .cgroups
                    .existing()
                    .into_iter()
                    .filter(|id| {
                        inner
                            .state
                            .grants
                            .get(id.as_str())
                            .is_none_or(|g| g.state.is_ended() && g.torn_down)
                    })
                    .collect();
                (pending, stale)
            };
            for id in pending.iter().filter(|id| c.has_baseline(id)) {
                c.end(id);
            }
            {
                let inner = self.lock();
                c.prune(&|g| inner.state.grants.contains_key(g));
            }
            for id in stale {
                let rep = self.cgroups.kill(&id, Duration::from_secs(2));
                self.audit.record(
                    now,
                    Severity::Notice,
                    Event::CgroupStaleRemoved,
                    json!({ "grant": id, "killed": rep.found, "error": rep.error }),
                );
            }
        }
        // Certifications finished since the last tick: their summaries go into state with one
        // write and their records with one group commit, however many there are (a mass
        // expiry finishes thousands, and one state write each kept the timer, and so the next
        // expiries, waiting for minutes).
        let mut records = Vec::new();
        let mut certified = Vec::new();
        let mut to_server = Vec::new();
        for done in c.take_done() {
            match done {
                Done::Baseline {
                    grant,
                    items,
                    elapsed_ms,
                    error,
                } => {
                    let (sev, ev) = match error {
                        None => (Severity::Info, Event::CertifyBaseline),
                        Some(_) => (Severity::Warning, Event::CertifyBaselineFailed),
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
                    // The full record in its own file; state.json keeps a summary.
                    let saved = c.save_full(&grant, &cert);
                    let user = {
                        let mut inner = self.lock();
                        inner.state.grants.get_mut(&grant).map(|g| {
                            g.certification = Some(Box::new(if saved.is_ok() {
                                crate::certify::summary(&cert)
                            } else {
                                (*cert).clone()
                            }));
                            g.user.clone()
                        })
                    };
                    let sev = match cert.status {
                        CertificationStatus::Clean => Severity::Info,
                        CertificationStatus::NoBaseline => Severity::Notice,
                        CertificationStatus::Changed => Severity::Warning,
                    };
                    let lines: Vec<String> = cert.differences.iter().map(diff::describe).collect();
                    // Episodes of lost events while it was watched: its live watch had gaps.
                    let lost = self
                        .monitor
                        .as_ref()
                        .and_then(|m| lock(&m.lost_by_grant).remove(&grant));
                    let sev = match (lost, sev) {
                        (Some(_), Severity::Info) => Severity::Notice,
                        _ => sev,
                    };
                    let mut fields = json!({
                        "grant": grant, "user": user.as_deref(), "status": cert.status.as_str(),
                        "baseline_at": cert.baseline_at, "items": cert.items,
                        "differences": lines, "omitted": cert.omitted,
                        "root_equivalent": cert.differences.iter().filter(|d| d.root_equivalent).count(),
                        "unreadable": cert.unreadable.len(), "elapsed_ms": elapsed_ms,
                    });
                    if let Some(n) = lost {
                        fields["monitor_events_lost"] = json!(n);
                    }
                    records.push((sev, Event::GrantCertification, fields));
                    // The central service gets the record too (while enrolled; queued once
                    // the local record is durable, below).
                    if let Some(u) = &user {
                        to_server.push(crate::sync::events::PendingCert {
                            local_grant: grant.clone(),
                            user: u.to_string(),
                            cert: crate::certify::summary(&cert),
                        });
                    }
                    if user.is_some() {
                        certified.push(grant);
                    }
                }
            }
        }
        if !records.is_empty() {
            // State first, as before: a summary is in state.json before its record says so.
            let _ = self.persist(&mut self.lock(), now);
            self.audit.record_all(now, records);
            for grant in &certified {
                c.forget(grant);
            }
            for pending in to_server {
                self.sync_link.queue_certification(pending);
            }
        }
    }
}

impl Daemon {
    /// Tells the monitor which grants are live, and acts on what it saw: a hit in one of the
    /// grant's `--revoke-on` classes ends the grant (warning); any other is audited at notice.
    fn watch_monitor(&self, now: UnixTime) {
        let Some(m) = &self.monitor else { return };
        // The homes of grants without an account come from the passwd file.
        let passwd = crate::snapshot_out::FileId::of(&self.cfg.passwd_file);
        let (dirty, verify) = {
            let mut d = lock(&self.watch_dirty);
            let verify = d
                .verified_at
                .is_none_or(|t| now < t || now - t >= WATCH_VERIFY_SECS);
            (std::mem::take(&mut d.ids), verify)
        };
        let passwd_changed = *lock(&self.watch_passwd) != passwd;
        if verify || passwd_changed {
            self.watch_rebuild(m, passwd, now);
            lock(&self.watch_dirty).verified_at = Some(now);
        } else if !dirty.is_empty() {
            // Only the grants that started or ended since the last tick: a tick with adds
            // at 50 000 live grants walked and copied every one under the state lock.
            let (added, gone): (Vec<(Text, Text, bool)>, std::collections::HashSet<String>) = {
                let inner = self.lock();
                let mut added = Vec::new();
                let mut gone = std::collections::HashSet::new();
                for id in dirty {
                    match inner.state.grants.get(id.as_str()) {
                        Some(g) if g.state_at(now) == GrantState::Live => {
                            added.push((g.id.clone(), g.user.clone(), g.account));
                        }
                        _ => {
                            gone.insert(id);
                        }
                    }
                }
                (added, gone)
            };
            let current = std::sync::Arc::clone(&*lock(&m.watched));
            let next = current.changed(&gone, self.watched_entries(&added));
            *lock(&m.watched) = std::sync::Arc::new(next);
        }
        let hits = std::mem::take(&mut *lock(&m.hits));
        for h in hits {
            self.watch_hit(&h, now);
        }
        let losses = std::mem::take(&mut *lock(&m.losses));
        for l in losses {
            self.watch_loss(m, &l, now);
        }
    }

    /// The watch set made again from every live grant if it differs (and on a passwd change):
    /// what each tick did before grants were tracked as they start and end, now the periodic
    /// check that nothing was missed.
    fn watch_rebuild(
        &self,
        m: &crate::monitor::events::Shared,
        passwd: Option<crate::snapshot_out::FileId>,
        now: UnixTime,
    ) {
        let changed: Option<Vec<(Text, Text, bool)>> = {
            let inner = self.lock();
            lock(&m.lost_by_grant).retain(|g, _| inner.state.grants.contains_key(g.as_str()));
            let live = || {
                inner
                    .state
                    .grants
                    .values()
                    .filter(|g| g.state_at(now) == GrantState::Live)
            };
            // Compared by id under the state lock without allocating; built again only when a
            // grant started or ended unseen, or passwd changed. A grant's id, user and account
            // never change.
            let current = std::sync::Arc::clone(&*lock(&m.watched));
            let same = *lock(&self.watch_passwd) == passwd
                && current.is_exactly(live().map(|g| g.id.as_str()));
            (!same).then(|| {
                live()
                    .map(|g| (g.id.clone(), g.user.clone(), g.account))
                    .collect()
            })
        };
        if let Some(live) = changed {
            *lock(&m.watched) =
                std::sync::Arc::new(crate::monitor::WatchSet::new(self.watched_entries(&live)));
            *lock(&self.watch_passwd) = passwd;
        }
    }

    /// What the monitor keeps of each live grant `(id, user, has an account)`: the strings
    /// shared with the state, an account's home as its name under one shared `home_root`.
    fn watched_entries(&self, live: &[(Text, Text, bool)]) -> Vec<Watched> {
        use crate::monitor::events::Home;
        let homes = if live.iter().any(|(_, _, acct)| !acct) {
            crate::monitor::homes(&self.cfg.passwd_file)
        } else {
            Default::default()
        };
        let root: std::sync::Arc<std::path::Path> = self.cfg.home_root.as_path().into();
        live.iter()
            .map(|(id, user, acct)| Watched {
                grant: id.clone(),
                user: user.clone(),
                home: if *acct {
                    Home::Under(std::sync::Arc::clone(&root))
                } else {
                    homes
                        .get(user.as_str())
                        .map_or(Home::Unknown, |h| Home::At(h.as_path().into()))
                },
            })
            .collect()
    }

    /// An episode of lost events (`monitor/events/loss.rs`): audited once, counted for each
    /// grant watched meanwhile (its certification record says so) and for status.
    fn watch_loss(&self, m: &crate::monitor::events::Shared, l: &Loss, now: UnixTime) {
        use crate::monitor::events::loss::{Source, GRANTS_LISTED};
        {
            let mut by = lock(&m.lost_by_grant);
            for g in &l.grants {
                *by.entry(g.clone()).or_insert(0) += 1;
            }
        }
        {
            let mut sum = lock(&m.lost_summary);
            sum.0 += 1;
            sum.1 = Some((l.source, now));
        }
        let note = match l.source {
            Source::ProcConnector => {
                "fork/exec/exit events were dropped: the grants' cgroups were re-read and their \
                 processes whose exec was not seen were classified from what they run now; a \
                 process that ran and exited within the loss was not seen"
            }
            Source::Fanotify => {
                "file events were dropped: reads of sensitive files and writes within the loss \
                 were not seen live; changes to account, sudo, key, package and set-id files \
                 are in the grants' certifications"
            }
        };
        self.audit.record(
            now,
            Severity::Warning,
            Event::MonitorEventsLost,
            json!({
                "source": l.source.as_str(), "reports": l.reports, "lasted_ms": l.lasted_ms,
                "grants": l.grants.iter().take(GRANTS_LISTED).collect::<Vec<_>>(),
                "grants_omitted": l.grants.len().saturating_sub(GRANTS_LISTED),
                "rescanned": l.rescanned, "note": note,
            }),
        );
    }

    fn watch_hit(&self, h: &Hit, now: UnixTime) {
        let (live, classes, user) = {
            let inner = self.lock();
            match inner.state.grants.get(h.grant.as_str()) {
                Some(g) => (
                    g.state_at(now) == GrantState::Live,
                    g.revoke_on.clone(),
                    g.user.clone(),
                ),
                None => return,
            }
        };
        let fields = json!({
            "grant": h.grant, "user": user.as_str(), "class": h.class, "pid": h.pid, "uid": h.uid,
            "cmdline": jit_core::policy::sudo::shown(&h.cmdline, 1024), "act": h.what,
        });
        if live && classes.contains(&h.class) {
            let queued_ms = h.seen.elapsed().as_millis() as u64;
            let mut f = fields;
            f["queued_ms"] = json!(queued_ms);
            self.audit
                .record(now, Severity::Warning, Event::GrantMonitorHit, f);
            let why = format!(
                "revoke-on {}: {} by pid {} ({})",
                h.class,
                h.what,
                h.pid,
                jit_core::policy::sudo::shown(&h.cmdline, 512)
            );
            let r = self.revoke_as(&h.grant, &why, "policy", now);
            self.audit.record(
                now,
                Severity::Info,
                Event::MonitorLatency,
                json!({ "grant": h.grant, "class": h.class, "event_to_ended_ms": h.seen.elapsed().as_millis() as u64,
                        "queued_ms": queued_ms, "revoked": r.is_ok() }),
            );
            return;
        }
        let n = {
            let mut counts = lock(&self.watch_notices);
            let n = counts.entry(h.grant.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if n <= NOTICES_PER_GRANT {
            let mut f = fields;
            if n == NOTICES_PER_GRANT {
                f["note"] = json!("last notice for this grant; later events are counted in its certification audit only");
            }
            self.audit
                .record(now, Severity::Notice, Event::MonitorEvent, f);
        }
    }
}

/// How often the watch set is checked against every grant, whatever was tracked (seconds).
const WATCH_VERIFY_SECS: UnixTime = 30;

/// Grants whose liveness may have changed since the watch set was made.
#[derive(Default)]
pub(crate) struct WatchDirty {
    pub(crate) ids: std::collections::HashSet<String>,
    pub(crate) verified_at: Option<UnixTime>,
}
