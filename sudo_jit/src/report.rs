//! Best-effort report of a jit user's sudo decision to jitd (`ReportSudo`). Failures are
//! ignored (logged to syslog authpriv only with the `debug` option): the decision is already
//! made and never waits on the daemon beyond the option's deadline.

use crate::cinfo::{Command, Invocation};
use crate::decision::{Decision, Verdict};
use crate::options::Options;
use jit_proto::message::SudoReport;
use jit_proto::Request;

/// Most arguments carried in a report.
pub const MAX_REPORT_ARGS: usize = 64;
/// Longest argument (chars) carried in a report.
pub const MAX_REPORT_ARG_CHARS: usize = 256;

fn cap(s: &str) -> String {
    s.chars().take(MAX_REPORT_ARG_CHARS).collect()
}

/// Builds the report (pure; unit-tested).
pub fn build(inv: &Invocation, cmd: Option<&Command>, d: &Decision) -> SudoReport {
    SudoReport {
        user: cap(&inv.user),
        uid: inv.uid,
        grant: d.grant.as_deref().map(cap),
        command: cmd.map(|c| cap(&c.command)).unwrap_or_default(),
        argv: cmd
            .map(|c| {
                c.argv
                    .iter()
                    .take(MAX_REPORT_ARGS)
                    .map(|a| cap(a))
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

/// Sends the report; errors only logged with `debug`.
pub fn send(opts: &Options, report: SudoReport) {
    let req = Request::ReportSudo {
        report: Box::new(report),
    };
    let r = jit_proto::call(
        jit_core::constants::DEFAULT_SOCKET_PATH,
        &req,
        opts.timeout,
        true,
    );
    if let Err(e) = r {
        if opts.debug {
            jit_core::ffi::syslog_authpriv(
                libc::LOG_DEBUG,
                &format!("sudo_jit: report to jitd failed: {e}"),
            );
        }
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
    }
}
