//! jitctl: the command line of jitd. Talks to the local socket; root may do everything, a user
//! may only look at its own grants. Exit codes: 0 ok, 1 refused or failed, 2 usage error,
//! 3 cannot reach jitd.
//!
//! One file per subcommand group; each holds its clap arguments and a `run`. A new group is a
//! new file, a variant of [`Cmd`] and a line in [`dispatch`]. Option values are checked by
//! the value parsers in `args` before jitd is contacted.

mod args;
mod audit;
mod breakglass;
mod client;
mod enroll;
mod grant;
mod mfa;
mod run;
mod session;
mod status;
mod term;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jit_core::constants::DEFAULT_SOCKET_PATH;

use client::{Ctx, Fail};

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
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET_PATH, help_heading = GLOBAL)]
    socket: String,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// Seconds to wait for jitd (a revoke waits for its teardown).
    #[arg(long, global = true, value_name = "SECS", default_value = "30", value_parser = args::timeout, help_heading = GLOBAL)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The heading the global options are listed under in every `--help`, apart from the
/// subcommand's own.
const GLOBAL: &str = "Global options";

// `defer`: clap builds a subcommand's arguments only when that subcommand is parsed (or for
// help and completions), not the whole tree on every run: with the static unwinder
// (jitd/build.rs) 0.1-0.2 ms and ~25 page faults off each jitctl start on the test VM, paid by
// every `grant add` (bench/results.md, "Grant add at scale"). The same on every subcommand enum.
#[derive(Subcommand)]
#[command(defer = true)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Cmd {
    /// Daemon, server link, grant counts, snapshot age.
    Status,
    /// Add, list, show and revoke grants.
    #[command(subcommand)]
    Grant(grant::GrantCmd),
    /// Show the audit trail.
    Audit(audit::AuditArgs),
    /// Prove a TOTP code so your armed --mfa grants (or grant ID) give privilege. Reads the
    /// code from the terminal, or from stdin when it is not a terminal.
    Activate {
        /// Only this grant.
        id: Option<String>,
    },
    /// Run PROGRAM as yourself with the capabilities a live grant gives it (--cap/--program);
    /// exits with its status.
    Run(run::RunArgs),
    /// Login sessions pam_jit registered under grants.
    #[command(subcommand)]
    Session(session::SessionCmd),
    /// TOTP secrets (root only).
    #[command(subcommand)]
    Mfa(mfa::MfaCmd),
    /// Break-glass codes for managed admin accounts (root only).
    #[command(subcommand)]
    Breakglass(breakglass::BreakglassCmd),
    /// Hours of privilege per person vs standing access. Not in `--help` until it exists; it
    /// parses so scripts written against the documented interface get a clear refusal.
    #[command(hide = true)]
    Report {
        /// Period.
        #[arg(long, value_name = "DURATION", value_parser = args::duration, allow_hyphen_values = true)]
        since: Option<i64>,
    },
    /// Print a completion script for SHELL (bash, zsh, fish) on stdout; the packages install
    /// them, so it stays out of `--help`.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Enrol this host with a jit-server (root only): jitd makes its own host key, registers
    /// its public half with the one-time join token, pins the server and starts syncing.
    Enroll(enroll::EnrollArgs),
    /// Verbs against the central service (jit-server): login, request, requests, approve, deny,
    /// revoke, hosts.
    #[command(flatten)]
    Remote(jitd::remote::cli::RemoteCmd),
}

fn dispatch(ctx: &Ctx, cmd: &Cmd) -> Result<(), Fail> {
    match cmd {
        Cmd::Status => status::run(ctx),
        Cmd::Enroll(a) => enroll::run(ctx, a),
        Cmd::Grant(c) => grant::run(ctx, c),
        Cmd::Audit(a) => audit::run(ctx, a),
        Cmd::Activate { id } => mfa::activate(ctx, id.as_deref()),
        Cmd::Session(c) => session::run(ctx, c),
        // Exits with the program's status: handled in main.
        Cmd::Run(_) => Ok(()),
        Cmd::Mfa(c) => mfa::run(ctx, c),
        Cmd::Breakglass(c) => breakglass::run(ctx, c),
        Cmd::Report { .. } => Err(Fail::refused(
            "jitctl report is not supported yet by this jit version",
        )),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "jitctl", &mut out);
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| Fail::refused(format!("stdout: {e}")))
        }
        Cmd::Remote(r) => jitd::remote::cli::run(r, ctx.json).map_err(|f| Fail(f.0, f.1)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Ctx {
        socket: cli.socket,
        json: cli.json,
        timeout: cli.timeout,
        now: jit_core::time::now(),
    };
    if let Cmd::Run(a) = &cli.cmd {
        return match run::run(&ctx, a) {
            Ok(status) => ExitCode::from(status),
            Err(Fail(code, msg)) => {
                eprintln!("jitctl: {msg}");
                ExitCode::from(code)
            }
        };
    }
    match dispatch(&ctx, &cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("jitctl: {msg}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The subcommands are built lazily (`defer`): clap's own consistency checks over the whole
    /// tree, deferred parts included, still pass.
    #[test]
    fn the_whole_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    /// A deferred subcommand still gets its own arguments and the global options, on either
    /// side of it.
    #[test]
    fn a_deferred_subcommand_parses_its_arguments_and_the_global_options() {
        let cli = Cli::try_parse_from([
            "jitctl",
            "--json",
            "grant",
            "add",
            "alice",
            "--for",
            "1h",
            "--account",
            "--group",
            "adm",
            "--socket",
            "/tmp/s",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.socket, "/tmp/s");
        let Cmd::Grant(grant::GrantCmd::Add(a)) = &cli.cmd else {
            panic!("parsed as another command");
        };
        assert_eq!(
            (a.user.as_str(), a.duration, a.account),
            ("alice", 3600, true)
        );
        assert_eq!(a.groups, ["adm"]);
        // An argument of another subcommand is still refused (a usage error, exit 2).
        let e = Cli::try_parse_from(["jitctl", "grant", "list", "--account"])
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 2);
        // And a remote verb (flattened into the same enum) parses too.
        assert!(Cli::try_parse_from(["jitctl", "requests", "--json"]).is_ok());
    }
}
