//! Grant requests from the socket: status, list, show, revoke, add. Only root may change
//! grants; a user sees only its own.

use jit_core::time::UnixTime;
use jit_core::validate::{validate_grant_id, validate_text};
use jit_proto::message::{Cursor, ListPage, Status};
use jit_proto::{ErrorCode, Grant, GrantSpec, GrantState};
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::engine::tick::as_of;
use crate::engine::{refuse, GrantSource, Refusal};

impl Daemon {
    pub(crate) fn status(&self, now: UnixTime) -> Status {
        // Read before the state lock, so the link's lock and the state lock are never held
        // together here (the sync thread releases the link's lock before it admits grants).
        let server = self.sync_link.status_line(now);
        let mut inner = self.lock();
        let (snapshot_room, load) = self.room_status(&mut inner);
        let count =
            |f: &dyn Fn(&Grant) -> bool| inner.state.grants.values().filter(|g| f(g)).count();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: now - self.started_at,
            live: count(&|g| g.state_at(now) == GrantState::Live),
            pending: count(&|g| g.state_at(now) == GrantState::Pending),
            armed: count(&|g| g.state_at(now) == GrantState::Armed),
            teardown_pending: count(&|g| g.state.is_ended() && !g.torn_down),
            ended: count(&|g| g.state.is_ended()),
            snapshot_path: self.cfg.snapshot_path.display().to_string(),
            snapshot_written_at: self.snapshot_written_at(),
            server,
            state_writable: inner.state_writable,
            cgroups: self.watch_status(),
            monitoring: self.watch_monitoring_status(), // effects/watch.rs
            tokenization: crate::tokenize::holdable::describe_self(&self.cfg),
            nss_counter: self.counter_status(),
            snapshot_room,
            snapshot_public_bytes: load.public,
            snapshot_gates_bytes: load.gates,
            snapshot_public_limit_bytes: crate::engine::capacity::PUBLIC_LIMIT_BYTES,
            snapshot_gates_limit_bytes: crate::engine::capacity::GATES_LIMIT_BYTES,
        }
    }

    /// The grants `peer_uid` may see (live and armed ones, or `all`), in (`not_before`, id)
    /// order: every one, or with `page` one page of them (`api::pages`) and where the next
    /// starts. Only the grants returned are copied, so a page costs a walk and a sort of
    /// references under the state lock, not a copy of every grant.
    pub(crate) fn list(
        &self,
        peer_uid: u32,
        all: bool,
        page: Option<&ListPage>,
        now: UnixTime,
    ) -> (Vec<Grant>, Option<Cursor>) {
        let inner = self.lock();
        let may_see = self.may_see(peer_uid, &inner);
        let mut v: Vec<&Grant> = inner
            .state
            .grants
            .values()
            .map(Box::as_ref)
            .filter(|g| may_see(g))
            .filter(|g| all || matches!(g.state_at(now), GrantState::Live | GrantState::Armed))
            .collect();
        v.sort_unstable_by(|a, b| grant_key(a).cmp(&grant_key(b)));
        match page {
            None => (v.into_iter().map(|g| as_of(g, now)).collect(), None),
            Some(page) => super::pages::page_of(&v, grant_key, page, |g| as_of(g, now)),
        }
    }

    pub(crate) fn show(&self, peer_uid: u32, id: &str, now: UnixTime) -> Result<Grant, Refusal> {
        validate_grant_id(id).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        let inner = self.lock();
        match inner.state.grants.get(id) {
            Some(g) if self.may_see(peer_uid, &inner)(g) => Ok(as_of(g, now)),
            _ => Err(refuse(ErrorCode::NotFound, format!("no grant {id}"))),
        }
    }

    pub(crate) fn revoke(
        &self,
        peer_uid: u32,
        id: &str,
        reason: Option<String>,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        // Audited by the server as `request.denied` (rate-limited per uid, names cut).
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may revoke grants",
            ));
        }
        validate_grant_id(id).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        let reason = reason.unwrap_or_default();
        validate_text("reason", &reason, 256)
            .map_err(|e| refuse(ErrorCode::Refused, e.to_string()))?;
        self.revoke_as(id, &reason, "root", now)
    }

    pub(crate) fn add_grant(
        &self,
        peer_uid: u32,
        spec: GrantSpec,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        // Audited by the server as `request.denied` (rate-limited per uid, names cut).
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may add grants",
            ));
        }
        let result = self.admit(GrantSource::Local, &spec, now);
        if let Err((code, msg)) = &result {
            self.audit.record(
                now,
                Severity::Warning,
                Event::GrantRejected,
                json!({ "user": spec.user, "code": code, "reason": msg }),
            );
        }
        result
    }
}

/// The order of `list_grants`.
fn grant_key(g: &Grant) -> (i64, &str) {
    (g.not_before, &g.id)
}
