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

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jit_core::policy::classify;
use jit_core::policy::sudo::SudoRequest;

use super::lateral;

/// A live grant the monitor watches.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Grant id.
    pub grant: String,
    /// The grantee.
    pub user: String,
    /// The grantee's own home (its authorized_keys are not an account change).
    pub home: Option<PathBuf>,
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
    /// Live grants with a cgroup, set by the daemon at every tick.
    pub watched: Mutex<Vec<Watched>>,
    /// Processes the modules just moved into a grant's cgroup.
    pub joined: Mutex<Vec<(i32, String)>>,
    /// Hits for the tick.
    pub hits: Mutex<Vec<Hit>>,
    /// Why a source is not working (for status and the audit), if one is not.
    pub problems: Mutex<Vec<String>>,
    /// Processes that left a grant's cgroup: grant -> (pid, start time). Teardown ends them
    /// too (cgroup.kill no longer reaches them).
    pub escaped: Mutex<HashMap<String, Vec<(i32, u64)>>>,
    /// The daemon's timer, woken for each hit (so a hit is acted on within milliseconds, not
    /// at the next second).
    pub wake: Option<Arc<std::sync::Condvar>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    let s2 = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("jitd-monitor".into())
        .spawn(move || run(&settings, &s2))
        .map_err(|e| format!("cannot start the monitor thread: {e}"))?;
    Ok(shared)
}

struct Member {
    grant: String,
    since: Instant,
    exited: Option<Instant>,
    /// Command line read at its exec (or inherited at fork), for events after it exited.
    cmdline: String,
}

struct State {
    members: HashMap<i32, Member>,
    /// Grants reported for leaving their cgroup (pid) — reported once.
    left_reported: std::collections::HashSet<i32>,
    /// Lateral connections already reported (grant, inode).
    conn_reported: std::collections::HashSet<(String, u64)>,
    /// When the proc connector last lost events (its socket buffer overflowed).
    lost_at: Option<Instant>,
}

fn run(st: &Settings, shared: &Shared) {
    let pc = match ProcConnector::open() {
        Ok(p) => Some(p),
        Err(e) => {
            lock(&shared.problems).push(format!("proc connector: {e}"));
            None
        }
    };
    let fan = match Fanotify::open() {
        Ok(f) => Some(f),
        Err(e) => {
            lock(&shared.problems).push(format!("fanotify: {e}"));
            None
        }
    };
    let mut state = State {
        members: HashMap::new(),
        left_reported: Default::default(),
        conn_reported: Default::default(),
        lost_at: None,
    };
    let mut last_refresh = Instant::now() - Duration::from_secs(10);
    let mut last_marks = Instant::now() - Duration::from_secs(10);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let watched = lock(&shared.watched).clone();
        take_joined(shared, &mut state);
        if last_refresh.elapsed() >= Duration::from_millis(250) {
            last_refresh = Instant::now();
            refresh(st, shared, &watched, &mut state);
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
        if let Some(p) = &pc {
            if p.drain(&mut buf, |ev| {
                on_proc_event(st, shared, &watched, &mut state, ev)
            }) {
                state.lost_at = Some(Instant::now());
            }
        }
        if let Some(f) = &fan {
            f.drain(&mut buf, |pid, mask, fd| {
                on_file_event(shared, &watched, &state, pid, mask, fd)
            });
        }
    }
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

/// Re-reads the cgroups' members, reports processes that left, checks connections.
fn refresh(st: &Settings, shared: &Shared, watched: &[Watched], state: &mut State) {
    let now = Instant::now();
    state.members.retain(|_, m| {
        m.exited
            .is_none_or(|t| now.duration_since(t) < Duration::from_secs(5))
    });
    state
        .members
        .retain(|_, m| watched.iter().any(|w| w.grant == m.grant));
    for w in watched {
        // The grant's cgroup and any sub-cgroup a grantee with root made in it.
        let inside: std::collections::HashSet<i32> =
            super::cgroup::procs_in(&st.cgroup_dir.join(&w.grant))
                .into_iter()
                .collect();
        for &pid in &inside {
            state.members.entry(pid).or_insert(Member {
                grant: w.grant.clone(),
                since: now,
                exited: None,
                cmdline: String::new(),
            });
        }
        // A member known before this read, still alive, not in the cgroup: it left.
        let left: Vec<i32> = state
            .members
            .iter()
            .filter(|(pid, m)| {
                m.grant == w.grant
                    && m.exited.is_none()
                    && m.since < now
                    && !inside.contains(pid)
                    && !gone(**pid)
            })
            .map(|(p, _)| *p)
            .collect();
        for pid in left {
            if state.left_reported.insert(pid) {
                if let Some(start) = crate::procs::start_time(pid) {
                    lock(&shared.escaped)
                        .entry(w.grant.clone())
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
    }
    // Remote-login connections of members.
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
                if let Some(w) = watched.iter().find(|w| w.grant == grant) {
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
        grant: w.grant.clone(),
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

enum ProcEvent {
    Fork { parent: i32, child: i32 },
    Exec { pid: i32 },
    Exit { pid: i32 },
}

fn on_proc_event(
    st: &Settings,
    shared: &Shared,
    watched: &[Watched],
    state: &mut State,
    ev: ProcEvent,
) {
    match ev {
        ProcEvent::Fork { parent, child } => {
            let g = state
                .members
                .get(&parent)
                .map(|m| (m.grant.clone(), m.cmdline.clone()));
            if let Some((grant, cmdline)) = g {
                state.members.insert(
                    child,
                    Member {
                        grant,
                        since: Instant::now(),
                        exited: None,
                        cmdline,
                    },
                );
            }
        }
        ProcEvent::Exit { pid } => {
            if let Some(m) = state.members.get_mut(&pid) {
                m.exited = Some(Instant::now());
            }
            state.left_reported.remove(&pid);
        }
        ProcEvent::Exec { pid } => {
            // After lost events, a process whose fork was not seen is still found by its
            // cgroup (not otherwise: a /proc read per exec of the whole host would slow the
            // loop enough to miss short-lived members' command lines).
            let lost_lately = state
                .lost_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5));
            if !lost_lately && !state.members.contains_key(&pid) {
                return;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = state.members.entry(pid) {
                let cg = cgroup_of(pid);
                let Some(grant) = cg
                    .strip_prefix(st.cgroup_rel.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .map(|r| r.split('/').next().unwrap_or(r).to_string())
                else {
                    return;
                };
                if !watched.iter().any(|w| w.grant == grant) {
                    return;
                }
                e.insert(Member {
                    grant,
                    since: Instant::now(),
                    exited: None,
                    cmdline: String::new(),
                });
            }
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let args = cmdline_args(pid);
            let line: String = args.join(" ").chars().take(4096).collect();
            if let Some(m) = state.members.get_mut(&pid).filter(|_| !line.is_empty()) {
                m.cmdline.clone_from(&line);
            }
            let Some(w) = watched
                .iter()
                .find(|w| Some(&w.grant) == state.members.get(&pid).map(|m| &m.grant))
            else {
                return;
            };
            let command = if exe.is_empty() {
                args.first().cloned().unwrap_or_default()
            } else {
                exe.clone()
            };
            let mut classes: Vec<&str> = Vec::new();
            if lateral::is_client(&command) {
                classes.push(lateral::CLASS);
            }
            let argv: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
            let (uid, _) = proc_identity(pid);
            let req = SudoRequest::new(&w.user, uid.unwrap_or(u32::MAX), &command, &argv);
            let extra: Vec<&str> = st.ioc.iter().map(String::as_str).collect();
            let bits = classify::classify(&req, &extra);
            classes.extend(classify::class_names(bits));
            for c in classes {
                push(
                    shared,
                    w,
                    c,
                    pid,
                    format!("exec {}", jit_core::policy::sudo::shown(&command, 512)),
                    &line,
                );
            }
        }
    }
}

/// The class of a file event on `path`, for grant `w`.
fn file_class(w: &Watched, mask: u64, path: &Path) -> Option<&'static str> {
    let s = path.to_str()?;
    if mask & libc::FAN_OPEN != 0 {
        return Some("sensitive-read");
    }
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?.to_str()?;
    const ACCOUNT: &[&str] = &[
        "passwd",
        "shadow",
        "group",
        "gshadow",
        "subuid",
        "subgid",
        "sudoers",
        "npasswd",
        "nshadow",
        "ngroup",
        "ptmp",
        "gtmp",
        ".pwd.lock",
    ];
    if parent == "/etc" && ACCOUNT.iter().any(|a| name.starts_with(a)) {
        return Some("account-change");
    }
    if parent == "/etc/sudoers.d" {
        return Some("account-change");
    }
    if name.starts_with("authorized_keys") && parent.ends_with("/.ssh") {
        let own = w
            .home
            .as_ref()
            .is_some_and(|h| path.starts_with(h.join(".ssh")));
        return (!own).then_some("account-change");
    }
    if s.starts_with("/var/lib/dpkg/") || s.starts_with("/var/lib/rpm/") {
        return Some("software-install");
    }
    for d in [
        "/usr/bin",
        "/usr/sbin",
        "/bin",
        "/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        if parent == d {
            return Some("software-install");
        }
    }
    None
}

fn on_file_event(
    shared: &Shared,
    watched: &[Watched],
    state: &State,
    pid: i32,
    mask: u64,
    fd: libc::c_int,
) {
    let Some(m) = state.members.get(&pid) else {
        return;
    };
    let Some(w) = watched.iter().find(|w| w.grant == m.grant) else {
        return;
    };
    // Only a member's event costs a readlink (a build outside any grant writes thousands).
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    let path = path.as_path();
    if let Some(c) = file_class(w, mask, path) {
        let verb = if mask & libc::FAN_OPEN != 0 {
            "open"
        } else {
            "write"
        };
        push(
            shared,
            w,
            c,
            pid,
            format!(
                "{verb} {}",
                jit_core::policy::sudo::shown(&path.display().to_string(), 512)
            ),
            &m.cmdline,
        );
    }
}

// ----- the proc connector -----

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 1;
const PROC_EVENT_EXEC: u32 = 2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;

struct ProcConnector {
    fd: libc::c_int,
}

impl ProcConnector {
    fn open() -> Result<ProcConnector, String> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let pc = ProcConnector { fd };
        // A big receive buffer: a build forks thousands of processes a second.
        let size: libc::c_int = 8 << 20;
        // SAFETY: `size` outlives the call; the length matches its type.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are then set.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = CN_IDX_PROC;
        // SAFETY: `sa` is a valid sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(format!("bind: {}", std::io::Error::last_os_error()));
        }
        let mut msg = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg[12..16].copy_from_slice(&std::process::id().to_ne_bytes());
        let cn = NLMSG_HDRLEN;
        msg[cn..cn + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[cn + 4..cn + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg[cn + 16..cn + 18].copy_from_slice(&4u16.to_ne_bytes());
        msg[cn + CN_MSG_LEN..].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // SAFETY: `msg` is valid for its length.
        let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(format!("listen: {}", std::io::Error::last_os_error()));
        }
        Ok(pc)
    }

    /// Hands every queued event to `f`; true if events were lost since the last call.
    fn drain(&self, buf: &mut [u8], mut f: impl FnMut(ProcEvent)) -> bool {
        let mut lost = false;
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                // EAGAIN: drained. ENOBUFS: events were lost; the cgroup re-read covers
                // membership, and the next recv continues.
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    lost = true;
                    continue;
                }
                return lost;
            }
            let data = &buf[..n as usize];
            let mut off = 0;
            while off + NLMSG_HDRLEN <= data.len() {
                let len = u32_at(data, off) as usize;
                if len < NLMSG_HDRLEN || off + len > data.len() {
                    break;
                }
                let ev = off + NLMSG_HDRLEN + CN_MSG_LEN;
                if ev + 32 <= off + len {
                    let what = u32_at(data, ev);
                    let a = u32_at(data, ev + 16) as i32;
                    let b = u32_at(data, ev + 20) as i32;
                    match what {
                        PROC_EVENT_FORK => {
                            let child_pid = u32_at(data, ev + 24) as i32;
                            let child_tgid = u32_at(data, ev + 28) as i32;
                            // Threads share their process's membership.
                            if child_pid == child_tgid {
                                f(ProcEvent::Fork {
                                    parent: b,
                                    child: child_tgid,
                                });
                            }
                        }
                        PROC_EVENT_EXEC => f(ProcEvent::Exec { pid: b }),
                        PROC_EVENT_EXIT if a == b => f(ProcEvent::Exit { pid: b }),
                        _ => {}
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn u32_at(d: &[u8], off: usize) -> u32 {
    d.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_ne_bytes)
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

// ----- fanotify -----

struct Fanotify {
    fd: libc::c_int,
}

impl Fanotify {
    fn open() -> Result<Fanotify, String> {
        // SAFETY: plain fanotify_init(2) call.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(Fanotify { fd })
    }

    fn mark(&self, flags: libc::c_uint, mask: u64, p: &Path) {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: `c` is a valid NUL-terminated path; marking a missing path just fails.
        unsafe {
            libc::fanotify_mark(
                self.fd,
                libc::FAN_MARK_ADD | flags,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
    }

    /// (Re)marks everything: replaced files (a rewritten /etc/shadow is a new inode) and new
    /// homes are picked up every two seconds.
    fn mark_all(&self, st: &Settings) {
        for p in &st.sensitive {
            self.mark(0, libc::FAN_OPEN, p);
        }
        // Writes: the mounts holding account, sudo, key and package files.
        let mut mounts: Vec<PathBuf> = [
            "/",
            "/etc",
            "/etc/sudoers.d",
            "/var",
            "/var/lib/dpkg",
            "/usr",
            "/usr/local",
            "/root",
            "/home",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        if let Ok(t) = std::fs::read_to_string(&st.passwd_file) {
            for l in t.lines() {
                if let Some(h) = l.split(':').nth(5) {
                    if h.starts_with('/') && h != "/" {
                        mounts.push(PathBuf::from(h));
                    }
                }
            }
        }
        mounts.sort();
        mounts.dedup();
        for m in &mounts {
            self.mark(libc::FAN_MARK_MOUNT, libc::FAN_CLOSE_WRITE, m);
        }
    }

    fn drain(&self, buf: &mut [u8], mut f: impl FnMut(i32, u64, libc::c_int)) {
        let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            let data = &buf[..n as usize];
            let mut off = 0;
            while off + meta <= data.len() {
                // SAFETY: at least `meta` bytes remain at `off`; read_unaligned copes with any
                // alignment of the buffer.
                let m: libc::fanotify_event_metadata =
                    unsafe { std::ptr::read_unaligned(data[off..].as_ptr().cast()) };
                let len = m.event_len as usize;
                if len < meta {
                    return;
                }
                if m.fd >= 0 {
                    f(m.pid, m.mask, m.fd);
                    // SAFETY: the event's fd is ours to close.
                    unsafe { libc::close(m.fd) };
                }
                off += len;
            }
        }
    }
}

impl Drop for Fanotify {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Watched {
        Watched {
            grant: "g-000000000001".into(),
            user: "carol".into(),
            home: Some("/home/carol".into()),
        }
    }

    #[test]
    fn file_classes() {
        let c = |mask, p: &str| file_class(&w(), mask, Path::new(p));
        assert_eq!(c(libc::FAN_OPEN, "/etc/shadow"), Some("sensitive-read"));
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/etc/passwd"),
            Some("account-change")
        );
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/etc/passwd+"),
            Some("account-change")
        );
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/etc/sudoers.d/x"),
            Some("account-change")
        );
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/root/.ssh/authorized_keys"),
            Some("account-change")
        );
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/home/carol/.ssh/authorized_keys"),
            None
        );
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/var/lib/dpkg/status"),
            Some("software-install")
        );
        assert_eq!(
            c(libc::FAN_CLOSE_WRITE, "/usr/local/bin/tool"),
            Some("software-install")
        );
        assert_eq!(c(libc::FAN_CLOSE_WRITE, "/home/carol/build/a.o"), None);
        assert_eq!(c(libc::FAN_CLOSE_WRITE, "/etc/hostname"), None);
    }
}
