//! `jitctl enroll URL --token T --fingerprint SHA256:…`: jitd enrols this host with jit-server.
//! The host key is made by jitd in its state directory and never leaves it; jitctl only
//! passes the URL, the one-time join token and the server's fingerprint over the socket.

use clap::Args;
use jit_proto::message::Payload;
use jit_proto::Request;

use crate::client::{print, print_json, Ctx, Fail};

#[derive(Args)]
pub struct EnrollArgs {
    /// https://HOST:PORT of the jit-server.
    pub url: String,
    /// The one-time join token `jit-server host add NAME` printed; `-` reads it from the first
    /// line of standard input (any local user can read a command line while it runs, and could
    /// spend the token first).
    #[arg(long)]
    pub token: String,
    /// The server's TLS fingerprint (SHA256:…) as `jit-server init` printed it.
    #[arg(long)]
    pub fingerprint: String,
}

/// Runs `enroll` (root only; jitd refuses anyone else).
pub fn run(ctx: &Ctx, a: &EnrollArgs) -> Result<(), Fail> {
    let token = if a.token == "-" {
        token_from_stdin()?
    } else {
        a.token.clone()
    };
    let Payload::Done { message } = ctx.call(Request::EnrollServer {
        url: a.url.clone(),
        token,
        fingerprint: a.fingerprint.clone(),
    })?
    else {
        return Err(Fail::unexpected());
    };
    if ctx.json {
        print_json(&serde_json::json!({ "message": message }))
    } else {
        print(&format!("{message}\n"))
    }
}

/// The first line of stdin, without its line end; at most 4 KiB are read (jitd refuses a
/// token longer than 128 bytes anyway).
fn token_from_stdin() -> Result<String, Fail> {
    use std::io::{BufRead, Read};
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(4096)
        .read_line(&mut line)
        .map_err(|e| Fail::refused(format!("--token -: reading standard input: {e}")))?;
    let t = line.trim_end_matches(['\n', '\r']);
    if t.is_empty() {
        return Err(Fail::refused(
            "--token -: no token on standard input (the join token jit-server host add printed)",
        ));
    }
    Ok(t.to_string())
}
