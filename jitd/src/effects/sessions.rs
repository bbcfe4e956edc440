//! Sessions that end: closed by pam_jit, or lost (their process exited without closing). An
//! `--end-with-session` grant is revoked with its session.

use jit_core::time::UnixTime;
use jit_proto::message::Session;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
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
                .get(&s.grant)
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
            inner
                .state
                .sessions
                .values()
                .filter(|s| start_time(s.pid) != Some(s.pid_start))
                .cloned()
                .collect()
        };
        for s in gone {
            self.end_session(&s, "lost (its process exited without closing it)", now);
        }
    }
}
