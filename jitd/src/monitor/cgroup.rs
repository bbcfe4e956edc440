//! One cgroup (v2) per grant under a directory jitd owns (default `<cgroup2 mount>/jit.slice`,
//! a slice next to systemd's, which systemd does not manage). pam_jit's session open and every
//! sudo approved under a grant move the requesting module's own process (the socket peer, from
//! SO_PEERCRED, pinned with a pidfd) into `<dir>/<grant>`; its children are born there. At
//! teardown `cgroup.kill` ends every process in it at once, root ones included, whatever uid
//! they changed to and however they detached (`setsid`, double fork), then the cgroup is removed.
//!
//! No controller is enabled: membership and `cgroup.kill` need none, and jitd does not limit
//! resources. A process with root can still leave its cgroup (write its pid elsewhere); the
//! /proc scan by uid and gid stays in place for that and for hosts without cgroup v2.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jit_core::host::trust::Access;

/// Where grant cgroups live, or why there are none.
#[derive(Debug, Clone)]
pub enum Cgroups {
    /// Usable: `dir` exists, is root's, and the kernel has `cgroup.kill`.
    On {
        /// `<mount>/jit.slice` or the configured directory.
        dir: PathBuf,
    },
    /// Not usable (no cgroup2 mount, no `cgroup.kill`, turned off); the reason, for status.
    Off(String),
}

/// What killing a grant's cgroup found.
#[derive(Debug, Clone, Default)]
pub struct KillReport {
    /// Processes in the cgroup when it was killed.
    pub found: usize,
    /// Still there after the wait (the cgroup stays; teardown is retried).
    pub left: usize,
    /// The cgroup directory is gone.
    pub removed: bool,
    /// Something failed.
    pub error: Option<String>,
}

/// The first cgroup2 mount point in a mountinfo text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        left.split(' ').nth(4).map(PathBuf::from)
    })
}

fn valid_grant(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !id.starts_with('-')
}

impl Cgroups {
    /// Sets up the directory. `configured`: `None` = find the cgroup2 mount; `Some("off")` =
    /// disabled; `Some(path)` = that directory (inside a cgroup2 hierarchy).
    pub fn setup(configured: Option<&str>, mountinfo: &Path) -> Cgroups {
        let dir = match configured {
            Some("off") => return Cgroups::Off("turned off in the configuration".into()),
            Some(p) => PathBuf::from(p),
            None => {
                let text = match std::fs::read_to_string(mountinfo) {
                    Ok(t) => t,
                    Err(e) => return Cgroups::Off(format!("{}: {e}", mountinfo.display())),
                };
                match cgroup2_mount(&text) {
                    Some(m) => m.join("jit.slice"),
                    None => return Cgroups::Off("no cgroup2 filesystem is mounted".into()),
                }
            }
        };
        if !dir.exists() {
            if let Err(e) = std::fs::DirBuilder::new().mode(0o755).create(&dir) {
                return Cgroups::Off(format!("cannot make {}: {e}", dir.display()));
            }
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m)
                if m.is_dir()
                    && jit_core::host::trust::check_metadata(&m, Access::ReadableByAll).is_ok() => {
            }
            Ok(_) => {
                return Cgroups::Off(format!(
                    "{} is not a directory owned by root and closed to others",
                    dir.display()
                ))
            }
            Err(e) => return Cgroups::Off(format!("{}: {e}", dir.display())),
        }
        // cgroup.kill (Linux 5.14) is what ends a grant's processes as one; without it the
        // cgroup would add nothing the /proc scan does not do.
        if !dir.join("cgroup.kill").exists() {
            return Cgroups::Off(format!(
                "{} has no cgroup.kill (not cgroup v2, or a kernel before 5.14)",
                dir.display()
            ));
        }
        Cgroups::On { dir }
    }

    /// The directory, and its path as /proc/PID/cgroup shows it (relative to the mount).
    pub fn dir(&self) -> Option<(PathBuf, String)> {
        let Cgroups::On { dir } = self else {
            return None;
        };
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let rel = text
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (right.split(' ').next()? == "cgroup2").then(|| left.split(' ').nth(4))?
            })
            .find_map(|m| {
                dir.strip_prefix(m)
                    .ok()
                    .map(|r| format!("/{}", r.display()))
            })?;
        Some((dir.clone(), rel))
    }

    /// One line for `jitctl status`.
    pub fn describe(&self) -> String {
        match self {
            Cgroups::On { dir } => format!("cgroup v2 per grant under {}", dir.display()),
            Cgroups::Off(why) => format!(
                "no per-grant cgroups ({why}); teardown finds processes by the /proc scan only"
            ),
        }
    }

    fn path(&self, grant: &str) -> Option<PathBuf> {
        match self {
            Cgroups::On { dir } if valid_grant(grant) => Some(dir.join(grant)),
            _ => None,
        }
    }

    /// Makes the grant's cgroup (idempotent).
    ///
    /// # Errors
    /// mkdir failed.
    pub fn create(&self, grant: &str) -> Result<(), String> {
        let Some(p) = self.path(grant) else {
            return Ok(());
        };
        match std::fs::DirBuilder::new().mode(0o755).create(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Moves process `pid` into the grant's cgroup. The pid is held by a pidfd across the
    /// move and checked to still be the same process afterwards, so a pid that died and was
    /// reused in between is reported, not silently taken for the grantee's.
    ///
    /// # Errors
    /// Cgroups off, the process is gone, or the kernel refused.
    pub fn join(&self, grant: &str, pid: i32) -> Result<(), String> {
        let Some(p) = self.path(grant) else {
            return Err("no per-grant cgroups".into());
        };
        if pid <= 1 {
            return Err(format!("pid {pid} is not a session process"));
        }
        self.create(grant)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(format!(
                "process {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let fd = fd as libc::c_int;
        let r = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p.join("cgroup.procs"))
                .map_err(|e| format!("{}: {e}", p.display()))?;
            f.write_all(pid.to_string().as_bytes())
                .map_err(|e| format!("moving {pid} into {}: {e}", p.display()))
        })();
        // SAFETY: `fd` is the pidfd opened above; signal 0 only checks the process is alive.
        let alive = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        } == 0;
        // SAFETY: closing the fd we own.
        unsafe { libc::close(fd) };
        r?;
        if !alive {
            return Err(format!("process {pid} exited while it was being moved"));
        }
        Ok(())
    }

    /// Pids in the grant's cgroup and every cgroup below it now (a grantee with root may
    /// make sub-cgroups; they are still the grant's). Empty when it does not exist.
    pub fn members(&self, grant: &str) -> Vec<i32> {
        self.path(grant).map(|p| procs_in(&p)).unwrap_or_default()
    }

    /// Kills everything in the grant's cgroup (`cgroup.kill`: SIGKILL to every process in it
    /// and its descendants, atomically with respect to forks), waits up to `wait` for it to
    /// empty, and removes it.
    pub fn kill(&self, grant: &str, wait: Duration) -> KillReport {
        self.kill_all(&[grant], wait).pop().unwrap_or_default()
    }

    /// [`Cgroups::kill`] for many grants at once (a mass expiry): every cgroup is killed first,
    /// then all are waited for together, so the whole batch takes one wait, not one per grant
    /// (a cgroup is only removable once its processes are reaped, which takes a few ms each).
    /// One report per grant, in order.
    pub fn kill_all(&self, grants: &[&str], wait: Duration) -> Vec<KillReport> {
        let mut reps = vec![KillReport::default(); grants.len()];
        // (index, path) of the cgroups still to remove.
        let mut pending: Vec<(usize, PathBuf)> = Vec::new();
        for (i, grant) in grants.iter().enumerate() {
            let Some(p) = self.path(grant) else {
                continue;
            };
            let rep = &mut reps[i];
            if !p.exists() {
                rep.removed = true;
                continue;
            }
            rep.found = self.members(grant).len();
            // Always: cgroup.kill covers the sub-cgroups a grantee with root may have made.
            let w = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p.join("cgroup.kill"))
                .and_then(|mut f| f.write_all(b"1"));
            if let Err(e) = w {
                rep.error = Some(format!("{}/cgroup.kill: {e}", p.display()));
            }
            pending.push((i, p));
        }
        let start = Instant::now();
        loop {
            // A killed process leaves the cgroup once reaped; rmdir succeeds when it is empty
            // and has no sub-cgroups left (removed deepest first).
            let mut still = Vec::new();
            for (i, p) in pending {
                remove_below(&p, 0);
                match std::fs::remove_dir(&p) {
                    Ok(()) => reps[i].removed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => reps[i].removed = true,
                    Err(e) => still.push((i, p, e)),
                }
            }
            if still.is_empty() {
                return reps;
            }
            if start.elapsed() >= wait {
                for (i, p, e) in still {
                    let rep = &mut reps[i];
                    rep.left = self.members(grants[i]).len();
                    if rep.error.is_none() {
                        rep.error = Some(format!("rmdir {}: {e}", p.display()));
                    }
                }
                return reps;
            }
            pending = still.into_iter().map(|(i, p, _)| (i, p)).collect();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Grant cgroups present under the directory (for removing those of grants jitd no longer
    /// has).
    pub fn existing(&self) -> Vec<String> {
        let Cgroups::On { dir } = self else {
            return Vec::new();
        };
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| n.starts_with("g-") && valid_grant(n))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Depth limit for sub-cgroups a grantee made (the kernel's default is unlimited).
const MAX_SUB_DEPTH: usize = 16;

/// Pids in the cgroup `dir` and its sub-cgroups.
pub fn procs_in(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        match std::fs::read_to_string(d.join("cgroup.procs")) {
            Ok(t) => out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            // Every cgroup has cgroup.procs: without it there is no cgroup here, nor below
            // (one syscall, not two, for each grant whose cgroup was never made or is gone).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {}
        }
        if depth < MAX_SUB_DEPTH {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
        }
    }
    out
}

/// Removes the (empty) sub-cgroups of `dir`, deepest first.
fn remove_below(dir: &Path, depth: usize) {
    if depth >= MAX_SUB_DEPTH {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_below(&e.path(), depth + 1);
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let mi = "35 24 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu\n\
                  40 24 0:35 / /sys/fs/cgroup/unified rw,relatime shared:17 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }

    #[test]
    fn grant_names_only() {
        assert!(valid_grant("g-0123456789ab"));
        for bad in ["", "..", "g-/x", "-rf", "a/b", "g-x\n"] {
            assert!(!valid_grant(bad), "{bad:?}");
        }
    }

    #[test]
    fn off_says_why() {
        let c = Cgroups::setup(Some("off"), Path::new("/proc/self/mountinfo"));
        assert!(c.describe().contains("/proc scan"));
        assert!(c.join("g-000000000000", 1234).is_err());
    }
}
