//! Reports from sudo_jit: every decision it made for a jit user is audited here, and a
//! command in one of a grant's `revoke_on` classes ends the grant.

use jit_core::time::UnixTime;
use jit_core::validate::{validate_grant_id, validate_name};
use jit_proto::message::{Payload, SudoReport};
use jit_proto::{ErrorCode, GrantState};
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::Daemon;
use crate::engine::{refuse, Refusal};

impl Daemon {
    /// Audits a sudo decision and ends the grant when the command falls in one of its
    /// `revoke_on` classes (the plugin has already refused that command).
    pub(crate) fn report_sudo(
        &self,
        peer_uid: u32,
        r: &SudoReport,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root (the sudo plugin) may report sudo decisions",
            ));
        }
        validate_name("user name", &r.user)
            .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        if let Some(id) = &r.grant {
            validate_grant_id(id).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        }
        // The audit line carries the command as sudo resolved it, capped: argv can be huge.
        let argv: Vec<String> = r
            .argv
            .iter()
            .take(64)
            .map(|a| a.chars().take(256).collect())
            .collect();
        // The operator's ioc_commands are jitd's config, not the plugin's (modules read no
        // config file): an approved command is classified again here, and a hit makes this
        // reply an error, which sudo_jit turns into a refusal.
        let mut class_bits = r.classes;
        if r.allowed && !self.cfg.ioc_commands.is_empty() {
            use jit_core::policy::{classify, sudo::SudoRequest};
            let args: Vec<&str> = r.argv.iter().map(String::as_str).collect();
            let extra: Vec<&str> = self.cfg.ioc_commands.iter().map(String::as_str).collect();
            let mut req = SudoRequest::new(&r.user, r.uid, &r.command, &args);
            req.runas_user = &r.runas;
            class_bits |= classify::classify(&req, &extra) & classify::CLASS_IOC;
        }
        // What jitd knows of the grant now: its state may be newer than the plugin's snapshot.
        let (live, revoke_bits) = match &r.grant {
            None => (false, 0),
            Some(id) => {
                let inner = self.lock();
                match inner.state.grants.get(id.as_str()) {
                    Some(g) if g.user == r.user => (
                        g.state_at(now) == GrantState::Live,
                        g.revoke_on
                            .iter()
                            .filter_map(|c| jit_core::policy::classify::parse_class(c))
                            .fold(0, |a, b| a | b),
                    ),
                    _ => (false, 0),
                }
            }
        };
        let hit = if r.grant.is_some() && (live || !r.allowed) {
            revoke_bits & class_bits
        } else {
            0
        };
        // An approval jitd cannot confirm becomes a refusal (sudo_jit waits for this answer).
        let refusal = match (&r.grant, r.allowed) {
            (_, false) => None,
            (Some(id), true) if !live => Some(format!("grant {id} is not live in jitd")),
            (Some(id), true) if hit != 0 => Some(format!(
                "{} is in revoke-on {} of grant {id}: refused, grant revoked",
                jit_core::policy::sudo::shown(&r.command, 256),
                jit_core::policy::classify::class_names(hit).join(",")
            )),
            _ => None,
        };
        let allowed = r.allowed && refusal.is_none();
        self.audit.record(
            now,
            if allowed { Severity::Info } else { Severity::Warning },
            if allowed { Event::SudoAllowed } else { Event::SudoDenied },
            json!({
                "grant": r.grant, "user": r.user, "uid": r.uid, "command": r.command.chars().take(4096).collect::<String>(),
                "argv": argv, "argc": r.argv.len(), "runas": r.runas, "runas_group": r.runas_group,
                "reason": refusal.as_deref().unwrap_or(&r.reason),
                "classes": jit_core::policy::classify::class_names(class_bits),
            }),
        );
        if let (Some(id), true) = (&r.grant, hit != 0) {
            // The command line is the user's: escaped and capped, it is stored as the end
            // reason and printed by `jitctl grant show` (no terminal escapes, no newlines).
            let why = format!(
                "revoke-on {}: {}",
                jit_core::policy::classify::class_names(hit).join(","),
                jit_core::policy::sudo::shown(
                    &std::iter::once(r.command.as_str())
                        .chain(argv.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(" "),
                    1024
                )
            );
            self.audit.record(
                now,
                Severity::Warning,
                Event::GrantPolicyHit,
                json!({ "grant": id, "user": r.user, "reason": why }),
            );
            self.revoke_as(id, &why, "policy", now)?;
            if refusal.is_none() {
                return Ok(Payload::Done {
                    message: format!("grant {id} revoked: {why}"),
                });
            }
        }
        match refusal {
            Some(m) => Err(refuse(ErrorCode::Refused, m)),
            None => Ok(Payload::Done {
                message: "recorded".into(),
            }),
        }
    }
}
