//! Sessions registered under a live grant, and sessions that end: closed by pam_jit, or lost (their process exited without closing). An
//! `--end-with-session` grant is revoked with its session.

use jit_core::time::UnixTime;
use jit_proto::message::Session;
use jit_proto::{ErrorCode, GrantState};
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::engine::{refuse, Refusal};
use crate::procs::start_time;

impl Daemon {
    /// Forgets session `s` (closed, or its process is gone) and ends its grant if the grant
    /// ends with its session.
    pub(crate) fn end_session(&self, s: &Session, how: &str, now: UnixTime) {
        let ends_grant = {
            let mut inner = self.lock();
            if inner.state.sessions.remove(&s.id).is_none() {
                return;
            }
            // Written at the next tick, not before answering: a logout should not wait for an
            // fsync, and a session forgotten by a crash is one whose process is gone, which
            // the reaper closes again after the restart. (An --end-with-session grant is
            // revoked below, durably.)
            inner.dirty = true;
            inner
                .state
                .grants
                .get(s.grant.as_str())
                .is_some_and(|g| g.end_with_session && !g.state_at(now).is_ended())
        };
        self.audit.record(
            now,
            Severity::Info,
            Event::SessionClose,
            json!({
                "session": s.id, "grant": s.grant, "user": s.user, "how": how,
                "secs": now - s.opened_at,
            }),
        );
        if ends_grant {
            let _ = self.revoke_as(
                &s.grant,
                &format!("its session {} {how} (--end-with-session)", s.id),
                "session",
                now,
            );
        }
    }

    /// Sessions whose process is gone without a close (a crash, kill -9) are closed now.
    pub(crate) fn reap_sessions(&self, now: UnixTime) {
        let gone: Vec<Session> = {
            let inner = self.lock();
            // A session of a grant that ended and awaits its teardown is the teardown's: its
            // process was ended by it, and its record (after the set-id sweep) names it.
            let awaiting_teardown = |grant: &str| {
                inner
                    .state
                    .grants
                    .get(grant)
                    .is_some_and(|g| g.state_at(now).is_ended() && !g.torn_down)
            };
            inner
                .state
                .sessions
                .values()
                .filter(|s| !awaiting_teardown(s.grant.as_str()))
                .filter(|s| start_time(s.pid) != Some(s.pid_start))
                .cloned()
                .collect()
        };
        for s in gone {
            self.end_session(&s, "lost (its process exited without closing it)", now);
        }
    }

    /// Records `session` (its process checked by the caller) under its grant, which must be
    /// `session.user`'s and live.
    pub(crate) fn register_session(&self, session: &Session, now: UnixTime) -> Result<(), Refusal> {
        let mut inner = self.lock();
        match inner.state.grants.get(session.grant.as_str()) {
            Some(g) if g.user == session.user && g.state_at(now) == GrantState::Live => {}
            Some(g) if g.user == session.user => {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!(
                        "grant {} is {}: no session under it",
                        g.id,
                        g.state_at(now).as_str()
                    ),
                ))
            }
            _ => {
                return Err(refuse(
                    ErrorCode::NotFound,
                    format!("{} has no grant {}", session.user, session.grant),
                ))
            }
        }
        inner
            .state
            .sessions
            .insert(session.id.clone().into(), session.clone());
        // Durable, so a restarted jitd still ends this session at teardown. On a full
        // state filesystem the login under a grant that exists still opens: the record
        // stays in memory until a tick can write it (a restart before that still ends the
        // account's processes by uid at teardown).
        if self.persist(&mut inner, now).is_err() {
            inner.dirty = true;
        }
        Ok(())
    }
}
