//! `jitctl mfa enroll | remove` and `jitctl activate`.

use clap::Subcommand;
use jit_proto::message::Payload;
use jit_proto::Request;

use crate::client::{print, print_json, Ctx, Fail};
use crate::term;

#[derive(Subcommand)]
pub enum MfaCmd {
    /// Make USER's TOTP secret; prints an otpauth:// URI and a QR code once
    /// (--json: {"user","secret","uri"}).
    Enroll {
        /// User.
        user: String,
        /// Replace an existing secret (the old authenticator entry stops working).
        #[arg(long)]
        replace: bool,
    },
    /// Remove USER's secret.
    Remove {
        /// User.
        user: String,
    },
}

/// Runs one `mfa` subcommand.
pub fn run(ctx: &Ctx, cmd: &MfaCmd) -> Result<(), Fail> {
    match cmd {
        MfaCmd::Enroll { user, replace } => enroll(ctx, user, *replace),
        MfaCmd::Remove { user } => {
            let Payload::Done { message } = ctx.call(Request::RemoveMfa { user: user.clone() })?
            else {
                return Err(Fail::unexpected());
            };
            if ctx.json {
                print_json(&serde_json::json!({ "removed": user }))
            } else {
                print(&format!("{message}\n"))
            }
        }
    }
}

fn enroll(ctx: &Ctx, user: &str, replace: bool) -> Result<(), Fail> {
    let Payload::Enrollment { user, secret, uri } = ctx.call(Request::EnrollMfa {
        user: user.to_string(),
        replace,
    })?
    else {
        return Err(Fail::unexpected());
    };
    if ctx.json {
        return print_json(&serde_json::json!({ "user": user, "secret": secret, "uri": uri }));
    }
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map(|c| {
            c.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default();
    print(&format!("TOTP secret for {user} (shown once; scan or type it into an authenticator app):\n\n{qr}\n{uri}\nsecret: {secret}\n"))
}

/// `jitctl activate [ID]`: proves a TOTP code so the caller's armed --mfa grants give privilege.
pub fn activate(ctx: &Ctx, id: Option<&str>) -> Result<(), Fail> {
    let code = term::read_code()?;
    let Payload::Activated { grants } = ctx.call(Request::Activate {
        grant: id.map(str::to_string),
        code,
    })?
    else {
        return Err(Fail::unexpected());
    };
    if ctx.json {
        print_json(&serde_json::json!({ "activated": grants }))
    } else {
        print(&format!("activated {}\n", grants.join(" ")))
    }
}
