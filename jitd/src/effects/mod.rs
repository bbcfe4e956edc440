//! The executor: carries out what the engine (`crate::engine`) decided. Each file is one kind
//! of effect on the host, in the order jitd applies them: persist state (or journal an end),
//! rewrite the snapshot, then act — start homes, end processes, sweep set-id files, remove or
//! archive homes, flush nscd — and audit each step.
//!
//! * `grants`: admit (engine + durability + snapshot + audit), revoke, activate, emergency.
//! * `tick`: the timer's pass — transitions, repairs, teardowns.
//! * `teardown`: runs a teardown plan.
//! * `persist`, `snapshot`: state.json / the revocation journal, and the snapshot files.
//! * `capacity`: room in the snapshot files (new grants refused before the readers' cap).
//! * `sessions`, `setid`, `rundir`: session ends, the set-id sweep's audit, run directories.
//!
//! Locking: `Daemon::inner` guards state and is never held across process killing, home
//! removal or nscd; `Daemon::teardown` serializes those slow steps so the timer and a revoke
//! never run the same teardown twice.

// Room in the snapshot files for new grants (engine::capacity).
pub mod capacity;
pub mod grants;
pub mod persist;
pub mod purger;
pub mod rundir;
pub mod sessions;
pub mod setid;
pub mod snapshot;
pub mod sweeper;
// The central service's grants reach the daemon only through this adapter (sync::GrantSink).
pub mod sync_adapter;
pub mod teardown;
pub mod tick;
// Tokenization hooks (jitctl run, --cap/--program).
pub mod tokenize;
pub mod watch;

/// Seconds on CLOCK_BOOTTIME: does not move when the wall clock is set, counts suspend.
pub(crate) fn boottime() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec
}

/// `n` random bytes from getrandom(2) as lower-case hex.
pub(crate) fn random_hex(n: usize) -> std::io::Result<String> {
    jit_core::host::random::hex(n)
}

/// A fresh grant id, `g-` and 12 hex digits.
pub(crate) fn random_id() -> std::io::Result<String> {
    Ok(format!("g-{}", random_hex(6)?))
}
