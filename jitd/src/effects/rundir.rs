//! The run directories (the snapshot's and the socket's, `/run/jitd` by default) made again
//! when someone removed them, at the next tick, before the snapshot is rewritten into them. The
//! socket itself is bound again by the server's accept loop.

use std::sync::atomic::Ordering;

use jit_core::time::UnixTime;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{prepare_dir, Daemon};

impl Daemon {
    /// Makes the snapshot's and the socket's directories again if they are missing (0755 root,
    /// as at start), audited `rundir.repaired` or, once until it succeeds again,
    /// `rundir.repair_failed`.
    pub(crate) fn repair_run_dirs(&self, now: UnixTime) {
        let mut dirs: Vec<&std::path::Path> = Vec::new();
        for p in [&self.cfg.snapshot_path, &self.cfg.socket_path] {
            if let Some(d) = p.parent() {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        for dir in dirs {
            if std::fs::symlink_metadata(dir).is_ok() {
                continue;
            }
            match prepare_dir(dir, 0o755) {
                Ok(()) => {
                    self.rundir_failing.store(false, Ordering::SeqCst);
                    self.audit.record(
                        now,
                        Severity::Notice,
                        Event::RundirRepaired,
                        json!({ "path": dir.display().to_string(), "problem": "missing" }),
                    );
                }
                Err(e) => {
                    if !self.rundir_failing.swap(true, Ordering::SeqCst) {
                        self.audit.record(
                            now,
                            Severity::Error,
                            Event::RundirRepairFailed,
                            json!({ "path": dir.display().to_string(), "error": e }),
                        );
                    }
                }
            }
        }
    }
}
