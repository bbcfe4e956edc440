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
    /// The one-time join token `jit-server host add NAME` printed.
    #[arg(long)]
    pub token: String,
    /// The server's TLS fingerprint (SHA256:…) as `jit-server init` printed it.
    #[arg(long)]
    pub fingerprint: String,
}

/// Runs `enroll` (root only; jitd refuses anyone else).
pub fn run(ctx: &Ctx, a: &EnrollArgs) -> Result<(), Fail> {
    let Payload::Done { message } = ctx.call(Request::EnrollServer {
        url: a.url.clone(),
        token: a.token.clone(),
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
