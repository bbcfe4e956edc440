//! jitd on a full or failing state filesystem: refuse new privilege, keep removing privilege.
//! Ends that `state.json` cannot take go to the revocation journal (`journal.rs`); new grants
//! need free space for their audit record and a reserved journal slot for their end.

use jit_core::time::UnixTime;
use jit_proto::{ErrorCode, GrantState};
use serde_json::json;

use super::{refuse, Daemon, Inner, Refusal};
use crate::audit::Severity;
use crate::journal::{End, EndKind};
use crate::state::State;

/// Free space (bytes, as root sees it) the state and audit filesystems must have for a new
/// grant. Below it jitd keeps what room is left for ends, TOTP checks and their audit records.
pub(super) const MIN_FREE_BYTES: u64 = 1 << 20;

/// Where an end was made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Durable {
    /// In `state.json`.
    State,
    /// In the revocation journal (state.json could not be written).
    Journal,
    /// Nowhere: it holds until jitd restarts (why).
    No(String),
}

impl Durable {
    /// For audit records.
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Durable::State => "state",
            Durable::Journal => "revocation journal",
            Durable::No(_) => "no",
        }
    }
}

/// Ends the grants the journal names that `state` still has as not ended; returns their ids.
/// An entry whose grant is gone or was created at another time (a different grant with the
/// same id) is ignored.
pub(super) fn apply_journal(state: &mut State, ends: &[End]) -> Vec<String> {
    let mut applied = Vec::new();
    for e in ends {
        let Some(g) = state.grants.get_mut(&e.grant) else {
            continue;
        };
        if g.created_at != e.created_at || g.state.is_ended() {
            continue;
        }
        g.state = match e.kind {
            EndKind::Revoked => GrantState::Revoked,
            EndKind::Expired => GrantState::Expired,
        };
        g.ended_at = Some(e.ended_at);
        g.end_reason = Some(format!(
            "{} (recorded in the revocation journal while state.json could not be written)",
            match e.kind {
                EndKind::Revoked => "revoked",
                EndKind::Expired => "expired",
            }
        ));
        g.torn_down = false;
        applied.push(e.grant.clone());
    }
    applied
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

/// Reserves a journal slot for the end of every grant not yet ended, plus `extra`.
pub(super) fn reserve_for_open_grants(inner: &mut Inner, extra: usize) -> std::io::Result<()> {
    let open = inner
        .state
        .grants
        .values()
        .filter(|g| !g.state.is_ended())
        .count();
    inner.journal.reserve(open + extra)
}

impl Daemon {
    /// Persists state after grants ended (`ends`); if state.json cannot be written, records the
    /// ends in the revocation journal instead.
    pub(super) fn persist_ends(
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
                let g = inner.state.grants.get(id)?;
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
                    "grant.end_not_durable",
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
    pub(super) fn room_for_new_grant(&self, inner: &mut Inner) -> Result<(), Refusal> {
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
    pub(super) fn reserve_journal_at_start(&self, now: UnixTime) {
        let mut inner = self.lock();
        if let Err(e) = reserve_for_open_grants(&mut inner, 1) {
            self.audit.record(
                now,
                Severity::Error,
                "state.journal_unavailable",
                json!({
                    "path": inner.journal.path().display().to_string(),
                    "error": e.to_string(),
                    "effect": "a revocation that state.json cannot take is not durable; new grants are refused",
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, created_at: i64, state: &str) -> jit_proto::Grant {
        serde_json::from_value(json!({
            "id": id, "user": "alice", "state": state, "not_before": 100, "not_after": 10_000,
            "created_at": created_at, "created_by": "root", "account": true, "uid": 70_000,
            "groups": [], "ssh_keys": [], "reason": "", "ticket": "", "requested_by": "",
            "sudo": [], "runas": [], "enable": false, "from": [], "services": [], "windows": [],
            "mfa": false, "mfa_sudo": false, "end_with_session": false, "revoke_on": [],
            "activated_at": null, "went_live_at": 100, "ended_at": null, "end_reason": null,
            "torn_down": false,
        }))
        .unwrap()
    }

    #[test]
    fn journal_entries_end_only_their_own_live_grants() {
        let mut st = State::default();
        for (id, created, state) in [
            ("g-000000000001", 100, "live"),
            ("g-000000000002", 100, "live"),
            ("g-000000000003", 100, "live"),
            ("g-000000000004", 100, "revoked"),
        ] {
            st.grants.insert(id.into(), grant(id, created, state));
        }
        let end = |id: &str, kind, created_at| End {
            grant: id.into(),
            kind,
            ended_at: 500,
            created_at,
        };
        let applied = apply_journal(
            &mut st,
            &[
                end("g-000000000001", EndKind::Revoked, 100),
                // A boot-time-cap expiry (not implied by not_after) survives the restart too.
                end("g-000000000002", EndKind::Expired, 100),
                // Same id, another grant: ignored.
                end("g-000000000003", EndKind::Revoked, 99),
                // Already ended: unchanged.
                end("g-000000000004", EndKind::Expired, 100),
                // Gone (pruned): ignored.
                end("g-000000000005", EndKind::Revoked, 100),
            ],
        );
        assert_eq!(applied, ["g-000000000001", "g-000000000002"]);
        let g = |id: &str| st.grants.get(id).unwrap().clone();
        assert_eq!(g("g-000000000001").state, GrantState::Revoked);
        assert_eq!(g("g-000000000001").ended_at, Some(500));
        assert!(!g("g-000000000001").torn_down);
        assert_eq!(g("g-000000000002").state, GrantState::Expired);
        assert_eq!(g("g-000000000003").state, GrantState::Live);
        assert_eq!(g("g-000000000004").state, GrantState::Revoked);
    }
}
