//! Reports of a jit user's sudo decisions to jitd (`ReportSudo`), bounded by the `timeout=`
//! option.
//!
//! * An approval is *confirmed* ([`confirm`]): it stands only if jitd answers the report with
//!   success within the deadline, so a jit user cannot sudo while jitd is stopped, hung or
//!   refusing (docs/design.md#components: a JIT identity is refused when a step that needs the daemon cannot
//!   reach it), and every approved command is in the audit trail.
//! * A denial is reported best effort ([`send`]): failures are ignored (logged to syslog
//!   authpriv only with the `debug` option); the refusal stands either way.
//!
//! Root and users with no jit involvement never reach this module.

use crate::cinfo::{Command, Invocation};
use crate::decision::{Decision, Verdict};
use crate::options::Options;
use jit_core::policy::sudo::shown;
use jit_proto::message::{Payload, SudoReport};
use jit_proto::{ClientError, Request, Response};

/// Most arguments carried in a report.
pub const MAX_REPORT_ARGS: usize = 64;
/// Longest argument (chars) carried in a report.
pub const MAX_REPORT_ARG_CHARS: usize = 256;

fn cap(s: &str) -> String {
    s.chars().take(MAX_REPORT_ARG_CHARS).collect()
}

/// Builds the report (pure; unit-tested).
///
/// The report of an approval carries the command and its arguments whole: jitd classifies
/// them against the operator's `ioc_commands` before it confirms, and a capped copy would let
/// `sh -c "<256 characters>; tcpdump"` or a 65th argument pass unseen. (jitd caps what it
/// writes to the audit log itself; a request larger than a frame is refused by the client.)
/// A denial's report, best effort, is capped.
pub fn build(inv: &Invocation, cmd: Option<&Command>, d: &Decision) -> SudoReport {
    let whole = d.verdict == Verdict::Allow;
    let text = |s: &str| if whole { s.to_string() } else { cap(s) };
    SudoReport {
        user: cap(&inv.user),
        uid: inv.uid,
        grant: d.grant.as_deref().map(cap),
        command: cmd.map(|c| text(&c.command)).unwrap_or_default(),
        argv: cmd
            .map(|c| {
                c.argv
                    .iter()
                    .take(if whole { usize::MAX } else { MAX_REPORT_ARGS })
                    .map(|a| text(a))
                    .collect()
            })
            .unwrap_or_default(),
        runas: cap(inv.runas_user.as_deref().unwrap_or("root")),
        runas_group: inv.runas_group.as_deref().map(cap),
        allowed: d.verdict == Verdict::Allow,
        reason: cap(&d.reason),
        classes: d.classes,
    }
}

fn call(opts: &Options, report: SudoReport) -> Result<Response, ClientError> {
    let req = Request::ReportSudo {
        report: Box::new(report),
    };
    jit_proto::call(
        jit_core::constants::DEFAULT_SOCKET_PATH,
        &req,
        opts.timeout,
        true,
    )
}

fn debug_log(opts: &Options, msg: &str) {
    if opts.debug {
        jit_core::ffi::syslog_authpriv(libc::LOG_DEBUG, msg);
    }
}

/// Sends the report of a denial; errors only logged with `debug`.
pub fn send(opts: &Options, report: SudoReport) {
    if let Err(e) = call(opts, report) {
        debug_log(opts, &format!("sudo_jit: report to jitd failed: {e}"));
    }
}

/// Sends the report of an approval and waits for jitd's acknowledgement.
///
/// # Errors
/// The one-line refusal when jitd cannot be reached, does not answer within the deadline, or
/// answers anything but success (see [`confirmation`]).
pub fn confirm(opts: &Options, report: SudoReport) -> Result<(), String> {
    let subject = subject(&report);
    let r = call(opts, report);
    if let Err(e) = &r {
        debug_log(opts, &format!("sudo_jit: confirming with jitd failed: {e}"));
    }
    confirmation(&subject, opts, r)
}

/// `grant g-…` (or `jit user NAME` when no grant is known) for refusal lines.
fn subject(report: &SudoReport) -> String {
    match &report.grant {
        Some(g) => format!("grant {}", shown(g, 64)),
        None => format!("jit user {}", shown(&report.user, 64)),
    }
}

/// Why a call failed, short, for `jit: cannot reach jitd (WHY); ...`.
fn why(e: &ClientError, opts: &Options) -> String {
    match e {
        ClientError::Unreachable(io) => shown(&io.to_string(), 120),
        ClientError::Timeout => format!("no answer within {} s", opts.timeout.as_secs()),
        ClientError::ImpostorPeer(uid) => format!("its socket is served by uid {uid}, not root"),
        ClientError::Frame(f) => shown(&f.to_string(), 120),
        ClientError::BadResponse(_) => "invalid reply".to_string(),
    }
}

/// Maps jitd's answer to an approval's report (pure; unit-tested): only `Done` confirms.
///
/// # Errors
/// The refusal line for anything else.
pub fn confirmation(
    subject: &str,
    opts: &Options,
    r: Result<Response, ClientError>,
) -> Result<(), String> {
    match r {
        Ok(Response::Ok {
            payload: Payload::Done { .. },
            ..
        }) => Ok(()),
        Ok(Response::Ok { .. }) => Err(format!(
            "jit: jitd sent an unexpected answer; sudo refused for {subject}"
        )),
        Ok(Response::Error { message, .. }) => Err(format!(
            "jit: jitd did not confirm ({}); sudo refused for {subject}",
            shown(&message, 200)
        )),
        Err(e) => Err(format!(
            "jit: cannot reach jitd ({}); sudo refused for {subject}",
            why(&e, opts)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_capped() {
        let inv = Invocation {
            user: "alice".into(),
            uid: 70_001,
            ..Default::default()
        };
        let cmd = Command {
            command: "/usr/bin/echo".into(),
            argv: (0..10_000).map(|_| "y".repeat(1 << 12)).collect(),
            ..Default::default()
        };
        let d = Decision {
            verdict: Verdict::Deny,
            jit: true,
            reason: "jit: no".into(),
            grant: Some("g-1".into()),
            classes: 0,
        };
        let r = build(&inv, Some(&cmd), &d);
        assert_eq!(r.argv.len(), MAX_REPORT_ARGS);
        assert!(r
            .argv
            .iter()
            .all(|a| a.chars().count() == MAX_REPORT_ARG_CHARS));
        assert!(!r.allowed);
        assert_eq!(r.runas, "root");
        assert_eq!(r.grant.as_deref(), Some("g-1"));
        assert_eq!(subject(&r), "grant g-1");
        let no_grant = SudoReport {
            user: "alice".into(),
            ..Default::default()
        };
        assert_eq!(subject(&no_grant), "jit user alice");
    }

    #[test]
    fn approval_report_is_whole_for_jitds_ioc_check() {
        // What jitd does with an approving report: classify it against its ioc_commands.
        let jitd_sees_ioc = |r: &SudoReport| {
            let args: Vec<&str> = r.argv.iter().map(String::as_str).collect();
            let req = jit_core::policy::sudo::SudoRequest::new(&r.user, r.uid, &r.command, &args);
            jit_core::policy::classify::classify(&req, &["tcpdump"])
                & jit_core::policy::classify::CLASS_IOC
                != 0
        };
        let inv = Invocation {
            user: "alice".into(),
            uid: 70_001,
            ..Default::default()
        };
        let allow = Decision {
            verdict: Verdict::Allow,
            jit: true,
            reason: String::new(),
            grant: Some("g-1".into()),
            classes: 0,
        };
        let script = format!("{}; tcpdump -i any", ": ".repeat(200));
        let mut wrapped = vec!["-i".to_string()];
        wrapped.extend((0..70).map(|i| format!("V{i}=x")));
        wrapped.push("tcpdump".into());
        for c in [
            Command {
                command: "/usr/bin/bash".into(),
                argv: vec!["-c".into(), script],
                ..Default::default()
            },
            Command {
                command: "/usr/bin/env".into(),
                argv: wrapped,
                ..Default::default()
            },
        ] {
            let r = build(&inv, Some(&c), &allow);
            assert!(jitd_sees_ioc(&r), "{:?}", c.argv.last());
            assert_eq!(r.argv, c.argv);
        }
    }

    #[test]
    fn only_done_confirms() {
        let o = Options::default();
        let s = "grant g-1";
        assert_eq!(
            confirmation(
                s,
                &o,
                Ok(Response::ok(Payload::Done {
                    message: "recorded".into()
                }))
            ),
            Ok(())
        );
        assert_eq!(
            confirmation(
                s,
                &o,
                Ok(Response::ok(Payload::Activated { grants: vec![] }))
            )
            .unwrap_err(),
            "jit: jitd sent an unexpected answer; sudo refused for grant g-1"
        );
        assert_eq!(
            confirmation(
                s,
                &o,
                Ok(Response::error(
                    jit_proto::ErrorCode::Internal,
                    "audit log not writable"
                ))
            )
            .unwrap_err(),
            "jit: jitd did not confirm (audit log not writable); sudo refused for grant g-1"
        );
        assert_eq!(
            confirmation(s, &o, Err(ClientError::Timeout)).unwrap_err(),
            "jit: cannot reach jitd (no answer within 2 s); sudo refused for grant g-1"
        );
        let e = confirmation(
            s,
            &o,
            Err(ClientError::Unreachable(std::io::Error::from_raw_os_error(
                libc::ENOENT,
            ))),
        )
        .unwrap_err();
        assert!(
            e.starts_with("jit: cannot reach jitd (No such file or directory")
                && e.ends_with("); sudo refused for grant g-1"),
            "{e}"
        );
        assert!(confirmation(s, &o, Err(ClientError::ImpostorPeer(1000)))
            .unwrap_err()
            .contains("uid 1000, not root"));
    }

    #[test]
    fn unreachable_socket_refuses_quickly() {
        // The real call path against a socket that does not exist (no jitd in a unit test):
        // refused, and at once.
        let t = std::time::Instant::now();
        let mut r = build(
            &Invocation {
                user: "alice".into(),
                uid: 70_001,
                ..Default::default()
            },
            None,
            &Decision {
                verdict: Verdict::Allow,
                jit: true,
                reason: String::new(),
                grant: Some("g-1".into()),
                classes: 0,
            },
        );
        r.allowed = true;
        let res = confirmation(
            "grant g-1",
            &Options::default(),
            jit_proto::call(
                "/nonexistent/sudo_jit-test.sock",
                &Request::ReportSudo {
                    report: Box::new(r),
                },
                Options::default().timeout,
                true,
            ),
        );
        assert!(res.unwrap_err().starts_with("jit: cannot reach jitd ("));
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }
}
