//! Step-up MFA for `--mfa-sudo` grants: a TOTP code asked through sudo's conversation function
//! at every sudo, verified by jitd (`VerifyMfa`, purpose `sudo`), which enforces replay and
//! lockout with the same per-user records as logins.
//!
//! sudo's credential cache (`timestamp_timeout`) skips the PAM stack, so the question has to be
//! asked here. The reply sudo hands back is zeroed and freed here; copies this crate
//! makes are zeroed when dropped ([`Secret`]).

use crate::options::Options;
use jit_core::policy::sudo::shown;
use jit_proto::message::Payload;
use jit_proto::{ClientError, MfaPurpose, Request, Response};
use libc::{c_char, c_int, c_void};

/// `SUDO_CONV_PROMPT_ECHO_OFF`: read a reply without echo.
pub const SUDO_CONV_PROMPT_ECHO_OFF: c_int = 0x0001;
/// `SUDO_CONV_REPL_MAX`: the longest reply sudo returns (without its NUL).
pub const SUDO_CONV_REPL_MAX: usize = 1023;
/// Seconds sudo waits for the code at the prompt (a TOTP code lives 30 s).
pub const PROMPT_TIMEOUT_SECS: c_int = 60;
/// Longest code sent to jitd (a TOTP code is 6 digits; anything longer is refused there and
/// counted as a failure).
pub const MAX_CODE_BYTES: usize = 64;

/// `struct sudo_conv_message`.
#[repr(C)]
pub struct SudoConvMessage {
    /// `SUDO_CONV_*`.
    pub msg_type: c_int,
    /// Seconds to wait for input (0: sudo's default).
    pub timeout: c_int,
    /// The prompt.
    pub msg: *const c_char,
}

/// `struct sudo_conv_reply`: `reply` is malloc'ed by sudo and freed by the plugin.
#[repr(C)]
pub struct SudoConvReply {
    /// What the person typed (NUL-terminated), or null.
    pub reply: *mut c_char,
}

/// `sudo_conv_t` (the last argument is a `struct sudo_conv_callback *`, always null here).
pub type SudoConv =
    unsafe extern "C" fn(c_int, *const SudoConvMessage, *mut SudoConvReply, *mut c_void) -> c_int;

pub use jit_core::host::secret::Secret;
use jit_core::host::secret::{wipe, wipe_string};

/// The prompt for `grant`.
pub fn prompt(grant: &str) -> String {
    format!("Verification code for grant {}: ", shown(grant, 64))
}

/// Asks one question without echo through sudo's conversation function. `None` when the
/// conversation failed (no terminal, interrupted, timed out) or returned nothing.
///
/// # Safety
/// `conv` is the conversation function sudo passed to `open` for this invocation.
pub unsafe fn ask(conv: SudoConv, prompt: &str) -> Option<Secret> {
    let text: Vec<u8> = prompt
        .bytes()
        .filter(|&b| b != 0)
        .chain(std::iter::once(0))
        .collect();
    let msg = SudoConvMessage {
        msg_type: SUDO_CONV_PROMPT_ECHO_OFF,
        timeout: PROMPT_TIMEOUT_SECS,
        msg: text.as_ptr().cast::<c_char>(),
    };
    let mut reply = SudoConvReply {
        reply: std::ptr::null_mut(),
    };
    // SAFETY: one message and one reply slot, both valid for the call; the prompt is
    // NUL-terminated and outlives the call; a null callback is allowed by the API.
    let rc = unsafe { conv(1, &msg, &mut reply, std::ptr::null_mut()) };
    let p = reply.reply;
    let got = if p.is_null() {
        None
    } else {
        // SAFETY: sudo returns a NUL-terminated string of at most SUDO_CONV_REPL_MAX bytes;
        // strnlen reads no further than one byte past that bound.
        let n = unsafe { libc::strnlen(p, SUDO_CONV_REPL_MAX + 1) };
        // SAFETY: `n` bytes from `p` are readable (strnlen stopped at the NUL or the bound).
        let typed = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) };
        let copy = Secret::new(typed.to_vec());
        wipe(typed);
        // SAFETY: sudo allocated the reply with malloc and hands ownership to the plugin;
        // it is freed exactly once, here.
        unsafe { libc::free(p.cast::<c_void>()) };
        Some(copy)
    };
    if rc != 0 {
        return None;
    }
    got
}

/// Why a step-up failed: the line to print, and whether jitd could not be reached (then no
/// further call to it is tried in this check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// One line, `jit: ...`.
    pub reason: String,
    /// jitd was unreachable or timed out.
    pub unreachable: bool,
}

fn refused(reason: String) -> Refused {
    Refused {
        reason,
        unreachable: false,
    }
}

/// The code as sent: surrounding whitespace trimmed, capped at [`MAX_CODE_BYTES`].
pub fn normalize(typed: &[u8]) -> String {
    let t = typed.trim_ascii();
    let mut s = String::from_utf8_lossy(&t[..t.len().min(MAX_CODE_BYTES)]).into_owned();
    while s.len() > MAX_CODE_BYTES {
        s.pop();
    }
    s
}

/// Maps jitd's answer to `VerifyMfa` to approve (`Ok`) or the refusal line (pure; unit-tested).
///
/// # Errors
/// Anything but `Verified` for `user`.
pub fn outcome(user: &str, grant: &str, r: Result<Response, ClientError>) -> Result<(), Refused> {
    let g = shown(grant, 64);
    match r {
        Ok(Response::Ok {
            payload: Payload::Verified { user: u, .. },
            ..
        }) if u == user => Ok(()),
        Ok(Response::Ok { .. }) => Err(refused(format!(
            "jit: verification code refused for grant {g}: unexpected answer from jitd"
        ))),
        Ok(Response::Error { message, .. }) => Err(refused(format!(
            "jit: verification code refused for grant {g}: {}",
            shown(&message, 200)
        ))),
        Err(_) => Err(Refused {
            reason: format!("jit: cannot reach jitd to verify the code for grant {g}"),
            unreachable: true,
        }),
    }
}

/// Asks for the code of `grant` and has jitd verify it.
///
/// # Errors
/// No conversation function, nothing typed, or any answer but `Verified` (see [`outcome`]).
pub fn run(conv: Option<SudoConv>, opts: &Options, user: &str, grant: &str) -> Result<(), Refused> {
    let g = shown(grant, 64);
    let Some(conv) = conv else {
        return Err(refused(format!(
            "jit: grant {g} needs a verification code, but sudo gave no way to ask for it"
        )));
    };
    // SAFETY: `conv` is the conversation function sudo gave `open` for this invocation.
    let typed = unsafe { ask(conv, &prompt(grant)) };
    let code = typed
        .as_ref()
        .map(|t| normalize(t.bytes()))
        .unwrap_or_default();
    drop(typed);
    if code.is_empty() {
        return Err(refused(format!(
            "jit: no verification code given for grant {g}"
        )));
    }
    let req = Request::VerifyMfa {
        user: user.to_string(),
        code,
        purpose: MfaPurpose::Sudo,
        service: "sudo".into(),
        grant: Some(grant.to_string()),
        // The code is typed by the invoking user, who is the person: jitd counts failures on
        // the person's own counter.
        caller: None,
    };
    let r = jit_proto::call(
        jit_core::constants::DEFAULT_SOCKET_PATH,
        &req,
        opts.timeout,
        true,
    );
    if let Request::VerifyMfa { mut code, .. } = req {
        wipe_string(&mut code);
    }
    if let Err(e) = &r {
        debug_log(opts, &format!("sudo_jit: verify for {g} failed: {e}"));
    }
    outcome(user, grant, r)
}

fn debug_log(opts: &Options, msg: &str) {
    if opts.debug {
        jit_core::ffi::syslog_authpriv(libc::LOG_DEBUG, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jit_proto::ErrorCode;
    use std::sync::Mutex;

    fn verified(user: &str) -> Result<Response, ClientError> {
        Ok(Response::ok(Payload::Verified {
            user: user.into(),
            activated: vec![],
        }))
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome("alice", "g-1", verified("alice")), Ok(()));
        let e = outcome("alice", "g-1", verified("bob")).unwrap_err();
        assert!(e.reason.contains("unexpected answer") && !e.unreachable);
        let e = outcome(
            "alice",
            "g-1",
            Ok(Response::ok(Payload::Done {
                message: "x".into(),
            })),
        )
        .unwrap_err();
        assert!(e
            .reason
            .starts_with("jit: verification code refused for grant g-1"));
        let e = outcome(
            "alice",
            "g-1",
            Ok(Response::error(
                ErrorCode::Refused,
                "code already used\nsecond line",
            )),
        )
        .unwrap_err();
        assert_eq!(
            e.reason,
            // Response::error makes jitd's message one line (jit_proto::text::one_line).
            "jit: verification code refused for grant g-1: code already used\\u{a}second line"
        );
        assert!(!e.unreachable);
        for err in [
            ClientError::Timeout,
            ClientError::ImpostorPeer(1000),
            ClientError::Unreachable(std::io::Error::from(std::io::ErrorKind::NotFound)),
        ] {
            let e = outcome("alice", "g-1", Err(err)).unwrap_err();
            assert_eq!(
                e.reason,
                "jit: cannot reach jitd to verify the code for grant g-1"
            );
            assert!(e.unreachable);
        }
    }

    #[test]
    fn normalizes_codes() {
        assert_eq!(normalize(b" 123456\n"), "123456");
        assert_eq!(normalize(b""), "");
        assert_eq!(normalize(b" \t "), "");
        assert_eq!(normalize(&[b'1'; 1000]).len(), MAX_CODE_BYTES);
        let lossy = normalize(&[0xff; 100]);
        assert!(lossy.len() <= MAX_CODE_BYTES && !lossy.is_empty());
        let mut s = String::from("123456");
        wipe_string(&mut s);
        assert!(s.is_empty());
    }

    #[test]
    fn prompt_names_the_grant() {
        assert_eq!(prompt("g-0123"), "Verification code for grant g-0123: ");
        assert!(!prompt("g-\n").contains('\n'));
    }

    // A fake conversation function, the way sudo's behaves: strdup of the answer.
    static ANSWER: Mutex<Option<(&'static [u8], c_int)>> = Mutex::new(None);
    static SEEN: Mutex<Vec<(c_int, c_int, String)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn fake_conv(
        n: c_int,
        msgs: *const SudoConvMessage,
        replies: *mut SudoConvReply,
        _cb: *mut c_void,
    ) -> c_int {
        assert_eq!(n, 1);
        // SAFETY: the caller passes one valid message and one reply slot.
        let (m, r) = unsafe { (&*msgs, &mut *replies) };
        // SAFETY: the prompt is NUL-terminated.
        let text = unsafe { std::ffi::CStr::from_ptr(m.msg) }
            .to_string_lossy()
            .into_owned();
        SEEN.lock().unwrap().push((m.msg_type, m.timeout, text));
        let (answer, rc) = ANSWER.lock().unwrap().unwrap_or((b"", -1));
        if rc == 0 || !answer.is_empty() {
            let mut v = answer.to_vec();
            v.push(0);
            // SAFETY: a fresh malloc'ed copy, as sudo's strdup would give.
            let p = unsafe { libc::malloc(v.len()) }.cast::<u8>();
            assert!(!p.is_null());
            // SAFETY: `p` holds v.len() bytes.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, v.len()) };
            r.reply = p.cast();
        }
        rc
    }

    #[test]
    fn asks_through_the_conversation() {
        *ANSWER.lock().unwrap() = Some((b"654321", 0));
        // SAFETY: fake_conv follows the conversation contract.
        let got = unsafe { ask(fake_conv, &prompt("g-1")) }.unwrap();
        assert_eq!(got.bytes(), b"654321");
        let seen = SEEN.lock().unwrap().pop().unwrap();
        assert_eq!(
            seen,
            (
                SUDO_CONV_PROMPT_ECHO_OFF,
                PROMPT_TIMEOUT_SECS,
                "Verification code for grant g-1: ".to_string()
            )
        );
        // A failed conversation is no code, even if a reply was left behind (it is freed).
        *ANSWER.lock().unwrap() = Some((b"111111", -1));
        // SAFETY: as above.
        assert!(unsafe { ask(fake_conv, "x: ") }.is_none());
        // Nothing typed: the caller refuses without asking jitd.
        *ANSWER.lock().unwrap() = Some((b"", 0));
        let e = run(Some(fake_conv), &Options::default(), "alice", "g-1").unwrap_err();
        assert_eq!(e.reason, "jit: no verification code given for grant g-1");
        let e = run(None, &Options::default(), "alice", "g-1").unwrap_err();
        assert!(e.reason.contains("no way to ask"));
        *ANSWER.lock().unwrap() = None;
    }
}
