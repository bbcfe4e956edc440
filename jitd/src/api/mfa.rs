//! Second-factor requests: enrolling and removing TOTP secrets (root), checking a code typed
//! at a login or a sudo (the modules), and `jitctl activate` (a user proves a code for its
//! own armed grants).

use jit_core::time::{format_utc, UnixTime};
use jit_core::validate::{validate_grant_id, validate_name, validate_text};
use jit_proto::message::{MfaCaller, MfaPurpose, Payload};
use jit_proto::{ErrorCode, GrantState};
use serde_json::json;

use super::authz::root_only;
use super::{bad_request, Peer};
use crate::audit::{Event, Severity};
use crate::daemon::{hostname, Daemon};
use crate::engine::{refuse, Refusal};
use crate::mfa::totp::TotpError;

/// One VerifyMfa request.
pub(crate) struct MfaCheck<'a> {
    pub user: &'a str,
    pub code: &'a str,
    pub purpose: MfaPurpose,
    pub service: &'a str,
    pub grant: Option<&'a str>,
    pub caller: Option<&'a MfaCaller>,
}
/// The TOTP failure counter an attempt uses. A non-root caller is a local user running a
/// set-uid program (su, pkexec's helper): its uid, whatever PAM_RHOST says, since such a
/// program might let its caller choose that item. A root caller is a daemon (sshd, login): the
/// remote address when there is one, else uid 0. None — the person's own counter — for a
/// request without a caller (a module older than the field; sudo_jit, whose caller is the
/// person).
pub(crate) fn lockout_source(caller: Option<&MfaCaller>) -> Option<String> {
    let c = caller?;
    match c.uid {
        Some(u) if u != 0 => Some(format!("uid:{u}")),
        _ if !c.rhost.is_empty() => Some(format!("rhost:{}", c.rhost)),
        Some(u) => Some(format!("uid:{u}")),
        None => None,
    }
}
/// A person-facing line for a TOTP failure (never the code or the secret).
pub(crate) fn totp_message(user: &str, e: &TotpError) -> String {
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
    pub(crate) fn enroll_mfa(
        &self,
        peer_uid: u32,
        user: &str,
        replace: bool,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may enroll TOTP secrets",
            ));
        }
        if user == "root" {
            return Err(refuse(ErrorCode::Refused, "root is never managed by jit"));
        }
        let e = self.totp.enroll(user, &hostname(), now, replace).map_err(|e| match e {
            TotpError::AlreadyEnrolled => refuse(
                ErrorCode::Refused,
                format!("{user} already has a TOTP secret (jitctl mfa enroll --replace {user} makes a new one)"),
            ),
            TotpError::InvalidUser(m) => refuse(ErrorCode::Refused, m),
            other => refuse(ErrorCode::Internal, other.to_string()),
        })?;
        // Never the secret.
        self.audit.record(
            now,
            Severity::Notice,
            Event::MfaEnrolled,
            json!({ "user": user, "by": "root", "replaced": replace }),
        );
        Ok(Payload::Enrollment {
            user: e.user.clone(),
            secret: e.secret_base32.clone(),
            uri: e.uri.clone(),
        })
    }

    pub(crate) fn remove_mfa(
        &self,
        peer_uid: u32,
        user: &str,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may remove TOTP secrets",
            ));
        }
        match self.totp.remove(user) {
            Ok(true) => {
                self.audit.record(
                    now,
                    Severity::Notice,
                    Event::MfaRemoved,
                    json!({ "user": user, "by": "root" }),
                );
                Ok(Payload::Done {
                    message: format!("removed the TOTP secret of {user}"),
                })
            }
            Ok(false) => Err(refuse(
                ErrorCode::NotFound,
                format!("{user} has no TOTP secret"),
            )),
            Err(TotpError::InvalidUser(m)) => Err(refuse(ErrorCode::Refused, m)),
            Err(e) => Err(refuse(ErrorCode::Internal, e.to_string())),
        }
    }

    /// A user proves a code; its armed grants (or the one named) become live. The accepted step
    /// is durable inside `verify` before anything is activated (persist before act).
    pub(crate) fn activate(
        &self,
        peer_uid: u32,
        only: Option<&str>,
        code: &str,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        let (user, armed) = {
            let inner = self.lock();
            let Some(user) = self.peer_name(peer_uid, &inner) else {
                return Err(refuse(
                    ErrorCode::Refused,
                    format!("uid {peer_uid} is neither a local user nor a jit account"),
                ));
            };
            let armed: Vec<String> = inner
                .state
                .grants
                .values()
                .filter(|g| g.user == user && g.state_at(now) == GrantState::Armed)
                .filter(|g| only.is_none_or(|id| id == g.id))
                .map(|g| g.id.to_string())
                .collect();
            (user, armed)
        };
        if armed.is_empty() {
            return Err(refuse(
                ErrorCode::Refused,
                match only {
                    Some(id) => format!("{user} has no armed grant {id}"),
                    None => format!("{user} has no grant waiting for activation"),
                },
            ));
        }
        let fleet = {
            let inner = self.lock();
            armed.iter().any(|id| {
                inner
                    .state
                    .grants
                    .get(id.as_str())
                    .is_some_and(|g| matches!(g.source, jit_proto::GrantSource::Server(_)))
            })
        };
        if let Err(e) = self.check_code(&user, code, None, now, fleet) {
            let failures = match &e {
                TotpError::WrongCode { failures } => Some(*failures),
                _ => None,
            };
            self.audit.record(now, Severity::Warning, Event::MfaFail, json!({
                "user": user, "purpose": "activate", "grants": armed, "error": e.to_string(), "failures": failures,
            }));
            return Err(refuse(ErrorCode::Refused, totp_message(&user, &e)));
        }
        self.mark_activated(&user, &armed, "jitctl activate", now)?;
        Ok(Payload::Activated { grants: armed })
    }

    /// One code check. For a server grant whose person's fleet secret is held (delivered sealed
    /// by the server), the fleet secret with the `fleet-totp` replay and lockout record; an
    /// accepted step is queued for the server, which relays it to the person's other hosts.
    /// Otherwise the local TOTP store.
    fn check_code(
        &self,
        user: &str,
        code: &str,
        source: Option<&str>,
        now: UnixTime,
        fleet: bool,
    ) -> Result<u64, TotpError> {
        if fleet {
            let checked = self.fleet.with(user, |secret| {
                self.fleet_totp
                    .verify_with_secret(user, code, source, now, secret)
            });
            if let Some(r) = checked {
                if let Ok(step) = r {
                    self.sync_link.report_used(user, step);
                }
                return r;
            }
        }
        self.totp.verify_from(user, code, source, now)
    }

    /// Checks a TOTP code typed at a login (pam_jit) or a sudo (sudo_jit). Replay and lockout
    /// are the TOTP store's, shared by every purpose and service; the failure counter
    /// is the one of the caller's source ([`lockout_source`]).
    pub(crate) fn verify_mfa(
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
        let (candidates, armed, fleet) = {
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
                .map(|g| g.id.to_string())
                .collect();
            let armed: Vec<String> = inner
                .state
                .grants
                .values()
                .filter(|g| g.user == user && g.state_at(now) == GrantState::Armed)
                .map(|g| g.id.to_string())
                .collect();
            let fleet = candidates.iter().any(|id| {
                inner
                    .state
                    .grants
                    .get(id.as_str())
                    .is_some_and(|g| matches!(g.source, jit_proto::GrantSource::Server(_)))
            });
            (candidates, armed, fleet)
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
        if let Err(e) = self.check_code(user, code, source.as_deref(), now, fleet) {
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
                .record(now, Severity::Warning, Event::MfaFail, fields);
            let code = match e {
                TotpError::Io(_) | TotpError::InsecureStorage(_) => ErrorCode::Internal,
                _ => ErrorCode::Refused,
            };
            return Err(refuse(code, totp_message(user, &e)));
        }
        let mut fields = json!({ "user": user, "purpose": purpose.as_str(), "service": service, "grants": candidates });
        merge(&mut fields, &who);
        self.audit.record(now, Severity::Info, Event::MfaOk, fields);
        // A login that proved a code activates the person's armed grants.
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
