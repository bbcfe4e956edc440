//! `jitctl audit [--grant ID] [--since DURATION] [--follow]`.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use jit_proto::message::Payload;
use jit_proto::Request;

use crate::args;
use crate::client::{Ctx, Fail};

#[derive(Args)]
pub struct AuditArgs {
    /// Only this grant.
    #[arg(long, value_name = "ID")]
    grant: Option<String>,
    /// Only records from this long ago (e.g. 2h).
    #[arg(long, value_name = "DURATION", value_parser = args::duration, allow_hyphen_values = true)]
    since: Option<i64>,
    /// Keep printing new records.
    #[arg(long)]
    follow: bool,
}

/// Prints the audit trail, page by page from jitd, and with --follow waits for more.
pub fn run(ctx: &Ctx, a: &AuditArgs) -> Result<(), Fail> {
    let since = a.since.map(|d| ctx.now - d);
    let mut out = std::io::stdout().lock();
    let mut offset = None;
    loop {
        let Payload::Audit {
            records,
            offset: next,
        } = ctx.call(Request::ReadAudit {
            grant: a.grant.clone(),
            since,
            after_offset: offset,
        })?
        else {
            return Err(Fail::unexpected());
        };
        for r in &records {
            let line = if ctx.json {
                r.to_string()
            } else {
                audit_line(r)
            };
            writeln!(out, "{line}").map_err(|e| Fail::refused(e.to_string()))?;
        }
        out.flush().map_err(|e| Fail::refused(e.to_string()))?;
        let more = Some(next) != offset && !records.is_empty();
        offset = Some(next);
        if !a.follow && !more {
            return Ok(());
        }
        if a.follow && !more {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn audit_line(r: &serde_json::Value) -> String {
    let get = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let mut rest: Vec<String> = Vec::new();
    if let Some(o) = r.as_object() {
        for (k, v) in o {
            if ["ts", "time", "event", "severity", "grant", "user"].contains(&k.as_str()) {
                continue;
            }
            rest.push(format!("{k}={v}"));
        }
    }
    format!(
        "{} {:<8} {:<22} {:<16} {:<12} {}",
        get("time"),
        get("severity"),
        get("event"),
        get("grant"),
        get("user"),
        rest.join(" ")
    )
}
