//! jitd's change counter as the module uses it: read before the `lstat` that confirms a cached
//! copy, and while it has not moved (and the copy was confirmed less than `TRUST_NS` ago) the
//! next lookups answer from the copy without a system call (`jit_core::snapshot::generation`,
//! docs/snapshot-format.md §11).
//!
//! Attaching costs a handful of system calls, so a process attaches only after [`ATTACH_AFTER`]
//! lookups against one snapshot (`id`, `ls -l`, a login make fewer and never pay it), and at
//! most [`MAX_ATTACH`] times in its life (a new segment after each restart of jitd).
//! Attachments are never undone: another thread may be reading one (see `Attached`).
//!
//! Never in a process under a seccomp filter: `shmget`/`shmat` are in systemd's `@ipc` set,
//! which a strict service may not allow, and a filter's default action can kill the process.
//! The module's other calls (`lstat`, `open`, `pread`, `mmap`) are the ones it always made.

use jit_core::snapshot::generation::{is_open, Attached, TRUST_NS};
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// Most segments one process attaches in its life.
pub const MAX_ATTACH: u32 = 8;
/// Lookups confirmed by `lstat` against one snapshot before a process attaches.
pub const ATTACH_AFTER: u32 = 8;

/// The counter of one snapshot directory, as seen by this process.
pub struct Counter {
    dir: &'static CStr,
    current: AtomicPtr<Attached>,
    attaches: AtomicU32,
}

/// What a reader saw: which attachment, and its value (always even: open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    segment: usize,
    value: u64,
}

/// The counter of the directory the module reads the snapshot from.
pub static COUNTER: Counter = Counter::new(jit_core::constants::DEFAULT_SNAPSHOT_DIR_C);

impl Counter {
    /// The counter kept for the snapshot directory `dir`.
    pub const fn new(dir: &'static CStr) -> Counter {
        Counter {
            dir,
            current: AtomicPtr::new(std::ptr::null_mut()),
            attaches: AtomicU32::new(0),
        }
    }

    /// The counter now, if attached and jitd is publishing through it.
    pub fn read(&self) -> Option<Stamp> {
        let p = self.current.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer here came from Box::into_raw in `attach` and is never
        // freed (see the module comment).
        let value = unsafe { &*p }.counter();
        is_open(value).then_some(Stamp {
            segment: p as usize,
            value,
        })
    }

    /// Attaches (again) if jitd keeps a counter for the directory and the process has no
    /// seccomp filter. Called once a cached copy was confirmed by `lstat` [`ATTACH_AFTER`]
    /// times while [`Counter::read`] gave nothing.
    pub fn attach(&self) {
        if self.attaches.fetch_add(1, Ordering::Relaxed) >= MAX_ATTACH || !seccomp_off() {
            return;
        }
        if let Ok(a) = Attached::attach(self.dir) {
            let fresh = Box::into_raw(Box::new(a));
            // The previous attachment (closed) is leaked on purpose: a thread may still read it.
            self.current.swap(fresh, Ordering::AcqRel);
        }
    }
}

/// Whether this process runs without a seccomp filter: `Seccomp:\t0` in /proc/self/status,
/// read once per process with open/fstat/read/close (calls the module makes anyway).
/// Anything else, including an unreadable /proc, counts as filtered.
pub fn seccomp_off() -> bool {
    // 0 unknown, 1 off, 2 filtered (or unknown for good).
    static STATE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let off = status_says_seccomp_off();
    STATE.store(if off { 1 } else { 2 }, Ordering::Relaxed);
    off
}

fn status_says_seccomp_off() -> bool {
    // Unprivileged, size-capped, never blocking: the shared reader of small local files.
    jit_core::localfile::read_file(c"/proc/self/status", 64 * 1024, false)
        .is_ok_and(|text| seccomp_line_is_off(&text))
}

/// The `Seccomp:` line of a /proc/PID/status text says 0 (no filter, no strict mode).
pub fn seccomp_line_is_off(status: &[u8]) -> bool {
    status
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"Seccomp:"))
        .is_some_and(|v| v.trim_ascii() == b"0")
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds (a vDSO read, no system call); `None` if unreadable,
/// and then no copy is trusted without looking at the file.
pub fn coarse_now() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return None;
    }
    let s = u64::try_from(ts.tv_sec).ok()?;
    let ns = u64::try_from(ts.tv_nsec).ok()?;
    Some(s.saturating_mul(1_000_000_000).saturating_add(ns))
}

/// Whether a copy confirmed at `checked_at` with counter `seen` may answer at `now` without
/// looking at the file: the counter is attached, open and unchanged, and the check is recent.
pub fn still_fresh(
    now_stamp: Option<Stamp>,
    seen: Option<Stamp>,
    checked_at: Option<u64>,
    now: Option<u64>,
) -> bool {
    match (now_stamp, seen, checked_at, now) {
        (Some(a), Some(b), Some(at), Some(now)) => a == b && now >= at && now - at < TRUST_NS,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Stamp = Stamp {
        segment: 0x1000,
        value: 8,
    };

    #[test]
    fn a_copy_is_fresh_only_on_the_same_counter_within_the_trust_window() {
        let t = Some(5_000_000_000);
        assert!(still_fresh(Some(S), Some(S), t, t));
        assert!(still_fresh(Some(S), Some(S), t, Some(5_999_999_999)));
        // A second old: look at the file.
        assert!(!still_fresh(Some(S), Some(S), t, Some(6_000_000_000)));
        // Moved, or another segment with the same value (jitd restarted).
        assert!(!still_fresh(Some(Stamp { value: 10, ..S }), Some(S), t, t));
        assert!(!still_fresh(
            Some(Stamp {
                segment: 0x2000,
                ..S
            }),
            Some(S),
            t,
            t
        ));
        // Not attached, closed (read() gives None), never confirmed, clock unreadable, clock
        // gone backwards.
        assert!(!still_fresh(None, Some(S), t, t));
        assert!(!still_fresh(Some(S), None, t, t));
        assert!(!still_fresh(Some(S), Some(S), None, t));
        assert!(!still_fresh(Some(S), Some(S), t, None));
        assert!(!still_fresh(Some(S), Some(S), t, Some(4_000_000_000)));
    }

    #[test]
    fn only_a_process_without_a_seccomp_filter_attaches() {
        assert!(seccomp_line_is_off(
            b"Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n"
        ));
        assert!(!seccomp_line_is_off(
            b"Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        ));
        assert!(!seccomp_line_is_off(b"Seccomp:\t1\n"));
        assert!(
            !seccomp_line_is_off(b"Name:\tx\n"),
            "no line: treated as filtered"
        );
        assert!(!seccomp_line_is_off(b""));
        // This test process has no filter.
        assert!(status_says_seccomp_off());
    }

    #[test]
    fn the_coarse_clock_reads() {
        let a = coarse_now().expect("CLOCK_MONOTONIC_COARSE");
        let b = coarse_now().expect("CLOCK_MONOTONIC_COARSE");
        assert!(b >= a);
    }
}
