//! The four calls pam_jit makes to jitd, each turned into a typed result.
//!
//! Every call goes through one function `call(&Request) -> Result<Response, ClientError>`;
//! the real one ([`socket_call`]) is `jit_proto::client::call` on jitd's socket with the
//! module's deadline and `require_root_peer` (an impostor serving the socket path gets no code,
//! docs/threat-model.md#d2). Tests pass a fake. Any failure (unreachable, deadline, impostor,
//! bad frame, an error reply, an unexpected payload) is a [`JitdError`], and the caller denies:
//! no error path ever admits a jit identity (docs/threat-model.md#p1).
//!
//! Codes typed by a person travel in a [`Secret`]: capped, wiped from this module's memory
//! after use, and never logged.

use jit_proto::client::ClientError;
use jit_proto::message::{ErrorCode, MfaCaller, MfaPurpose, Payload, SessionSpec};
use jit_proto::{Grant, Request, Response, Session};
use std::time::Duration;

/// Longest code sent to jitd. A longer reply (1 MiB pasted) is cut, still sent, and still
/// counted by jitd as a failure; it can never be a valid code.
pub const MAX_CODE_BYTES: usize = 256;
/// Longest `PAM_SERVICE` copied into a request (jitd refuses longer ones).
pub const MAX_SERVICE_BYTES: usize = 64;
/// Longest `PAM_TTY` copied into a request (jitd refuses longer ones).
pub const MAX_TTY_BYTES: usize = 64;
/// Longest `PAM_RHOST` copied into a request (a DNS name's length).
pub const MAX_RHOST_BYTES: usize = 255;
/// Longest `PAM_RUSER` copied into a request (a user name).
pub const MAX_RUSER_BYTES: usize = 64;

pub use jit_core::host::secret::Secret;

/// A code as typed, capped at [`MAX_CODE_BYTES`] (the bytes cut off are wiped), wiped on drop.
pub fn typed_code(bytes: Vec<u8>) -> Secret {
    Secret::capped(bytes, MAX_CODE_BYTES)
}

/// The code as the protocol's string (invalid UTF-8 replaced, so jitd sees and counts a wrong
/// code rather than nothing).
fn request_string(code: &Secret) -> String {
    String::from_utf8_lossy(code.bytes()).into_owned()
}

/// Wipes the code a request carried, once it has been sent.
fn wipe_request(req: Request) {
    match req {
        Request::VerifyMfa { mut code, .. } | Request::UseBreakglass { mut code, .. } => {
            jit_core::host::secret::wipe_string(&mut code);
        }
        _ => {}
    }
}

/// Why a call to jitd did not succeed.
#[derive(Debug)]
pub enum JitdError {
    /// No answer: unreachable, deadline, impostor peer, bad frame or reply.
    Call(ClientError),
    /// jitd answered with an error.
    Daemon {
        /// Its class.
        code: ErrorCode,
        /// Its one line for a person.
        message: String,
    },
    /// jitd answered with a payload this request does not get.
    Unexpected(&'static str),
}

impl std::fmt::Display for JitdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JitdError::Call(e) => write!(f, "{e}"),
            JitdError::Daemon { message, .. } => {
                write!(f, "{}", jit_core::policy::sudo::shown(message, 200))
            }
            JitdError::Unexpected(what) => write!(f, "jitd sent an unexpected reply ({what})"),
        }
    }
}

impl std::error::Error for JitdError {}

/// The real call: jitd's socket, the module's deadline, a root peer required.
pub fn socket_call(timeout: Duration) -> impl Fn(&Request) -> Result<Response, ClientError> {
    socket_call_at(jit_core::constants::DEFAULT_SOCKET_PATH, timeout, true)
}

/// [`socket_call`] at another path (tests run a fake jitd on a temporary socket).
pub fn socket_call_at(
    path: &str,
    timeout: Duration,
    require_root_peer: bool,
) -> impl Fn(&Request) -> Result<Response, ClientError> + '_ {
    move |req| jit_proto::client::call(path, req, timeout, require_root_peer)
}

/// One call: the payload of an `ok` reply, or why not.
fn send<C>(call: &C, req: Request) -> Result<Payload, JitdError>
where
    C: Fn(&Request) -> Result<Response, ClientError> + ?Sized,
{
    let r = call(&req);
    wipe_request(req);
    match r {
        Ok(Response::Ok { payload, .. }) => Ok(payload),
        Ok(Response::Error { code, message, .. }) => Err(JitdError::Daemon { code, message }),
        Err(e) => Err(JitdError::Call(e)),
    }
}

/// Caps an item copied from PAM at `max` bytes on a character boundary. The items in a
/// request are for jitd's audit trail; decisions use the full values.
pub fn capped(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

/// `VerifyMfa` for a login: `Ok` only for `verified` naming this user.
///
/// # Errors
/// See [`JitdError`].
pub fn verify_mfa<C>(
    call: &C,
    user: &str,
    code: &Secret,
    service: &str,
    grant: &str,
    caller: MfaCaller,
) -> Result<Vec<String>, JitdError>
where
    C: Fn(&Request) -> Result<Response, ClientError> + ?Sized,
{
    let req = Request::VerifyMfa {
        user: user.to_string(),
        code: request_string(code),
        purpose: MfaPurpose::Login,
        service: capped(service, MAX_SERVICE_BYTES),
        grant: Some(grant.to_string()),
        caller: Some(MfaCaller {
            uid: caller.uid,
            ruser: capped(&caller.ruser, MAX_RUSER_BYTES),
            rhost: capped(&caller.rhost, MAX_RHOST_BYTES),
        }),
    };
    match send(call, req)? {
        Payload::Verified { user: u, activated } if u == user => Ok(activated),
        Payload::Verified { .. } => Err(JitdError::Unexpected("verified another user")),
        _ => Err(JitdError::Unexpected("not a verification")),
    }
}

/// `UseBreakglass`: the emergency grant jitd opened for `account`.
///
/// # Errors
/// See [`JitdError`].
pub fn use_breakglass<C>(
    call: &C,
    account: &str,
    code: &Secret,
    service: &str,
    rhost: &str,
    caller_uid: u32,
) -> Result<Grant, JitdError>
where
    C: Fn(&Request) -> Result<Response, ClientError> + ?Sized,
{
    let req = Request::UseBreakglass {
        account: account.to_string(),
        code: request_string(code),
        service: capped(service, MAX_SERVICE_BYTES),
        rhost: capped(rhost, MAX_RHOST_BYTES),
        caller_uid: Some(caller_uid),
    };
    match send(call, req)? {
        Payload::Grant(g) if g.user == account => Ok(*g),
        Payload::Grant(_) => Err(JitdError::Unexpected("a grant for another user")),
        _ => Err(JitdError::Unexpected("not a grant")),
    }
}

/// `OpenSession`: the session jitd registered.
///
/// # Errors
/// See [`JitdError`].
pub fn open_session<C>(call: &C, spec: SessionSpec) -> Result<Session, JitdError>
where
    C: Fn(&Request) -> Result<Response, ClientError> + ?Sized,
{
    let user = spec.user.clone();
    let req = Request::OpenSession {
        session: Box::new(spec),
    };
    match send(call, req)? {
        Payload::Session(s) if s.user == user => Ok(*s),
        Payload::Session(_) => Err(JitdError::Unexpected("a session of another user")),
        _ => Err(JitdError::Unexpected("not a session")),
    }
}

/// `CloseSession`: any `ok` reply is success.
///
/// # Errors
/// See [`JitdError`].
pub fn close_session<C>(call: &C, user: &str, session: Option<String>) -> Result<(), JitdError>
where
    C: Fn(&Request) -> Result<Response, ClientError> + ?Sized,
{
    let req = Request::CloseSession {
        user: user.to_string(),
        session,
    };
    send(call, req).map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::cell::RefCell;

    fn ok(payload: Payload) -> Result<Response, ClientError> {
        Ok(Response::ok(payload))
    }

    fn session(user: &str) -> Session {
        Session {
            id: "s-0123456789ab".into(),
            user: user.into(),
            grant: "g-0001".into(),
            pid: 1,
            pid_start: 2,
            service: "sshd".into(),
            tty: String::new(),
            rhost: String::new(),
            opened_at: 3,
        }
    }

    #[test]
    fn verify_sends_login_purpose_and_maps_replies() {
        let seen = RefCell::new(None);
        let call = |r: &Request| {
            *seen.borrow_mut() = Some(r.clone());
            ok(Payload::Verified {
                user: "eve".into(),
                activated: vec!["g-0001".into()],
            })
        };
        let code = typed_code(b"123456".to_vec());
        assert_eq!(
            verify_mfa(&call, "eve", &code, "sshd", "g-0001", MfaCaller::default()).unwrap(),
            ["g-0001"]
        );
        match seen.borrow().clone().unwrap() {
            Request::VerifyMfa {
                user,
                code,
                purpose,
                service,
                grant,
                caller,
            } => {
                assert_eq!(caller, Some(MfaCaller::default()));
                assert_eq!(user, "eve");
                assert_eq!(code, "123456");
                assert_eq!(purpose, MfaPurpose::Login);
                assert_eq!(service, "sshd");
                assert_eq!(grant.as_deref(), Some("g-0001"));
            }
            other => panic!("{other:?}"),
        }
        // Another user's verification, another payload, an error, a dead daemon: all errors.
        let other = |_: &Request| {
            ok(Payload::Verified {
                user: "mallory".into(),
                activated: vec![],
            })
        };
        assert!(verify_mfa(&other, "eve", &code, "sshd", "g-1", MfaCaller::default()).is_err());
        let done = |_: &Request| {
            ok(Payload::Done {
                message: "ok".into(),
            })
        };
        assert!(verify_mfa(&done, "eve", &code, "sshd", "g-1", MfaCaller::default()).is_err());
        let refused = |_: &Request| Ok(Response::error(ErrorCode::Refused, "wrong code \x1b[2J"));
        let e =
            verify_mfa(&refused, "eve", &code, "sshd", "g-1", MfaCaller::default()).unwrap_err();
        assert!(matches!(
            e,
            JitdError::Daemon {
                code: ErrorCode::Refused,
                ..
            }
        ));
        assert!(!e.to_string().contains('\x1b'), "{e}");
        let dead = |_: &Request| Err(ClientError::Timeout);
        assert!(matches!(
            verify_mfa(&dead, "eve", &code, "sshd", "g-1", MfaCaller::default()),
            Err(JitdError::Call(ClientError::Timeout))
        ));
        let impostor = |_: &Request| Err(ClientError::ImpostorPeer(1001));
        let e =
            verify_mfa(&impostor, "eve", &code, "sshd", "g-1", MfaCaller::default()).unwrap_err();
        assert!(e.to_string().contains("not root"), "{e}");
    }

    #[test]
    fn codes_are_capped_and_never_debug_printed() {
        let s = typed_code(vec![b'1'; 1 << 20]);
        assert_eq!(request_string(&s).len(), MAX_CODE_BYTES);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let s = typed_code(vec![0xff, b'1']);
        assert_eq!(request_string(&s), "\u{fffd}1");
        assert!(typed_code(vec![]).is_empty());
        let safe = Request::VerifyMfa {
            user: "eve".into(),
            code: "999999".into(),
            purpose: MfaPurpose::Login,
            service: "sshd".into(),
            grant: None,
            caller: None,
        }
        .as_safe_string();
        assert!(!safe.contains("999999"), "{safe}");
    }

    /// A one-shot fake jitd on a temporary socket: reads one request frame, answers `reply`
    /// (raw JSON, so payloads are decoded by the real client), or never answers when `None`.
    fn fake_jitd(reply: Option<&'static str>) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pam_jit_fake_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jitd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _req = jit_proto::read_frame(&mut conn).unwrap();
            match reply {
                Some(body) => jit_proto::write_frame(&mut conn, body.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_millis(1500)),
            }
        });
        (path, t)
    }

    fn running_as_root() -> bool {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() == 0 }
    }

    #[test]
    fn breakglass_over_a_real_socket() {
        let (path, t) = fake_jitd(Some(
            r#"{"result":"ok","v":1,"payload":{"type":"grant",
            "id":"g-00aa00aa00aa","user":"admin","state":"live",
            "not_before":1,"not_after":2,"created_at":1,"created_by":"breakglass",
            "account":false,"uid":null,"groups":[],"ssh_keys":[],
            "reason":"","ticket":"","requested_by":"","enable":true,"future_field":1}}"#,
        ));
        let call = socket_call_at(
            path.to_str().unwrap(),
            Duration::from_secs(5),
            running_as_root(),
        );
        let code = typed_code(b"ABCD-EFGH".to_vec());
        let g = use_breakglass(&call, "admin", &code, "sshd", "10.0.0.1", 0).unwrap();
        assert_eq!(g.id, "g-00aa00aa00aa");
        assert!(g.enable);
        t.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

        let (path, t) = fake_jitd(Some(
            r#"{"result":"error","v":1,"code":"refused","message":"no such code"}"#,
        ));
        let call = socket_call_at(
            path.to_str().unwrap(),
            Duration::from_secs(5),
            running_as_root(),
        );
        let e = use_breakglass(&call, "admin", &code, "sshd", "", 0).unwrap_err();
        assert_eq!(e.to_string(), "no such code");
        t.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_silent_jitd_costs_the_deadline_only() {
        let (path, t) = fake_jitd(None);
        let call = socket_call_at(
            path.to_str().unwrap(),
            Duration::from_millis(300),
            running_as_root(),
        );
        let start = std::time::Instant::now();
        let code = typed_code(b"123456".to_vec());
        let e = verify_mfa(&call, "eve", &code, "sshd", "g-1", MfaCaller::default()).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(e, JitdError::Call(ClientError::Timeout)), "{e}");
        assert!(took < Duration::from_millis(1200), "{took:?}");
        t.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        // No socket at all: unreachable at once.
        let call = socket_call_at("/nonexistent/jitd.sock", Duration::from_secs(2), true);
        assert!(matches!(
            close_session(&call, "eve", None),
            Err(JitdError::Call(ClientError::Unreachable(_)))
        ));
    }

    /// su and login run with SIGPIPE at its default action (only Rust programs ignore it at
    /// start): a jitd that hangs up before reading the request (its `busy` answer closes at
    /// once) must not kill the PAM caller. std's `UnixStream` sends with `MSG_NOSIGNAL`; this
    /// keeps it so if the client's writes ever change. Runs in a child copy of this test binary
    /// that sets SIGPIPE back to the default; a large request keeps the write pending until
    /// the hang-up.
    #[test]
    fn a_peer_that_hangs_up_does_not_kill_the_caller_with_sigpipe() {
        const CHILD: &str = "PAM_JIT_TEST_SIGPIPE_CHILD";
        const NAME: &str =
            "jitd::tests::a_peer_that_hangs_up_does_not_kill_the_caller_with_sigpipe";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
            return;
        }
        // SAFETY: restoring the default action of a signal; no handler is involved.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let dir = std::env::temp_dir().join(format!("pam_jit_sigpipe_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jitd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(conn);
        });
        let call = socket_call_at(path.to_str().unwrap(), Duration::from_secs(5), false);
        let req = Request::CloseSession {
            user: "eve".into(),
            session: Some("s".repeat(900_000)),
        };
        let r = call(&req);
        assert!(r.is_err(), "{r:?}");
        t.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Nothing left pending for the caller either.
        // SAFETY: an all-zero sigset_t is valid for sigpending to overwrite.
        let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid, writable set.
        assert_eq!(unsafe { libc::sigpending(&mut pending) }, 0);
        // SAFETY: a set filled by sigpending.
        assert_eq!(unsafe { libc::sigismember(&pending, libc::SIGPIPE) }, 0);
    }

    #[test]
    fn sessions() {
        let spec = SessionSpec {
            user: "eve".into(),
            grant: "g-0001".into(),
            service: "sshd".into(),
            tty: "ssh".into(),
            rhost: "10.0.0.1".into(),
        };
        let call = |r: &Request| match r {
            Request::OpenSession { session: s } => ok(Payload::Session(Box::new(session(&s.user)))),
            Request::CloseSession { user, session } => {
                assert_eq!(user, "eve");
                assert_eq!(session.as_deref(), Some("s-0123456789ab"));
                ok(Payload::Done {
                    message: "closed".into(),
                })
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            open_session(&call, spec.clone()).unwrap().id,
            "s-0123456789ab"
        );
        close_session(&call, "eve", Some("s-0123456789ab".into())).unwrap();
        let wrong = |_: &Request| ok(Payload::Session(Box::new(session("mallory"))));
        assert!(open_session(&wrong, spec.clone()).is_err());
        let busy = |_: &Request| Ok(Response::error(ErrorCode::Busy, "busy"));
        assert!(open_session(&busy, spec).is_err());
        assert!(close_session(&busy, "eve", None).is_err());
    }

    #[test]
    fn items_are_capped_on_char_boundaries() {
        assert_eq!(capped("tty1", MAX_TTY_BYTES), "tty1");
        let long = "é".repeat(200);
        let c = capped(&long, MAX_RHOST_BYTES);
        assert!(c.len() == 254 && c.chars().all(|ch| ch == 'é'));
        assert_eq!(capped(&"s".repeat(100), MAX_SERVICE_BYTES).len(), 64);
    }
}
