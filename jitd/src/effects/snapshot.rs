//! The snapshot the modules read (`/run/jitd/snapshot` and the root-only gates file), projected
//! from state and the local files and rewritten after every change, and again when someone
//! removed or altered it or /etc/passwd or /etc/group changed.

use jit_core::time::UnixTime;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Inner};
use crate::snapshot_out::{self, FileId, SnapshotFiles};

impl Daemon {
    /// Rewrites the snapshot from state. Failures are audited and retried at the next tick.
    pub(crate) fn write_snapshot(&self, inner: &mut Inner, now: UnixTime) {
        // A revocation must reach the snapshot even while /etc/passwd or /etc/group cannot be
        // read: project with the last copy that could (or, before any, with none: local-group
        // memberships then drop out, which only removes privilege).
        let local = match self.local_db() {
            Ok(l) => {
                inner.last_local = Some(l.clone());
                inner.local_unreadable = false;
                l
            }
            Err(e) => {
                if !inner.local_unreadable {
                    self.audit.record(
                        now,
                        Severity::Error,
                        Event::SnapshotLocalFilesUnreadable,
                        json!({
                            "error": e,
                            "using": if inner.last_local.is_some() { "the last copy read" } else { "no local files: local-group memberships left out" },
                        }),
                    );
                }
                inner.local_unreadable = true;
                inner.last_local.clone().unwrap_or_default()
            }
        };
        let (data, collisions) = snapshot_out::project(&self.cfg, &inner.state, &local, now);
        for c in collisions {
            if inner.reported_collisions.insert(c.clone()) {
                self.audit.record(
                    now,
                    Severity::Warning,
                    Event::AccountCollision,
                    json!({
                        "grant": c.grant, "user": c.user, "with": c.with,
                        "action": "account hidden: local names and ids always win"
                    }),
                );
            }
        }
        let gates = snapshot_out::gates_path(&self.cfg.snapshot_path);
        match snapshot_out::write(&self.cfg.snapshot_path, &gates, &data) {
            Ok(id) => {
                inner.snapshot_id = id;
                inner.snapshot_written_at = Some(now);
            }
            Err(e) => {
                inner.snapshot_id = None;
                self.audit.record(
                    now,
                    Severity::Error,
                    Event::SnapshotWriteFailed,
                    json!({ "error": e }),
                );
            }
        }
        inner.local_sig = Some((
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        ));
    }

    /// Rewrites the snapshot if state `changed`, the local files changed, or the snapshot is
    /// missing or not the one jitd wrote (audited `snapshot.repaired`).
    pub(crate) fn refresh_snapshot(&self, inner: &mut Inner, changed: bool, now: UnixTime) {
        let local_now = (
            FileId::of(&self.cfg.passwd_file),
            FileId::of(&self.cfg.group_file),
        );
        let snap_now = SnapshotFiles::of(&self.cfg.snapshot_path);
        let local_changed = inner.local_sig != Some(local_now);
        let snapshot_damaged = inner.snapshot_id.is_none() || snap_now != inner.snapshot_id;
        if changed || local_changed || snapshot_damaged {
            if snapshot_damaged && inner.snapshot_written_at.is_some() {
                self.audit.record(now, Severity::Notice, Event::SnapshotRepaired, json!({
                    "path": self.cfg.snapshot_path.display().to_string(),
                    "problem": if snap_now.is_none() { "missing" } else { "changed by someone else" }
                }));
            }
            self.write_snapshot(inner, now);
        }
    }
}
