//! Talking to jitd and writing the answer: the global options every subcommand shares, the
//! exit-code carrying failure, and the output helpers.

use std::io::Write;
use std::time::Duration;

use jit_core::time::format_duration;
use jit_proto::client::ClientError;
use jit_proto::message::{Cursor, ListPage, Payload};
use jit_proto::{ErrorCode, Request, Response};

/// Refused or failed (stderr says why). Usage errors exit 2, through clap (the option
/// values are checked by its value parsers).
pub const EXIT_REFUSED: u8 = 1;
/// Cannot reach jitd.
pub const EXIT_UNREACHABLE: u8 = 3;

/// What to tell someone whose jitd is not running.
const HOW_TO_START: &str =
    "is jitd running? Start it as root: `systemctl start jitd` where it is installed as a service, else `jitd &` (it runs in the foreground; `jitd --check-config` first shows what is wrong with the host)";

/// A failure with its exit code.
pub struct Fail(pub u8, pub String);

impl Fail {
    /// Refused or failed.
    pub fn refused(msg: impl Into<String>) -> Fail {
        Fail(EXIT_REFUSED, msg.into())
    }

    /// A reply of another kind than the request asks for.
    pub fn unexpected() -> Fail {
        Fail::refused("unexpected reply")
    }
}

/// The global options and the time the command started.
pub struct Ctx {
    /// jitd's socket.
    pub socket: String,
    /// Machine-readable JSON on stdout.
    pub json: bool,
    /// How long to wait for jitd, in seconds (at least 1).
    pub timeout: u64,
    /// Unix seconds when jitctl started (relative times are shown against it).
    pub now: i64,
}

impl Ctx {
    /// Sends one request and returns the payload of an `ok` reply; an error reply is a refusal
    /// (exit 1), a busy daemon or no daemon exit 3.
    pub fn call(&self, req: Request) -> Result<Payload, Fail> {
        let r = jit_proto::call(
            &self.socket,
            &req,
            Duration::from_secs(self.timeout.max(1)),
            true,
        )
        .map_err(|e| {
            let hint = match e {
                ClientError::Unreachable(_) => format!("; {HOW_TO_START}"),
                _ => String::new(),
            };
            Fail(EXIT_UNREACHABLE, format!("{e} ({}){hint}", self.socket))
        })?;
        match r {
            Response::Ok { payload, .. } => Ok(payload),
            Response::Error {
                code: ErrorCode::Busy,
                message,
                ..
            } => Err(Fail(EXIT_UNREACHABLE, message)),
            Response::Error { message, .. } => Err(Fail::refused(message)),
        }
    }
}

/// Every entry of a paged list (`list_grants`, `list_sessions`), a page at a time: one reply
/// (a frame, 1 MiB) does not hold a bastion's worth. `ask` makes the request for a page (`None`:
/// the one-reply form an older jitd knows, tried when it refuses the first paged request),
/// `split` takes the entries and the next page's cursor out of a reply, `key` gives an entry's
/// place in the order. A cursor that does not name the page's last entry, or does not move
/// forward, would loop or skip: refused.
pub fn fetch_pages<T>(
    ctx: &Ctx,
    ask: impl Fn(Option<ListPage>) -> Request,
    split: impl Fn(Payload) -> Option<(Vec<T>, Option<Cursor>)>,
    key: impl Fn(&T) -> (i64, &str),
) -> Result<Vec<T>, Fail> {
    let mut all = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let first = after.is_none();
        let reply = match ctx.call(ask(Some(ListPage {
            after: after.clone(),
        }))) {
            Ok(p) => p,
            // A jitd older than paging (until it is restarted after an upgrade) refuses the
            // field: ask it the old way.
            Err(e) if first => match ctx.call(ask(None)) {
                Ok(p) => p,
                Err(_) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let (page, next) = split(reply).ok_or_else(Fail::unexpected)?;
        all.extend(page);
        match next {
            Some(c)
                if all.last().is_some_and(|e| key(e) == (c.at, c.id.as_str()))
                    && after.as_ref().is_none_or(|a| *a < c) =>
            {
                after = Some(c);
            }
            Some(_) => return Err(Fail::refused("jitd gave a page cursor out of order")),
            None => return Ok(all),
        }
    }
}

/// Writes `text` to stdout as it is.
pub fn print(text: &str) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Fail::refused(e.to_string()))
}

/// Writes `v` as pretty JSON and a newline to stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<(), Fail> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Fail::refused(e.to_string()))?;
    print(&format!("{s}\n"))
}

/// `t` relative to `now`: `now`, `in 5m`, `2h ago`.
pub fn relative(t: i64, now: i64) -> String {
    if t == now {
        "now".to_string()
    } else if t > now {
        format!("in {}", format_duration(t - now))
    } else {
        format!("{} ago", format_duration(now - t))
    }
}
