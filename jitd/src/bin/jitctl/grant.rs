//! `jitctl grant add | list | show | revoke`.

use clap::{Args, Subcommand};
use jit_core::time::format_utc;
use jit_proto::message::Payload;
use jit_proto::{Grant, GrantSpec, Request};

use crate::args;
use crate::client::{fetch_pages, print, print_json, relative, Ctx, Fail};

// Arguments built only when this subcommand is parsed (see `Cmd` in jitctl's main.rs).
#[derive(Subcommand)]
#[command(defer = true)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum GrantCmd {
    /// Add a local grant (root only); prints the grant id.
    Add(AddArgs),
    /// Live grants (with --all: pending and ended too).
    List {
        /// Include pending and ended grants.
        #[arg(long)]
        all: bool,
    },
    /// One grant in full.
    Show {
        /// Grant id.
        id: String,
        /// Only the certification of host state at the grant's end (clean, or every
        /// difference); with --json the certification object (null until it is taken).
        #[arg(long)]
        certification: bool,
    },
    /// End a grant now: privilege removed, sessions and processes ended (root only).
    Revoke {
        /// Grant id.
        id: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// The person: a new ephemeral account name with --account, else an existing local user.
    pub user: String,
    /// How long the grant lasts (90s, 30m, 2h, 1h30m).
    #[arg(long = "for", value_name = "DURATION", value_parser = args::duration, allow_hyphen_values = true)]
    pub duration: i64,
    /// Start later instead of now.
    #[arg(long, value_name = "DURATION", value_parser = args::duration, allow_hyphen_values = true)]
    pub start_in: Option<i64>,
    /// Create the ephemeral account USER while the grant is live.
    #[arg(long)]
    pub account: bool,
    /// Membership of an existing local group while live (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// sudo scope: ALL, a path, or a path with arguments (repeatable; enforced by sudo_jit).
    #[arg(long = "sudo", value_name = "COMMAND")]
    pub sudo: Vec<String>,
    /// Allowed sudo run-as target USER[:GROUP] (repeatable; default root).
    #[arg(long = "runas", value_name = "USER[:GROUP]")]
    pub runas: Vec<String>,
    /// USER is a managed local admin account (managed_accounts): enable it while live.
    #[arg(long)]
    pub enable: bool,
    /// ssh public key for the ephemeral account (repeatable).
    #[arg(long = "ssh-key", value_name = "KEY")]
    pub ssh_keys: Vec<String>,
    /// File of ssh public keys, one per line (repeatable).
    #[arg(long = "ssh-key-file", value_name = "PATH")]
    pub ssh_key_files: Vec<String>,
    /// Source networks logins may come from (repeatable; needs --account or --enable).
    #[arg(long = "from", value_name = "CIDR", value_parser = args::cidr)]
    pub from: Vec<String>,
    /// PAM services logins may use, e.g. sshd, su, login (repeatable; needs --account or --enable).
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Login time window in host local time, e.g. "Mon-Fri 09:00-18:00" (repeatable).
    #[arg(long = "window", value_name = "SPEC", value_parser = args::window)]
    pub windows: Vec<String>,
    /// TOTP needed at every login (pam_jit), or `jitctl activate` before group/sudo privilege.
    #[arg(long)]
    pub mfa: bool,
    /// TOTP needed at every sudo (step-up through sudo_jit).
    #[arg(long)]
    pub mfa_sudo: bool,
    /// End the grant when its first login session closes.
    #[arg(long)]
    pub end_with_session: bool,
    /// Revocation class: ioc, software-install, account-change, sensitive-read,
    /// lateral-movement (repeatable).
    #[arg(long = "revoke-on", value_name = "CLASS", value_parser = args::revoke_class)]
    pub revoke_on: Vec<String>,
    /// Capability the --program programs run with through `jitctl run`, e.g.
    /// CAP_NET_BIND_SERVICE (repeatable; root-equivalent ones need allow_caps in jitd.toml).
    #[arg(long = "cap", value_name = "CAP", value_parser = args::capability)]
    pub caps: Vec<String>,
    /// Absolute path of a program USER may run with the --cap capabilities (repeatable).
    #[arg(long = "program", value_name = "PATH")]
    pub programs: Vec<String>,
    /// Why the grant exists.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Ticket reference.
    #[arg(long, default_value = "")]
    pub ticket: String,
    /// Who asked for it.
    #[arg(long, default_value = "")]
    pub requested_by: String,
}

/// Runs one `grant` subcommand.
pub fn run(ctx: &Ctx, cmd: &GrantCmd) -> Result<(), Fail> {
    match cmd {
        GrantCmd::Add(a) => add(ctx, a),
        GrantCmd::List { all } => list(ctx, *all),
        GrantCmd::Show { id, certification } => {
            let Payload::Grant(g) = ctx.call(Request::ShowGrant { id: id.clone() })? else {
                return Err(Fail::unexpected());
            };
            if *certification {
                return if ctx.json {
                    print_json(&g.certification)
                } else {
                    print(&jitd::certify::render(&g))
                };
            }
            if ctx.json {
                print_json(&g)
            } else {
                print(&show_grant(&g, ctx.now))
            }
        }
        GrantCmd::Revoke { id, reason } => {
            let Payload::Grant(g) = ctx.call(Request::RevokeGrant {
                id: id.clone(),
                reason: reason.clone(),
            })?
            else {
                return Err(Fail::unexpected());
            };
            // The revocation is durable (jitd answers an error otherwise), but an operator
            // revoking on a full state filesystem should hear that it went to the journal.
            if let Ok(Payload::Status(s)) = ctx.call(Request::GetStatus) {
                if !s.state_writable {
                    eprintln!(
                        "jitctl: note: jitd cannot write its state file (full or failing disk): \
                         this revocation is recorded in its revocation journal and holds across \
                         a restart; new grants are refused until the state file can be written"
                    );
                }
            }
            if ctx.json {
                print_json(&g)
            } else {
                print(&format!("revoked {} ({})\n", g.id, g.user))
            }
        }
    }
}

/// The request `grant add` sends, built from validated options and the key files' lines.
pub fn spec(a: &AddArgs) -> Result<GrantSpec, Fail> {
    Ok(GrantSpec {
        user: a.user.clone(),
        duration_secs: a.duration,
        start_in_secs: a.start_in.unwrap_or(0),
        account: a.account,
        groups: a.groups.clone(),
        ssh_keys: read_keys(a)?,
        reason: a.reason.clone(),
        ticket: a.ticket.clone(),
        requested_by: a.requested_by.clone(),
        sudo: a.sudo.clone(),
        runas: a.runas.clone(),
        enable: a.enable,
        from: a.from.clone(),
        services: a.services.clone(),
        windows: a.windows.clone(),
        mfa: a.mfa,
        mfa_sudo: a.mfa_sudo,
        end_with_session: a.end_with_session,
        revoke_on: a.revoke_on.clone(),
        caps: a.caps.clone(),
        programs: a.programs.clone(),
    })
}

fn add(ctx: &Ctx, a: &AddArgs) -> Result<(), Fail> {
    let spec = spec(a)?;
    let Payload::Grant(g) = ctx.call(Request::AddGrant {
        spec: Box::new(spec),
    })?
    else {
        return Err(Fail::unexpected());
    };
    // Programs that escape a narrow scope (jitd::escape): warned, not refused.
    let warnings = jitd::escape::warnings(&a.sudo);
    for line in &warnings {
        eprintln!("jitctl: warning: {line}");
    }
    if ctx.json {
        let v = serde_json::to_value(&g).map_err(|e| Fail(1, e.to_string()))?;
        print_json(&jitd::escape::with_warnings(v, &warnings))
    } else {
        print(&format!("{}\n", g.id))
    }
}

fn list(ctx: &Ctx, all: bool) -> Result<(), Fail> {
    let grants = fetch_pages(
        ctx,
        |page| Request::ListGrants { all, page },
        |p| match p {
            Payload::Grants { grants, next } => Some((grants, next)),
            _ => None,
        },
        |g: &Grant| (g.not_before, g.id.as_str()),
    )?;
    if ctx.json {
        return print_json(&grants);
    }
    if grants.is_empty() {
        return print(if all {
            "no grants\n"
        } else {
            "no live grants (--all shows pending and ended ones)\n"
        });
    }
    let mut s = format!(
        "{:<16} {:<12} {:<8} {:<14} {:<22} {}\n",
        "ID", "USER", "STATE", "STARTS", "ENDS", "GRANTS"
    );
    for g in &grants {
        s.push_str(&format!(
            "{:<16} {:<12} {:<8} {:<14} {:<22} {}\n",
            g.id,
            g.user,
            g.state.as_str(),
            relative(g.not_before, ctx.now),
            ends(g, ctx.now),
            what(g)
        ));
    }
    print(&s)
}

fn read_keys(args: &AddArgs) -> Result<Vec<String>, Fail> {
    let mut keys = args.ssh_keys.clone();
    for f in &args.ssh_key_files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Fail::refused(format!("--ssh-key-file {f}: {e}")))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(keys)
}

/// What a grant gives, in one line for `grant list` and `grant show`.
fn what(g: &Grant) -> String {
    let mut parts = Vec::new();
    if g.account {
        parts.push(format!(
            "account(uid {})",
            g.uid.map_or("?".into(), |u| u.to_string())
        ));
    }
    if g.enable {
        parts.push(if g.created_by == "break-glass" {
            "enable (break-glass)".to_string()
        } else {
            "enable".to_string()
        });
    }
    for gr in &g.groups {
        parts.push(format!("group {gr}"));
    }
    if !g.sudo.is_empty() {
        let runas = if g.runas.is_empty() {
            String::new()
        } else {
            format!(" as {}", g.runas.join("|"))
        };
        parts.push(format!("sudo {}{runas}", g.sudo.join(" | ")));
    }
    if !g.caps.is_empty() {
        parts.push(format!("{} for {}", g.caps.join("+"), g.programs.join(" ")));
    }
    let mut conds = Vec::new();
    if g.mfa {
        conds.push("mfa".to_string());
    }
    if g.mfa_sudo {
        conds.push("mfa-sudo".to_string());
    }
    for f in &g.from {
        conds.push(format!("from {f}"));
    }
    for sv in &g.services {
        conds.push(format!("service {sv}"));
    }
    for wi in &g.windows {
        conds.push(format!("window {wi:?}"));
    }
    if g.end_with_session {
        conds.push("end-with-session".to_string());
    }
    if !g.revoke_on.is_empty() {
        conds.push(format!("revoke-on {}", g.revoke_on.join(",")));
    }
    let mut s = parts.join(", ");
    if !conds.is_empty() {
        s.push_str(&format!(" [{}]", conds.join("; ")));
    }
    s
}

/// When a grant ends or ended: an ended grant shows when it ended, not its planned end.
fn ends(g: &Grant, now: i64) -> String {
    match (g.state.is_ended(), g.ended_at) {
        (true, Some(t)) if t < g.not_after => format!("{} (early)", relative(t, now)),
        (true, Some(t)) => relative(t, now),
        _ => relative(g.not_after, now),
    }
}

fn show_grant(g: &Grant, now: i64) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<14} {v}\n"));
    line("id:", g.id.to_string());
    line("user:", g.user.to_string());
    line("state:", g.state.as_str().into());
    line(
        "not_before:",
        format!(
            "{} ({})",
            format_utc(g.not_before),
            relative(g.not_before, now)
        ),
    );
    line(
        "not_after:",
        format!(
            "{} ({})",
            format_utc(g.not_after),
            relative(g.not_after, now)
        ),
    );
    line("grants:", what(g));
    if g.mfa {
        line(
            "mfa:",
            match g.activated_at {
                Some(t) => format!("activated {}", format_utc(t)),
                None => "required: a code at login or jitctl activate (as the user) before it gives privilege".into(),
            },
        );
    }
    if !g.ssh_keys.is_empty() {
        line("ssh keys:", g.ssh_keys.len().to_string());
    }
    if !g.reason.is_empty() {
        line("reason:", g.reason.clone());
    }
    if !g.ticket.is_empty() {
        line("ticket:", g.ticket.clone());
    }
    if !g.requested_by.is_empty() {
        line("requested by:", g.requested_by.clone());
    }
    line(
        "created:",
        format!("{} by {}", format_utc(g.created_at), g.created_by),
    );
    if let Some(t) = g.ended_at {
        line(
            "ended:",
            format!(
                "{} ({})",
                format_utc(t),
                g.end_reason.clone().unwrap_or_default()
            ),
        );
        line(
            "torn down:",
            if g.torn_down {
                "yes".into()
            } else {
                "not yet".into()
            },
        );
    }
    s
}
