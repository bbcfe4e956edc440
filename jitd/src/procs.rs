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
/// which would fail and hide the process from teardown. Plain reads into a buffer: `fs::read`
/// would also stat the file (a /proc file has no size), one syscall more per process in a
/// /proc pass over thousands.
fn read_proc_text(path: &str) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(chunk.get(..n)?),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
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

/// Pids under /proc other than init's and jitd's own.
fn pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .collect()
}

/// The targets among the processes now (used by tests and as a read-only check).
#[cfg(test)]
fn scan(t: &KillTargets) -> Vec<i32> {
    pids().into_iter().filter(|&pid| targeted(pid, t)).collect()
}

/// One pass over /proc: every process that is a target now is signalled with `sig` the moment
/// it is found (a storm of thousands starts dying while the pass goes on, rather than after
/// it), and returned with the pidfd that pins it.
///
/// The pidfd is opened *before* the process's status is read, so one read suffices: if the
/// pinned process is still alive when signalled, it was alive during the read, so its pid could
/// not have been recycled and the status read was its own; if it died in between, the signal
/// goes to nobody (a pidfd never names another process). A pid recycled meanwhile by another
/// target is found by the next pass.
fn scan_and_signal(t: &KillTargets, sig: libc::c_int) -> Vec<(i32, OwnedFd)> {
    let all = pids();
    // A few threads share the pass: most of its time is the kernel formatting each process's
    // status, which runs on as many cores as there are readers (a storm of thousands is ended
    // that much sooner; a host's usual hundreds take one).
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(all.len().div_ceil(256).max(1));
    let pass = |part: &[i32]| -> Vec<(i32, OwnedFd)> {
        let mut out = Vec::new();
        for &pid in part {
            let Some(fd) = pidfd_open(pid) else { continue };
            if targeted(pid, t) {
                pidfd_signal(&fd, sig);
                out.push((pid, fd));
            }
        }
        out
    };
    if workers == 1 {
        return pass(&all);
    }
    let size = all.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(size)
            .map(|part| s.spawn(move || pass(part)))
            .collect();
        let mut out = Vec::new();
        for (h, part) in handles.into_iter().zip(all.chunks(size)) {
            match h.join() {
                Ok(v) => out.extend(v),
                // A reader that panicked: its share again on this thread, never skipped.
                Err(_) => out.extend(pass(part)),
            }
        }
        out
    })
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
/// One epoll set registered once: thousands of pidfds in a mass expiry cost O(n) in all, where
/// re-polling the whole array after each exit cost O(n²).
fn wait_exits(fds: &[OwnedFd], until: Instant) -> Vec<bool> {
    let mut done = vec![false; fds.len()];
    if fds.is_empty() {
        return done;
    }
    // SAFETY: epoll_create1 takes flags and returns a new fd or -1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return wait_exits_poll(fds, until);
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let mut left = 0usize;
    for (i, fd) in fds.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: both descriptors are open; `ev` is a valid epoll_event.
        let rc = unsafe {
            libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev)
        };
        if rc != 0 {
            return wait_exits_poll(fds, until);
        }
        left += 1;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    while left > 0 {
        let rest = until.saturating_duration_since(Instant::now());
        if rest.is_zero() {
            break;
        }
        let ms = libc::c_int::try_from(rest.as_millis().max(1)).unwrap_or(1000);
        // SAFETY: `events` is a writable array of `events.len()` epoll_event structs.
        let n = unsafe {
            libc::epoll_wait(
                ep.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                ms,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for ev in events.iter().take(n as usize) {
            let i = ev.u64 as usize;
            if let Some(d) = done.get_mut(i).filter(|d| !**d) {
                *d = true;
                left -= 1;
                if let Some(fd) = fds.get(i) {
                    // SAFETY: both descriptors are open; DEL ignores the event argument.
                    unsafe {
                        libc::epoll_ctl(
                            ep.as_raw_fd(),
                            libc::EPOLL_CTL_DEL,
                            fd.as_raw_fd(),
                            std::ptr::null_mut(),
                        )
                    };
                }
            }
        }
    }
    done
}

/// [`wait_exits`] without epoll (it could not be set up): poll(2) over those not yet gone.
fn wait_exits_poll(fds: &[OwnedFd], until: Instant) -> Vec<bool> {
    let mut done = vec![false; fds.len()];
    loop {
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

/// Sends SIGTERM to every matching process (each as the /proc pass finds it), SIGKILL after
/// `grace` to those still alive, and repeats the pass until none match (children forked
/// meanwhile are caught by later rounds, which go straight to SIGKILL) or `give_up` passes.
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
        let first_sig = if round == 0 {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        if start.elapsed() > give_up {
            // Report what still matches, signalling nothing more.
            report.survivors = pids().into_iter().filter(|&p| targeted(p, t)).collect();
            break;
        }
        let found = scan_and_signal(t, first_sig);
        if found.is_empty() {
            break;
        }
        let mut fds = Vec::with_capacity(found.len());
        for (pid, fd) in found {
            if seen.insert(pid) {
                report.found += 1;
            }
            fds.push(fd);
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
    #[test]
    fn ends_a_batch_of_processes_of_several_uids_in_one_call() {
        // A small storm: 4 uids, 10 sleepers each, ended together; every one found once,
        // signalled, waited for (epoll) and none left.
        let uids: Vec<u32> = (0..4).map(|i| 4_000_200 + i).collect();
        let mut kids = Vec::new();
        for &uid in &uids {
            for _ in 0..10 {
                kids.push(
                    std::process::Command::new("setpriv")
                        .args([
                            &format!("--reuid={uid}"),
                            &format!("--regid={uid}"),
                            "--clear-groups",
                            "sleep",
                            "60",
                        ])
                        .spawn()
                        .unwrap(),
                );
            }
        }
        let t = KillTargets {
            uids: uids.iter().copied().collect(),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while scan(&t).len() < kids.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = end_processes(&t, Duration::from_secs(2), Duration::from_secs(10));
        for k in &mut kids {
            let _ = k.wait();
        }
        assert_eq!(r.found, kids.len(), "{r:?}");
        assert_eq!(r.terminated + r.killed, kids.len(), "{r:?}");
        assert!(r.survivors.is_empty(), "{r:?}");
        assert!(scan(&t).is_empty());
    }

    #[test]
    fn wait_exits_reports_exactly_the_processes_that_ended() {
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let mut slow = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let fds = vec![
            pidfd_open(quick.id() as i32).unwrap(),
            pidfd_open(slow.id() as i32).unwrap(),
        ];
        let _ = quick.wait();
        let done = wait_exits(&fds, Instant::now() + Duration::from_millis(300));
        assert_eq!(done, vec![true, false]);
        let _ = slow.kill();
        let _ = slow.wait();
        assert_eq!(
            wait_exits(&fds, Instant::now() + Duration::from_secs(5)),
            vec![true, true]
        );
    }
}
