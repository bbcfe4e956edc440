//! Live monitoring of every process of a grant (not only what goes through sudo).
//!
//! Sources, chosen for cost: the netlink **proc connector** for fork/exec/exit (one small
//! message per event, no per-process setup, no audit rules to install or fight over with
//! auditd, and it cannot be blinded by the watched process); **fanotify** for files (the
//! opener's pid comes with each event, which inotify lacks): `FAN_OPEN` on the sensitive
//! files, `FAN_CLOSE_WRITE` on the mounts holding account, sudo, key and package files; and a
//! scan of /proc/net/tcp for remote-login connections (see `lateral.rs`).
//!
//! Who belongs to a grant: the processes in its cgroup (re-read every 250 ms), the processes
//! the modules moved there (told at once by the daemon), and every child forked by a member
//! (from the proc connector, so a short-lived `cat` is known before its open event is read).
//! Hits go to a queue the daemon's tick drains; the tick decides (end the grant, or audit at
//! `notice`).
//!
//! Limits: exec arguments are read from /proc right after the exec event, so a process that
//! exits within microseconds may be seen without its command line; a process with root can
//! leave its cgroup (reported when noticed) or act through a service manager (systemd-run),
//! whose children are not the grant's.
//!
//! This file holds the shared state and the monitor thread's loop; the parts live in one file
//! each: `proc_connector` (netlink fork/exec/exit events), `fanotify` (file events) and `judge`
//! (what an event means for a grant).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jit_core::policy::classify;
use jit_core::policy::sudo::SudoRequest;
use jit_core::types::Text;

use super::lateral;

mod fanotify;
mod judge;
pub mod loss;
mod proc_connector;
#[cfg(test)]
mod tests;

use crate::poison::lock;
use fanotify::Fanotify;
use judge::*;
use loss::{Episodes, Loss, Source};
use proc_connector::ProcConnector;

/// A live grant the monitor watches. Its strings are shared with the grant in jitd's state
/// (a clone costs no allocation), so the set costs an entry and an index slot per grant.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Grant id.
    pub grant: Text,
    /// The grantee.
    pub user: Text,
    /// The grantee's own home (its authorized_keys are not an account change).
    pub home: Home,
}

/// Where a watched grantee's home is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// An ephemeral account's: the user's name under this root (`home_root`, one allocation
    /// shared by every account grant).
    Under(Arc<Path>),
    /// A local user's, from the passwd file.
    At(Arc<Path>),
    /// A local user the passwd file does not show.
    Unknown,
}

impl Watched {
    /// Whether `path` is in the grantee's own `~/.ssh`.
    pub fn own_ssh(&self, path: &Path) -> bool {
        match &self.home {
            Home::Under(root) => path.starts_with(root.join(&*self.user).join(".ssh")),
            Home::At(home) => path.starts_with(home.join(".ssh")),
            Home::Unknown => false,
        }
    }
}

/// The live grants the monitor watches, found by id in constant time: every fork and exec on
/// the host asks whether its cgroup is a watched grant's, so a list scan would make every
/// process start on a bastion pay for each of its grants.
///
/// A set with a few grants added or removed shares the previous one's base: [`WatchSet::changed`]
/// costs the changes and the (small) overlay, not the number of grants (made whole at each
/// change, the set cost 20 % of jitd's CPU during a run of adds at 50 000 grants). The overlay
/// is folded into a new base once it holds [`FOLD_AFTER`] changes, so that O(N) work comes once
/// per that many changes.
#[derive(Debug, Clone, Default)]
pub struct WatchSet {
    /// The grants as of the last fold, shared by every set made from it since.
    base: Arc<Layer>,
    /// Grants added (or replaced) since.
    added: Layer,
    /// Ids of base entries removed (or replaced) since: always ids the base holds.
    hidden: HashSet<Text>,
}

/// Changes an overlay holds before it is folded into a new base.
pub const FOLD_AFTER: usize = 256;

/// Entries and their index by id.
#[derive(Debug, Clone, Default)]
struct Layer {
    items: Vec<Watched>,
    index: HashMap<Text, usize>,
}

impl Layer {
    /// The layer of `items` (ids are unique; a repeated one keeps the first).
    fn of(items: Vec<Watched>) -> Layer {
        let mut index = HashMap::with_capacity(items.len());
        let mut kept = Vec::with_capacity(items.len());
        for w in items {
            if let std::collections::hash_map::Entry::Vacant(e) = index.entry(w.grant.clone()) {
                e.insert(kept.len());
                kept.push(w);
            }
        }
        Layer { items: kept, index }
    }

    fn get(&self, grant: &str) -> Option<&Watched> {
        self.index.get(grant).and_then(|&i| self.items.get(i))
    }

    /// Adds or replaces.
    fn put(&mut self, w: Watched) {
        match self.index.get(w.grant.as_str()) {
            Some(&i) => {
                if let Some(slot) = self.items.get_mut(i) {
                    *slot = w;
                }
            }
            None => {
                self.index.insert(w.grant.clone(), self.items.len());
                self.items.push(w);
            }
        }
    }

    /// Removes `grant` if held (the last entry takes its place).
    fn remove(&mut self, grant: &str) {
        let Some(i) = self.index.remove(grant) else {
            return;
        };
        self.items.swap_remove(i);
        if let Some(moved) = self.items.get(i) {
            self.index.insert(moved.grant.clone(), i);
        }
    }
}

impl WatchSet {
    /// The set of `items` (ids are unique; a repeated one keeps the first).
    pub fn new(items: Vec<Watched>) -> Self {
        WatchSet {
            base: Arc::new(Layer::of(items)),
            added: Layer::default(),
            hidden: HashSet::new(),
        }
    }

    /// This set without the grants `gone` and with `added` (replacing a watched grant of the
    /// same id). Costs the changes and the overlay; the base is shared.
    pub fn changed(&self, gone: &HashSet<String>, added: Vec<Watched>) -> Self {
        let mut next = self.clone();
        for id in gone {
            next.remove(id);
        }
        for w in added {
            next.remove(&w.grant);
            next.added.put(w);
        }
        if next.added.items.len() + next.hidden.len() > FOLD_AFTER {
            return WatchSet::new(next.entries().cloned().collect());
        }
        next
    }

    fn remove(&mut self, grant: &str) {
        self.added.remove(grant);
        if let Some((key, _)) = self.base.index.get_key_value(grant) {
            self.hidden.insert(key.clone());
        }
    }

    /// Every entry: the base's that stay, then the overlay's.
    fn entries(&self) -> impl Iterator<Item = &Watched> {
        self.base
            .items
            .iter()
            .filter(|w| !self.hidden.contains(&w.grant))
            .chain(self.added.items.iter())
    }

    /// The watched grant `grant`.
    pub fn get(&self, grant: &str) -> Option<&Watched> {
        match self.added.get(grant) {
            Some(w) => Some(w),
            None if self.hidden.contains(grant) => None,
            None => self.base.get(grant),
        }
    }

    /// The grant in slot `i` of `0..slots()`, if that slot holds one (a removed grant's slot
    /// stays empty until the next fold): the refresh pass walks the slots in turn.
    pub fn at(&self, i: usize) -> Option<&Watched> {
        let n = self.base.items.len();
        match self.base.items.get(i) {
            Some(w) => (!self.hidden.contains(&w.grant)).then_some(w),
            None => self.added.items.get(i - n),
        }
    }

    /// Slots for [`WatchSet::at`]: at least [`WatchSet::len`].
    pub fn slots(&self) -> usize {
        self.base.items.len() + self.added.items.len()
    }

    /// Whether `grant` is watched.
    pub fn contains(&self, grant: &str) -> bool {
        self.get(grant).is_some()
    }

    /// Whether the grants `live` are exactly the watched ones, allocating nothing: the daemon
    /// asks at every tick and builds a new set only when they differ.
    pub fn is_exactly<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> bool {
        let mut n = 0usize;
        live.into_iter().all(|g| {
            n += 1;
            self.contains(g)
        }) && n == self.len()
    }

    /// All of them.
    pub fn iter(&self) -> impl Iterator<Item = &Watched> {
        self.entries()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.base.items.len() - self.hidden.len() + self.added.items.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Something a grant's process did that falls in a class.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Grant id.
    pub grant: String,
    /// Class name (`--revoke-on`).
    pub class: String,
    /// Process.
    pub pid: i32,
    /// Its uid.
    pub uid: Option<u32>,
    /// Its command line (capped).
    pub cmdline: String,
    /// What was seen (`exec /usr/bin/ssh`, `open /etc/shadow`, ...).
    pub what: String,
    /// When the event was read.
    pub seen: Instant,
}

/// Shared between the daemon and the monitor thread.
#[derive(Default)]
pub struct Shared {
    /// Live grants with a cgroup, set by the daemon at a tick when they changed (shared, not
    /// copied, by each pass of the monitor's loop).
    pub watched: Mutex<Arc<WatchSet>>,
    /// Processes the modules just moved into a grant's cgroup.
    pub joined: Mutex<Vec<(i32, String)>>,
    /// Hits for the tick.
    pub hits: Mutex<Vec<Hit>>,
    /// Sources that could not start and why (for status, the audit and admission), known
    /// before [`start`] returns.
    pub problems: Mutex<Vec<(Source, String)>>,
    /// Processes that left a grant's cgroup: grant -> (pid, start time). Teardown ends them
    /// too (cgroup.kill no longer reaches them).
    pub escaped: Mutex<HashMap<String, Vec<(i32, u64)>>>,
    /// Finished episodes of lost events, for the tick to audit (`loss.rs`).
    pub losses: Mutex<Vec<Loss>>,
    /// Episodes of lost events per grant watched during them (for its certification record).
    pub lost_by_grant: Mutex<HashMap<String, u64>>,
    /// Episodes of lost events since start, and the last one's source and end (for status).
    pub lost_summary: Mutex<(u64, Option<(Source, jit_core::time::UnixTime)>)>,
    /// The daemon's timer, woken for each hit (so a hit is acted on within milliseconds, not
    /// at the next second).
    pub wake: Option<Arc<std::sync::Condvar>>,
}

/// Static settings of the monitor.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The grant cgroups' directory.
    pub cgroup_dir: PathBuf,
    /// The same directory as /proc/PID/cgroup names it (relative to the cgroup2 mount).
    pub cgroup_rel: String,
    /// Files whose opening is `sensitive-read`.
    pub sensitive: Vec<PathBuf>,
    /// Remote-login ports.
    pub lateral_ports: Vec<u16>,
    /// The operator's ioc_commands.
    pub ioc: Vec<String>,
    /// Local account file (homes).
    pub passwd_file: PathBuf,
    /// How writes are watched.
    pub marks: Marks,
}

/// How fanotify watches writes to account, sudo, key and package files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// The whole filesystem holding each watched place (`FAN_MARK_FILESYSTEM`): writes are
    /// seen whichever mount namespace they come through. The default, and the only one that
    /// works under the packaged unit: its file-system protections give jitd a private mount
    /// namespace whose mounts are copies, and a mount mark on a copy sees none of the writes a
    /// grantee makes through the host's own mounts.
    Filesystem,
    /// Only the mounts jitd itself sees (`FAN_MARK_MOUNT`): for jitd sharing its mount
    /// namespace with the grantees (the test harness, where many jitds on one machine must not
    /// each receive every write on the host's root filesystem).
    Mount,
}

/// Default sensitive files. Not /etc/sudoers: sudo itself reads it at every call (a `cat` of
/// it is still `sensitive-read` by the exec classifier).
pub const DEFAULT_SENSITIVE: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_rsa_key",
];

/// Starts the monitor thread.
///
/// # Errors
/// The thread cannot be started.
pub fn start(settings: Settings, wake: Arc<std::sync::Condvar>) -> Result<Arc<Shared>, String> {
    let shared = Arc::new(Shared {
        wake: Some(wake),
        ..Shared::default()
    });
    // Opened here, not in the thread: a source that cannot start is known (to status and to
    // admission) before the first grant is admitted.
    let pc = match ProcConnector::open() {
        Ok(p) => Some(p),
        Err(e) => {
            lock(&shared.problems).push((Source::ProcConnector, e));
            None
        }
    };
    let fan = match Fanotify::open() {
        Ok(f) => Some(f),
        Err(e) => {
            lock(&shared.problems).push((Source::Fanotify, e));
            None
        }
    };
    let s2 = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("jitd-monitor".into())
        .spawn(move || run(&settings, &s2, pc, fan))
        .map_err(|e| format!("cannot start the monitor thread: {e}"))?;
    Ok(shared)
}

/// Whether the sources `classes` rely on are running; the error names the one that is not.
/// Every class needs the proc connector (membership and execs); the file classes need
/// fanotify as well. (`ioc` and `lateral-movement` come from execs and the connection scan.)
pub fn sources_for(shared: &Shared, classes: &[String]) -> Result<(), String> {
    let files = classes.iter().any(|c| {
        matches!(
            c.as_str(),
            "sensitive-read" | "account-change" | "software-install"
        )
    });
    let problems = lock(&shared.problems);
    match problems
        .iter()
        .find(|(s, _)| *s == Source::ProcConnector || (files && *s == Source::Fanotify))
    {
        Some((s, e)) => Err(format!("its {} source could not start: {e}", s.as_str())),
        None => Ok(()),
    }
}

struct Member {
    grant: String,
    since: Instant,
    exited: Option<Instant>,
    /// Command line read at its exec (or inherited at fork), for events after it exited.
    cmdline: String,
    /// What it runs was classified (its exec was seen, or it is a fork of a classified
    /// process, or a module's own process); a rescan after lost events classifies the others.
    classified: bool,
}

#[derive(Default)]
struct State {
    members: HashMap<i32, Member>,
    /// Grants reported for leaving their cgroup (pid) — reported once.
    left_reported: std::collections::HashSet<i32>,
    /// Lateral connections already reported (grant, inode).
    conn_reported: std::collections::HashSet<(String, u64)>,
    /// When the proc connector last lost events (its socket buffer overflowed).
    lost_at: Option<Instant>,
    /// Episodes of lost events being gathered.
    episodes: Episodes,
    /// Where the next refresh pass starts in the watched set.
    refresh_cursor: usize,
}

/// Grants whose cgroups one periodic refresh reads at most (see `refresh`).
const REFRESH_BATCH: usize = 2048;
/// The time one periodic refresh may take after its first REFRESH_MIN grants: 4 ms per 250 ms
/// pass keeps the backstop under 2 % of a CPU. Without it, 2 048 grants' cgroups read four
/// times a second kept 12 % of a CPU busy at 10 000 grants (more with populated cgroups),
/// taken from logins and grant adds on a small host.
const REFRESH_BUDGET: Duration = Duration::from_millis(4);
/// Grants read by every periodic refresh whatever the budget, so the pass always moves on.
const REFRESH_MIN: usize = 64;

fn run(st: &Settings, shared: &Shared, pc: Option<ProcConnector>, fan: Option<Fanotify>) {
    let mut state = State::default();
    let mut last_refresh = Instant::now() - Duration::from_secs(10);
    let mut last_marks = Instant::now() - Duration::from_secs(10);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let watched = Arc::clone(&lock(&shared.watched));
        take_joined(shared, &mut state);
        if last_refresh.elapsed() >= Duration::from_millis(250) {
            last_refresh = Instant::now();
            refresh(
                st,
                shared,
                &watched,
                &mut state,
                Pass::Periodic(REFRESH_BUDGET),
            );
            if let Some(f) = &fan {
                if last_marks.elapsed() >= Duration::from_secs(2) {
                    last_marks = Instant::now();
                    f.mark_all(st);
                }
            }
        }
        let mut fds = Vec::new();
        if let Some(p) = &pc {
            fds.push(libc::pollfd {
                fd: p.fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(f) = &fan {
            fds.push(libc::pollfd {
                fd: f.fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 250) };
        // A sudo the daemon moved may fork right after its answer: know it before its events.
        take_joined(shared, &mut state);
        // The proc connector first: forks are known before the file events they lead to.
        let mut lost = Vec::new();
        if let Some(p) = &pc {
            let n = p.drain(&mut buf, |ev| {
                on_proc_event(st, shared, &watched, &mut state, ev)
            });
            if n > 0 {
                state.lost_at = Some(Instant::now());
                lost.push((Source::ProcConnector, n));
            }
        }
        if let Some(f) = &fan {
            let n = f.drain(&mut buf, |pid, mask, fd| {
                on_file_event(shared, &watched, &state, pid, mask, fd)
            });
            if n > 0 {
                lost.push((Source::Fanotify, n));
            }
        }
        after_losses(st, shared, &watched, &mut state, &lost);
    }
}

/// Lost events (`loss.rs`): counted into their episode, a rescan of every watched grant at
/// once (at most every 250 ms), and finished episodes handed to the tick.
fn after_losses(
    st: &Settings,
    shared: &Shared,
    watched: &WatchSet,
    state: &mut State,
    lost: &[(Source, u64)],
) {
    let now = Instant::now();
    let mut rescan = false;
    for (source, n) in lost {
        rescan |= state
            .episodes
            .lost(*source, *n, watched.iter().map(|w| &*w.grant), now);
    }
    if rescan {
        let n = rescan_grants(st, shared, watched, state);
        state.episodes.rescanned(n);
    }
    if state.episodes.losing() {
        let done = state.episodes.finished(now);
        if !done.is_empty() {
            lock(&shared.losses).extend(done);
            if let Some(w) = &shared.wake {
                w.notify_all();
            }
        }
    }
}

/// After lost events: every watched grant's cgroup is re-read (members whose fork was lost
/// are found) and each member whose exec was not seen is classified from what it runs now.
/// Returns how many were classified.
fn rescan_grants(st: &Settings, shared: &Shared, watched: &WatchSet, state: &mut State) -> usize {
    // Every grant, not a batch: members whose fork was lost are found now.
    refresh(st, shared, watched, state, Pass::Every);
    let todo: Vec<i32> = state
        .members
        .iter()
        .filter(|(_, m)| !m.classified && m.exited.is_none())
        .map(|(p, _)| *p)
        .collect();
    for &pid in &todo {
        classify_member(st, shared, watched, state, pid);
    }
    todo.len()
}

fn take_joined(shared: &Shared, state: &mut State) {
    for (pid, grant) in std::mem::take(&mut *lock(&shared.joined)) {
        // The module's process (sudo, su, sshd) is alive and waiting: its command line is the
        // fallback for children that exit before theirs can be read.
        let cmdline = proc_identity(pid).1;
        state.members.insert(
            pid,
            Member {
                grant,
                since: Instant::now(),
                exited: None,
                cmdline,
                // sudo_jit or pam_jit asked for it: sudo's command was classified by sudo_jit.
                classified: true,
            },
        );
    }
}

/// Whether a process is a zombie or gone (a zombie has left its cgroup already).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s.get(i + 2..i + 3))
            .is_none_or(|st| st == "Z" || st == "X"),
        Err(_) => true,
    }
}

/// How much of the watched set one refresh reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pass {
    /// The periodic backstop: the next grants in turn, at most REFRESH_BATCH, and no more
    /// than this much time (REFRESH_BUDGET) once REFRESH_MIN were read.
    Periodic(Duration),
    /// Every grant (a rescan after lost events).
    Every,
}

/// Re-reads the cgroups' members, reports processes that left, checks connections.
fn refresh(st: &Settings, shared: &Shared, watched: &WatchSet, state: &mut State, pass: Pass) {
    let now = Instant::now();
    state.members.retain(|_, m| {
        m.exited
            .is_none_or(|t| now.duration_since(t) < Duration::from_secs(5))
    });
    state.members.retain(|_, m| watched.contains(&m.grant));
    // A bounded number of grants' cgroups per pass, taken in turn: with thousands of live
    // grants, reading every cgroup four times a second would keep a CPU busy. Fork and exec
    // events find new members at once, and lost events are reported and rescanned (Pass::
    // Every); this pass is the backstop behind both (each grant is read every 250 ms while
    // a pass's budget covers them all, every 250 ms × N / (grants per pass) beyond). Members
    // that left are found below, every pass.
    let n = watched.slots();
    let batch = match pass {
        Pass::Periodic(_) => n.min(REFRESH_BATCH),
        Pass::Every => n,
    };
    let first = if n == 0 { 0 } else { state.refresh_cursor % n };
    let mut read = 0;
    while read < batch {
        if let Pass::Periodic(budget) = pass {
            if read >= REFRESH_MIN && now.elapsed() >= budget {
                break;
            }
        }
        let w = watched.at((first + read) % n);
        read += 1;
        let Some(w) = w else {
            continue;
        };
        // The grant's cgroup and any sub-cgroup a grantee with root made in it.
        for pid in super::cgroup::procs_in(&st.cgroup_dir.join(&*w.grant)) {
            state.members.entry(pid).or_insert(Member {
                grant: w.grant.to_string(),
                since: now,
                exited: None,
                cmdline: String::new(),
                classified: false,
            });
        }
    }
    state.refresh_cursor = if n == 0 { 0 } else { (first + read) % n };
    // A member known before this pass, still alive, no longer in its grant's cgroup: it left.
    // Asked of each member's own /proc entry, not of the grants read in this pass, so an escape
    // is seen within a pass whatever the number of grants (teardown ends what escaped).
    let left: Vec<(i32, String)> = state
        .members
        .iter()
        .filter(|(pid, m)| {
            m.exited.is_none()
                && m.since < now
                && grant_of_cgroup(st, &cgroup_of(**pid)).as_deref() != Some(m.grant.as_str())
                && !gone(**pid)
        })
        .map(|(p, m)| (*p, m.grant.clone()))
        .collect();
    for (pid, grant) in left {
        let Some(w) = watched.get(&grant) else {
            continue;
        };
        if state.left_reported.insert(pid) {
            if let Some(start) = crate::procs::start_time(pid) {
                lock(&shared.escaped)
                    .entry(w.grant.to_string())
                    .or_default()
                    .push((pid, start));
            }
            push(
                shared,
                w,
                "ioc",
                pid,
                format!("left the grant's cgroup (now {})", cgroup_of(pid)),
                "",
            );
        }
    }
    // Remote-login connections of members; none alive, nothing to read (the socket tables of
    // a busy host cost milliseconds to read four times a second).
    if !state.members.values().any(|m| m.exited.is_none()) {
        return;
    }
    let mut conns = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            lateral::outbound(&t, &st.lateral_ports, &mut conns);
        }
    }
    if conns.is_empty() {
        return;
    }
    let live: Vec<(i32, String)> = state
        .members
        .iter()
        .filter(|(_, m)| m.exited.is_none())
        .map(|(p, m)| (*p, m.grant.clone()))
        .collect();
    for (pid, grant) in live {
        let inodes = lateral::socket_inodes(pid);
        for (ino, peer) in &conns {
            if inodes.contains(ino) && state.conn_reported.insert((grant.clone(), *ino)) {
                if let Some(w) = watched.get(&grant) {
                    push(
                        shared,
                        w,
                        lateral::CLASS,
                        pid,
                        format!("tcp connect to {peer}"),
                        "",
                    );
                }
            }
        }
    }
}

/// The grant whose cgroup (or a sub-cgroup of it) `cgroup` is, from a `/proc/PID/cgroup`
/// path.
fn grant_of_cgroup(st: &Settings, cgroup: &str) -> Option<String> {
    cgroup
        .strip_prefix(st.cgroup_rel.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .map(|r| r.split('/').next().unwrap_or(r).to_string())
}

fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn push(shared: &Shared, w: &Watched, class: &str, pid: i32, what: String, known: &str) {
    let (uid, mut cmdline) = proc_identity(pid);
    if cmdline.is_empty() {
        cmdline = known.to_string();
    }
    lock(&shared.hits).push(Hit {
        grant: w.grant.to_string(),
        class: class.to_string(),
        pid,
        uid,
        cmdline,
        what,
        seen: Instant::now(),
    });
    if let Some(w) = &shared.wake {
        w.notify_all();
    }
}

/// The real uid and command line of a process (cmdline capped at 4 KiB, NULs as spaces).
fn proc_identity(pid: i32) -> (Option<u32>, String) {
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().next().and_then(|u| u.parse().ok()))
        });
    (
        uid,
        cmdline_args(pid).join(" ").chars().take(4096).collect(),
    )
}

fn cmdline_args(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .take(256)
                .map(|a| String::from_utf8_lossy(&a[..a.len().min(4096)]).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
