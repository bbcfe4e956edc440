//! A cgroup (v2) directory owned by one test, for jitd's `cgroup_dir`. The sandbox's mount
//! namespace shares the host's cgroup hierarchy, so the test makes its own directory under the
//! host's cgroup2 mount and removes it (killing whatever is left in it and below) when dropped:
//! no cgroup outlives the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The cgroup directory; removed on drop.
pub struct TestCgroup {
    dir: PathBuf,
}

/// The host's cgroup2 mount point.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split(' ').next()? == "cgroup2")
            .then(|| left.split(' ').nth(4).map(PathBuf::from))?
    })
}

fn kill_and_remove(dir: &Path) {
    // Children first (depth-first), each killed and removed.
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                kill_and_remove(&e.path());
            }
        }
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    let start = Instant::now();
    while fs::remove_dir(dir).is_err() && dir.exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TestCgroup {
    /// Makes `<cgroup2 mount>/jit-test-<pid>-<n>`. Panics without cgroup v2 (the test needs it).
    pub fn new() -> TestCgroup {
        let mount = cgroup2_mount().expect(
            "this test needs a cgroup2 filesystem mounted on the host (cgroup v2 or hybrid)",
        );
        let dir = mount.join(format!(
            "jit-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        assert!(
            dir.join("cgroup.kill").exists(),
            "{} has no cgroup.kill (kernel before 5.14?)",
            dir.display()
        );
        TestCgroup { dir }
    }

    /// The directory (the same path inside the sandbox: /sys is the host's).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The grant cgroup jitd makes under it.
    pub fn grant(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The cgroup a process is in (the v2 line of /proc/PID/cgroup), relative to the mount.
    pub fn of_pid(pid: i32) -> Option<String> {
        let t = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        t.lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        TestCgroup::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        kill_and_remove(&self.dir);
    }
}
