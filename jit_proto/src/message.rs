//! Requests and responses. Variants are verb-and-noun; the envelope carries the version.

use crate::grant::{Grant, GrantSpec};
use serde::{Deserialize, Serialize};

/// Version of the message schema. A daemon answers a different version with `BadVersion`.
pub const PROTOCOL_VERSION: u32 = 1;

/// One request per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Daemon health and counts.
    GetStatus,
    /// Create a local grant (root only).
    AddGrant {
        /// What to grant.
        spec: Box<GrantSpec>,
    },
    /// List grants (a non-root caller sees only its own).
    ListGrants {
        /// Include pending and ended grants.
        all: bool,
    },
    /// One grant.
    ShowGrant {
        /// Grant id.
        id: String,
    },
    /// End a grant now (root only).
    RevokeGrant {
        /// Grant id.
        id: String,
        /// Why.
        reason: Option<String>,
    },
    /// Make a TOTP secret for a user (root only). The secret is shown once, in the reply.
    EnrollMfa {
        /// Local or ephemeral user name.
        user: String,
        /// Replace an existing secret.
        replace: bool,
    },
    /// Delete a user's TOTP secret (root only).
    RemoveMfa {
        /// User name.
        user: String,
    },
    /// The caller proves a TOTP code to activate its armed `--mfa` grants (one, or all).
    Activate {
        /// Only this grant.
        grant: Option<String>,
        /// The 6-digit code.
        code: String,
    },
    /// sudo_jit tells jitd what it decided (root peers only). A command in one of the grant's
    /// `revoke_on` classes ends the grant at once.
    ReportSudo {
        /// The decision.
        report: Box<SudoReport>,
    },
    /// pam_jit or sudo_jit asks jitd to check a TOTP code a person typed (root peers only).
    /// Replay and lockout are shared across purposes and services. A login that passes also
    /// activates the person's armed `--mfa` grants.
    VerifyMfa {
        /// The person.
        user: String,
        /// The 6-digit code.
        code: String,
        /// Login or sudo step-up.
        purpose: MfaPurpose,
        /// PAM service (`sshd`, `su`) or `sudo`, for the audit trail.
        service: String,
        /// The grant the code is for, when the module knows it.
        grant: Option<String>,
    },
    /// pam_jit registers a login session (root peers only). The session's process is the peer
    /// (SO_PEERCRED pid), never a pid from the payload.
    OpenSession {
        /// What pam_jit knows about the session.
        session: Box<SessionSpec>,
    },
    /// pam_jit says a session ended (root peers only). Ends a `--end-with-session` grant.
    CloseSession {
        /// The person.
        user: String,
        /// The id OpenSession returned, if pam_jit still has it.
        session: Option<String>,
    },
    /// Sessions jitd knows (a non-root caller sees only its own).
    ListSessions,
    /// Make break-glass codes for a managed account (root only). The codes are shown once.
    InitBreakglass {
        /// A managed local admin account.
        account: String,
        /// How many codes (1-20).
        count: u32,
        /// Replace existing codes.
        replace: bool,
    },
    /// pam_jit spends one break-glass code (root peers only): jitd opens a short emergency
    /// grant that enables the account.
    UseBreakglass {
        /// The managed account.
        account: String,
        /// The code as typed.
        code: String,
        /// PAM service.
        service: String,
        /// PAM_RHOST, if any.
        rhost: String,
    },
    /// Audit records (root only).
    ReadAudit {
        /// Only this grant.
        grant: Option<String>,
        /// Only records at or after this Unix time.
        since: Option<i64>,
        /// Only records after this byte offset of the audit log (for --follow).
        after_offset: Option<u64>,
    },
}

/// What a TOTP code is proved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaPurpose {
    /// A login through pam_jit (also activates armed `--mfa` grants).
    Login,
    /// A sudo step-up through sudo_jit (`--mfa-sudo`).
    Sudo,
}

impl MfaPurpose {
    /// Lower-case name as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            MfaPurpose::Login => "login",
            MfaPurpose::Sudo => "sudo",
        }
    }
}

/// A login session as pam_jit describes it when it opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSpec {
    /// The person.
    pub user: String,
    /// The grant the login was admitted under.
    pub grant: String,
    /// PAM service.
    pub service: String,
    /// PAM_TTY, if any.
    pub tty: String,
    /// PAM_RHOST, if any.
    pub rhost: String,
}

/// A session jitd tracks: ended by teardown, and it ends an `--end-with-session` grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `s-` and 12 hex digits.
    pub id: String,
    /// The person.
    pub user: String,
    /// Grant id.
    pub grant: String,
    /// The process that opened it (sshd's session process, su, login).
    pub pid: i32,
    /// That process's start time (clock ticks since boot, /proc/PID/stat field 22), so a
    /// recycled pid is never mistaken for the session.
    pub pid_start: u64,
    /// PAM service.
    pub service: String,
    /// PAM_TTY.
    pub tty: String,
    /// PAM_RHOST.
    pub rhost: String,
    /// When it opened (Unix seconds).
    pub opened_at: i64,
}

/// One sudo decision, as sudo_jit saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SudoReport {
    /// The invoking user.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// The grant the decision was made under, if any.
    pub grant: Option<String>,
    /// Resolved command path.
    pub command: String,
    /// Arguments (argv[1..]), capped by the plugin.
    pub argv: Vec<String>,
    /// Run-as user.
    pub runas: String,
    /// Run-as group, if `-g` was given.
    pub runas_group: Option<String>,
    /// Whether sudo_jit approved it.
    pub allowed: bool,
    /// The one-line reason shown to the user (denials).
    pub reason: String,
    /// Bit set of `jit_core::policy::classify` classes the command falls in.
    pub classes: u32,
}

/// The envelope of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEnvelope {
    /// Protocol version.
    pub v: u32,
    /// The request.
    pub req: Request,
}

/// Error classes; jitctl maps them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed, oversize or unknown request.
    BadRequest,
    /// A protocol version this daemon does not speak.
    BadVersion,
    /// The caller may not do this (peer uid from SO_PEERCRED).
    PermissionDenied,
    /// No such grant.
    NotFound,
    /// Valid request refused by policy or validation (the message says why).
    Refused,
    /// Accepted syntax, but the feature is not enforced yet, so it is refused.
    Unsupported,
    /// The daemon could not complete it (disk, state); nothing changed.
    Internal,
    /// Too many connections; try again.
    Busy,
}

/// Status payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// jitd version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: i64,
    /// Grant counts.
    pub live: usize,
    /// Pending grants.
    pub pending: usize,
    /// Started `--mfa` grants waiting for a TOTP code.
    #[serde(default)]
    pub armed: usize,
    /// Ended grants whose teardown has not finished.
    pub teardown_pending: usize,
    /// Ended grants kept in state.
    pub ended: usize,
    /// Snapshot path.
    pub snapshot_path: String,
    /// When the snapshot was last written (Unix seconds), if ever.
    pub snapshot_written_at: Option<i64>,
    /// Central service link (`none` until the server issue lands).
    pub server: String,
    /// Whether durable state writes currently succeed.
    pub state_writable: bool,
}

/// One audit record as stored (free-form JSON object with `ts`, `event`, ...).
pub type AuditRecord = serde_json::Value;

/// Successful payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// For GetStatus.
    Status(Status),
    /// For AddGrant, ShowGrant, RevokeGrant.
    Grant(Box<Grant>),
    /// For ListGrants.
    Grants {
        /// The grants.
        grants: Vec<Grant>,
    },
    /// For EnrollMfa: shown once.
    Enrollment {
        /// User.
        user: String,
        /// Base32 secret.
        secret: String,
        /// otpauth:// URI.
        uri: String,
    },
    /// For Activate: the grants that became live.
    Activated {
        /// Grant ids.
        grants: Vec<String>,
    },
    /// For requests that only need an acknowledgement.
    Done {
        /// What happened.
        message: String,
    },
    /// For VerifyMfa: the code was right and is now spent.
    Verified {
        /// The person.
        user: String,
        /// Armed grants this login activated.
        activated: Vec<String>,
    },
    /// For OpenSession.
    Session(Box<Session>),
    /// For ListSessions.
    Sessions {
        /// Open sessions.
        sessions: Vec<Session>,
    },
    /// For InitBreakglass: shown once, kept only as slow hashes.
    BreakglassCodes {
        /// The managed account.
        account: String,
        /// The codes.
        codes: Vec<String>,
    },
    /// For ReadAudit.
    Audit {
        /// Records in order.
        records: Vec<AuditRecord>,
        /// Byte offset after the last record returned.
        offset: u64,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok {
        /// Protocol version.
        v: u32,
        /// What was asked for.
        payload: Payload,
    },
    /// Not done; nothing changed.
    Error {
        /// Protocol version.
        v: u32,
        /// Class.
        code: ErrorCode,
        /// One line for a person.
        message: String,
    },
}

impl Response {
    /// A success.
    pub fn ok(payload: Payload) -> Self {
        Response::Ok {
            v: PROTOCOL_VERSION,
            payload,
        }
    }

    /// A failure.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            v: PROTOCOL_VERSION,
            code,
            message: message.into(),
        }
    }
}

impl Request {
    /// A log-safe one-line description: names and ids only, never keys or free text.
    pub fn as_safe_string(&self) -> String {
        match self {
            Request::GetStatus => "get_status".into(),
            Request::AddGrant { spec } => format!("add_grant user={:?}", spec.user),
            Request::ListGrants { all } => format!("list_grants all={all}"),
            Request::ShowGrant { id } => format!("show_grant id={id:?}"),
            Request::RevokeGrant { id, .. } => format!("revoke_grant id={id:?}"),
            Request::ReadAudit { grant, .. } => format!("read_audit grant={grant:?}"),
            Request::EnrollMfa { user, .. } => format!("enroll_mfa user={user:?}"),
            Request::RemoveMfa { user } => format!("remove_mfa user={user:?}"),
            // Never the code.
            Request::Activate { grant, .. } => format!("activate grant={grant:?}"),
            // Never the code.
            Request::VerifyMfa {
                user,
                purpose,
                service,
                ..
            } => format!(
                "verify_mfa user={user:?} purpose={} service={service:?}",
                purpose.as_str()
            ),
            Request::OpenSession { session } => format!(
                "open_session user={:?} grant={:?} service={:?}",
                session.user, session.grant, session.service
            ),
            Request::CloseSession { user, session } => {
                format!("close_session user={user:?} session={session:?}")
            }
            Request::ListSessions => "list_sessions".into(),
            Request::InitBreakglass { account, count, .. } => {
                format!("init_breakglass account={account:?} count={count}")
            }
            Request::UseBreakglass {
                account, service, ..
            } => format!("use_breakglass account={account:?} service={service:?}"),
            Request::ReportSudo { report } => {
                format!(
                    "report_sudo user={:?} grant={:?} allowed={}",
                    report.user, report.grant, report.allowed
                )
            }
        }
    }
}

/// Decodes a request body. Errors are already phrased for the reply.
///
/// # Errors
/// `BadVersion` for another protocol version, `BadRequest` for anything malformed.
pub fn decode_request(body: &[u8]) -> Result<Request, (ErrorCode, String)> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| (ErrorCode::BadRequest, format!("malformed request: {e}")))?;
    match v.get("v").and_then(serde_json::Value::as_u64) {
        Some(n) if n == u64::from(PROTOCOL_VERSION) => {}
        Some(n) => {
            return Err((
                ErrorCode::BadVersion,
                format!("protocol version {n} not supported (this jitd speaks {PROTOCOL_VERSION})"),
            ))
        }
        None => {
            return Err((
                ErrorCode::BadRequest,
                "request has no protocol version".into(),
            ))
        }
    }
    let keys: Vec<String> = v
        .get("req")
        .and_then(serde_json::Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let req = serde_json::from_value::<RequestEnvelope>(v)
        .map(|e| e.req)
        .map_err(|e| (ErrorCode::BadRequest, format!("malformed request: {e}")))?;
    refuse_unknown_fields(&req, &keys)?;
    Ok(req)
}

/// serde's `deny_unknown_fields` does not reach the unit variants of an internally tagged enum
/// (`{"type":"get_status","x":...}` decoded as `GetStatus`): a field the decoded request does
/// not have is refused here, for every variant alike. Every field of a request is serialized
/// (no `skip_serializing_if`), so the re-encoded request names all the fields it may carry.
fn refuse_unknown_fields(req: &Request, keys: &[String]) -> Result<(), (ErrorCode, String)> {
    let known = serde_json::to_value(req)
        .map_err(|e| (ErrorCode::BadRequest, format!("malformed request: {e}")))?;
    match keys.iter().find(|k| known.get(k.as_str()).is_none()) {
        None => Ok(()),
        Some(k) => Err((
            ErrorCode::BadRequest,
            format!(
                "malformed request: unknown field {} for {}",
                shown_key(k),
                known
                    .get("type")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?")
            ),
        )),
    }
}

/// A field name for an error message: escaped and cut at 64 characters (it came from the peer).
fn shown_key(k: &str) -> String {
    let cut: String = k.chars().take(64).collect();
    let more = if cut.len() < k.len() { "..." } else { "" };
    format!("{:?}{more}", cut)
}

/// Encodes a request envelope.
///
/// # Errors
/// Serialization failure (not expected for these types).
pub fn encode_request(req: &Request) -> Result<Vec<u8>, serde_json::Error> {
    /// The envelope by reference: no copy of a request that may hold a code.
    #[derive(Serialize)]
    struct EnvelopeRef<'a> {
        v: u32,
        req: &'a Request,
    }
    // Sized up front so that a small request (every one that carries a code) is written
    // without reallocation: a grown buffer would leave a freed, unzeroed copy behind.
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(
        &mut out,
        &EnvelopeRef {
            v: PROTOCOL_VERSION,
            req,
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = Request::RevokeGrant {
            id: "g-0123abcd".into(),
            reason: Some("done".into()),
        };
        let b = encode_request(&r).unwrap();
        assert_eq!(decode_request(&b).unwrap(), r);
    }

    #[test]
    fn bad_requests() {
        assert_eq!(
            decode_request(b"not json").unwrap_err().0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode_request(br#"{"req":{"type":"get_status"}}"#)
                .unwrap_err()
                .0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode_request(br#"{"v":2,"req":{"type":"get_status"}}"#)
                .unwrap_err()
                .0,
            ErrorCode::BadVersion
        );
        assert_eq!(
            decode_request(br#"{"v":1,"req":{"type":"launch_missiles"}}"#)
                .unwrap_err()
                .0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode_request(br#"{"v":1,"req":{"type":"get_status"},"x":1}"#)
                .unwrap_err()
                .0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode_request(b"{\"v\":1,\"req\":{\"type\":\"show_grant\",\"id\":\"\xff\"}}")
                .unwrap_err()
                .0,
            ErrorCode::BadRequest
        );
        assert!(decode_request(br#"{"v":1,"req":{"type":"get_status"}}"#).is_ok());
    }

    /// Found by the fuzz corpus: a request without fields took any unknown field (serde's
    /// deny_unknown_fields skips unit variants of a tagged enum). Every variant refuses them now;
    /// absent optional fields still read as `None`.
    #[test]
    fn unknown_fields_refused_for_every_request() {
        for body in [
            &br#"{"v":1,"req":{"type":"get_status","x":1}}"#[..],
            br#"{"v":1,"req":{"type":"list_sessions","all":true}}"#,
            br#"{"v":1,"req":{"type":"list_grants","all":true,"x":null}}"#,
        ] {
            let e = decode_request(body).unwrap_err();
            assert_eq!(e.0, ErrorCode::BadRequest, "{e:?}");
            assert!(e.1.contains("unknown field"), "{e:?}");
        }
        let long = format!(
            r#"{{"v":1,"req":{{"type":"get_status","{}":1}}}}"#,
            "k".repeat(100_000)
        );
        let e = decode_request(long.as_bytes()).unwrap_err();
        assert!(
            e.1.len() < 200,
            "the unknown name is cut: {} bytes",
            e.1.len()
        );
        assert_eq!(
            decode_request(br#"{"v":1,"req":{"type":"read_audit","grant":null,"since":null}}"#),
            Ok(Request::ReadAudit {
                grant: None,
                since: None,
                after_offset: None
            })
        );
    }
}
