//! Requests and responses. Variants are verb-and-noun; the envelope carries the version.

use crate::grant::{Grant, GrantSpec};
use crate::text::{one_line, quoted_name as q, quoted_opt as qo, MAX_MESSAGE};
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
    /// List grants (a non-root caller sees only its own), in (`not_before`, id) order.
    ListGrants {
        /// Include pending and ended grants.
        all: bool,
        /// One page of them, as many as fit well inside a frame, and where the next page
        /// starts. Absent (an older jitctl): all of them in one reply, which a host with a
        /// few thousand grants cannot fit in a frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page: Option<ListPage>,
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
    /// Replay is shared across purposes and services; the failure counter and lockout are
    /// per source (see `caller`), across purposes and services. A login that passes also
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
        /// Where the code was typed: the failure counter and lockout are kept per source, so
        /// someone else's wrong codes cannot lock the person out. Absent in requests from
        /// modules older than the field (jitd then counts per person, as before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<MfaCaller>,
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
    /// Sessions jitd knows (a non-root caller sees only its own), in (`opened_at`, id) order.
    ListSessions {
        /// One page of them, as `ListGrants`. Absent (an older jitctl): all in one reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page: Option<ListPage>,
    },
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
        /// Real uid of the process the module runs in (the invoking user of su; 0 in sshd):
        /// failures lock out per source, as for `verify_mfa`. Absent from older modules.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_uid: Option<u32>,
    },
    /// Tokenization (`jitctl run`): start `program` as the caller with the capabilities of its
    /// live grant. The caller's stdin, stdout, stderr and working directory follow the frame
    /// as four descriptors (SCM_RIGHTS on one byte); later bytes are signal numbers to relay.
    /// The reply comes when the program ends.
    RunProgram {
        /// An absolute path, or a bare name that one program of the caller's live grants has.
        program: String,
        /// Arguments after the program (argv[0] is always the program's path).
        args: Vec<String>,
        /// The caller's terminal and locale variables; everything else is dropped.
        env: Vec<(String, String)>,
    },
    /// Enrol this host with a jit-server (root only): jitd makes its own host key, registers
    /// the public half with the one-time join token and pins the server.
    EnrollServer {
        /// `https://HOST:PORT`.
        url: String,
        /// One-time join token from `jit-server host add` (never logged).
        token: String,
        /// The server's TLS certificate fingerprint, `SHA256:…`.
        fingerprint: String,
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

/// Where a page of `ListGrants` or `ListSessions` starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPage {
    /// After this entry; `None`: from the first.
    pub after: Option<Cursor>,
}

/// An entry's place in a list's order: a time (a grant's `not_before`, a session's
/// `opened_at`), then its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The entry's time.
    pub at: i64,
    /// The entry's id.
    pub id: String,
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

/// Who typed a TOTP code, as the module saw it (`verify_mfa`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaCaller {
    /// Real uid of the process the module runs in: the invoking user for su (a set-uid
    /// program), 0 for daemons such as sshd and login.
    pub uid: Option<u32>,
    /// PAM_RUSER, if set (for the audit trail only: the application sets it, so the uid
    /// decides).
    pub ruser: String,
    /// PAM_RHOST, if set: the remote address for sshd.
    pub rhost: String,
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
    /// Per-grant cgroups, or why there are none (teardown then relies on the /proc scan).
    #[serde(default)]
    pub cgroups: String,
    /// Live monitoring of grants' processes: `on`, or `unavailable: why`, or `incomplete:
    /// why` (a source could not start), and event losses seen (the sources overflowed).
    #[serde(default)]
    pub monitoring: String,
    /// Tokenization (`jitctl run`): available, or why not, and the capabilities jitd cannot
    /// hand on (outside its own bounding set).
    #[serde(default)]
    pub tokenization: String,
    /// The change counter libnss_jit reads instead of an `lstat` per lookup
    /// (docs/snapshot-format.md §11): `on (...)`, `off: why` or `unavailable: why`.
    #[serde(default)]
    pub nss_counter: String,
    /// Room in the snapshot files: how full each is of what the modules read, and from when
    /// new grants are refused (docs/architecture.md, "Room in the snapshot files").
    #[serde(default)]
    pub snapshot_room: String,
    /// The public snapshot's size at the last whole write plus a bound for the grants
    /// admitted since, in bytes.
    #[serde(default)]
    pub snapshot_public_bytes: u64,
    /// The same for the gates file.
    #[serde(default)]
    pub snapshot_gates_bytes: u64,
    /// The largest public snapshot the modules open, in bytes.
    #[serde(default)]
    pub snapshot_public_limit_bytes: u64,
    /// The largest gates file the modules read, in bytes.
    #[serde(default)]
    pub snapshot_gates_limit_bytes: u64,
}

/// One audit record as stored (free-form JSON object with `ts`, `event`, ...).
pub type AuditRecord = serde_json::Value;

/// Successful payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// For GetStatus.
    Status(Box<Status>),
    /// For AddGrant, ShowGrant, RevokeGrant.
    Grant(Box<Grant>),
    /// For ListGrants.
    Grants {
        /// The grants.
        grants: Vec<Grant>,
        /// Of a paged request: where the next page starts; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<Cursor>,
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
        /// Of a paged request: where the next page starts; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<Cursor>,
    },
    /// For InitBreakglass: shown once, kept only as slow hashes.
    BreakglassCodes {
        /// The managed account.
        account: String,
        /// The codes.
        codes: Vec<String>,
    },
    /// For RunProgram: the program ended.
    Exited {
        /// The grant it ran under.
        grant: String,
        /// Its pid.
        pid: i32,
        /// Exit status (0-255), or 128 + the signal that ended it.
        status: i32,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
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

    /// A failure. The message is made one line, escaped and cut to
    /// [`crate::text::MAX_MESSAGE`] here, because many messages quote what the client sent (an
    /// unknown type or field name, an invalid user name): the reply always fits a frame and
    /// never carries a newline or a terminal escape.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            v: PROTOCOL_VERSION,
            code,
            message: one_line(&message.into(), MAX_MESSAGE),
        }
    }
}

impl Request {
    /// A log-safe one-line description: names and ids only, never keys or free text.
    pub fn as_safe_string(&self) -> String {
        // Every name is the client's: quoted, escaped and cut (text::quoted_name), so a 1 MiB
        // name costs the audit trail a few dozen bytes.
        match self {
            Request::GetStatus => "get_status".into(),
            Request::AddGrant { spec } => format!("add_grant user={}", q(&spec.user)),
            Request::ListGrants { all, page } => match page.as_ref().map(|p| &p.after) {
                None => format!("list_grants all={all}"),
                Some(None) => format!("list_grants all={all} page=first"),
                Some(Some(c)) => format!("list_grants all={all} page_after={}@{}", q(&c.id), c.at),
            },
            Request::ShowGrant { id } => format!("show_grant id={}", q(id)),
            Request::RevokeGrant { id, .. } => format!("revoke_grant id={}", q(id)),
            Request::ReadAudit { grant, .. } => {
                format!("read_audit grant={}", qo(grant.as_deref()))
            }
            // Never the token.
            Request::EnrollServer { url, .. } => format!("enroll_server url={}", q(url)),
            Request::EnrollMfa { user, .. } => format!("enroll_mfa user={}", q(user)),
            Request::RemoveMfa { user } => format!("remove_mfa user={}", q(user)),
            // Never the code.
            Request::Activate { grant, .. } => format!("activate grant={}", qo(grant.as_deref())),
            // Never the code.
            Request::VerifyMfa {
                user,
                purpose,
                service,
                ..
            } => format!(
                "verify_mfa user={} purpose={} service={}",
                q(user),
                purpose.as_str(),
                q(service)
            ),
            Request::OpenSession { session } => format!(
                "open_session user={} grant={} service={}",
                q(&session.user),
                q(&session.grant),
                q(&session.service)
            ),
            Request::CloseSession { user, session } => format!(
                "close_session user={} session={}",
                q(user),
                qo(session.as_deref())
            ),
            Request::ListSessions { page } => match page.as_ref().map(|p| &p.after) {
                None => "list_sessions".into(),
                Some(None) => "list_sessions page=first".into(),
                Some(Some(c)) => format!("list_sessions page_after={}@{}", q(&c.id), c.at),
            },
            Request::InitBreakglass { account, count, .. } => {
                format!("init_breakglass account={} count={count}", q(account))
            }
            Request::UseBreakglass {
                account, service, ..
            } => format!(
                "use_breakglass account={} service={}",
                q(account),
                q(service)
            ),
            Request::RunProgram { program, args, .. } => {
                format!("run_program program={} args={}", q(program), args.len())
            }
            Request::ReportSudo { report } => format!(
                "report_sudo user={} grant={} allowed={}",
                q(&report.user),
                qo(report.grant.as_deref()),
                report.allowed
            ),
        }
    }

    /// The request's type as spelled on the wire (`add_grant`), for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::GetStatus => "get_status",
            Request::AddGrant { .. } => "add_grant",
            Request::ListGrants { .. } => "list_grants",
            Request::ShowGrant { .. } => "show_grant",
            Request::RevokeGrant { .. } => "revoke_grant",
            Request::EnrollMfa { .. } => "enroll_mfa",
            Request::RemoveMfa { .. } => "remove_mfa",
            Request::Activate { .. } => "activate",
            Request::ReportSudo { .. } => "report_sudo",
            Request::VerifyMfa { .. } => "verify_mfa",
            Request::OpenSession { .. } => "open_session",
            Request::CloseSession { .. } => "close_session",
            Request::ListSessions { .. } => "list_sessions",
            Request::InitBreakglass { .. } => "init_breakglass",
            Request::UseBreakglass { .. } => "use_breakglass",
            Request::ReadAudit { .. } => "read_audit",
            Request::RunProgram { .. } => "run_program",
            Request::EnrollServer { .. } => "enroll_server",
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
    // serde's `deny_unknown_fields` does not reach the unit variants of an internally tagged
    // enum: `{"type":"get_status","x":1}` would pass. The protocol promises `bad_request` for
    // any field this jitd does not know, so unit variants are checked here.
    let extra_field = v
        .get("req")
        .and_then(serde_json::Value::as_object)
        .and_then(|o| o.keys().find(|k| k.as_str() != "type").cloned());
    let req = serde_json::from_value::<RequestEnvelope>(v)
        .map(|e| e.req)
        .map_err(|e| (ErrorCode::BadRequest, format!("malformed request: {e}")))?;
    match (&req, extra_field) {
        (Request::GetStatus, Some(f)) => Err((
            ErrorCode::BadRequest,
            format!(
                "malformed request: unknown field {} for {}",
                shown_key(&f),
                req.kind()
            ),
        )),
        _ => Ok(req),
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
            decode_request(br#"{"v":1,"req":{"type":"list_sessions","x":1}}"#)
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

    /// The error reply to `body`, serialized as jitd sends it.
    fn error_reply(body: &[u8]) -> (ErrorCode, String, usize) {
        let (code, msg) = decode_request(body).unwrap_err();
        let r = Response::error(code, msg);
        let wire = serde_json::to_vec(&r).unwrap();
        let Response::Error { message, .. } = r else {
            unreachable!()
        };
        (code, message, wire.len())
    }

    /// Hostile inputs a fuzzer found: names of about 1 MiB, echoed by serde's error message,
    /// made replies larger than a frame (so jitd sent none); names with newlines and terminal
    /// escapes reached the reply as themselves.
    #[test]
    fn error_replies_to_hostile_names_are_one_short_escaped_line() {
        let huge = "A".repeat(crate::MAX_FRAME - 64);
        let cases = [
            format!(r#"{{"v":1,"req":{{"type":"{huge}"}}}}"#),
            format!(r#"{{"v":1,"req":{{"type":"get_status","{huge}":1}}}}"#),
            format!(r#"{{"v":1,"req":{{"type":"list_grants","all":true,"{huge}":1}}}}"#),
            format!(r#"{{"v":1,"{huge}":1,"req":{{"type":"get_status"}}}}"#),
            r#"{"v":1,"req":{"type":"x\n\u001b[2J\u202eevil"}}"#.to_string(),
            r#"{"v":1,"req":{"type":"get_status","a\r\nb\u0007":1}}"#.to_string(),
        ];
        for body in &cases {
            assert!(body.len() <= crate::MAX_FRAME);
            let (code, message, wire) = error_reply(body.as_bytes());
            assert_eq!(code, ErrorCode::BadRequest, "{message}");
            assert!(wire <= 4096, "reply of {wire} bytes");
            assert!(
                !message.chars().any(char::is_control) && !message.contains('\u{202e}'),
                "{message:?}"
            );
        }
        let (_, m, _) = error_reply(cases[4].as_bytes());
        assert!(m.contains(r"x\u{a}\u{1b}[2J\u{202e}evil"), "{m}");
    }

    #[test]
    fn safe_strings_cut_hostile_names() {
        let r = Request::AddGrant {
            spec: Box::new(GrantSpec {
                user: format!("a\n{}", "x".repeat(1 << 20)),
                ..GrantSpec::default()
            }),
        };
        let s = r.as_safe_string();
        assert!(s.len() < 200 && !s.contains('\n'), "{s}");
        assert!(s.starts_with(r#"add_grant user="a\u{a}xxx"#), "{s}");
        assert_eq!(r.kind(), "add_grant");
    }

    #[test]
    fn verify_mfa_caller_is_optional_both_ways() {
        // A module older than `caller` still parses.
        let old = br#"{"v":1,"req":{"type":"verify_mfa","user":"alice","code":"123456","purpose":"login","service":"su","grant":null}}"#;
        match decode_request(old).unwrap() {
            Request::VerifyMfa { caller, .. } => assert_eq!(caller, None),
            other => panic!("{other:?}"),
        }
        let r = Request::VerifyMfa {
            user: "alice".into(),
            code: "123456".into(),
            purpose: MfaPurpose::Login,
            service: "su".into(),
            grant: None,
            caller: Some(MfaCaller {
                uid: Some(1001),
                ruser: "mallory".into(),
                rhost: String::new(),
            }),
        };
        let b = encode_request(&r).unwrap();
        assert_eq!(decode_request(&b).unwrap(), r);
        // Without a caller the field is left out, so the bytes are what older jitds read.
        let r = Request::VerifyMfa {
            user: "alice".into(),
            code: "123456".into(),
            purpose: MfaPurpose::Sudo,
            service: "sudo".into(),
            grant: None,
            caller: None,
        };
        let b = encode_request(&r).unwrap();
        assert!(!String::from_utf8_lossy(&b).contains("caller"));
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
