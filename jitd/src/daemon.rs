//! The daemon: its lifecycle and the one lock around its state. What it decides is the engine's
//! (`crate::engine`: admission, transitions, teardown plans, no I/O); what it does to the host
//! is the executor's (`crate::effects`); what it answers on the socket is `crate::api`'s. This
//! file opens the state, the stores and the audit log and holds them for those three.
//!
//! Locking: `inner` guards state and is never held across process killing, home removal or
//! nscd; `teardown` serializes those slow steps so the timer and a revoke never run the same
//! teardown twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex, MutexGuard};

use jit_core::host::trust::{self, Access};
use jit_core::time::UnixTime;
use serde_json::json;

pub use crate::api::Peer;
use crate::audit::{Audit, Event, Severity};
use crate::config::Config;
use crate::engine::tick::{apply_journal, BootCaps};
use crate::journal::Journal;
use crate::localdb::LocalDb;
use crate::mfa::breakglass::BreakglassStore;
use crate::mfa::totp::TotpStore;
use crate::snapshot_out::{Collision, FileId};
use crate::state::{State, StateStore};

/// What the lock guards: state and what jitd knows about the files it writes.
pub(crate) struct Inner {
    pub(crate) state: State,
    pub(crate) state_writable: bool,
    /// Where ends go while `state.json` cannot be written (see `journal.rs`).
    pub(crate) journal: Journal,
    /// State changed in memory in a way that may reach disk at the next tick (a closed
    /// session: losing it in a crash only means the reaper closes it again at start).
    pub(crate) dirty: bool,
    pub(crate) local_sig: Option<(Option<FileId>, Option<FileId>)>,
    pub(crate) reported_collisions: BTreeSet<Collision>,
    /// The last /etc/passwd and /etc/group that could be read, for snapshots written while
    /// they cannot.
    pub(crate) last_local: Option<std::sync::Arc<LocalDb>>,
    /// The local files could not be read at the last snapshot (audited once per episode).
    pub(crate) local_unreadable: bool,
    /// Boot-time caps of live grants (see `engine::tick`).
    pub(crate) boot_cap: BootCaps,
    /// When the tick next has something to move (`engine::tick::Due`); `None`: not known.
    pub(crate) due: Option<crate::engine::tick::Due>,
    /// The version of the grants at which no ended grant awaited teardown: the tick skips its
    /// walk over every grant while they are unchanged, and an admission (which only adds a
    /// grant that has not ended) keeps it. `None`: not known.
    pub(crate) teardown_clear: Option<u64>,
    /// Grants admitted since the snapshot files were last measured: (the generation a
    /// projection must pass to hold it, its weight). See effects/capacity.rs.
    pub(crate) unmeasured: Vec<(u64, u64)>,
    /// The files' room was low at the last admission (audited once per episode).
    pub(crate) room_low: bool,
}

/// The running daemon.
pub struct Daemon {
    /// Configuration.
    pub cfg: Config,
    pub(crate) store: StateStore,
    pub(crate) audit: Audit,
    pub(crate) totp: TotpStore,
    pub(crate) breakglass: BreakglassStore,
    pub(crate) inner: Mutex<Inner>,
    /// Building and writing the snapshot, outside the state lock (effects/snapshot.rs).
    pub(crate) snapshot: crate::effects::snapshot::Publisher,
    /// Serializes teardowns; holds which ended grants already lost their processes and are
    /// waiting for their homes and records (effects/teardown.rs).
    pub(crate) teardown: Mutex<crate::effects::teardown::Progress>,
    /// Signalled when a deadline may have moved (a grant was added or revoked).
    /// Shared with the process monitor, whose hits should not wait for the next second.
    pub wake: std::sync::Arc<Condvar>,
    /// Set by SIGTERM/SIGINT.
    pub stop: AtomicBool,
    pub(crate) started_at: UnixTime,
    /// A missing run directory could not be made again (audited once per episode).
    pub(crate) rundir_failing: AtomicBool,
    // --- monitoring and certification (effects/watch.rs) ---
    pub(crate) cgroups: crate::monitor::cgroup::Cgroups,
    pub(crate) certifier: Option<crate::certify::Certifier>,
    pub(crate) watch_resumed: AtomicBool,
    /// The passwd file the monitor's watch set took its homes from.
    pub(crate) watch_passwd: Mutex<Option<crate::snapshot_out::FileId>>,
    /// Grants that may have started or stopped being live since the watch set was made, and
    /// when it was last checked against every grant (effects/watch.rs, `watch_monitor`).
    pub(crate) watch_dirty: Mutex<crate::effects::watch::WatchDirty>,
    pub(crate) monitor: Option<std::sync::Arc<crate::monitor::events::Shared>>,
    pub(crate) watch_notices: Mutex<HashMap<String, usize>>,
    /// The link to the central service (jit-server), shared with the sync thread.
    pub sync_link: std::sync::Arc<crate::sync::Link>,
    /// Fleet TOTP secrets delivered sealed by the server: in memory only (`mfa/fleet.rs`).
    pub(crate) fleet: crate::mfa::fleet::FleetSecrets,
    /// Replay and lockout records of fleet identities (`<state_dir>/fleet-totp`, no secrets).
    pub(crate) fleet_totp: TotpStore,
    /// /etc/passwd and /etc/group as last parsed, while unchanged (`localdb.rs`).
    pub(crate) local_files: crate::localdb::LocalCache,
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
        // Before anything else acts: a secret store others can read is refused outright.
        let totp = TotpStore::open(&cfg.state_dir, cfg.totp)
            .map_err(|e| format!("JIT-E004 TOTP store: {e}; refusing to start"))?;
        let fleet_totp = TotpStore::open_fleet(&cfg.state_dir, cfg.totp)
            .map_err(|e| format!("JIT-E004 fleet TOTP store: {e}; refusing to start"))?;
        let breakglass = BreakglassStore::open(&cfg.state_dir)
            .map_err(|e| format!("JIT-E005 {e}; refusing to start"))?;
        // Not fatal: on a full state filesystem jitd must still start to tear down. The
        // snapshot written at the first tick carries the list; this file only serves a boot
        // before jitd runs.
        if let Err(e) = write_managed_list(&cfg) {
            audit.record(
                now,
                Severity::Error,
                Event::StateManagedListWriteFailed,
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
        let applied = apply_journal(&mut loaded.state, &ends);
        if let Some(why) = &loaded.recovered_from_prev {
            audit.record(
                now,
                Severity::Error,
                Event::StateRecovered,
                json!({ "problem": why, "used": "previous generation" }),
            );
        }
        if let Some(at) = &loaded.journal_torn {
            audit.record(
                now,
                Severity::Notice,
                Event::StateJournalTornDropped,
                json!({ "at": at }),
            );
        }
        if !applied.is_empty() {
            audit.record(
                now,
                Severity::Warning,
                Event::StateJournalApplied,
                json!({
                    "grants": applied,
                    "why": "ended while state.json could not be written; recorded in the revocation journal",
                }),
            );
        }
        // --- monitoring and certification (effects/watch.rs) ---
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
                    Event::CertifyUnavailable,
                    json!({ "error": e }),
                );
                None
            }
        };
        let wake = std::sync::Arc::new(Condvar::new());
        let monitor = crate::monitor::start(&cfg, &cgroups, now, &audit, &wake);
        let sync_link = std::sync::Arc::new(crate::sync::Link::default());
        // Host events for the server's audit are chosen from this trail's records.
        let fwd = std::sync::Arc::clone(&sync_link);
        audit.set_forward(Box::new(move |at, ev, fields| fwd.forward(at, ev, fields)));
        let d = Daemon {
            monitor,
            watch_notices: Mutex::new(HashMap::new()),
            sync_link,
            cgroups,
            certifier,
            watch_resumed: AtomicBool::new(false),
            watch_passwd: Mutex::new(None),
            watch_dirty: Mutex::new(Default::default()),
            cfg,
            store,
            audit,
            totp,
            fleet: crate::mfa::fleet::FleetSecrets::default(),
            fleet_totp,
            local_files: Default::default(),
            breakglass,
            snapshot: Default::default(),
            inner: Mutex::new(Inner {
                state: loaded.state,
                state_writable: true,
                journal,
                // The first tick saves: applied ends reach state.json, and the first save
                // after a start writes it whole (the journal folded in), so that cost is paid
                // at start rather than by the first grant.
                dirty: true,
                local_sig: None,
                reported_collisions: BTreeSet::new(),
                last_local: None,
                local_unreadable: false,
                boot_cap: HashMap::new(),
                due: None,
                teardown_clear: None,
                unmeasured: Vec::new(),
                room_low: false,
            }),
            teardown: Mutex::new(Default::default()),
            wake,
            stop: AtomicBool::new(false),
            started_at: now,
            rundir_failing: AtomicBool::new(false),
        };
        d.reserve_journal_at_start(now);
        Ok(d)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a worker panicked mid-update; the state in memory is still the
        // last consistent one we persisted or about to persist, so keep serving.
        crate::poison::lock(&self.inner)
    }

    /// Records an audit event.
    pub fn audit(&self, now: UnixTime, sev: Severity, event: Event, fields: serde_json::Value) {
        self.audit.record(now, sev, event, fields);
    }

    pub(crate) fn local_db(&self) -> Result<std::sync::Arc<LocalDb>, String> {
        self.local_files
            .read(&self.cfg.passwd_file, &self.cfg.group_file)
            .map_err(|e| {
                format!(
                    "cannot read {} / {}: {e}",
                    self.cfg.passwd_file.display(),
                    self.cfg.group_file.display()
                )
            })
    }
}

/// Writes `<state_dir>/managed-accounts` (one name per line) for pam_jit and sudo_jit: with the
/// snapshot missing (it lives on tmpfs) they must still know who is managed.
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
    if trust::check_metadata(&m, Access::ReadableByAll).is_err() {
        return Err(format!(
            "{} must be owned by root and not writable by group or others (owner {}, mode {:o})",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Hands the heap's free pages back to the kernel. Building a snapshot and serving a request
/// allocate in proportion to the number of grants (tens of MB at 10 000); glibc keeps what was
/// freed below the top of the heap, so without this jitd's resident size stays at its last peak.
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim only releases free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// This host's name, for the otpauth label.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned()
}
