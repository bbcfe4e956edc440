//! What pam_jit and sudo_jit ask of jitd beyond the snapshot: TOTP verification at login and
//! sudo, login sessions (registered, listed, ended by teardown, ending `--end-with-session`
//! grants), and break-glass codes that open an emergency grant for a managed admin.
//!
//! Only root peers may ask (the modules run inside sshd, su, login and sudo as root); the
//! process a session belongs to is the peer from SO_PEERCRED, never a pid from the payload.

use jit_core::time::{format_utc, UnixTime};
use jit_core::validate::{validate_grant_id, validate_name, validate_text};
use jit_proto::message::{MfaCaller, MfaPurpose, Payload, Session, SessionSpec};
use jit_proto::{ErrorCode, Grant, GrantState};
use serde_json::json;

use super::{boottime, random_hex, refuse, Daemon, Refusal};
use crate::audit::Severity;
use crate::breakglass::{BreakglassError, MAX_CODES};
use crate::nscd;
use crate::procs::start_time;
use crate::totp::TotpError;

/// One VerifyMfa request.
pub(super) struct MfaCheck<'a> {
    pub user: &'a str,
    pub code: &'a str,
    pub purpose: MfaPurpose,
    pub service: &'a str,
    pub grant: Option<&'a str>,
    pub caller: Option<&'a MfaCaller>,
}

/// One UseBreakglass request.
pub(super) struct BreakglassUse<'a> {
    pub account: &'a str,
    pub code: &'a str,
    pub service: &'a str,
    pub rhost: &'a str,
    pub caller_uid: Option<u32>,
}

/// The TOTP failure counter an attempt uses. A non-root caller is a local user running a
/// set-uid program (su, pkexec's helper): its uid, whatever PAM_RHOST says, since such a
/// program might let its caller choose that item. A root caller is a daemon (sshd, login): the
/// remote address when there is one, else uid 0. None — the person's own counter — for a
/// request without a caller (a module older than the field; sudo_jit, whose caller is the
/// person).
pub(super) fn lockout_source(caller: Option<&MfaCaller>) -> Option<String> {
    let c = caller?;
    match c.uid {
        Some(u) if u != 0 => Some(format!("uid:{u}")),
        _ if !c.rhost.is_empty() => Some(format!("rhost:{}", c.rhost)),
        Some(u) => Some(format!("uid:{u}")),
        None => None,
    }
}

/// The peer of a request, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Process id (0 when unknown, e.g. in-process tests).
    pub pid: i32,
}

fn root_only(peer: Peer, what: &str) -> Result<(), Refusal> {
    if peer.uid == 0 {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::PermissionDenied,
            format!("only root (pam_jit, sudo_jit, jitctl as root) may {what}"),
        ))
    }
}

fn bad_request(e: impl std::fmt::Display) -> Refusal {
    refuse(ErrorCode::BadRequest, e.to_string())
}

/// A person-facing line for a TOTP failure (never the code or the secret).
pub(super) fn totp_message(user: &str, e: &TotpError) -> String {
    match e {
        TotpError::LockedOut { until } => {
            format!("too many failed codes: locked until {}", format_utc(*until))
        }
        TotpError::Replayed => "that code was already used: wait for the next one".to_string(),
        TotpError::NotEnrolled => format!("{user} has no TOTP secret"),
        TotpError::WrongCode { .. } => "wrong verification code".to_string(),
        other => other.to_string(),
    }
}

/// Adds `extra`'s keys to `fields` (both JSON objects).
fn merge(fields: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
}

impl Daemon {
    /// Marks `ids` (armed grants of `user`) activated, durably, then rewrites the snapshot.
    pub(super) fn mark_activated(
        &self,
        user: &str,
        ids: &[String],
        how: &str,
        now: UnixTime,
    ) -> Result<(), Refusal> {
        if ids.is_empty() {
            return Ok(());
        }
        let durable = {
            let mut inner = self.lock();
            for id in ids {
                if let Some(g) = inner.state.grants.get_mut(id) {
                    g.activated_at = Some(now);
                }
            }
            // A code proved for a grant that exists keeps working on a full state filesystem:
            // the activation then lives in memory (written at the first tick that can), and a
            // restart before that only re-arms the grant, which asks for a new code.
            let durable = self.persist(&mut inner, now).is_ok();
            self.write_snapshot(&mut inner, now);
            durable
        };
        for id in ids {
            self.audit.record(
                now,
                Severity::Info,
                "grant.activated",
                json!({ "grant": id, "user": user, "mfa": "totp", "by": how, "durable": durable }),
            );
        }
        nscd::invalidate(self.cfg.nscd);
        Ok(())
    }

    /// Checks a TOTP code typed at a login (pam_jit) or a sudo (sudo_jit). Replay and lockout
    /// are the TOTP store's, shared by every purpose and service (X4, X5); the failure counter
    /// is the one of the caller's source ([`lockout_source`]).
    pub(super) fn verify_mfa(
        &self,
        peer: Peer,
        ask: MfaCheck<'_>,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        let MfaCheck {
            user,
            code,
            purpose,
            service,
            grant,
            caller,
        } = ask;
        root_only(peer, "verify TOTP codes")?;
        validate_name("user name", user).map_err(bad_request)?;
        validate_text("service", service, 64).map_err(bad_request)?;
        if let Some(c) = caller {
            validate_text("rhost", &c.rhost, 255).map_err(bad_request)?;
            validate_text("ruser", &c.ruser, 64).map_err(bad_request)?;
        }
        let source = lockout_source(caller);
        let who = json!({
            "caller_uid": caller.and_then(|c| c.uid),
            "ruser": caller.map(|c| c.ruser.as_str()).filter(|r| !r.is_empty()),
            "rhost": caller.map(|c| c.rhost.as_str()).filter(|r| !r.is_empty()),
            "source": source.as_deref().unwrap_or("person"),
        });
        if let Some(id) = grant {
            validate_grant_id(id).map_err(bad_request)?;
        }
        // The code must be for a grant that asks for one now: a module cannot use jitd as a
        // TOTP oracle for users jit does not gate.
        let (candidates, armed) = {
            let inner = self.lock();
            let mine = inner
                .state
                .grants
                .values()
                .filter(|g| g.user == user && grant.is_none_or(|id| id == g.id));
            let candidates: Vec<String> = mine
                .clone()
                .filter(|g| {
                    let st = g.state_at(now);
                    match purpose {
                        MfaPurpose::Login => {
                            g.mfa
                                && (g.account || g.enable)
                                && matches!(st, GrantState::Live | GrantState::Armed)
                        }
                        MfaPurpose::Sudo => g.mfa_sudo && st == GrantState::Live,
                    }
                })
                .map(|g| g.id.clone())
                .collect();
            let armed: Vec<String> = inner
                .state
                .grants
                .values()
                .filter(|g| g.user == user && g.state_at(now) == GrantState::Armed)
                .map(|g| g.id.clone())
                .collect();
            (candidates, armed)
        };
        if candidates.is_empty() {
            let what = match purpose {
                MfaPurpose::Login => "a login code",
                MfaPurpose::Sudo => "a sudo code",
            };
            return Err(refuse(
                ErrorCode::Refused,
                match grant {
                    Some(id) => format!("grant {id} of {user} does not ask for {what} now"),
                    None => format!("no grant of {user} asks for {what} now"),
                },
            ));
        }
        if let Err(e) = self.totp.verify_from(user, code, source.as_deref(), now) {
            let failures = match &e {
                TotpError::WrongCode { failures } => Some(*failures),
                _ => None,
            };
            let mut fields = json!({
                "user": user, "purpose": purpose.as_str(), "service": service,
                "grants": candidates, "error": e.to_string(), "failures": failures,
            });
            merge(&mut fields, &who);
            self.audit
                .record(now, Severity::Warning, "mfa.fail", fields);
            let code = match e {
                TotpError::Io(_) | TotpError::InsecureStorage(_) => ErrorCode::Internal,
                _ => ErrorCode::Refused,
            };
            return Err(refuse(code, totp_message(user, &e)));
        }
        let mut fields = json!({ "user": user, "purpose": purpose.as_str(), "service": service, "grants": candidates });
        merge(&mut fields, &who);
        self.audit.record(now, Severity::Info, "mfa.ok", fields);
        // A login that proved a code activates the person's armed grants (DESIGN §1).
        let activated = if purpose == MfaPurpose::Login {
            self.mark_activated(user, &armed, service, now)?;
            armed
        } else {
            Vec::new()
        };
        Ok(Payload::Verified {
            user: user.to_string(),
            activated,
        })
    }

    /// Registers the login session of the peer process under a live grant.
    pub(super) fn open_session(
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
        {
            let mut inner = self.lock();
            match inner.state.grants.get(&spec.grant) {
                Some(g) if g.user == spec.user && g.state_at(now) == GrantState::Live => {}
                Some(g) if g.user == spec.user => {
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
                        format!("{} has no grant {}", spec.user, spec.grant),
                    ))
                }
            }
            inner.state.sessions.insert(id.clone(), session.clone());
            // Durable, so a restarted jitd still ends this session at teardown. On a full
            // state filesystem the login under a grant that exists still opens: the record
            // stays in memory until a tick can write it (a restart before that still ends the
            // account's processes by uid at teardown).
            if self.persist(&mut inner, now).is_err() {
                inner.dirty = true;
            }
        }
        self.audit.record(
            now,
            Severity::Info,
            "session.open",
            json!({
                "session": id, "grant": spec.grant, "user": spec.user, "pid": peer.pid,
                "service": spec.service, "tty": spec.tty, "rhost": spec.rhost,
            }),
        );
        Ok(Payload::Session(Box::new(session)))
    }

    /// A session closed: forget it; an `--end-with-session` grant ends with it.
    pub(super) fn close_session(
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

    /// Forgets session `s` (closed, or its process is gone) and ends its grant if the grant
    /// ends with its session.
    fn end_session(&self, s: &Session, how: &str, now: UnixTime) {
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
            "session.close",
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
    pub(super) fn reap_sessions(&self, now: UnixTime) {
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

    /// Open sessions (a user sees only its own).
    pub(super) fn list_sessions(&self, peer: Peer) -> Payload {
        let inner = self.lock();
        let may_see = self.may_see_user(peer.uid, &inner);
        let sessions = inner
            .state
            .sessions
            .values()
            .filter(|s| may_see(&s.user))
            .cloned()
            .collect();
        Payload::Sessions { sessions }
    }

    fn managed_local(&self, account: &str) -> Result<(), Refusal> {
        validate_name("account", account).map_err(bad_request)?;
        if !self.cfg.managed_accounts.iter().any(|m| m == account) {
            return Err(refuse(
                ErrorCode::Refused,
                format!("{account:?} is not a managed account (managed_accounts in jitd.toml)"),
            ));
        }
        let local = self
            .local_db()
            .map_err(|e| refuse(ErrorCode::Internal, e))?;
        if local.user(account).is_none() {
            return Err(refuse(
                ErrorCode::Refused,
                format!(
                    "managed account {account:?} is not in {}",
                    self.cfg.passwd_file.display()
                ),
            ));
        }
        Ok(())
    }

    /// Makes break-glass codes for a managed account; they are shown once.
    pub(super) fn init_breakglass(
        &self,
        peer: Peer,
        account: &str,
        count: u32,
        replace: bool,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        root_only(peer, "make break-glass codes")?;
        self.managed_local(account)?;
        if !(1..=MAX_CODES).contains(&count) {
            return Err(refuse(
                ErrorCode::Refused,
                format!("--count must be between 1 and {MAX_CODES}"),
            ));
        }
        let codes = self
            .breakglass
            .init(account, count, replace, now)
            .map_err(|e| match e {
                BreakglassError::Io(_) => refuse(ErrorCode::Internal, e.to_string()),
                other => refuse(ErrorCode::Refused, other.to_string()),
            })?;
        self.audit.record(
            now,
            Severity::Notice,
            "breakglass.init",
            json!({ "account": account, "count": count, "replaced": replace }),
        );
        Ok(Payload::BreakglassCodes {
            account: account.to_string(),
            codes,
        })
    }

    /// Spends a break-glass code: the code is marked used durably, then a short `--enable`
    /// grant opens for the account, audited at `crit`.
    pub(super) fn use_breakglass(
        &self,
        peer: Peer,
        ask: BreakglassUse<'_>,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        let BreakglassUse {
            account,
            code,
            service,
            rhost,
            caller_uid,
        } = ask;
        root_only(peer, "use break-glass codes")?;
        validate_text("service", service, 64).map_err(bad_request)?;
        validate_text("rhost", rhost, 256).map_err(bad_request)?;
        self.managed_local(account)?;
        // Failures lock out the source they come from, as for TOTP: another local user typing
        // wrong codes at `su opsadmin` must not lock the admin's emergency codes.
        let source = lockout_source(Some(&MfaCaller {
            uid: caller_uid,
            ruser: String::new(),
            rhost: rhost.to_string(),
        }));
        let n = match self
            .breakglass
            .spend_from(account, code, source.as_deref(), now)
        {
            Ok(n) => n,
            Err(e) => {
                self.audit.record(
                    now,
                    Severity::Crit,
                    "breakglass.fail",
                    json!({
                        "account": account, "service": service, "rhost": rhost,
                        "caller_uid": caller_uid, "source": source.as_deref().unwrap_or("account"),
                        "error": e.to_string(),
                    }),
                );
                return Err(match e {
                    BreakglassError::Io(_) => refuse(ErrorCode::Internal, e.to_string()),
                    other => refuse(ErrorCode::Refused, other.to_string()),
                });
            }
        };
        let id = loop {
            let id = super::random_id().map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            if !self.lock().state.grants.contains_key(&id) {
                break id;
            }
        };
        let not_after = now + self.cfg.breakglass_secs;
        let reason = format!(
            "break-glass code {n:02} via {service}{}",
            if rhost.is_empty() {
                String::new()
            } else {
                format!(" from {rhost}")
            }
        );
        let grant = Grant {
            id: id.clone(),
            user: account.to_string(),
            state: GrantState::Live,
            not_before: now,
            not_after,
            created_at: now,
            created_by: "break-glass".into(),
            account: false,
            uid: None,
            groups: Vec::new(),
            ssh_keys: Vec::new(),
            reason: reason.clone(),
            ticket: String::new(),
            requested_by: account.to_string(),
            sudo: Vec::new(),
            runas: Vec::new(),
            enable: true,
            from: Vec::new(),
            services: Vec::new(),
            windows: Vec::new(),
            mfa: false,
            mfa_sudo: false,
            end_with_session: false,
            revoke_on: Vec::new(),
            activated_at: None,
            went_live_at: Some(now),
            ended_at: None,
            end_reason: None,
            torn_down: false,
            certification: None,
            source: jit_proto::GrantSource::Local,
        };
        {
            let mut inner = self.lock();
            inner.state.grants.insert(id.clone(), grant.clone());
            inner
                .boot_cap
                .insert(id.clone(), (boottime(), not_after - now));
            // The code is already spent durably; if the grant cannot be made durable it is
            // still applied in memory and in the snapshot (the person is locked out otherwise,
            // in an emergency) and the write is retried at each tick.
            let _ = self.persist(&mut inner, now);
            // Best effort: room to record its end if state.json cannot take it then (an
            // emergency grant is not refused for want of it).
            let _ = super::durability::reserve_for_open_grants(&mut inner, 0);
            self.write_snapshot(&mut inner, now);
        }
        self.audit.record(
            now,
            Severity::Crit,
            "breakglass.used",
            json!({
                "grant": id, "account": account, "code": n, "service": service, "rhost": rhost,
                "not_after": not_after, "remaining_codes": self.breakglass.remaining(account),
            }),
        );
        nscd::invalidate(self.cfg.nscd);
        self.wake.notify_all();
        Ok(Payload::Grant(Box::new(grant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: Option<u32>, rhost: &str) -> MfaCaller {
        MfaCaller {
            uid,
            ruser: String::new(),
            rhost: rhost.into(),
        }
    }

    #[test]
    fn lockout_source_rules() {
        assert_eq!(lockout_source(None), None);
        assert_eq!(
            lockout_source(Some(&caller(Some(0), "192.0.2.7"))).as_deref(),
            Some("rhost:192.0.2.7"),
            "sshd"
        );
        assert_eq!(
            lockout_source(Some(&caller(Some(1001), "192.0.2.7"))).as_deref(),
            Some("uid:1001"),
            "a local user cannot borrow a remote address"
        );
        assert_eq!(
            lockout_source(Some(&caller(Some(1001), ""))).as_deref(),
            Some("uid:1001"),
            "su"
        );
        assert_eq!(
            lockout_source(Some(&caller(Some(0), ""))).as_deref(),
            Some("uid:0"),
            "login on a console"
        );
        assert_eq!(
            lockout_source(Some(&caller(None, "192.0.2.7"))).as_deref(),
            Some("rhost:192.0.2.7")
        );
        assert_eq!(lockout_source(Some(&caller(None, ""))), None);
    }
}
