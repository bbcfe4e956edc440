//! Persisting state: `state.json` before anything acts, and jitd on a full or failing state
//! filesystem: refuse new privilege, keep removing privilege.
//! Ends that `state.json` cannot take go to the revocation journal (`journal.rs`); new grants
//! need free space for their audit record and a reserved journal slot for their end.

use jit_core::time::UnixTime;
use jit_proto::ErrorCode;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Inner};
use crate::engine::{refuse, Refusal};
use crate::journal::{End, EndKind};

/// Free space (bytes, as root sees it) the state and audit filesystems must have for a new
/// grant. Below it jitd keeps what room is left for ends, TOTP checks and their audit records.
pub(crate) const MIN_FREE_BYTES: u64 = 1 << 20;

/// Where an end was made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Durable {
    /// In `state.json`.
    State,
    /// In the revocation journal (state.json could not be written).
    Journal,
    /// Nowhere: it holds until jitd restarts (why).
    No(String),
}

impl Durable {
    /// For audit records.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Durable::State => "state",
            Durable::Journal => "revocation journal",
            Durable::No(_) => "no",
        }
    }
}

/// Free bytes on the filesystem holding `path` (what root may use).
fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has NUL"))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` is writable.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bfree.saturating_mul(st.f_frsize))
}

/// Reserves a journal slot for the end of every grant not yet ended, plus `extra`. Counted as
/// every grant in state (ended ones stay until pruned): an upper bound that costs nothing,
/// where counting the open ones walked every grant at every add.
pub(crate) fn reserve_for_open_grants(inner: &mut Inner, extra: usize) -> std::io::Result<()> {
    let bound = inner.state.grants.len();
    inner.journal.reserve(bound + extra)
}

impl Daemon {
    /// Persists state; on failure marks state unwritable (new grants refused) and audits once
    /// per episode (the write is retried at every tick). A successful write holds every end,
    /// so the revocation journal is cleared.
    pub(crate) fn persist(&self, inner: &mut Inner, now: UnixTime) -> Result<(), String> {
        match self.store.save(&mut inner.state) {
            Ok(()) => {
                if !inner.state_writable {
                    self.audit.record(
                        now,
                        Severity::Notice,
                        Event::StateWriteRecovered,
                        json!({ "path": self.store.path().display().to_string() }),
                    );
                }
                inner.state_writable = true;
                inner.dirty = false;
                if inner.journal.has_entries() {
                    // A failed clear is harmless: the entries only end grants already ended.
                    let _ = inner.journal.clear();
                }
                Ok(())
            }
            Err(e) => {
                if inner.state_writable {
                    self.audit.record(
                        now,
                        Severity::Error,
                        Event::StateWriteFailed,
                        json!({
                            "error": e.to_string(),
                            "effect": "no new grants; ends are recorded in the revocation journal; retried every second",
                        }),
                    );
                }
                inner.state_writable = false;
                Err(e.to_string())
            }
        }
    }

    /// At a clean stop: `state.json` written whole with everything the state journal holds.
    /// Best effort (a failure leaves the journal, which the next start applies), audited.
    pub fn fold_state_journal(&self, now: UnixTime) {
        let mut inner = self.lock();
        if let Err(e) = self.store.save_whole_now(&mut inner.state) {
            self.audit.record(
                now,
                Severity::Warning,
                Event::StateWriteFailed,
                json!({
                    "error": e.to_string(),
                    "effect": "at stop: state.json not rewritten; the next start applies the state journal",
                }),
            );
        }
    }

    /// Persists state after grants ended (`ends`); if state.json cannot be written, records the
    /// ends in the revocation journal instead.
    pub(crate) fn persist_ends(
        &self,
        inner: &mut Inner,
        ends: &[(String, EndKind)],
        now: UnixTime,
    ) -> Durable {
        let state_error = match self.persist(inner, now) {
            Ok(()) => return Durable::State,
            Err(e) => e,
        };
        let entries: Vec<End> = ends
            .iter()
            .filter_map(|(id, kind)| {
                let g = inner.state.grants.get(id.as_str())?;
                Some(End {
                    grant: id.clone(),
                    kind: *kind,
                    ended_at: g.ended_at.unwrap_or(now),
                    created_at: g.created_at,
                })
            })
            .collect();
        if entries.is_empty() {
            // Nothing ended in this change (a grant went live): only state.json's retry is due.
            return Durable::No(state_error);
        }
        match inner.journal.record(&entries) {
            Ok(()) => Durable::Journal,
            Err(e) => {
                let why = format!(
                    "{state_error}; revocation journal {}: {e}",
                    inner.journal.path().display()
                );
                self.audit.record(
                    now,
                    Severity::Error,
                    Event::GrantEndNotDurable,
                    json!({
                        "grants": ends.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                        "error": why,
                        "effect": "ended now; would come back if jitd restarted before state.json can be written",
                    }),
                );
                Durable::No(why)
            }
        }
    }

    /// New privilege needs room: free space for its audit trail and state, and a journal slot
    /// reserved for the end of every grant not yet ended, this one included.
    pub(crate) fn room_for_new_grant(&self, inner: &mut Inner) -> Result<(), Refusal> {
        let audit_dir = self
            .cfg
            .audit_log
            .parent()
            .unwrap_or(std::path::Path::new("/"));
        for (what, dir) in [
            ("state directory", self.cfg.state_dir.as_path()),
            ("audit log directory", audit_dir),
        ] {
            match free_bytes(dir) {
                Ok(n) if n >= MIN_FREE_BYTES => {}
                Ok(n) => {
                    return Err(refuse(
                        ErrorCode::Internal,
                        format!(
                            "no new grants: the {what} {} has {n} bytes free, less than the {} KiB jitd keeps for revocations, TOTP checks and their audit records",
                            dir.display(),
                            MIN_FREE_BYTES / 1024
                        ),
                    ))
                }
                Err(e) => {
                    return Err(refuse(
                        ErrorCode::Internal,
                        format!("no new grants: cannot check free space in {}: {e}", dir.display()),
                    ))
                }
            }
        }
        reserve_for_open_grants(inner, 1).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!(
                    "no new grants: cannot reserve room to record their revocation in {}: {e}",
                    inner.journal.path().display()
                ),
            )
        })
    }

    /// Makes the journal at start (a first start after an upgrade, or a journal lost) with a
    /// slot for every grant not yet ended. Failure is audited, not fatal: jitd must run to
    /// tear down; new grants are refused until a reservation succeeds.
    pub(crate) fn reserve_journal_at_start(&self, now: UnixTime) {
        let mut inner = self.lock();
        if let Err(e) = reserve_for_open_grants(&mut inner, 1) {
            self.audit.record(
                now,
                Severity::Error,
                Event::StateJournalUnavailable,
                json!({
                    "path": inner.journal.path().display().to_string(),
                    "error": e.to_string(),
                    "effect": "a revocation that state.json cannot take is not durable; new grants are refused",
                }),
            );
        }
    }
}
