//! jit_tests: real-client integration tests of jit (`getent`, `id`, `su`, `nscd`, `jitd`,
//! `jitctl`) against the built artifacts, each run inside a private, persistent mount namespace
//! so that nothing on the host's /etc, /usr/lib, /home, /run or /var ever changes.
//!
//! * [`sandbox`] builds and tears down the namespace and runs commands inside it;
//! * [`snap`] builds snapshot contents for NSS-level tests that need no jitd;
//! * [`procs`] inspects /proc (processes by uid, liveness, groups);
//! * [`pam`] installs pam_jit.so and pam.d files, runs pamtester, su, oathtool and a real sshd
//!   on loopback;
//! * [`cprog`] compiles the C load programs under `tests/fixtures` once per test binary.
//!
//! A failed step is a failed test here, so panics, `unwrap` and `expect` are the error handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cgroup;
pub mod cprog;
pub mod fleet;
pub mod pam;
pub mod procs;
pub mod sandbox;
pub mod snap;

pub use sandbox::{artifacts, Artifacts, Sandbox, SandboxOptions};

use std::process::Output;
use std::time::{Duration, Instant};

/// Exit code of `getent` when the key was not found (also what any NSS failure looks like).
pub const GETENT_NOT_FOUND: i32 = 2;

/// stdout of a command as a String (lossy).
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of a command as a String (lossy).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One line describing a command's result for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status={:?} stdout={:?} stderr={:?}",
        o.status,
        stdout(o).chars().take(4000).collect::<String>(),
        stderr(o).chars().take(4000).collect::<String>()
    )
}

/// Exit code, or `-signal` when a signal ended the process (so a crash never looks like 2).
pub fn code(o: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match o.status.code() {
        Some(c) => c,
        None => -o.status.signal().unwrap_or(255),
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`poll`] but returns `None` at the deadline instead of panicking.
pub fn poll_opt<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The wall clock in whole Unix seconds.
pub fn now() -> i64 {
    jit_core::time::now()
}

/// The wall clock in fractional Unix seconds (for latency figures).
pub fn now_f64() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Waits until the wall clock reaches `t` (Unix seconds, fractional).
pub fn sleep_until(t: f64) {
    let d = t - now_f64();
    if d > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(d));
    }
}
