//! jitctl: the command line of jitd. Talks to the local socket; root may do everything, a user
//! may only look at its own grants. Exit codes: 0 ok, 1 refused or failed, 2 usage error,
//! 3 cannot reach jitd.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jit_core::constants::DEFAULT_SOCKET_PATH;
use jit_core::time::{format_duration, format_utc, parse_duration};
use jit_proto::message::{Payload, Status};
use jit_proto::{ErrorCode, Grant, GrantSpec, Request, Response};

/// jitctl — manage just-in-time grants on this host through jitd.
#[derive(Parser)]
#[command(
    name = "jitctl",
    version,
    about = "jitctl - manage just-in-time grants on this host through jitd",
    after_help = "Exit codes: 0 ok, 1 refused or failed (stderr says why), 2 usage error, 3 cannot reach jitd."
)]
struct Cli {
    /// jitd's socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET_PATH)]
    socket: String,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for jitd (a revoke waits for its teardown).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Cmd {
    /// Daemon, server link, grant counts, snapshot age.
    Status,
    /// Add, list, show and revoke grants.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Show the audit trail.
    Audit {
        /// Only this grant.
        #[arg(long, value_name = "ID")]
        grant: Option<String>,
        /// Only records from this long ago (e.g. 2h).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Keep printing new records.
        #[arg(long)]
        follow: bool,
    },
    /// Prove a TOTP code so your armed --mfa grants (or grant ID) give privilege. Reads the
    /// code from the terminal, or from stdin when it is not a terminal.
    Activate {
        /// Only this grant.
        id: Option<String>,
    },
    /// Login sessions pam_jit registered under grants.
    #[command(subcommand)]
    Session(SessionCmd),
    /// TOTP secrets (root only).
    #[command(subcommand)]
    Mfa(MfaCmd),
    /// Break-glass codes for managed admin accounts (root only).
    #[command(subcommand)]
    Breakglass(BreakglassCmd),
    /// Hours of privilege per person vs standing access (not supported yet).
    Report {
        /// Period.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
    /// Verbs against the central service (jit-server): login, request, requests, approve, deny,
    /// revoke, hosts.
    #[command(flatten)]
    Remote(jitd::remote::cli::RemoteCmd),
}

#[derive(Subcommand)]
enum SessionCmd {
    /// List sessions.
    List,
}

#[derive(Subcommand)]
enum MfaCmd {
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

#[derive(Subcommand)]
enum BreakglassCmd {
    /// Make N one-time emergency codes for a managed account.
    Init {
        /// Managed account.
        #[arg(long)]
        account: String,
        /// How many codes (1-20).
        #[arg(long)]
        count: u32,
        /// Void the account's existing codes and make new ones.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum GrantCmd {
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
struct AddArgs {
    /// The person: a new ephemeral account name with --account, else an existing local user.
    user: String,
    /// How long the grant lasts (90s, 30m, 2h, 1h30m).
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    /// Start later instead of now.
    #[arg(long, value_name = "DURATION")]
    start_in: Option<String>,
    /// Create the ephemeral account USER while the grant is live.
    #[arg(long)]
    account: bool,
    /// Membership of an existing local group while live (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// sudo scope: ALL, a path, or a path with arguments (repeatable; enforced by sudo_jit).
    #[arg(long = "sudo", value_name = "COMMAND")]
    sudo: Vec<String>,
    /// Allowed sudo run-as target USER[:GROUP] (repeatable; default root).
    #[arg(long = "runas", value_name = "USER[:GROUP]")]
    runas: Vec<String>,
    /// USER is a managed local admin account (managed_accounts): enable it while live.
    #[arg(long)]
    enable: bool,
    /// ssh public key for the ephemeral account (repeatable).
    #[arg(long = "ssh-key", value_name = "KEY")]
    ssh_keys: Vec<String>,
    /// File of ssh public keys, one per line (repeatable).
    #[arg(long = "ssh-key-file", value_name = "PATH")]
    ssh_key_files: Vec<String>,
    /// Source networks logins may come from (repeatable; needs --account or --enable).
    #[arg(long = "from", value_name = "CIDR")]
    from: Vec<String>,
    /// PAM services logins may use, e.g. sshd, su, login (repeatable; needs --account or --enable).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// Login time window in host local time, e.g. "Mon-Fri 09:00-18:00" (repeatable).
    #[arg(long = "window", value_name = "SPEC")]
    windows: Vec<String>,
    /// TOTP needed at every login (pam_jit), or `jitctl activate` before group/sudo privilege.
    #[arg(long)]
    mfa: bool,
    /// TOTP needed at every sudo (step-up through sudo_jit).
    #[arg(long)]
    mfa_sudo: bool,
    /// End the grant when its first login session closes.
    #[arg(long)]
    end_with_session: bool,
    /// Revocation class: ioc, software-install, account-change, sensitive-read (repeatable).
    #[arg(long = "revoke-on", value_name = "CLASS")]
    revoke_on: Vec<String>,
    /// Why the grant exists.
    #[arg(long, default_value = "")]
    reason: String,
    /// Ticket reference.
    #[arg(long, default_value = "")]
    ticket: String,
    /// Who asked for it.
    #[arg(long, default_value = "")]
    requested_by: String,
}

/// A failure with its exit code.
struct Fail(u8, String);

fn usage(msg: String) -> Fail {
    Fail(2, msg)
}

fn call(cli: &Cli, req: Request) -> Result<Payload, Fail> {
    let r = jit_proto::call(
        &cli.socket,
        &req,
        Duration::from_secs(cli.timeout.max(1)),
        true,
    )
    .map_err(|e| Fail(3, format!("{e} ({})", cli.socket)))?;
    match r {
        Response::Ok { payload, .. } => Ok(payload),
        Response::Error {
            code: ErrorCode::Busy,
            message,
            ..
        } => Err(Fail(3, message)),
        Response::Error { message, .. } => Err(Fail(1, message)),
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Fail> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Fail(1, e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").map_err(|e| Fail(1, e.to_string()))
}

fn relative(t: i64, now: i64) -> String {
    if t == now {
        "now".to_string()
    } else if t > now {
        format!("in {}", format_duration(t - now))
    } else {
        format!("{} ago", format_duration(now - t))
    }
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
    line("id:", g.id.clone());
    line("user:", g.user.clone());
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

fn print_status(s: &Status, now: i64) -> String {
    let age = s
        .snapshot_written_at
        .map_or("never written".to_string(), |t| {
            format!("written {}", relative(t, now))
        });
    format!(
        "jitd {} (pid {}), up {}\ngrants: {} live, {} pending, {} awaiting teardown, {} ended\nsnapshot: {} ({age})\nserver: {}\nstate: {}\n",
        s.version,
        s.pid,
        format_duration(s.uptime_secs),
        s.live,
        s.pending,
        s.teardown_pending,
        s.ended,
        s.snapshot_path,
        s.server,
        if s.state_writable { "writable" } else { "NOT WRITABLE: new grants refused" }
    )
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

fn read_keys(args: &AddArgs) -> Result<Vec<String>, Fail> {
    let mut keys = args.ssh_keys.clone();
    for f in &args.ssh_key_files {
        let text =
            std::fs::read_to_string(f).map_err(|e| Fail(1, format!("--ssh-key-file {f}: {e}")))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(keys)
}

fn not_yet(what: &str) -> Fail {
    Fail(
        1,
        format!("{what} is not supported yet by this jit version"),
    )
}

fn run(cli: &Cli) -> Result<(), Fail> {
    let now = jit_core::time::now();
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock<'_>, s: String| {
        write!(out, "{s}").map_err(|e| Fail(1, e.to_string()))
    };
    match &cli.cmd {
        Cmd::Status => {
            let Payload::Status(s) = call(cli, Request::GetStatus)? else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                print_json(&s)
            } else {
                w(&mut out, print_status(&s, now))
            }
        }
        Cmd::Grant(GrantCmd::Add(a)) => {
            let duration_secs =
                parse_duration(&a.duration).map_err(|e| usage(format!("--for: {e}")))?;
            let start_in_secs = match &a.start_in {
                Some(s) => parse_duration(s).map_err(|e| usage(format!("--start-in: {e}")))?,
                None => 0,
            };
            let spec = GrantSpec {
                user: a.user.clone(),
                duration_secs,
                start_in_secs,
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
            };
            let Payload::Grant(g) = call(
                cli,
                Request::AddGrant {
                    spec: Box::new(spec),
                },
            )?
            else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                print_json(&g)
            } else {
                w(&mut out, format!("{}\n", g.id))
            }
        }
        Cmd::Grant(GrantCmd::List { all }) => {
            let Payload::Grants { grants } = call(cli, Request::ListGrants { all: *all })? else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                return print_json(&grants);
            }
            if grants.is_empty() {
                return w(
                    &mut out,
                    if *all {
                        "no grants\n".into()
                    } else {
                        "no live grants (--all shows pending and ended ones)\n".into()
                    },
                );
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
                    relative(g.not_before, now),
                    ends(g, now),
                    what(g)
                ));
            }
            w(&mut out, s)
        }
        Cmd::Grant(GrantCmd::Show { id }) => {
            let Payload::Grant(g) = call(cli, Request::ShowGrant { id: id.clone() })? else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                print_json(&g)
            } else {
                w(&mut out, show_grant(&g, now))
            }
        }
        Cmd::Grant(GrantCmd::Revoke { id, reason }) => {
            let Payload::Grant(g) = call(
                cli,
                Request::RevokeGrant {
                    id: id.clone(),
                    reason: reason.clone(),
                },
            )?
            else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                print_json(&g)
            } else {
                w(&mut out, format!("revoked {} ({})\n", g.id, g.user))
            }
        }
        Cmd::Audit {
            grant,
            since,
            follow,
        } => {
            let since = match since {
                Some(s) => {
                    Some(now - parse_duration(s).map_err(|e| usage(format!("--since: {e}")))?)
                }
                None => None,
            };
            let mut offset = None;
            loop {
                let Payload::Audit {
                    records,
                    offset: next,
                } = call(
                    cli,
                    Request::ReadAudit {
                        grant: grant.clone(),
                        since,
                        after_offset: offset,
                    },
                )?
                else {
                    return Err(Fail(1, "unexpected reply".into()));
                };
                for r in &records {
                    let line = if cli.json {
                        r.to_string()
                    } else {
                        audit_line(r)
                    };
                    writeln!(out, "{line}").map_err(|e| Fail(1, e.to_string()))?;
                }
                out.flush().map_err(|e| Fail(1, e.to_string()))?;
                let more = Some(next) != offset && !records.is_empty();
                offset = Some(next);
                if !*follow && !more {
                    return Ok(());
                }
                if *follow && !more {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        Cmd::Activate { id } => {
            let code = read_code()?;
            let Payload::Activated { grants } = call(
                cli,
                Request::Activate {
                    grant: id.clone(),
                    code,
                },
            )?
            else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                print_json(&serde_json::json!({ "activated": grants }))
            } else {
                w(&mut out, format!("activated {}\n", grants.join(" ")))
            }
        }
        Cmd::Session(SessionCmd::List) => {
            let Payload::Sessions { sessions } = call(cli, Request::ListSessions)? else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
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
            w(&mut out, text)
        }
        Cmd::Mfa(MfaCmd::Enroll { user, replace }) => {
            let Payload::Enrollment { user, secret, uri } = call(
                cli,
                Request::EnrollMfa {
                    user: user.clone(),
                    replace: *replace,
                },
            )?
            else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                return print_json(
                    &serde_json::json!({ "user": user, "secret": secret, "uri": uri }),
                );
            }
            let qr = qrcode::QrCode::new(uri.as_bytes())
                .map(|c| {
                    c.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build()
                })
                .unwrap_or_default();
            w(
                &mut out,
                format!("TOTP secret for {user} (shown once; scan or type it into an authenticator app):\n\n{qr}\n{uri}\nsecret: {secret}\n"),
            )
        }
        Cmd::Mfa(MfaCmd::Remove { user }) => {
            let Payload::Done { message } = call(cli, Request::RemoveMfa { user: user.clone() })?
            else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                print_json(&serde_json::json!({ "removed": user }))
            } else {
                w(&mut out, format!("{message}\n"))
            }
        }
        Cmd::Breakglass(BreakglassCmd::Init {
            account,
            count,
            replace,
        }) => {
            let Payload::BreakglassCodes { account, codes } = call(
                cli,
                Request::InitBreakglass {
                    account: account.clone(),
                    count: *count,
                    replace: *replace,
                },
            )?
            else {
                return Err(Fail(1, "unexpected reply".into()));
            };
            if cli.json {
                return print_json(&serde_json::json!({ "account": account, "codes": codes }));
            }
            let mut text = format!(
                "Break-glass codes for {account} (shown once; jitd keeps only slow hashes). Each opens one emergency grant when no grant enables {account}; every use is audited at crit.\n"
            );
            for c in &codes {
                text.push_str(c);
                text.push('\n');
            }
            w(&mut out, text)
        }
        Cmd::Report { .. } => Err(not_yet("jitctl report")),
        Cmd::Remote(r) => jitd::remote::cli::run(r, cli.json).map_err(|f| Fail(f.0, f.1)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("jitctl: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Reads a TOTP code: from the terminal without echo when there is one, else one line of stdin.
fn read_code() -> Result<String, Fail> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("Verification code: ");
    }
    // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a writable termios.
    let echo_off = tty && unsafe { libc::tcgetattr(0, &mut old) } == 0;
    if echo_off {
        let mut t = old;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: fd 0 and a valid termios derived from the current one.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
    let mut line = String::new();
    // Capped at 4 KiB so an endless stream on stdin cannot be read forever.
    let r = std::io::BufRead::read_line(&mut std::io::Read::take(stdin.lock(), 4096), &mut line);
    if echo_off {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &old) };
        eprintln!();
    }
    r.map_err(|e| Fail(1, format!("reading the code: {e}")))?;
    // Only the line ending is removed; anything else is jitd's to judge (and count).
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
