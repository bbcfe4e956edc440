//! Break-glass codes for managed admin accounts: made by root, spent at a login by pam_jit
//! (which opens a short `--enable` grant, audited at `crit`).

use jit_core::time::UnixTime;
use jit_core::validate::{validate_name, validate_text};
use jit_proto::message::{MfaCaller, Payload};
use jit_proto::ErrorCode;
use serde_json::json;

use super::authz::root_only;
use super::mfa::lockout_source;
use super::{bad_request, Peer};
use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::engine::{refuse, Refusal};
use crate::mfa::breakglass::{BreakglassError, MAX_CODES};

/// One UseBreakglass request.
pub(crate) struct BreakglassUse<'a> {
    pub account: &'a str,
    pub code: &'a str,
    pub service: &'a str,
    pub rhost: &'a str,
    pub caller_uid: Option<u32>,
}

impl Daemon {
    pub(crate) fn managed_local(&self, account: &str) -> Result<(), Refusal> {
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
    pub(crate) fn init_breakglass(
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
            Event::BreakglassInit,
            json!({ "account": account, "count": count, "replaced": replace }),
        );
        Ok(Payload::BreakglassCodes {
            account: account.to_string(),
            codes,
        })
    }

    /// Spends a break-glass code: the code is marked used durably, then a short `--enable`
    /// grant opens for the account, audited at `crit`.
    pub(crate) fn use_breakglass(
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
                    Event::BreakglassFail,
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
        let reason = format!(
            "break-glass code {n:02} via {service}{}",
            if rhost.is_empty() {
                String::new()
            } else {
                format!(" from {rhost}")
            }
        );
        let grant = self.open_emergency(account, reason, now)?;
        let (id, not_after) = (&grant.id, grant.not_after);
        self.audit.record(
            now,
            Severity::Crit,
            Event::BreakglassUsed,
            json!({
                "grant": id.as_str(), "account": account, "code": n, "service": service, "rhost": rhost,
                "not_after": not_after, "remaining_codes": self.breakglass.remaining(account),
            }),
        );
        Ok(Payload::Grant(Box::new(grant)))
    }
}
