//! Ending the processes that hold a privilege, found from /proc rather than from a memory of
//! sessions: every process running as an ephemeral uid, and every process of a group grantee
//! that still carries the granted gid (processes keep supplementary groups after NSS stops
//! listing them, and `setsid`, `nohup` or `screen` escape any session bookkeeping).
//!
//! Processes are addressed through pidfds: a pid recycled between the scan and the signal is
//! re-checked after `pidfd_open` and never signalled by mistake (docs/threat-model.md: X1, D4).

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Who must lose their processes.
#[derive(Debug, Clone, Default)]
pub struct KillTargets {
    /// Ephemeral uids: any process with this real, effective, saved or fs uid.
    pub uids: HashSet<u32>,
    /// (grantee uid, gid): processes of the grantee whose supplementary groups hold the gid.
    pub group_holders: HashSet<(u32, u32)>,
    /// Registered login sessions: (pid, start time in clock ticks since boot). The start time
    /// must still match, so a recycled pid is never signalled.
    pub sessions: HashSet<(i32, u64)>,
    /// (holder uid, capability mask): processes running wholly as the holder (real,
    /// effective, saved and fs uid) that carry one of the capabilities in their permitted,
    /// effective or ambient set (tokenization grants).
    pub cap_holders: HashSet<(u32, u64)>,
}

impl KillTargets {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
            && self.group_holders.is_empty()
            && self.sessions.is_empty()
            && self.cap_holders.is_empty()
    }
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillReport {
    /// Distinct processes found.
    pub found: usize,
    /// Processes that exited after SIGTERM.
    pub terminated: usize,
    /// Processes that needed SIGKILL.
    pub killed: usize,
    /// Pids still matching when we gave up (should be empty).
    pub survivors: Vec<i32>,
    /// Milliseconds from start to the last match gone.
    pub elapsed_ms: u64,
}

#[derive(Debug, Default)]
struct ProcInfo {
    uids: [u32; 4],
    groups: Vec<u32>,
    zombie: bool,
    /// CapPrm | CapEff | CapAmb.
    caps: u64,
}

/// A /proc file as text. The process's name (comm) appears raw, and its owner can make it any
/// bytes (run a program whose file name is not UTF-8): read bytes, never `read_to_string`,
/// which would fail and hide the process from teardown.
fn read_proc_text(path: &str) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_status(pid: i32) -> Option<ProcInfo> {
    let text = read_proc_text(&format!("/proc/{pid}/status"))?;
    let mut info = ProcInfo::default();
    let mut have_uid = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            for (slot, n) in info.uids.iter_mut().zip(v.split_whitespace()) {
                *slot = n.parse().ok()?;
            }
            have_uid = true;
        } else if let Some(v) = line.strip_prefix("Groups:") {
            info.groups = v
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
        } else if let Some(v) = line
            .strip_prefix("CapPrm:")
            .or_else(|| line.strip_prefix("CapEff:"))
            .or_else(|| line.strip_prefix("CapAmb:"))
        {
            info.caps |= jit_core::caps::parse_mask(v).unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("State:") {
            info.zombie = v.trim_start().starts_with('Z') || v.trim_start().starts_with('X');
        }
    }
    have_uid.then_some(info)
}

fn matches(info: &ProcInfo, t: &KillTargets) -> bool {
    if info.zombie {
        return false;
    }
    if info.uids.iter().any(|u| t.uids.contains(u)) {
        return true;
    }
    t.group_holders.iter().any(|(uid, gid)| {
        (info.uids[0] == *uid || info.uids[1] == *uid) && info.groups.contains(gid)
    }) || t.cap_holders.iter().any(|(uid, mask)| {
        // Every uid the holder's: a set-uid program the person runs (su, sudo) holds its
        // capabilities as root, not from the grant, and is left alone.
        info.uids.iter().all(|u| u == uid) && info.caps & mask != 0
    })
}

/// A process's start time (field 22 of /proc/PID/stat, clock ticks since boot).
pub fn start_time(pid: i32) -> Option<u64> {
    let text = read_proc_text(&format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': skip past the
    // last ')'. Field 3 is then the first word, so field 22 is the 20th.
    let rest = text.get(text.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is one of the targets now.
fn targeted(pid: i32, t: &KillTargets) -> bool {
    if read_status(pid).is_some_and(|i| matches(&i, t)) {
        return true;
    }
    !t.sessions.is_empty()
        && start_time(pid).is_some_and(|st| t.sessions.contains(&(pid, st)))
        && read_status(pid).is_some_and(|i| !i.zombie)
}

fn scan(t: &KillTargets) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|&pid| targeted(pid, t))
        .collect()
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, sig: libc::c_int) -> bool {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// Waits until every pidfd is readable (its process exited) or `until`. Returns which exited.
fn wait_exits(fds: &[OwnedFd], until: Instant) -> Vec<bool> {
    let mut done = vec![false; fds.len()];
    loop {
        // Which entry of `fds` each pollfd watches: thousands of pidfds in a mass expiry must
        // not cost a search per exited process.
        let idx: Vec<usize> = (0..fds.len()).filter(|&i| !done[i]).collect();
        let mut pfds: Vec<libc::pollfd> = idx
            .iter()
            .map(|&i| libc::pollfd {
                fd: fds[i].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if pfds.is_empty() {
            return done;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return done;
        }
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(1000);
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return done;
        }
        for (p, &i) in pfds.iter().zip(&idx) {
            if p.revents != 0 {
                if let Some(d) = done.get_mut(i) {
                    *d = true;
                }
            }
        }
    }
}

/// Raises the soft limit of open files to the hard limit, once. A mass expiry holds one pidfd
/// per process to end (thousands), and under the usual soft limit of 1 024 the rest would only
/// be reached by later rounds of the scan, each a grace period later.
fn raise_fd_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the one struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

/// Sends SIGTERM to every matching process, SIGKILL after `grace` to those still alive, and
/// repeats the scan until none match (children forked meanwhile are caught by later rounds,
/// which go straight to SIGKILL) or `give_up` passes.
pub fn end_processes(t: &KillTargets, grace: Duration, give_up: Duration) -> KillReport {
    raise_fd_limit();
    let start = Instant::now();
    let mut report = KillReport::default();
    if t.is_empty() {
        return report;
    }
    let mut seen: HashSet<i32> = HashSet::new();
    let mut round = 0u32;
    loop {
        let pids = scan(t);
        if pids.is_empty() {
            break;
        }
        if start.elapsed() > give_up {
            report.survivors = pids;
            break;
        }
        let mut fds = Vec::new();
        for pid in pids {
            let Some(fd) = pidfd_open(pid) else { continue };
            // The pid could have been recycled between the scan and pidfd_open: re-check now
            // that the pidfd pins the process.
            if !targeted(pid, t) {
                continue;
            }
            if seen.insert(pid) {
                report.found += 1;
            }
            fds.push(fd);
        }
        let first_sig = if round == 0 {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        for fd in &fds {
            pidfd_signal(fd, first_sig);
        }
        let wait = if round == 0 {
            grace
        } else {
            Duration::from_millis(200)
        };
        let exited = wait_exits(&fds, Instant::now() + wait);
        for (fd, gone) in fds.iter().zip(&exited) {
            if *gone {
                if round == 0 {
                    report.terminated += 1;
                }
            } else {
                pidfd_signal(fd, libc::SIGKILL);
                report.killed += 1;
            }
        }
        let _ = wait_exits(&fds, Instant::now() + Duration::from_millis(500));
        round += 1;
    }
    report.elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_holders_match_only_processes_wholly_of_the_holder() {
        let mut p = ProcInfo {
            uids: [1000; 4],
            caps: 1 << 10,
            ..ProcInfo::default()
        };
        let t = KillTargets {
            cap_holders: [(1000, 1 << 10)].into_iter().collect(),
            ..Default::default()
        };
        assert!(matches(&p, &t));
        // Another capability only.
        p.caps = 1 << 13;
        assert!(!matches(&p, &t));
        // A set-uid root program the person started (su waiting for its shell).
        p = ProcInfo {
            uids: [1000, 0, 0, 0],
            caps: u64::MAX >> 23,
            ..ProcInfo::default()
        };
        assert!(!matches(&p, &t));
        // Another person's process with the capability.
        p = ProcInfo {
            uids: [1001; 4],
            caps: 1 << 10,
            ..ProcInfo::default()
        };
        assert!(!matches(&p, &t));
    }

    #[test]
    fn status_parsing_and_matching() {
        let me = read_status(std::process::id() as i32).unwrap();
        assert!(!me.zombie);
        let t = KillTargets {
            uids: [me.uids[0]].into_iter().collect(),
            ..Default::default()
        };
        assert!(matches(&me, &t));
        let t = KillTargets {
            uids: [4_000_000].into_iter().collect(),
            ..Default::default()
        };
        assert!(!matches(&me, &t));
        let holder = KillTargets {
            group_holders: [(me.uids[0], 4_000_001)].into_iter().collect(),
            ..Default::default()
        };
        assert!(!matches(&me, &holder));
        let pid = std::process::id() as i32;
        let st = start_time(pid).unwrap();
        assert!(st > 0);
        let session = KillTargets {
            sessions: [(pid, st)].into_iter().collect(),
            ..Default::default()
        };
        assert!(targeted(pid, &session));
        let recycled = KillTargets {
            sessions: [(pid, st + 1)].into_iter().collect(),
            ..Default::default()
        };
        assert!(
            !targeted(pid, &recycled),
            "another start time is another process"
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_is_still_read() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("jitd-procs-odd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join(std::ffi::OsStr::from_bytes(b"\xff) 1 2 3"));
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let mut child = std::process::Command::new(&exe).arg("60").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(&0xff)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = read_status(pid);
        let start = start_time(pid);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            status.is_some(),
            "status of a process named with a non-UTF-8 byte"
        );
        assert!(start.is_some_and(|s| s > 0), "start time: {start:?}");
    }

    #[test]
    fn ends_a_child_running_as_a_target_uid() {
        // Run `sleep` under an otherwise unused uid, then end it by uid.
        let uid = 4_000_123u32;
        let mut child = std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "sleep",
                "60",
            ])
            .spawn()
            .unwrap();
        let t = KillTargets {
            uids: [uid].into_iter().collect(),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while scan(&t).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = end_processes(&t, Duration::from_millis(500), Duration::from_secs(5));
        let _ = child.wait();
        assert_eq!(r.found, 1, "{r:?}");
        assert!(r.survivors.is_empty(), "{r:?}");
        assert!(scan(&t).is_empty());
    }
}
