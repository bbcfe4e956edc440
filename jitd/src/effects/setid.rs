//! Teardown's set-id sweep, as jitd runs and audits it (the walk itself is `crate::sweep`).

use std::collections::HashMap;

use jit_core::time::UnixTime;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::sweep;

/// Longest path written to the audit trail (a grantee chooses the names and the depth).
const MAX_AUDIT_PATH: usize = 1024;

/// `p` for the audit trail: lossy UTF-8, cut to [`MAX_AUDIT_PATH`] bytes with a marker.
fn audit_path(p: &std::path::Path) -> String {
    let s = p.to_string_lossy();
    if s.len() <= MAX_AUDIT_PATH {
        return s.into_owned();
    }
    let mut end = MAX_AUDIT_PATH;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}…(cut, {} bytes)",
        s.get(..end).unwrap_or_default(),
        s.len()
    )
}

/// Files audited one record each per sweep; beyond that one summary record says how many more
/// there were (a grantee who left a million set-id files must not fill the audit disk).
const MAX_FILE_RECORDS: usize = 100;

impl Daemon {
    /// Audits what a finished sweep did (`report`, the walk of `crate::sweep` over the sweep
    /// paths, run by `effects/sweeper.rs`): each file whose set-uid/set-gid bits it cleared, at
    /// `warning`, under the grant it belonged to. Returns the summary that goes into the
    /// teardown records. Never makes a teardown incomplete: a file that could not be changed
    /// (or a place not searched) is audited at `error` instead, so a bad path does not turn
    /// every tick into a full walk.
    pub(crate) fn record_sweep(
        &self,
        now: UnixTime,
        r: &sweep::Report,
        uid_grant: &HashMap<u32, String>,
        pair_grant: &HashMap<(u32, u32), String>,
    ) -> serde_json::Value {
        let grant_of = |uid: u32, gid: u32| {
            uid_grant
                .get(&uid)
                .or_else(|| pair_grant.get(&(uid, gid)))
                .cloned()
                .unwrap_or_default()
        };
        for s in r.stripped.iter().take(MAX_FILE_RECORDS) {
            self.audit.record(
                now,
                Severity::Warning,
                Event::FileSetidStripped,
                json!({
                    "grant": grant_of(s.uid, s.gid),
                    "path": audit_path(&s.path),
                    "uid": s.uid, "gid": s.gid,
                    "mode_before": format!("{:04o}", s.mode_before),
                    "mode_after": format!("{:04o}", s.mode_after),
                }),
            );
        }
        if r.stripped.len() > MAX_FILE_RECORDS {
            self.audit.record(
                now,
                Severity::Warning,
                Event::FileSetidStrippedMore,
                json!({ "count": r.stripped.len() - MAX_FILE_RECORDS }),
            );
        }
        for (path, e) in r.failed.iter().take(MAX_FILE_RECORDS) {
            self.audit.record(
                now,
                Severity::Error,
                Event::FileSetidStripFailed,
                json!({ "path": audit_path(path), "error": e }),
            );
        }
        for (path, why) in r.unsearched.iter().take(MAX_FILE_RECORDS) {
            self.audit.record(
                now,
                Severity::Error,
                Event::SweepUnsearched,
                json!({ "path": audit_path(path), "reason": why }),
            );
        }
        json!({
            "entries": r.entries, "stripped": r.stripped.len(), "failed": r.failed.len(),
            "unsearched": r.unsearched.len(), "ms": r.elapsed_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_for_the_audit_trail() {
        let long = std::path::PathBuf::from(format!("/tmp/{}", "d/".repeat(2000)));
        let a = audit_path(&long);
        assert!(a.len() < MAX_AUDIT_PATH + 40, "{}", a.len());
        assert!(a.contains("cut"));
        assert_eq!(audit_path(std::path::Path::new("/tmp/x")), "/tmp/x");
    }
}
