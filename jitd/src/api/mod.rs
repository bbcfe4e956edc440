//! The socket's requests, answered: dispatch ([`Daemon::handle_peer`]) and authorization
//! (`authz`), then one file per kind of request. Handlers check who asks and what they send,
//! then call the executor (`crate::effects`), which asks the engine (`crate::engine`) and acts.
//! Nothing here writes state or touches processes directly.

pub mod authz;
pub mod breakglass;
pub mod grants;
pub mod mfa;
pub mod pages;
pub mod sessions;
pub mod sudo;

use jit_core::time::UnixTime;
use jit_proto::message::Payload;
use jit_proto::{ErrorCode, Request, Response};

use crate::daemon::Daemon;
use crate::engine::{refuse, Refusal};

/// The peer of a request, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Process id (0 when unknown, e.g. in-process tests).
    pub pid: i32,
}

/// A malformed field in a request.
pub(crate) fn bad_request(e: impl std::fmt::Display) -> Refusal {
    refuse(ErrorCode::BadRequest, e.to_string())
}

impl Daemon {
    /// Answers one request from a peer with uid `peer_uid` whose pid is unknown.
    pub fn handle(&self, peer_uid: u32, req: Request, now: UnixTime) -> Response {
        self.handle_peer(
            Peer {
                uid: peer_uid,
                pid: 0,
            },
            req,
            now,
        )
    }

    /// Answers one request from `peer` (SO_PEERCRED).
    pub fn handle_peer(&self, peer: Peer, req: Request, now: UnixTime) -> Response {
        let peer_uid = peer.uid;
        let r = match req {
            Request::VerifyMfa {
                user,
                code,
                purpose,
                service,
                grant,
                caller,
            } => self.verify_mfa(
                peer,
                mfa::MfaCheck {
                    user: &user,
                    code: &code,
                    purpose,
                    service: &service,
                    grant: grant.as_deref(),
                    caller: caller.as_ref(),
                },
                now,
            ),
            Request::OpenSession { session } => self
                .open_session(peer, &session, now)
                .inspect(|_| self.watch_join(peer, &session.grant, "session", now)),
            Request::CloseSession { user, session } => {
                self.close_session(peer, &user, session.as_deref(), now)
            }
            Request::ListSessions { page } => Ok(self.list_sessions(peer, page.as_ref(), now)),
            Request::InitBreakglass {
                account,
                count,
                replace,
            } => self.init_breakglass(peer, &account, count, replace, now),
            Request::UseBreakglass {
                account,
                code,
                service,
                rhost,
                caller_uid,
            } => self.use_breakglass(
                peer,
                breakglass::BreakglassUse {
                    account: &account,
                    code: &code,
                    service: &service,
                    rhost: &rhost,
                    caller_uid,
                },
                now,
            ),
            Request::GetStatus => Ok(Payload::Status(Box::new(self.status(now)))),
            Request::AddGrant { spec } => self
                .add_grant(peer_uid, *spec, now)
                .map(|g| Payload::Grant(Box::new(g))),
            Request::ListGrants { all, page } => {
                let (grants, next) = self.list(peer_uid, all, page.as_ref(), now);
                Ok(Payload::Grants { grants, next })
            }
            Request::ShowGrant { id } => self
                .show(peer_uid, &id, now)
                .map(|g| self.watch_full_certification(g)) // effects/watch.rs
                .map(|g| Payload::Grant(Box::new(g))),
            Request::RevokeGrant { id, reason } => self
                .revoke(peer_uid, &id, reason, now)
                .map(|g| Payload::Grant(Box::new(g))),
            Request::EnrollMfa { user, replace } => self.enroll_mfa(peer_uid, &user, replace, now),
            Request::RemoveMfa { user } => self.remove_mfa(peer_uid, &user, now),
            Request::ReportSudo { report } => self
                .report_sudo(peer_uid, &report, now)
                .inspect(|_| self.watch_sudo(peer, &report, now)),
            Request::Activate { grant, code } => {
                self.activate(peer_uid, grant.as_deref(), &code, now)
            }
            // The central service: the host key is made and kept by jitd (effects/sync_adapter.rs).
            Request::EnrollServer {
                url,
                token,
                fingerprint,
            } => self.enroll_server(peer_uid, &url, &token, &fingerprint, now),
            // tokenize: served over the connection itself (server.rs, tokenize/serve.rs).
            Request::RunProgram { .. } => Err(refuse(
                ErrorCode::BadRequest,
                "run_program needs its descriptors: it is served by the socket",
            )),
            Request::ReadAudit {
                grant,
                since,
                after_offset,
            } => {
                if peer_uid != 0 {
                    Err(refuse(
                        ErrorCode::PermissionDenied,
                        "only root may read the audit trail",
                    ))
                } else {
                    self.audit
                        .read(grant.as_deref(), since, after_offset)
                        .map(|(records, offset)| Payload::Audit { records, offset })
                        .map_err(|e| {
                            refuse(
                                ErrorCode::Internal,
                                format!("cannot read the audit log: {e}"),
                            )
                        })
                }
            }
        };
        match r {
            Ok(p) => Response::ok(p),
            Err((code, msg)) => Response::error(code, msg),
        }
    }
}
