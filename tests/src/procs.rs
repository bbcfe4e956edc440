//! Process inspection through /proc: who runs with which uid and groups, and whether a pid is
//! still alive (a zombie counts as dead: it holds no privilege and only waits to be reaped).
//!
//! All sandboxes share the host's PID namespace, so these helpers see every process; callers
//! filter by the uids their sandbox owns.

use std::fs;

/// What /proc says about one process.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// State letter from /proc/PID/stat (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Command line, NULs shown as spaces.
    pub cmdline: String,
}

impl ProcInfo {
    /// Not a zombie or dead entry.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|rest| rest.trim()))
}

/// Reads one process, `None` if it is gone.
pub fn info(pid: i32) -> Option<ProcInfo> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids: Vec<u32> = field(&status, "Uid:")?
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let groups = field(&status, "Groups:")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let state = field(&status, "State:")?.chars().next().unwrap_or('?');
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    Some(ProcInfo {
        pid,
        uid: *uids.first()?,
        euid: *uids.get(1)?,
        groups,
        state,
        cmdline,
    })
}

/// Every pid currently in /proc.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live (non-zombie) processes whose real or effective uid satisfies `pred`.
pub fn live_where(pred: impl Fn(&ProcInfo) -> bool) -> Vec<ProcInfo> {
    all_pids()
        .into_iter()
        .filter_map(info)
        .filter(|p| p.alive() && pred(p))
        .collect()
}

/// Live processes running as `uid` (real or effective).
pub fn live_of_uid(uid: u32) -> Vec<ProcInfo> {
    live_where(|p| p.uid == uid || p.euid == uid)
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    info(pid).is_some_and(|p| p.alive())
}

/// The mount-namespace inode of `pid` (`mnt:[N]`), if readable.
pub fn mnt_ns(pid: i32) -> Option<u64> {
    let l = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    let s = l.to_str()?;
    s.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone already).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a plain pid and signal number has no memory-safety requirements.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Short listing for assertion messages.
pub fn describe(ps: &[ProcInfo]) -> String {
    ps.iter()
        .map(|p| {
            format!(
                "[pid {} uid {} state {} groups {:?}: {}]",
                p.pid, p.uid, p.state, p.groups, p.cmdline
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
