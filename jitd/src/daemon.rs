//! The daemon's core: grants in memory behind one lock, persisted before they are acted on,
//! projected onto the snapshot, moved through their life by [`Daemon::tick`], and changed by
//! socket requests through [`Daemon::handle`].
//!
//! Locking: `inner` guards state and is never held across process killing, home removal or
//! nscd; `teardown` serializes those slow steps so the timer and a revoke never run the same
//! teardown twice.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use jit_core::time::{format_utc, UnixTime};
use jit_core::validate::{
    validate_account_name, validate_grant_id, validate_name, validate_ssh_key, validate_text,
};
use jit_proto::message::{Payload, Status, SudoReport};
use jit_proto::{ErrorCode, Grant, GrantSpec, GrantState, Request, Response};
use serde_json::json;

mod durability;
mod login;
mod rundir;
mod setid;
// The central service's grants reach the daemon only through this adapter (sync::GrantSink).
mod sync_adapter;
// Monitoring and certification hooks (cgroup per grant, fingerprints): daemon/watch.rs.
mod watch;
pub use login::Peer;

use crate::audit::{Audit, Severity};
use crate::breakglass::BreakglassStore;
use crate::config::{Config, HomePolicy};
use crate::journal::{EndKind, Journal};
use crate::localdb::LocalDb;
use crate::procs::{end_processes, KillTargets};
use crate::snapshot_out::{self, Collision, FileId, SnapshotFiles};
use crate::state::{State, StateStore};
use crate::totp::{TotpError, TotpStore};
use crate::{home, nscd};

/// Grants kept after they ended, for `grant list --all` and reports; older ones are pruned.
const ENDED_KEEP: usize = 10_000;

struct Inner {
    state: State,
    state_writable: bool,
    /// Where ends go while `state.json` cannot be written (see `journal.rs`).
    journal: Journal,
    /// State changed in memory in a way that may reach disk at the next tick (a closed
    /// session: losing it in a crash only means the reaper closes it again at start).
    dirty: bool,
    snapshot_id: Option<SnapshotFiles>,
    snapshot_written_at: Option<UnixTime>,
    local_sig: Option<(Option<FileId>, Option<FileId>)>,
    reported_collisions: BTreeSet<Collision>,
    /// The last /etc/passwd and /etc/group that could be read, for snapshots written while
    /// they cannot.
    last_local: Option<LocalDb>,
    /// The local files could not be read at the last snapshot (audited once per episode).
    local_unreadable: bool,
    /// grant id -> (CLOCK_BOOTTIME seconds when first seen live, seconds it had left then).
    boot_cap: HashMap<String, (i64, i64)>,
}

/// The running daemon.
pub struct Daemon {
    /// Configuration.
    pub cfg: Config,
    store: StateStore,
    audit: Audit,
    totp: TotpStore,
    breakglass: BreakglassStore,
    inner: Mutex<Inner>,
    teardown: Mutex<()>,
    /// Signalled when a deadline may have moved (a grant was added or revoked).
    /// Shared with the process monitor, whose hits should not wait for the next second.
    pub wake: std::sync::Arc<Condvar>,
    /// Set by SIGTERM/SIGINT.
    pub stop: AtomicBool,
    started_at: UnixTime,
    /// A missing run directory could not be made again (audited once per episode).
    rundir_failing: AtomicBool,
    // --- monitoring and certification (daemon/watch.rs) ---
    cgroups: crate::monitor::cgroup::Cgroups,
    certifier: Option<crate::certify::Certifier>,
    watch_resumed: AtomicBool,
    monitor: Option<std::sync::Arc<crate::monitor::events::Shared>>,
    watch_notices: Mutex<HashMap<String, usize>>,
    /// The link to the central service (jit-server), shared with the sync thread.
    pub sync_link: std::sync::Arc<crate::sync::Link>,
}

type Refusal = (ErrorCode, String);

fn refuse(code: ErrorCode, msg: impl Into<String>) -> Refusal {
    (code, msg.into())
}

/// Seconds on CLOCK_BOOTTIME: does not move when the wall clock is set, counts suspend.
fn boottime() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec
}

/// `n` random bytes from getrandom(2) as lower-case hex.
fn random_hex(n: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; n];
    // SAFETY: `b` is writable for its length.
    let got = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if got != b.len() as isize {
        return Err(std::io::Error::other("getrandom failed"));
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn random_id() -> std::io::Result<String> {
    Ok(format!("g-{}", random_hex(6)?))
}

/// One grant to tear down, with what its teardown needs.
#[derive(Debug, Clone)]
struct TeardownJob {
    id: String,
    user: String,
    uid: Option<u32>,
    groups: Vec<String>,
    gids: Vec<u32>,
    state: GrantState,
    /// The grant enabled a managed local admin account.
    enable: bool,
    /// Sessions pam_jit registered under it: (session id, pid, pid start time).
    sessions: Vec<(String, i32, u64)>,
}

impl Daemon {
    /// Loads state and opens the audit log. Nothing acts yet.
    ///
    /// # Errors
    /// Unusable state directory, damaged state with no intact previous generation, or an
    /// audit log that cannot be opened.
    pub fn open(cfg: Config, now: UnixTime) -> Result<Daemon, String> {
        prepare_dir(&cfg.state_dir, 0o700)?;
        if let Some(d) = cfg.snapshot_path.parent() {
            prepare_dir(d, 0o755)?;
        }
        let audit = Audit::open(&cfg.audit_log)
            .map_err(|e| format!("audit log {}: {e}", cfg.audit_log.display()))?;
        let store = StateStore::new(&cfg.state_dir);
        // Before anything else acts: a secret store others can read is refused outright (X7).
        let totp = TotpStore::open(&cfg.state_dir, cfg.totp)
            .map_err(|e| format!("JIT-E004 TOTP store: {e}; refusing to start"))?;
        let breakglass = BreakglassStore::open(&cfg.state_dir)
            .map_err(|e| format!("JIT-E005 {e}; refusing to start"))?;
        // Not fatal: on a full state filesystem jitd must still start to tear down. The
        // snapshot written at the first tick carries the list; this file only serves a boot
        // before jitd runs.
        if let Err(e) = write_managed_list(&cfg) {
            audit.record(
                now,
                Severity::Error,
                "state.managed_list_write_failed",
                json!({ "error": e, "effect": "pam_jit's fallback list (used only without a snapshot) is the previous one" }),
            );
        }
        let mut loaded = store.load().map_err(|e| {
            format!(
                "JIT-E001 {e}; refusing to start (restore {} or its .prev)",
                store.path().display()
            )
        })?;
        // Ends recorded while state.json could not be written hold across this restart.
        let (journal, ends) = Journal::open(&cfg.state_dir)
            .map_err(|e| format!("JIT-E006 revocation journal: {e}; refusing to start"))?;
        let applied = durability::apply_journal(&mut loaded.state, &ends);
        if let Some(why) = &loaded.recovered_from_prev {
            audit.record(
                now,
                Severity::Error,
                "state.recovered",
                json!({ "problem": why, "used": "previous generation" }),
            );
        }
        if !applied.is_empty() {
            audit.record(
                now,
                Severity::Warning,
                "state.journal_applied",
                json!({
                    "grants": applied,
                    "why": "ended while state.json could not be written; recorded in the revocation journal",
                }),
            );
        }
        // --- monitoring and certification (daemon/watch.rs) ---
        let cgroups = crate::monitor::cgroup::Cgroups::setup(
            cfg.cgroup_dir.as_deref(),
            std::path::Path::new("/proc/self/mountinfo"),
        );
        let certifier = match crate::certify::Certifier::start(
            cfg.state_dir.join("certify"),
            crate::certify::Scope {
                passwd_file: cfg.passwd_file.clone(),
                group_file: cfg.group_file.clone(),
                suid_roots: cfg.certify_suid_roots.clone(),
                exclude: cfg.certify_exclude.clone(),
                mountinfo: "/proc/self/mountinfo".into(),
            },
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                audit.record(
                    now,
                    Severity::Error,
                    "certify.unavailable",
                    json!({ "error": e }),
                );
                None
            }
        };
        let wake = std::sync::Arc::new(Condvar::new());
        let monitor = crate::monitor::start(&cfg, &cgroups, now, &audit, &wake);
        let d = Daemon {
            monitor,
            watch_notices: Mutex::new(HashMap::new()),
            sync_link: std::sync::Arc::new(crate::sync::Link::default()),
            cgroups,
            certifier,
            watch_resumed: AtomicBool::new(false),
            cfg,
            store,
            audit,
            totp,
            breakglass,
            inner: Mutex::new(Inner {
                state: loaded.state,
                state_writable: true,
                journal,
                // Applied ends reach state.json at the first tick.
                dirty: !applied.is_empty(),
                snapshot_id: None,
                snapshot_written_at: None,
                local_sig: None,
                reported_collisions: BTreeSet::new(),
                last_local: None,
                local_unreadable: false,
                boot_cap: HashMap::new(),
            }),
            teardown: Mutex::new(()),
            wake,
            stop: AtomicBool::new(false),
            started_at: now,
            rundir_failing: AtomicBool::new(false),
        };
        d.reserve_journal_at_start(now);
        Ok(d)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a worker panicked mid-update; the state in memory is still the
        // last consistent one we persisted or about to persist, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an audit event.
    pub fn audit(&self, now: UnixTime, sev: Severity, event: &str, fields: serde_json::Value) {
        self.audit.record(now, sev, event, fields);
    }

    fn local_db(&self) -> Result<LocalDb, String> {
        LocalDb::read(&self.cfg.passwd_file, &self.cfg.group_file).map_err(|e| {
            format!(
                "cannot read {} / {}: {e}",
                self.cfg.passwd_file.display(),
                self.cfg.group_file.display()
            )
        })
    }

    /// Persists state; on failure marks state unwritable (new grants refused) and audits once
    /// per episode (the write is retried at every tick). A successful write holds every end,
    /// so the revocation journal is cleared.
    fn persist(&self, inner: &mut Inner, now: UnixTime) -> Result<(), String> {
        match self.store.save(&inner.state) {
            Ok(()) => {
                if !inner.state_writable {
                    self.audit.record(
                        now,
                        Severity::Notice,
                        "state.write_recovered",
                        json!({ "path": self.store.path().display().to_string() }),
                    );
                }
                inner.state_writable = true;
                inner.dirty = false;
                if inner.journal.has_entries() {
                    // A failed clear is harmless: the entries only end grants already ended.
                    let _ = inner.journal.clear();
                }
                Ok(())
            }
            Err(e) => {
                if inner.state_writable {
                    self.audit.record(
                        now,
                        Severity::Error,
                        "state.write_failed",
                        json!({
                            "error": e.to_string(),
                            "effect": "no new grants; ends are recorded in the revocation journal; retried every second",
                        }),
                    );
                }
                inner.state_writable = false;
                Err(e.to_string())
            }
        }
    }

    /// Rewrites the snapshot from state. Failures are audited and retried at the next tick.
    fn write_snapshot(&self, inner: &mut Inner, now: UnixTime) {
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
                        "snapshot.local_files_unreadable",
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
                    "account.collision",
                    json!({
                        "grant": c.grant, "user": c.user, "with": c.with,
                        "action": "account hidden: local names and ids always win"
                    }),
                );
            }
        }
        let gates = snapshot_out::gates_path(&self.cfg.snapshot_path);
        match snapshot_out::write(&self.cfg.snapshot_path, &gates, &data) {
            Ok(id) => {
                inner.snapshot_id = id;
                inner.snapshot_written_at = Some(now);
            }
            Err(e) => {
                inner.snapshot_id = None;
                self.audit.record(
                    now,
                    Severity::Error,
                    "snapshot.write_failed",
                    json!({ "error": e }),
                );
            }
        }
        inner.local_sig = Some((
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        ));
    }

    /// Moves every grant along at `now`: pending → live (home made), live → expired
    /// (persisted, snapshot rewritten, then processes, home, caches). Also repairs a missing or
    /// altered snapshot and notices changes to /etc/passwd and /etc/group. Returns the next
    /// deadline.
    pub fn tick(&self, now: UnixTime) -> Option<UnixTime> {
        self.repair_run_dirs(now);
        let boot = boottime();
        let (went_live, expired, changed) = {
            let mut inner = self.lock();
            let mut changed = false;
            let mut went_live = Vec::new();
            let mut expired = Vec::new();
            let ids: Vec<String> = inner.state.grants.keys().cloned().collect();
            for id in ids {
                let Some(g) = inner.state.grants.get(&id).cloned() else {
                    continue;
                };
                if g.state.is_ended() {
                    continue;
                }
                // Boot-time cap: a wall clock set back must not stretch a grant (C5).
                let capped = match inner.boot_cap.get(&id) {
                    Some(&(b0, left)) => boot - b0 >= left,
                    None => false,
                };
                let st = g.state_at(now);
                if st == GrantState::Expired || capped {
                    if let Some(gm) = inner.state.grants.get_mut(&id) {
                        gm.state = GrantState::Expired;
                        gm.ended_at = Some(now);
                        gm.end_reason = Some(if capped && st != GrantState::Expired {
                            "expired (elapsed time since activation reached its duration; the wall clock moved back)".into()
                        } else {
                            "expired".into()
                        });
                    }
                    inner.boot_cap.remove(&id);
                    expired.push((
                        g.id.clone(),
                        g.user.clone(),
                        g.not_after,
                        capped && st != GrantState::Expired,
                    ));
                    changed = true;
                } else if matches!(st, GrantState::Live | GrantState::Armed) {
                    inner
                        .boot_cap
                        .entry(id.clone())
                        .or_insert((boot, g.not_after - now));
                    if g.state == GrantState::Pending {
                        if let Some(gm) = inner.state.grants.get_mut(&id) {
                            gm.state = GrantState::Live;
                            gm.went_live_at = Some(now);
                        }
                        went_live.push(id.clone());
                        changed = true;
                    }
                }
            }
            if changed {
                self.prune(&mut inner.state);
                // Persist before acting; if it fails, the expiry still takes effect in memory
                // and in the snapshot (expiry is local), is recorded in the revocation journal
                // (so a boot-time-cap end survives a restart too), and the write is retried
                // next tick.
                let ends: Vec<(String, EndKind)> = expired
                    .iter()
                    .map(|(id, ..)| (id.clone(), EndKind::Expired))
                    .collect();
                let _ = self.persist_ends(&mut inner, &ends, now);
            } else if !inner.state_writable || inner.dirty {
                let _ = self.persist(&mut inner, now);
            }
            let local_now = (
                FileId::of(&self.cfg.passwd_file),
                FileId::of(&self.cfg.group_file),
            );
            let snap_now = SnapshotFiles::of(&self.cfg.snapshot_path);
            let local_changed = inner.local_sig != Some(local_now);
            let snapshot_damaged = inner.snapshot_id.is_none() || snap_now != inner.snapshot_id;
            if changed || local_changed || snapshot_damaged {
                if snapshot_damaged && inner.snapshot_written_at.is_some() {
                    self.audit.record(now, Severity::Notice, "snapshot.repaired", json!({
                        "path": self.cfg.snapshot_path.display().to_string(),
                        "problem": if snap_now.is_none() { "missing" } else { "changed by someone else" }
                    }));
                }
                self.write_snapshot(&mut inner, now);
            }
            (went_live, expired, changed)
        };
        for (id, user, not_after, by_boot_cap) in expired {
            // `not_after` is the original expiry even when jitd was down at that moment (F11).
            self.audit.record(now, Severity::Info, "grant.expired", json!({
                "grant": id, "user": user, "not_after": not_after, "late_secs": (now - not_after).max(0),
                "boot_time_cap": by_boot_cap,
            }));
        }
        for id in went_live {
            self.on_live(&id, now);
        }
        if changed {
            nscd::invalidate(self.cfg.nscd);
        }
        self.reap_sessions(now);
        self.run_teardowns(now);
        self.watch_tick(now); // monitoring/certification results (daemon/watch.rs)
        self.next_deadline()
    }

    fn prune(&self, state: &mut State) {
        let ended: Vec<(UnixTime, String)> = state
            .grants
            .values()
            .filter(|g| g.state.is_ended() && g.torn_down)
            .map(|g| (g.ended_at.unwrap_or(0), g.id.clone()))
            .collect();
        if ended.len() > ENDED_KEEP {
            let mut ended = ended;
            ended.sort();
            for (_, id) in ended.iter().take(ended.len() - ENDED_KEEP) {
                state.grants.remove(id);
            }
        }
    }

    /// The earliest `not_before`/`not_after` still ahead.
    pub fn next_deadline(&self) -> Option<UnixTime> {
        let inner = self.lock();
        inner
            .state
            .grants
            .values()
            .filter(|g| !g.state.is_ended())
            .map(|g| {
                if g.state == GrantState::Pending {
                    g.not_before.min(g.not_after)
                } else {
                    g.not_after
                }
            })
            .min()
    }

    fn on_live(&self, id: &str, now: UnixTime) {
        let Some(g) = self.lock().state.grants.get(id).cloned() else {
            return;
        };
        self.watch_went_live(&g.id, now); // cgroup + certification baseline (daemon/watch.rs)
        let mut fields = json!({ "grant": g.id, "user": g.user, "not_after": g.not_after });
        // The home comes with the account, armed or not: the first login of an --mfa account
        // grant (the one that proves the code) must find it.
        if let (true, Some(uid)) = (g.account, g.uid) {
            match home::create(&self.cfg.home_root, &g.user, uid, uid, &self.cfg.skel) {
                Ok(c) => fields["home"] = json!(format!("{:?}", c).to_lowercase()),
                Err(e) => {
                    self.audit.record(
                        now,
                        Severity::Warning,
                        "home.create_failed",
                        json!({ "grant": g.id, "user": g.user, "error": e.to_string() }),
                    );
                }
            }
        }
        if g.state_at(now) == GrantState::Armed {
            fields["needs"] =
                json!("a TOTP code (at login, or jitctl activate) before it gives privilege");
            self.audit
                .record(now, Severity::Info, "grant.armed", fields);
            return;
        }
        self.audit.record(now, Severity::Info, "grant.live", fields);
    }

    /// Tears down every ended grant whose teardown has not finished. Idempotent: a crash in the
    /// middle leaves `torn_down = false`, and the next start resumes it.
    fn run_teardowns(&self, now: UnixTime) {
        let _serial = self.teardown.lock().unwrap_or_else(|p| p.into_inner());
        // One consistent view of state, taken under one lock; the file reads come after it.
        let (mut jobs, still_granted, still_account, still_logged_in, still_enabled) = {
            let inner = self.lock();
            let jobs: Vec<TeardownJob> = inner
                .state
                .grants
                .values()
                .filter(|g| g.state.is_ended() && !g.torn_down)
                .map(|g| TeardownJob {
                    id: g.id.clone(),
                    user: g.user.clone(),
                    uid: if g.account { g.uid } else { None },
                    groups: g.groups.clone(),
                    gids: Vec::new(),
                    state: g.state,
                    enable: g.enable,
                    sessions: inner
                        .state
                        .sessions
                        .values()
                        .filter(|s| s.grant == g.id)
                        .map(|s| (s.id.clone(), s.pid, s.pid_start))
                        .collect(),
                })
                .collect();
            if jobs.is_empty() {
                return;
            }
            let live = inner.state.grants.values().filter(|g| !g.state.is_ended());
            // Memberships still held by grants that remain live must not be torn away. Only a
            // live (activated) grant gives a membership: a pending one has not begun and an
            // armed one gives its groups only after the code, so neither shields a process
            // that kept the gid.
            let still_granted: HashSet<(String, String)> = live
                .clone()
                .filter(|g| g.state_at(now) == GrantState::Live)
                .flat_map(|g| g.groups.iter().map(move |gr| (g.user.clone(), gr.clone())))
                .collect();
            // The account stays (and its home is kept) while another grant for it is live or
            // armed; its processes stay only under a live one: an armed grant has had no login
            // yet (the code that would have activated it), so it shields nobody's session.
            let still_account: HashSet<String> = live
                .clone()
                .filter(|g| {
                    g.account && matches!(g.state_at(now), GrantState::Live | GrantState::Armed)
                })
                .map(|g| g.user.clone())
                .collect();
            let still_logged_in: HashSet<String> = live
                .clone()
                .filter(|g| g.account && g.state_at(now) == GrantState::Live)
                .map(|g| g.user.clone())
                .collect();
            let still_enabled: HashSet<String> = live
                .filter(|g| g.enable && g.state_at(now) == GrantState::Live)
                .map(|g| g.user.clone())
                .collect();
            (
                jobs,
                still_granted,
                still_account,
                still_logged_in,
                still_enabled,
            )
        };
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
        let mut targets = KillTargets::default();
        // Local always wins, at teardown too: a local user made later with the account's uid
        // (`useradd -o -u`) owns every process with that uid now, so none is ended by uid and
        // the home (whose files are that user's as much) is left; audited with the teardown.
        let uid_collision = |uid: u32| {
            local
                .users
                .iter()
                .find(|u| u.uid == uid)
                .map(|u| u.name.clone())
        };
        // Whose set-id files the sweep looks for, and under which grant each is audited.
        let mut uid_grant = HashMap::new();
        let mut pair_grant = HashMap::new();
        for job in &mut jobs {
            if let Some(uid) = job.uid {
                if !still_logged_in.contains(&job.user) && uid_collision(uid).is_none() {
                    targets.uids.insert(uid);
                    uid_grant.insert(uid, job.id.clone());
                }
            }
            // A managed admin account is disabled again: every process running as it ends
            // (its sessions held the enabled privilege), unless another grant still enables it.
            if job.enable && !still_enabled.contains(&job.user) {
                if let Some(u) = local.user(&job.user).filter(|u| u.uid != 0) {
                    targets.uids.insert(u.uid);
                    // A set-uid file it made while enabled would let anyone act as it while
                    // it is disabled: swept like an ephemeral account's.
                    uid_grant.insert(u.uid, job.id.clone());
                }
            }
            for (_, pid, start) in &job.sessions {
                targets.sessions.insert((*pid, *start));
            }
            // The grantee's uid: a local user, or the ephemeral account itself.
            let holder = local
                .user(&job.user)
                .map(|u| u.uid)
                .or(job.uid.filter(|&u| uid_collision(u).is_none()));
            // Not the jit-sudo gid: it is no privilege by itself (sudoers' %jit-sudo rule is
            // narrowed by sudo_jit, which checks for a live grant at every sudo), and ending
            // every session a local user opened during a sudo grant would log them out of
            // their normal access at each expiry.
            for gname in &job.groups {
                let Some(lg) = local.group(gname) else {
                    continue;
                };
                // Never kill for a membership the user holds locally or through another
                // live grant: those processes are entitled to the gid.
                if lg.members.iter().any(|m| m == &job.user)
                    || still_granted.contains(&(job.user.clone(), gname.clone()))
                    || local.user(&job.user).is_some_and(|u| u.gid == lg.gid)
                {
                    continue;
                }
                job.gids.push(lg.gid);
                if let Some(h) = holder.filter(|&h| h != 0) {
                    targets.group_holders.insert((h, lg.gid));
                    pair_grant.insert((h, lg.gid), job.id.clone());
                }
            }
        }
        // Each grant's cgroup is killed as a whole first (daemon/watch.rs).
        let cgroup_kills = self.watch_kill(&jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>());
        let report = end_processes(
            &targets,
            Duration::from_millis(self.cfg.kill_grace_ms),
            Duration::from_secs(10),
        );
        let flushed = nscd::invalidate(self.cfg.nscd);
        // After the processes are gone (none can make a new file behind the walk), before the
        // home is archived or kept.
        let swept = self.sweep_setid(
            now,
            &crate::sweep::Targets {
                uids: uid_grant.keys().copied().collect(),
                owner_gids: pair_grant.keys().copied().collect(),
            },
            &uid_grant,
            &pair_grant,
        );
        let mut done = Vec::new();
        for job in &jobs {
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
            if let Some(k) = jobs
                .iter()
                .position(|j| j.id == job.id)
                .and_then(|i| cgroup_kills.get(i))
            {
                complete &= Self::watch_kill_fields(k, &mut fields); // daemon/watch.rs
            }
            if let (Some(e), true) = (&local_error, job.enable || !job.groups.is_empty()) {
                fields["local_files_error"] = json!(e);
                complete = false;
            }
            let collided = job.uid.and_then(uid_collision);
            if let (Some(uid), Some(local_user)) = (job.uid, &collided) {
                fields["collision"] = json!(format!(
                    "uid {uid} now belongs to local user {local_user:?}: its processes and {}/{} were left alone",
                    self.cfg.home_root.display(),
                    job.user
                ));
            }
            if let (Some(uid), None) = (job.uid, &collided) {
                if still_account.contains(&job.user) {
                    fields["home"] = json!("kept: another grant for this account is live");
                } else {
                    let r = match self.cfg.home_policy {
                        HomePolicy::Remove => home::remove(&self.cfg.home_root, &job.user, uid)
                            .map(|gone| {
                                if gone {
                                    "removed".to_string()
                                } else {
                                    "none".to_string()
                                }
                            }),
                        HomePolicy::Archive => {
                            home::archive(&self.cfg.home_root, &job.user, uid, &job.id).map(|p| {
                                p.map_or("none".to_string(), |p| format!("archived to {p}"))
                            })
                        }
                        HomePolicy::Keep => Ok("kept".to_string()),
                    };
                    match r {
                        Ok(what) => fields["home"] = json!(what),
                        Err(e) => {
                            fields["home_error"] = json!(e.to_string());
                        }
                    }
                }
            }
            if !report.survivors.is_empty() {
                fields["survivors"] = json!(report.survivors);
                complete = false;
            }
            // A home left in place, or a uid taken by a local user, needs a person's look.
            let sev = if !complete {
                Severity::Error
            } else if collided.is_some() || fields.get("home_error").is_some() {
                Severity::Warning
            } else {
                Severity::Info
            };
            self.audit.record(
                now,
                sev,
                if complete {
                    "grant.teardown"
                } else {
                    "grant.teardown_incomplete"
                },
                fields,
            );
            if complete {
                done.push(job.id.clone());
            }
        }
        if !done.is_empty() {
            let mut inner = self.lock();
            for id in &done {
                if let Some(g) = inner.state.grants.get_mut(id) {
                    g.torn_down = true;
                }
            }
            for job in jobs.iter().filter(|j| done.contains(&j.id)) {
                for (sid, _, _) in &job.sessions {
                    inner.state.sessions.remove(sid);
                }
            }
            let _ = self.persist(&mut inner, now);
            drop(inner);
            for id in &done {
                self.watch_torn_down(id); // queue the certification (daemon/watch.rs)
            }
        }
    }

    /// Answers one request from a peer with uid `peer_uid` whose pid is unknown.
    pub fn handle(&self, peer_uid: u32, req: Request, now: UnixTime) -> Response {
        self.handle_peer(
            Peer {
                uid: peer_uid,
                pid: 0,
            },
            req,
            now,
        )
    }

    /// Answers one request from `peer` (SO_PEERCRED).
    pub fn handle_peer(&self, peer: Peer, req: Request, now: UnixTime) -> Response {
        let peer_uid = peer.uid;
        let r = match req {
            Request::VerifyMfa {
                user,
                code,
                purpose,
                service,
                grant,
                caller,
            } => self.verify_mfa(
                peer,
                login::MfaCheck {
                    user: &user,
                    code: &code,
                    purpose,
                    service: &service,
                    grant: grant.as_deref(),
                    caller: caller.as_ref(),
                },
                now,
            ),
            Request::OpenSession { session } => self
                .open_session(peer, &session, now)
                .inspect(|_| self.watch_join(peer, &session.grant, "session", now)),
            Request::CloseSession { user, session } => {
                self.close_session(peer, &user, session.as_deref(), now)
            }
            Request::ListSessions => Ok(self.list_sessions(peer)),
            Request::InitBreakglass {
                account,
                count,
                replace,
            } => self.init_breakglass(peer, &account, count, replace, now),
            Request::UseBreakglass {
                account,
                code,
                service,
                rhost,
                caller_uid,
            } => self.use_breakglass(
                peer,
                login::BreakglassUse {
                    account: &account,
                    code: &code,
                    service: &service,
                    rhost: &rhost,
                    caller_uid,
                },
                now,
            ),
            Request::GetStatus => Ok(Payload::Status(self.status(now))),
            Request::AddGrant { spec } => self
                .add_grant(peer_uid, *spec, now)
                .map(|g| Payload::Grant(Box::new(g))),
            Request::ListGrants { all } => Ok(Payload::Grants {
                grants: self.list(peer_uid, all, now),
            }),
            Request::ShowGrant { id } => self
                .show(peer_uid, &id, now)
                .map(|g| self.watch_full_certification(g)) // daemon/watch.rs
                .map(|g| Payload::Grant(Box::new(g))),
            Request::RevokeGrant { id, reason } => self
                .revoke(peer_uid, &id, reason, now)
                .map(|g| Payload::Grant(Box::new(g))),
            Request::EnrollMfa { user, replace } => self.enroll_mfa(peer_uid, &user, replace, now),
            Request::RemoveMfa { user } => self.remove_mfa(peer_uid, &user, now),
            Request::ReportSudo { report } => self
                .report_sudo(peer_uid, &report, now)
                .inspect(|_| self.watch_sudo(peer, &report, now)),
            Request::Activate { grant, code } => {
                self.activate(peer_uid, grant.as_deref(), &code, now)
            }
            Request::EnrollServer {
                url,
                token,
                fingerprint,
            } => self.enroll_server(peer_uid, &url, &token, &fingerprint, now),
            Request::ReadAudit {
                grant,
                since,
                after_offset,
            } => {
                if peer_uid != 0 {
                    Err(refuse(
                        ErrorCode::PermissionDenied,
                        "only root may read the audit trail",
                    ))
                } else {
                    self.audit
                        .read(grant.as_deref(), since, after_offset)
                        .map(|(records, offset)| Payload::Audit { records, offset })
                        .map_err(|e| {
                            refuse(
                                ErrorCode::Internal,
                                format!("cannot read the audit log: {e}"),
                            )
                        })
                }
            }
        };
        match r {
            Ok(p) => Response::ok(p),
            Err((code, msg)) => Response::error(code, msg),
        }
    }

    fn status(&self, now: UnixTime) -> Status {
        let inner = self.lock();
        let count =
            |f: &dyn Fn(&Grant) -> bool| inner.state.grants.values().filter(|g| f(g)).count();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: now - self.started_at,
            live: count(&|g| g.state_at(now) == GrantState::Live),
            pending: count(&|g| g.state_at(now) == GrantState::Pending),
            armed: count(&|g| g.state_at(now) == GrantState::Armed),
            teardown_pending: count(&|g| g.state.is_ended() && !g.torn_down),
            ended: count(&|g| g.state.is_ended()),
            snapshot_path: self.cfg.snapshot_path.display().to_string(),
            snapshot_written_at: inner.snapshot_written_at,
            server: self.sync_link.status_line(now),
            state_writable: inner.state_writable,
            cgroups: self.watch_status(),
        }
    }

    /// The name a peer acts as: a local user, or an ephemeral account (by ledger uid).
    fn peer_name(&self, peer_uid: u32, inner: &Inner) -> Option<String> {
        if let Ok(l) = self.local_db() {
            if let Some(u) = l.users.iter().find(|u| u.uid == peer_uid) {
                return Some(u.name.clone());
            }
        }
        inner
            .state
            .uid_ledger
            .iter()
            .find(|(_, &u)| u == peer_uid)
            .map(|(n, _)| n.clone())
    }

    /// Which grants a peer may see: all for root, else only its own. The peer's name is
    /// resolved once per request (it reads /etc/passwd), not once per grant.
    fn may_see(&self, peer_uid: u32, inner: &Inner) -> impl Fn(&Grant) -> bool {
        let may_see_user = self.may_see_user(peer_uid, inner);
        move |g| may_see_user(&g.user)
    }

    /// Whose grants and sessions a peer may see: everyone's for root, else only its own
    /// (the peer's name resolved once per request).
    fn may_see_user(&self, peer_uid: u32, inner: &Inner) -> impl Fn(&str) -> bool {
        let own = (peer_uid != 0).then(|| self.peer_name(peer_uid, inner));
        move |user| match &own {
            None => true,
            Some(name) => name.as_deref() == Some(user),
        }
    }

    fn with_state(g: &Grant, now: UnixTime) -> Grant {
        let mut g = g.clone();
        g.state = g.state_at(now);
        g
    }

    fn list(&self, peer_uid: u32, all: bool, now: UnixTime) -> Vec<Grant> {
        let inner = self.lock();
        let may_see = self.may_see(peer_uid, &inner);
        let mut v: Vec<Grant> = inner
            .state
            .grants
            .values()
            .filter(|g| may_see(g))
            .map(|g| Self::with_state(g, now))
            .filter(|g| all || matches!(g.state, GrantState::Live | GrantState::Armed))
            .collect();
        v.sort_by(|a, b| (a.not_before, &a.id).cmp(&(b.not_before, &b.id)));
        v
    }

    fn show(&self, peer_uid: u32, id: &str, now: UnixTime) -> Result<Grant, Refusal> {
        validate_grant_id(id).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        let inner = self.lock();
        match inner.state.grants.get(id) {
            Some(g) if self.may_see(peer_uid, &inner)(g) => Ok(Self::with_state(g, now)),
            _ => Err(refuse(ErrorCode::NotFound, format!("no grant {id}"))),
        }
    }

    fn revoke(
        &self,
        peer_uid: u32,
        id: &str,
        reason: Option<String>,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        // Audited by the server as `request.denied` (rate-limited per uid, names cut).
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may revoke grants",
            ));
        }
        validate_grant_id(id).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        let reason = reason.unwrap_or_default();
        validate_text("reason", &reason, 256)
            .map_err(|e| refuse(ErrorCode::Refused, e.to_string()))?;
        self.revoke_as(id, &reason, "root", now)
    }

    /// Ends grant `id` now on behalf of `by` (`root`, `policy`): durable, out of the snapshot,
    /// caches flushed, then torn down before returning.
    fn revoke_as(&self, id: &str, reason: &str, by: &str, now: UnixTime) -> Result<Grant, Refusal> {
        let (g, durable) = {
            let mut inner = self.lock();
            let g = inner
                .state
                .grants
                .get(id)
                .cloned()
                .ok_or_else(|| refuse(ErrorCode::NotFound, format!("no grant {id}")))?;
            let st = g.state_at(now);
            if st.is_ended() {
                let when = g.ended_at.unwrap_or(g.not_after);
                return Err(refuse(
                    ErrorCode::Refused,
                    format!(
                        "grant {id} already ended ({} at {})",
                        st.as_str(),
                        format_utc(when)
                    ),
                ));
            }
            if let Some(gm) = inner.state.grants.get_mut(id) {
                gm.state = GrantState::Revoked;
                gm.ended_at = Some(now);
                gm.end_reason = Some(if reason.is_empty() {
                    format!("revoked by {by}")
                } else {
                    format!("revoked by {by}: {reason}")
                });
            }
            // Durable before acknowledged: in state.json, or else in the revocation journal.
            // Either way the revocation applies in memory and in the snapshot at once (it only
            // removes privilege), and a failed state write is retried at each tick.
            let durable = self.persist_ends(&mut inner, &[(id.to_string(), EndKind::Revoked)], now);
            inner.boot_cap.remove(id);
            self.write_snapshot(&mut inner, now);
            (inner.state.grants.get(id).cloned().unwrap_or(g), durable)
        };
        self.audit.record(
            now,
            if by == "root" {
                Severity::Notice
            } else {
                Severity::Warning
            },
            "grant.revoked",
            json!({ "grant": id, "user": g.user, "by": by, "reason": reason, "durable": durable.as_str() }),
        );
        nscd::invalidate(self.cfg.nscd);
        self.run_teardowns(now);
        self.wake.notify_all();
        if let durability::Durable::No(why) = &durable {
            return Err(refuse(
                ErrorCode::Internal,
                format!(
                    "grant {id} is revoked now (gone from NSS, its processes ended) but the revocation is NOT durable: {why}; \
                     if jitd restarts before {} can be written the grant comes back: free space there and keep jitd running",
                    self.cfg.state_dir.display()
                ),
            ));
        }
        let inner = self.lock();
        Ok(inner
            .state
            .grants
            .get(id)
            .map_or(g, |g| Self::with_state(g, now)))
    }

    /// Audits a sudo decision and ends the grant when the command falls in one of its
    /// `revoke_on` classes (the plugin has already refused that command).
    fn report_sudo(
        &self,
        peer_uid: u32,
        r: &SudoReport,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root (the sudo plugin) may report sudo decisions",
            ));
        }
        validate_name("user name", &r.user)
            .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        if let Some(id) = &r.grant {
            validate_grant_id(id).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        }
        // The audit line carries the command as sudo resolved it, capped: argv can be huge.
        let argv: Vec<String> = r
            .argv
            .iter()
            .take(64)
            .map(|a| a.chars().take(256).collect())
            .collect();
        // The operator's ioc_commands are jitd's config, not the plugin's (modules read no
        // config file): an approved command is classified again here, and a hit makes this
        // reply an error, which sudo_jit turns into a refusal.
        let mut class_bits = r.classes;
        if r.allowed && !self.cfg.ioc_commands.is_empty() {
            use jit_core::policy::{classify, sudo::SudoRequest};
            let args: Vec<&str> = r.argv.iter().map(String::as_str).collect();
            let extra: Vec<&str> = self.cfg.ioc_commands.iter().map(String::as_str).collect();
            let mut req = SudoRequest::new(&r.user, r.uid, &r.command, &args);
            req.runas_user = &r.runas;
            class_bits |= classify::classify(&req, &extra) & classify::CLASS_IOC;
        }
        // What jitd knows of the grant now: its state may be newer than the plugin's snapshot.
        let (live, revoke_bits) = match &r.grant {
            None => (false, 0),
            Some(id) => {
                let inner = self.lock();
                match inner.state.grants.get(id) {
                    Some(g) if g.user == r.user => (
                        g.state_at(now) == GrantState::Live,
                        g.revoke_on
                            .iter()
                            .filter_map(|c| jit_core::policy::classify::parse_class(c))
                            .fold(0, |a, b| a | b),
                    ),
                    _ => (false, 0),
                }
            }
        };
        let hit = if r.grant.is_some() && (live || !r.allowed) {
            revoke_bits & class_bits
        } else {
            0
        };
        // An approval jitd cannot confirm becomes a refusal (sudo_jit waits for this answer).
        let refusal = match (&r.grant, r.allowed) {
            (_, false) => None,
            (Some(id), true) if !live => Some(format!("grant {id} is not live in jitd")),
            (Some(id), true) if hit != 0 => Some(format!(
                "{} is in revoke-on {} of grant {id}: refused, grant revoked",
                jit_core::policy::sudo::shown(&r.command, 256),
                jit_core::policy::classify::class_names(hit).join(",")
            )),
            _ => None,
        };
        let allowed = r.allowed && refusal.is_none();
        self.audit.record(
            now,
            if allowed { Severity::Info } else { Severity::Warning },
            if allowed { "sudo.allowed" } else { "sudo.denied" },
            json!({
                "grant": r.grant, "user": r.user, "uid": r.uid, "command": r.command.chars().take(4096).collect::<String>(),
                "argv": argv, "argc": r.argv.len(), "runas": r.runas, "runas_group": r.runas_group,
                "reason": refusal.as_deref().unwrap_or(&r.reason),
                "classes": jit_core::policy::classify::class_names(class_bits),
            }),
        );
        if let (Some(id), true) = (&r.grant, hit != 0) {
            // The command line is the user's: escaped and capped, it is stored as the end
            // reason and printed by `jitctl grant show` (no terminal escapes, no newlines).
            let why = format!(
                "revoke-on {}: {}",
                jit_core::policy::classify::class_names(hit).join(","),
                jit_core::policy::sudo::shown(
                    &std::iter::once(r.command.as_str())
                        .chain(argv.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(" "),
                    1024
                )
            );
            self.audit.record(
                now,
                Severity::Warning,
                "grant.policy_hit",
                json!({ "grant": id, "user": r.user, "reason": why }),
            );
            self.revoke_as(id, &why, "policy", now)?;
            if refusal.is_none() {
                return Ok(Payload::Done {
                    message: format!("grant {id} revoked: {why}"),
                });
            }
        }
        match refusal {
            Some(m) => Err(refuse(ErrorCode::Refused, m)),
            None => Ok(Payload::Done {
                message: "recorded".into(),
            }),
        }
    }

    fn add_grant(&self, peer_uid: u32, spec: GrantSpec, now: UnixTime) -> Result<Grant, Refusal> {
        // Audited by the server as `request.denied` (rate-limited per uid, names cut).
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may add grants",
            ));
        }
        let result = self.add_grant_checked(spec.clone(), now);
        if let Err((code, msg)) = &result {
            self.audit.record(
                now,
                Severity::Warning,
                "grant.rejected",
                json!({ "user": spec.user, "code": code, "reason": msg }),
            );
        }
        result
    }

    fn add_grant_checked(&self, spec: GrantSpec, now: UnixTime) -> Result<Grant, Refusal> {
        self.add_grant_from(spec, jit_proto::GrantSource::Local, now)
    }

    /// The one admission of new privilege, for local grants and for grants the central service
    /// delivers (daemon/sync_adapter.rs); `source` is recorded with the grant in the same
    /// durable write.
    fn add_grant_from(
        &self,
        spec: GrantSpec,
        source: jit_proto::GrantSource,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        let bad =
            |e: jit_core::validate::ValidationError| refuse(ErrorCode::Refused, e.to_string());
        if spec.user == "root" {
            return Err(refuse(ErrorCode::Refused, "root is never managed by jit"));
        }
        if spec.account {
            validate_account_name(&spec.user).map_err(bad)?;
        } else {
            validate_name("user name", &spec.user).map_err(bad)?;
        }
        if spec.duration_secs <= 0 {
            return Err(refuse(
                ErrorCode::Refused,
                "--for must be a positive duration",
            ));
        }
        if spec.duration_secs > self.cfg.max_grant_secs {
            return Err(refuse(
                ErrorCode::Refused,
                format!(
                    "--for {} exceeds max_grant {}",
                    jit_core::time::format_duration(spec.duration_secs),
                    jit_core::time::format_duration(self.cfg.max_grant_secs)
                ),
            ));
        }
        if !(0..=31 * 86_400).contains(&spec.start_in_secs) {
            return Err(refuse(
                ErrorCode::Refused,
                "--start-in must be between 0s and 31d",
            ));
        }
        validate_text("reason", &spec.reason, 256).map_err(bad)?;
        validate_text("ticket", &spec.ticket, 64).map_err(bad)?;
        validate_text("requested-by", &spec.requested_by, 64).map_err(bad)?;
        if !spec.ssh_keys.is_empty() && !spec.account {
            return Err(refuse(
                ErrorCode::Refused,
                "--ssh-key needs --account (keys are served only for ephemeral accounts)",
            ));
        }
        if spec.ssh_keys.len() > 16 {
            return Err(refuse(ErrorCode::Refused, "at most 16 ssh keys per grant"));
        }
        for k in &spec.ssh_keys {
            validate_ssh_key(k).map_err(bad)?;
        }
        let mut groups = spec.groups.clone();
        groups.sort();
        groups.dedup();
        if groups.len() > 32 {
            return Err(refuse(ErrorCode::Refused, "at most 32 groups per grant"));
        }
        if !spec.account && !spec.enable && groups.is_empty() && spec.sudo.is_empty() {
            return Err(refuse(
                ErrorCode::Refused,
                "nothing to grant: give --account, --enable, --group and/or --sudo",
            ));
        }
        let own = [
            &self.cfg.group_users,
            &self.cfg.group_sudo,
            &self.cfg.group_mfa,
        ];
        if own.contains(&&spec.user) {
            return Err(refuse(
                ErrorCode::Refused,
                format!("{:?} is one of jit's own group names", spec.user),
            ));
        }
        let local = self
            .local_db()
            .map_err(|e| refuse(ErrorCode::Internal, e))?;
        if spec.account {
            if let Some(other) = local.name_taken(&spec.user) {
                return Err(refuse(ErrorCode::Refused, format!("{:?} exists locally (as {other:?} in {} or {}): jit never shadows a local name", spec.user, self.cfg.passwd_file.display(), self.cfg.group_file.display())));
            }
        }
        let scope = self.check_sudo_scope(&spec)?;
        let login = self.check_login_conditions(&spec, &local)?;
        if (spec.mfa || spec.mfa_sudo) && !self.totp.is_enrolled(&spec.user) {
            return Err(refuse(
                ErrorCode::Refused,
                format!(
                    "--mfa{}: {} has no TOTP secret yet (jitctl mfa enroll {})",
                    if spec.mfa { "" } else { "-sudo" },
                    spec.user,
                    spec.user
                ),
            ));
        }
        let not_before = now + spec.start_in_secs;
        let not_after = not_before + spec.duration_secs;

        let mut inner = self.lock();
        if !inner.state_writable {
            // Try once more; refuse new privilege while state cannot be made durable.
            self.persist(&mut inner, now).map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("state is not writable, no new grants: {e}"),
                )
            })?;
        }
        // New privilege only with room to audit it and to record its end later.
        self.room_for_new_grant(&mut inner)?;
        if !spec.account && local.user(&spec.user).is_none() {
            let has_account = inner.state.grants.values().any(|g| {
                g.account
                    && g.user == spec.user
                    && !g.state.is_ended()
                    && g.not_before <= not_before
                    && g.not_after >= not_after
            });
            if !has_account {
                return Err(refuse(ErrorCode::Refused, format!("no local user {:?} (and no account grant for it covering this window): add --account to create one", spec.user)));
            }
        }
        for gname in &groups {
            validate_name("group name", gname).map_err(bad)?;
            if own.contains(&gname) {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!("{gname:?} is managed by jit itself"),
                ));
            }
            let lg = local.group(gname).ok_or_else(|| {
                refuse(
                    ErrorCode::Refused,
                    format!(
                        "no local group {gname:?} in {}",
                        self.cfg.group_file.display()
                    ),
                )
            })?;
            self.check_not_denied(gname, lg.gid, &local)?;
            if lg.gid == 0 || lg.gid == 65_534 || lg.gid > i32::MAX as u32 {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!(
                        "group {gname:?} has gid {}: never granted (0, 65534 and ids above 2^31-1 are refused)",
                        lg.gid
                    ),
                ));
            }
            if lg.members.iter().any(|m| m == &spec.user)
                || local.user(&spec.user).is_some_and(|u| u.gid == lg.gid)
            {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!("{} is already a local member of {gname}", spec.user),
                ));
            }
        }
        let uid = if spec.account {
            Some(self.allocate_uid(&mut inner, &spec.user, &local)?)
        } else {
            None
        };
        let mut id = random_id().map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        while inner.state.grants.contains_key(&id) {
            id = random_id().map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        }
        let grant = Grant {
            id: id.clone(),
            user: spec.user.clone(),
            state: GrantState::Pending,
            not_before,
            not_after,
            created_at: now,
            created_by: if source == jit_proto::GrantSource::Local {
                "root".into()
            } else {
                "server".into()
            },
            account: spec.account,
            uid,
            groups,
            ssh_keys: spec.ssh_keys.iter().map(|k| k.trim().to_string()).collect(),
            reason: spec.reason,
            ticket: spec.ticket,
            requested_by: spec.requested_by,
            sudo: scope.sudo,
            runas: scope.runas,
            enable: spec.enable,
            from: login.from,
            services: login.services,
            windows: login.windows,
            mfa: spec.mfa,
            mfa_sudo: spec.mfa_sudo,
            end_with_session: spec.end_with_session,
            revoke_on: scope.revoke_on,
            activated_at: None,
            went_live_at: None,
            ended_at: None,
            end_reason: None,
            torn_down: false,
            certification: None,
            source,
        };
        // A grant that starts now is live from its first durable write, so adding it costs one
        // state write and one snapshot write, and its home exists when the caller returns.
        let mut grant = grant;
        let starts_now = not_before <= now;
        if starts_now {
            grant.state = GrantState::Live;
            grant.went_live_at = Some(now);
            inner
                .boot_cap
                .insert(id.clone(), (boottime(), not_after - now));
        }
        let ledger_before = inner.state.uid_ledger.clone();
        inner.state.grants.insert(id.clone(), grant.clone());
        if let Err(e) = self.persist(&mut inner, now) {
            inner.state.grants.remove(&id);
            inner.state.uid_ledger = ledger_before;
            return Err(refuse(
                ErrorCode::Internal,
                format!("could not make the grant durable, nothing changed: {e}"),
            ));
        }
        self.write_snapshot(&mut inner, now);
        drop(inner);
        self.audit.record(now, Severity::Info, "grant.created", json!({
            "grant": id, "user": grant.user, "by": grant.created_by, "source": grant.source, "account": grant.account, "uid": grant.uid,
            "groups": grant.groups, "not_before": not_before, "not_after": not_after,
            "reason": grant.reason, "ticket": grant.ticket, "requested_by": grant.requested_by,
            "ssh_keys": grant.ssh_keys.len(), "mfa": grant.mfa, "mfa_sudo": grant.mfa_sudo,
            "enable": grant.enable, "from": grant.from, "services": grant.services,
            "windows": grant.windows, "end_with_session": grant.end_with_session,
            "sudo": grant.sudo, "runas": grant.runas, "revoke_on": grant.revoke_on,
        }));
        nscd::invalidate(self.cfg.nscd);
        if starts_now {
            self.on_live(&id, now);
        }
        self.wake.notify_all();
        let inner = self.lock();
        Ok(inner
            .state
            .grants
            .get(&id)
            .map_or(grant, |g| Self::with_state(g, now)))
    }

    fn enroll_mfa(
        &self,
        peer_uid: u32,
        user: &str,
        replace: bool,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may enroll TOTP secrets",
            ));
        }
        if user == "root" {
            return Err(refuse(ErrorCode::Refused, "root is never managed by jit"));
        }
        let e = self.totp.enroll(user, &hostname(), now, replace).map_err(|e| match e {
            TotpError::AlreadyEnrolled => refuse(
                ErrorCode::Refused,
                format!("{user} already has a TOTP secret (jitctl mfa enroll --replace {user} makes a new one)"),
            ),
            TotpError::InvalidUser(m) => refuse(ErrorCode::Refused, m),
            other => refuse(ErrorCode::Internal, other.to_string()),
        })?;
        // Never the secret.
        self.audit.record(
            now,
            Severity::Notice,
            "mfa.enrolled",
            json!({ "user": user, "by": "root", "replaced": replace }),
        );
        Ok(Payload::Enrollment {
            user: e.user.clone(),
            secret: e.secret_base32.clone(),
            uri: e.uri.clone(),
        })
    }

    fn remove_mfa(&self, peer_uid: u32, user: &str, now: UnixTime) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may remove TOTP secrets",
            ));
        }
        match self.totp.remove(user) {
            Ok(true) => {
                self.audit.record(
                    now,
                    Severity::Notice,
                    "mfa.removed",
                    json!({ "user": user, "by": "root" }),
                );
                Ok(Payload::Done {
                    message: format!("removed the TOTP secret of {user}"),
                })
            }
            Ok(false) => Err(refuse(
                ErrorCode::NotFound,
                format!("{user} has no TOTP secret"),
            )),
            Err(TotpError::InvalidUser(m)) => Err(refuse(ErrorCode::Refused, m)),
            Err(e) => Err(refuse(ErrorCode::Internal, e.to_string())),
        }
    }

    /// A user proves a code; its armed grants (or the one named) become live. The accepted step
    /// is durable inside `verify` before anything is activated (persist before act).
    fn activate(
        &self,
        peer_uid: u32,
        only: Option<&str>,
        code: &str,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        let (user, armed) = {
            let inner = self.lock();
            let Some(user) = self.peer_name(peer_uid, &inner) else {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!("uid {peer_uid} is neither a local user nor a jit account"),
                ));
            };
            let armed: Vec<String> = inner
                .state
                .grants
                .values()
                .filter(|g| g.user == user && g.state_at(now) == GrantState::Armed)
                .filter(|g| only.is_none_or(|id| id == g.id))
                .map(|g| g.id.clone())
                .collect();
            (user, armed)
        };
        if armed.is_empty() {
            return Err(refuse(
                ErrorCode::Refused,
                match only {
                    Some(id) => format!("{user} has no armed grant {id}"),
                    None => format!("{user} has no grant waiting for activation"),
                },
            ));
        }
        if let Err(e) = self.totp.verify(&user, code, now) {
            let failures = match &e {
                TotpError::WrongCode { failures } => Some(*failures),
                _ => None,
            };
            self.audit.record(now, Severity::Warning, "mfa.fail", json!({
                "user": user, "purpose": "activate", "grants": armed, "error": e.to_string(), "failures": failures,
            }));
            return Err(refuse(ErrorCode::Refused, login::totp_message(&user, &e)));
        }
        self.mark_activated(&user, &armed, "jitctl activate", now)?;
        Ok(Payload::Activated { grants: armed })
    }

    /// Validates the login side of a grant: `--enable` (a managed local admin), `--from`,
    /// `--service`, `--window`, `--end-with-session`, `--mfa-sudo`. Conditions apply to logins,
    /// so they need a login identity (`--account` or `--enable`): a local user's own logins are
    /// never jit's to gate.
    fn check_login_conditions(
        &self,
        spec: &GrantSpec,
        local: &LocalDb,
    ) -> Result<LoginConditions, Refusal> {
        use jit_core::policy::{net, window};
        let refused = |m: String| refuse(ErrorCode::Refused, m);
        let managed = self.cfg.managed_accounts.iter().any(|m| m == &spec.user);
        if spec.enable {
            if spec.account {
                return Err(refused(
                    "--enable is for a managed local admin account; --account makes an ephemeral one: choose one".into(),
                ));
            }
            if !managed {
                return Err(refused(format!(
                    "--enable: {:?} is not in managed_accounts of {}",
                    spec.user,
                    self.cfg
                        .source
                        .as_ref()
                        .map_or("jitd's configuration".to_string(), |p| p
                            .display()
                            .to_string())
                )));
            }
            if local.user(&spec.user).is_none() {
                return Err(refused(format!(
                    "--enable: managed account {:?} is not in {}",
                    spec.user,
                    self.cfg.passwd_file.display()
                )));
            }
        } else if managed {
            return Err(refused(format!(
                "{:?} is a managed admin account: its grants must --enable it",
                spec.user
            )));
        }
        let login = spec.account || spec.enable;
        for (set, flag) in [
            (!spec.from.is_empty(), "--from"),
            (!spec.services.is_empty(), "--service"),
            (!spec.windows.is_empty(), "--window"),
            (spec.end_with_session, "--end-with-session"),
        ] {
            if set && !login {
                return Err(refused(format!(
                    "{flag} applies to logins: it needs --account or --enable (a local user's own logins are not jit's to gate)"
                )));
            }
        }
        if spec.mfa_sudo && spec.sudo.is_empty() {
            return Err(refused("--mfa-sudo needs --sudo".into()));
        }
        if spec.from.len() > 32 || spec.services.len() > 16 || spec.windows.len() > 16 {
            return Err(refused(
                "at most 32 --from, 16 --service and 16 --window entries per grant".into(),
            ));
        }
        let mut out = LoginConditions::default();
        for f in &spec.from {
            let c = net::parse_cidr(f).map_err(|e| refused(format!("--from {f:?}: {e}")))?;
            out.from.push(c.to_string());
        }
        for sv in &spec.services {
            validate_name("service", sv).map_err(|e| refused(format!("--service: {e}")))?;
            out.services.push(sv.clone());
        }
        for w in &spec.windows {
            window::parse_window(w).map_err(|e| refused(format!("--window {w:?}: {e}")))?;
            out.windows.push(w.trim().to_string());
        }
        for v in [&mut out.from, &mut out.services, &mut out.windows] {
            v.sort();
            v.dedup();
        }
        Ok(out)
    }

    /// Validates `--sudo`, `--runas` and `--revoke-on` and makes sure sudo_jit guards sudo here
    /// (without it the jit-sudo sudoers rule would give everything).
    fn check_sudo_scope(&self, spec: &GrantSpec) -> Result<SudoScopeSpec, Refusal> {
        use jit_core::policy::{classify, sudo};
        let bad = |e: jit_core::policy::PolicyError| refuse(ErrorCode::Refused, e.to_string());
        if spec.sudo.is_empty() {
            if !spec.runas.is_empty() || !spec.revoke_on.is_empty() {
                return Err(refuse(
                    ErrorCode::Refused,
                    "--runas and --revoke-on apply to sudo: they need --sudo",
                ));
            }
            return Ok(SudoScopeSpec::default());
        }
        if spec.sudo.len() > 64 || spec.runas.len() > 16 {
            return Err(refuse(
                ErrorCode::Refused,
                "at most 64 --sudo and 16 --runas entries per grant",
            ));
        }
        let mut out = SudoScopeSpec::default();
        for s in &spec.sudo {
            out.sudo
                .push(sudo::parse_scope_entry(s).map_err(bad)?.to_string());
        }
        for r in &spec.runas {
            out.runas
                .push(sudo::parse_runas(r).map_err(bad)?.to_string());
        }
        for c in &spec.revoke_on {
            // lateral-movement is seen by jitd's process monitor only (crate::monitor).
            if classify::parse_class(c).is_none() && c != crate::monitor::LATERAL_MOVEMENT {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!("--revoke-on {:?}: use ioc, software-install, account-change, sensitive-read or lateral-movement", c),
                ));
            }
            out.revoke_on.push(c.clone());
        }
        out.revoke_on.sort();
        out.revoke_on.dedup();
        crate::sudoconf::check(&self.cfg.sudo_conf).map_err(|e| {
            refuse(
                ErrorCode::Refused,
                format!("--sudo needs the sudo_jit plugin to guard sudo on this host: {e}"),
            )
        })?;
        Ok(out)
    }

    /// Refuses a root-equivalent group (the configured deny list), by name and by gid, so a
    /// second name for a denied gid in /etc/group does not slip through.
    fn check_not_denied(&self, gname: &str, gid: u32, local: &LocalDb) -> Result<(), Refusal> {
        let denied = self
            .cfg
            .deny_groups
            .iter()
            .find(|d| d.as_str() == gname || local.group(d).is_some_and(|dg| dg.gid == gid));
        let Some(d) = denied else {
            return Ok(());
        };
        let config = self
            .cfg
            .source
            .as_ref()
            .map_or("jitd.toml".to_string(), |p| p.display().to_string());
        let via = if d == gname {
            String::new()
        } else {
            format!(" (gid {gid} is also {d:?})")
        };
        Err(refuse(
            ErrorCode::Refused,
            format!(
                "group {gname:?}{via} is root-equivalent and on jitd's deny list (deny_groups in {config}); an operator who must grant it lists it in allow_groups"
            ),
        ))
    }

    fn allocate_uid(&self, inner: &mut Inner, name: &str, local: &LocalDb) -> Result<u32, Refusal> {
        if let Some(&u) = inner.state.uid_ledger.get(name) {
            if local.id_taken(u) {
                return Err(refuse(ErrorCode::Refused, format!("{name}'s recorded uid {u} is now used by a local user or group; resolve that first")));
            }
            return Ok(u);
        }
        let used: HashSet<u32> = inner.state.uid_ledger.values().copied().collect();
        let uid = (self.cfg.uid_min..=self.cfg.account_uid_max())
            .find(|u| !used.contains(u) && !local.id_taken(*u))
            .ok_or_else(|| {
                refuse(
                    ErrorCode::Refused,
                    "uid_range is exhausted: every id has been used by an identity",
                )
            })?;
        inner.state.uid_ledger.insert(name.to_string(), uid);
        Ok(uid)
    }
}

/// Writes `<state_dir>/managed-accounts` (one name per line) for pam_jit and sudo_jit: with the
/// snapshot missing (it lives on tmpfs) they must still know who is managed (§3.3).
fn write_managed_list(cfg: &Config) -> Result<(), String> {
    let path = cfg.state_dir.join("managed-accounts");
    let mut text = String::from(
        "# Managed local admin accounts (jitd.toml managed_accounts), written by jitd at start.\n",
    );
    for m in &cfg.managed_accounts {
        text.push_str(m);
        text.push('\n');
    }
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    crate::durable::replace_file(&path, text.as_bytes(), 0o644, false)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes `dir` (root-owned, `mode`) if missing and refuses one that others can write.
///
/// # Errors
/// Creation failure or unsafe ownership/mode.
pub fn prepare_dir(dir: &std::path::Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be owned by root and not writable by group or others (owner {}, mode {:o})",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// This host's name, for the otpauth label.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned()
}

/// Validated login conditions, in canonical spelling.
#[derive(Debug, Default)]
struct LoginConditions {
    from: Vec<String>,
    services: Vec<String>,
    windows: Vec<String>,
}

/// A validated sudo scope, in canonical spelling.
#[derive(Debug, Default)]
struct SudoScopeSpec {
    sudo: Vec<String>,
    runas: Vec<String>,
    revoke_on: Vec<String>,
}
