//! The grant engine: what jitd decides, with no I/O. Every function here takes the state, the
//! configuration, a copy of /etc/passwd and /etc/group and the clock as values and returns a
//! decision or a plan; the executor (`crate::effects`) carries it out (persists, writes the
//! snapshot, ends processes, audits). So every rule can be tested from a table, without a
//! daemon, a state directory or root.
//!
//! * [`admit`]: may this grant exist? ([`admit::validate`], then [`admit::place`] against
//!   the grants already held). Every grant, whatever its source ([`GrantSource`]), goes
//!   through it.
//! * [`tick`]: how grants move through their life at a given time (pending → live → expired),
//!   revocation, the next deadline, pruning, ends replayed from the revocation journal.
//! * [`teardown`]: for every ended grant not yet torn down, which processes, set-id files and
//!   home directories go ([`teardown::plan_teardown`]).
//! * [`capacity`]: is there room in the snapshot files for one more grant?

pub mod admit;
pub mod capacity;
pub mod teardown;
pub mod tick;

use jit_proto::ErrorCode;

/// A refusal: the error code the client sees and a one-line message.
pub type Refusal = (ErrorCode, String);

/// Builds a [`Refusal`].
pub fn refuse(code: ErrorCode, msg: impl Into<String>) -> Refusal {
    (code, msg.into())
}

/// Where a grant request came from: root on this host (`jitctl grant add`) or the central
/// service (a signed state document, with the server's ids). Both go through the same
/// admission; the source is recorded with the grant (`source`, `created_by`) and in the audit.
pub use jit_proto::GrantSource;

#[cfg(test)]
mod tests {
    /// The engine stays pure: none of its files reaches for the file system, processes,
    /// sockets, the clock or the executor. (A new file must be listed here too.)
    #[test]
    fn engine_has_no_io() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("admit.rs", include_str!("admit.rs")),
            ("capacity.rs", include_str!("capacity.rs")),
            ("tick.rs", include_str!("tick.rs")),
            ("teardown.rs", include_str!("teardown.rs")),
        ];
        let here = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
            .count();
        assert_eq!(here, files.len(), "a new engine file must be checked here");
        let forbidden = [
            "std::fs",
            "std::io",
            "std::process",
            "std::net",
            "std::thread",
            "libc::",
            "SystemTime",
            "Instant",
            "time::now",
            "unsafe",
            "crate::effects",
            "crate::daemon",
            "crate::api",
            "crate::audit",
            "crate::durable",
            "crate::home",
            "crate::nscd",
            "end_processes",
            "crate::sweep::sweep",
            "Daemon",
        ];
        for (name, text) in files {
            // The code only: not the notes, not the tests (nor this list).
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or(text)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for f in forbidden {
                assert!(
                    !code.contains(f),
                    "engine/{name} uses {f}: the engine does no I/O"
                );
            }
        }
    }
}
