//! `jitctl status`.

use jit_core::time::format_duration;
use jit_proto::message::{Payload, Status};
use jit_proto::Request;

use crate::client::{print, print_json, relative, Ctx, Fail};

/// Daemon, server link, grant counts, snapshot age.
pub fn run(ctx: &Ctx) -> Result<(), Fail> {
    let Payload::Status(s) = ctx.call(Request::GetStatus)? else {
        return Err(Fail::unexpected());
    };
    if ctx.json {
        print_json(&s)
    } else {
        print(&status_text(&s, ctx.now))
    }
}

fn status_text(s: &Status, now: i64) -> String {
    let age = s
        .snapshot_written_at
        .map_or("never written".to_string(), |t| {
            format!("written {}", relative(t, now))
        });
    format!(
        "jitd {} (pid {}), up {}\ngrants: {} live, {} pending, {} awaiting teardown, {} ended\nsnapshot: {} ({age})\nserver: {}\nstate: {}\ncgroups: {}\nmonitoring: {}\ntokenization: {}\nnss counter: {}\nsnapshot room: {}\n",
        s.version,
        s.pid,
        format_duration(s.uptime_secs),
        s.live,
        s.pending,
        s.teardown_pending,
        s.ended,
        s.snapshot_path,
        s.server,
        if s.state_writable { "writable" } else { "NOT WRITABLE: new grants refused" },
        s.cgroups,
        if s.monitoring.is_empty() { "not reported (an older jitd)" } else { &s.monitoring },
        s.tokenization,
        if s.nss_counter.is_empty() { "not reported (an older jitd)" } else { &s.nss_counter },
        if s.snapshot_room.is_empty() { "not reported (an older jitd)" } else { &s.snapshot_room }
    )
}
