//! Login sessions pam_jit registers under a live grant (so teardown can end them and an
//! `--end-with-session` grant ends with its session). The session's process is the peer from
//! SO_PEERCRED, never a pid from the payload.

use jit_core::time::UnixTime;
use jit_core::validate::{validate_grant_id, validate_name, validate_text};
use jit_proto::message::{ListPage, Payload, Session, SessionSpec};
use jit_proto::ErrorCode;
use serde_json::json;

use super::authz::root_only;
use super::{bad_request, Peer};
use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::effects::random_hex;
use crate::engine::{refuse, Refusal};
use crate::procs::start_time;

impl Daemon {
    /// Registers the login session of the peer process under a live grant.
    pub(crate) fn open_session(
        &self,
        peer: Peer,
        spec: &SessionSpec,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        root_only(peer, "open sessions")?;
        validate_name("user name", &spec.user).map_err(bad_request)?;
        validate_grant_id(&spec.grant).map_err(bad_request)?;
        validate_text("service", &spec.service, 64).map_err(bad_request)?;
        validate_text("tty", &spec.tty, 64).map_err(bad_request)?;
        validate_text("rhost", &spec.rhost, 256).map_err(bad_request)?;
        if peer.pid <= 0 {
            return Err(refuse(ErrorCode::Refused, "the peer's pid is unknown"));
        }
        // The start time pins the process: a recycled pid is never taken for this session.
        let pid_start = start_time(peer.pid)
            .ok_or_else(|| refuse(ErrorCode::Refused, format!("process {} is gone", peer.pid)))?;
        let id = format!(
            "s-{}",
            random_hex(6).map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?
        );
        let session = Session {
            id: id.clone(),
            user: spec.user.clone(),
            grant: spec.grant.clone(),
            pid: peer.pid,
            pid_start,
            service: spec.service.clone(),
            tty: spec.tty.clone(),
            rhost: spec.rhost.clone(),
            opened_at: now,
        };
        self.register_session(&session, now)?;
        self.audit.record(
            now,
            Severity::Info,
            Event::SessionOpen,
            json!({
                "session": id, "grant": spec.grant, "user": spec.user, "pid": peer.pid,
                "service": spec.service, "tty": spec.tty, "rhost": spec.rhost,
            }),
        );
        Ok(Payload::Session(Box::new(session)))
    }

    /// A session closed: forget it; an `--end-with-session` grant ends with it.
    pub(crate) fn close_session(
        &self,
        peer: Peer,
        user: &str,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        root_only(peer, "close sessions")?;
        validate_name("user name", user).map_err(bad_request)?;
        let found = {
            let inner = self.lock();
            inner
                .state
                .sessions
                .values()
                .find(|s| {
                    s.user == user
                        && match session {
                            Some(id) => s.id == id,
                            // pam_jit lost its handle data: the peer process is the session.
                            None => s.pid == peer.pid,
                        }
                })
                .cloned()
        };
        let Some(s) = found else {
            return Err(refuse(
                ErrorCode::NotFound,
                format!("no open session of {user} here"),
            ));
        };
        self.end_session(&s, "closed", now);
        Ok(Payload::Done {
            message: format!("session {} closed", s.id),
        })
    }

    /// Open sessions (a user sees only its own).
    /// The sessions `peer` may see, in (`opened_at`, id) order: every one, or with `page`
    /// one page of them (`api::pages`) and where the next starts.
    pub(crate) fn list_sessions(
        &self,
        peer: Peer,
        page: Option<&ListPage>,
        now: UnixTime,
    ) -> Payload {
        let inner = self.lock();
        let may_see = self.may_see_user(peer.uid, &inner);
        // A session of a grant that ended is over once its process is gone (ended with the
        // grant's first teardown stage); it stays in state only until the teardown's record,
        // which names it, is written after the set-id sweep. One whose process survived the
        // teardown's signals is still listed.
        let live = |s: &Session| {
            inner
                .state
                .grants
                .get(s.grant.as_str())
                .is_some_and(|g| !g.state_at(now).is_ended())
                || crate::procs::start_time(s.pid) == Some(s.pid_start)
        };
        let mut v: Vec<&Session> = inner
            .state
            .sessions
            .values()
            .filter(|s| may_see(&s.user) && live(s))
            .collect();
        v.sort_unstable_by(|a, b| session_key(a).cmp(&session_key(b)));
        let (sessions, next) = match page {
            None => (v.into_iter().cloned().collect(), None),
            Some(page) => super::pages::page_of(&v, session_key, page, Session::clone),
        };
        Payload::Sessions { sessions, next }
    }
}

/// The order of `list_sessions`.
fn session_key(s: &Session) -> (i64, &str) {
    (s.opened_at, s.id.as_str())
}
