//! `jitctl mfa enroll | remove` and `jitctl activate`.

use clap::Subcommand;
use jit_proto::message::Payload;
use jit_proto::Request;

use crate::client::{print, print_json, Ctx, Fail};
use crate::term;

// Arguments built only when this subcommand is parsed (see `Cmd` in jitctl's main.rs).
#[derive(Subcommand)]
#[command(defer = true)]
pub enum MfaCmd {
    /// Make USER's TOTP secret on this host (root); prints an otpauth:// URI and a QR code once
    /// (--json: {"user","secret","uri"}). Without USER: enrol yourself against the jit-server
    /// you logged in to (fleet TOTP, delivered sealed to hosts where you hold an MFA grant);
    /// confirm with `jitctl mfa confirm CODE`.
    Enroll {
        /// User (local enrolment); omitted: your fleet enrolment on the server.
        user: Option<String>,
        /// Replace an existing secret (the old authenticator entry stops working).
        #[arg(long)]
        replace: bool,
    },
    /// Confirm your fleet TOTP enrolment with one code from the authenticator: only then does
    /// the server use the new secret (--json: {"user","version"}).
    Confirm {
        /// The 6-digit code.
        code: String,
    },
    /// Remove USER's secret on this host (root). Without USER: remove your fleet TOTP
    /// enrolment on the jit-server you logged in to (a lost or compromised authenticator; the
    /// hosts where you hold an MFA grant drop the secret at once and refuse your codes until a
    /// new enrolment is confirmed); an admin names someone else's with --person.
    Remove {
        /// User (local); omitted: a fleet enrolment on the server.
        user: Option<String>,
        /// With no USER: the person whose fleet enrolment to remove (admins only).
        #[arg(long, conflicts_with = "user")]
        person: Option<String>,
    },
}

/// Runs one `mfa` subcommand.
pub fn run(ctx: &Ctx, cmd: &MfaCmd) -> Result<(), Fail> {
    match cmd {
        MfaCmd::Enroll {
            user: Some(user),
            replace,
        } => enroll(ctx, user, *replace),
        MfaCmd::Enroll { user: None, .. } => fleet_enroll(ctx),
        MfaCmd::Confirm { code } => {
            let v = jitd::remote::cli::mfa_confirm(code).map_err(|f| Fail(f.0, f.1))?;
            if ctx.json {
                print_json(&serde_json::json!({ "user": v["user"], "version": v["version"] }))
            } else {
                print(&format!(
                    "TOTP enrolment of {} confirmed (version {}): hosts where you hold an MFA grant receive it sealed\n",
                    v["user"].as_str().unwrap_or("-"),
                    v["version"]
                ))
            }
        }
        MfaCmd::Remove { user: None, person } => {
            let v = jitd::remote::cli::mfa_remove(person.as_deref()).map_err(|f| Fail(f.0, f.1))?;
            if ctx.json {
                print_json(&serde_json::json!({ "removed": v["user"], "hosts": v["hosts"] }))
            } else {
                let hosts = v["hosts"].as_array().map_or(0, Vec::len);
                print(&format!(
                    "fleet TOTP enrolment of {} removed: {hosts} host(s) with a live MFA grant drop the secret now\n",
                    v["user"].as_str().unwrap_or("-")
                ))
            }
        }
        MfaCmd::Remove {
            user: Some(user), ..
        } => {
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

fn qr(uri: &str) -> String {
    qrcode::QrCode::new(uri.as_bytes())
        .map(|c| {
            c.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default()
}

/// `jitctl mfa enroll` (no USER): the server makes the secret; shown once, pending until
/// `jitctl mfa confirm CODE`.
fn fleet_enroll(ctx: &Ctx) -> Result<(), Fail> {
    let v = jitd::remote::cli::mfa_enroll().map_err(|f| Fail(f.0, f.1))?;
    let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let (user, secret, uri) = (field("user"), field("secret"), field("uri"));
    if ctx.json {
        return print_json(
            &serde_json::json!({ "user": user, "version": v["version"], "secret": secret, "uri": uri }),
        );
    }
    print(&format!("Fleet TOTP secret for {user} (shown once; scan or type it into an authenticator app):\n\n{}\n{uri}\nsecret: {secret}\n\nThen confirm it: jitctl mfa confirm CODE\n", qr(&uri)))
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
