//! `jitctl session list`.

use clap::Subcommand;
use jit_proto::message::{Payload, Session};
use jit_proto::Request;

use crate::client::{fetch_pages, print, print_json, Ctx, Fail};

// Arguments built only when this subcommand is parsed (see `Cmd` in jitctl's main.rs).
#[derive(Subcommand)]
#[command(defer = true)]
pub enum SessionCmd {
    /// List sessions.
    List,
}

/// Runs one `session` subcommand.
pub fn run(ctx: &Ctx, cmd: &SessionCmd) -> Result<(), Fail> {
    match cmd {
        SessionCmd::List => list(ctx),
    }
}

fn list(ctx: &Ctx) -> Result<(), Fail> {
    let sessions = fetch_pages(
        ctx,
        |page| Request::ListSessions { page },
        |p| match p {
            Payload::Sessions { sessions, next } => Some((sessions, next)),
            _ => None,
        },
        |s: &Session| (s.opened_at, s.id.as_str()),
    )?;
    if ctx.json {
        return print_json(&sessions);
    }
    let mut text = String::new();
    if sessions.is_empty() {
        text.push_str("no open sessions\n");
    } else {
        text.push_str(&format!(
            "{:<16} {:<14} {:<16} {:>7} {:<8} {:<10} {:<16} {}\n",
            "SESSION", "GRANT", "USER", "PID", "SERVICE", "TTY", "FROM", "OPENED"
        ));
    }
    for s in &sessions {
        text.push_str(&format!(
            "{:<16} {:<14} {:<16} {:>7} {:<8} {:<10} {:<16} {}\n",
            s.id,
            s.grant,
            s.user,
            s.pid,
            s.service,
            if s.tty.is_empty() { "-" } else { &s.tty },
            if s.rhost.is_empty() { "-" } else { &s.rhost },
            jit_core::time::format_utc(s.opened_at)
        ));
    }
    print(&text)
}
