//! `sudo_jit.so`: the sudo *approval* plugin that confines jit users to their grants.
//!
//! This file holds only the C entry points and the plugin structure `sudo_jit` that sudo looks
//! up from the `Plugin sudo_jit sudo_jit.so [timeout=N] [debug]` line of /etc/sudo.conf.
//! Each entry point's first statement is [`entry_guard`] (no panic unwinds into sudo), checks
//! its pointers, and leaves the work to [`options`], [`cinfo`], [`decision`] and [`report`].
//!
//! Return values (docs/design.md#traps, docs/threat-model.md: S1, S2):
//! * `open` always returns 1 (0 would make sudo drop the plugin and run commands unchecked;
//!   -1 would break sudo for everyone, local admins included). A failure in `open` (bad options,
//!   unreadable `user_info`, wrong API major) is remembered as *broken*, and `check` then refuses
//!   every jit user while still approving root and non-jit users.
//! * `check` returns exactly 1 only for [`decision::Verdict::Allow`], 0 otherwise, and prints
//!   the one-line reason through `sudo_printf` (sudo does not show `errstr`).
//!
//! A jit user's approval needs jitd twice over: a [`decision::Verdict::StepUp`] (a `--mfa-sudo`
//! grant) becomes an approval only after a TOTP code asked through sudo's conversation function
//! is verified by jitd ([`stepup`]), and every approval stands only once jitd has acknowledged
//! its report within `timeout=` ([`report::confirm`]). Root and non-jit users never contact
//! jitd.
//!
//! State: the plugin structure; the session captured by `open` (options, `sudo_printf`, the
//! conversation function, invoking user), dropped by `close`; and what this sudo process has
//! checked and proved so far, which outlives `close` because sudo opens and closes an approval
//! plugin around every check, intercepted sub-commands included. Each sits in a mutex held only
//! inside a call, never while prompting or talking to jitd. The snapshot is read
//! afresh on every `check`. Environment variables are never read; nothing is written to
//! stdout/stderr except through `sudo_printf` and sudo's conversation; no threads are started.

pub mod cinfo;
pub mod decision;
pub mod local;
pub mod options;
pub mod report;
pub mod stepup;

use libc::{c_char, c_int, c_uint};
use std::sync::{Mutex, MutexGuard};

/// `SUDO_APPROVAL_PLUGIN` from sudo_plugin.h.
pub const SUDO_APPROVAL_PLUGIN: c_uint = 4;
/// `SUDO_API_VERSION_MAJOR` from sudo_plugin.h (sudo 1.9.13).
pub const SUDO_API_VERSION_MAJOR: c_uint = 1;
/// `SUDO_API_VERSION_MINOR` from sudo_plugin.h (sudo 1.9.13).
pub const SUDO_API_VERSION_MINOR: c_uint = 21;
/// `SUDO_API_VERSION`.
pub const SUDO_API_VERSION: c_uint = (SUDO_API_VERSION_MAJOR << 16) | SUDO_API_VERSION_MINOR;
/// `SUDO_CONV_ERROR_MSG`.
pub const SUDO_CONV_ERROR_MSG: c_int = 0x0003;
/// `SUDO_CONV_INFO_MSG`.
pub const SUDO_CONV_INFO_MSG: c_int = 0x0004;

/// `sudo_printf_t`.
pub type SudoPrintf = unsafe extern "C" fn(c_int, *const c_char, ...) -> c_int;
/// `approval_plugin.open`.
pub type OpenFn = unsafe extern "C" fn(
    c_uint,
    Option<stepup::SudoConv>,
    Option<SudoPrintf>,
    *const *const c_char,
    *const *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
    *const *const c_char,
    *mut *const c_char,
) -> c_int;
/// `approval_plugin.check`.
pub type CheckFn = unsafe extern "C" fn(
    *const *const c_char,
    *const *const c_char,
    *const *const c_char,
    *mut *const c_char,
) -> c_int;

/// `struct approval_plugin` from sudo_plugin.h.
#[repr(C)]
pub struct ApprovalPlugin {
    /// Always `SUDO_APPROVAL_PLUGIN`.
    pub plugin_type: c_uint,
    /// Always `SUDO_API_VERSION`.
    pub version: c_uint,
    /// `open`.
    pub open: Option<OpenFn>,
    /// `close`.
    pub close: Option<unsafe extern "C" fn()>,
    /// `check`.
    pub check: Option<CheckFn>,
    /// `show_version`.
    pub show_version: Option<unsafe extern "C" fn(c_int) -> c_int>,
}

/// The symbol sudo looks up (the first word after `Plugin` in sudo.conf). sudo only reads it.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static sudo_jit: ApprovalPlugin = ApprovalPlugin {
    plugin_type: SUDO_APPROVAL_PLUGIN,
    version: SUDO_API_VERSION,
    open: Some(sudo_jit_open),
    close: Some(sudo_jit_close),
    check: Some(sudo_jit_check),
    show_version: Some(sudo_jit_show_version),
};

/// What `open` captured for the following `check`.
struct Session {
    opts: options::Options,
    printf: Option<SudoPrintf>,
    conv: Option<stepup::SudoConv>,
    inv: Result<cinfo::Invocation, String>,
}

static SESSION: Mutex<Option<Session>> = Mutex::new(None);

/// jitd's durable managed list.
const MANAGED_LIST: &std::ffi::CStr = jit_core::constants::DEFAULT_MANAGED_LIST_C;
/// The root-only gates file: the world-readable snapshot carries no gate records, so a sudo
/// scope is never visible to other users.
const GATES_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_GATES_PATH_C;
/// The delta read over the gates file (grants added since it was written).
const GATES_DELTA_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_GATES_DELTA_PATH_C;
/// The world-readable snapshot.
const PUBLIC_SNAPSHOT_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_SNAPSHOT_PATH_C;

/// What this sudo invocation has seen so far. sudo opens and closes an approval plugin around
/// every check (sudo.c `approval_check`), and in intercept mode checks again, in the same
/// process, for each command the approved one runs (docs/threat-model.md#s11). So this outlives
/// `close`: one sudo process is one invocation.
struct Progress {
    /// Checks answered in this process: only the first one may prompt.
    checks: u32,
    /// The `--mfa-sudo` grant whose code was verified in this invocation: the intercepted
    /// sub-commands it allows need no second code.
    stepped_up: Option<String>,
}

static PROGRESS: Mutex<Progress> = Mutex::new(Progress {
    checks: 0,
    stepped_up: None,
});

fn progress() -> MutexGuard<'static, Progress> {
    PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
}

fn session() -> MutexGuard<'static, Option<Session>> {
    SESSION.lock().unwrap_or_else(|p| p.into_inner())
}

/// `jit_core::ffi::guard` with the panic message silenced (unit tests keep it).
fn entry_guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    #[cfg(not(test))]
    jit_core::ffi::silence_panic_messages();
    jit_core::ffi::guard(fallback, f)
}

/// Prints one line through sudo's printf as `%s\n` (the text is never the format).
fn say(printf: Option<SudoPrintf>, kind: c_int, line: &str) {
    let Some(printf) = printf else { return };
    let mut bytes: Vec<u8> = line
        .bytes()
        .filter(|&b| b != 0 && b != b'\n' && b != b'\r')
        .take(1024)
        .collect();
    bytes.push(0);
    // SAFETY: sudo's printf callback with a constant "%s\n" format and one NUL-terminated
    // string argument that lives across the call.
    unsafe { printf(kind, c"%s\n".as_ptr(), bytes.as_ptr().cast::<c_char>()) };
}

/// The real uid of this (setuid) sudo process: the invoking user.
fn real_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// `approval_plugin.open`: captures options and the invoking user. Never returns 0.
///
/// # Safety
/// sudo's plugin contract: string vectors are NULL or NULL-terminated arrays of C strings.
#[no_mangle]
pub unsafe extern "C" fn sudo_jit_open(
    version: c_uint,
    conversation: Option<stepup::SudoConv>,
    sudo_printf: Option<SudoPrintf>,
    settings: *const *const c_char,
    user_info: *const *const c_char,
    submit_optind: c_int,
    submit_argv: *const *const c_char,
    _submit_envp: *const *const c_char,
    plugin_options: *const *const c_char,
    _errstr: *mut *const c_char,
) -> c_int {
    entry_guard(1, || {
        // SAFETY: NULL-terminated vector of C strings from sudo (or NULL).
        let words = unsafe { cinfo::copy_vector(plugin_options) };
        let mut opts = match &words {
            Ok(w) => options::parse(&w.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            Err(e) => options::Options {
                broken: Some(format!("plugin options: {e}")),
                ..options::Options::default()
            },
        };
        if version >> 16 != SUDO_API_VERSION_MAJOR {
            opts.broken
                .get_or_insert_with(|| format!("sudo plugin API {} unsupported", version >> 16));
        }
        // SAFETY: as above.
        let settings = unsafe { cinfo::copy_vector(settings) };
        // SAFETY: as above.
        let user_info = unsafe { cinfo::copy_vector(user_info) };
        // SAFETY: as above.
        let submit_argv = unsafe { cinfo::copy_vector(submit_argv) };
        let inv = match (settings, user_info) {
            (Ok(s), Ok(u)) => cinfo::parse_invocation(&s, &u)
                .map(|mut inv| {
                    // An argv too large to read only narrows what a jit user may do (it
                    // holds the command's own arguments too: non-jit users are unaffected).
                    inv.sets_env |=
                        submit_argv.map_or(true, |a| cinfo::argv_sets_env(&a, submit_optind));
                    inv
                })
                .map_err(|e| e.to_string()),
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        };
        *session() = Some(Session {
            opts,
            printf: sudo_printf,
            conv: conversation,
            inv,
        });
        1
    })
}

/// `approval_plugin.close`.
#[no_mangle]
pub extern "C" fn sudo_jit_close() {
    entry_guard((), || {
        *session() = None;
    })
}

/// `approval_plugin.show_version`.
#[no_mangle]
pub extern "C" fn sudo_jit_show_version(_verbose: c_int) -> c_int {
    entry_guard(1, || {
        let printf = session().as_ref().and_then(|s| s.printf);
        say(
            printf,
            SUDO_CONV_INFO_MSG,
            concat!(
                "sudo_jit approval plugin version ",
                env!("CARGO_PKG_VERSION")
            ),
        );
        1
    })
}

/// `approval_plugin.check`: 1 approve, 0 refuse (reason printed).
///
/// # Safety
/// sudo's plugin contract: string vectors are NULL or NULL-terminated arrays of C strings.
#[no_mangle]
pub unsafe extern "C" fn sudo_jit_check(
    command_info: *const *const c_char,
    run_argv: *const *const c_char,
    _run_envp: *const *const c_char,
    _errstr: *mut *const c_char,
) -> c_int {
    let printf = entry_guard(None, || session().as_ref().and_then(|s| s.printf));
    let r = entry_guard(None, || {
        // SAFETY: forwarded from sudo under the same contract.
        Some(unsafe { check(command_info, run_argv) })
    });
    match r {
        Some(v) => v,
        None => {
            // A panic: refuse (root included; it is a bug), say so if we can.
            entry_guard((), || {
                say(
                    printf,
                    SUDO_CONV_ERROR_MSG,
                    "jit: internal error in sudo_jit; refused",
                )
            });
            0
        }
    }
}

/// # Safety
/// See [`sudo_jit_check`].
unsafe fn check(command_info: *const *const c_char, run_argv: *const *const c_char) -> c_int {
    let (opts, printf, conv, inv) = {
        let guard = session();
        match guard.as_ref() {
            Some(s) => (s.opts.clone(), s.printf, s.conv, s.inv.clone()),
            None => (
                options::Options::default(),
                None,
                None,
                Err("open was not called".to_string()),
            ),
        }
    };
    let (first, stepped_up) = {
        let mut p = progress();
        let first = p.checks == 0;
        p.checks = p.checks.saturating_add(1);
        (first, p.stepped_up.clone())
    };
    if real_uid() == 0 {
        return 1;
    }
    let inv = match inv {
        Ok(inv) if inv.uid == real_uid() => inv,
        Ok(_) => {
            say(
                printf,
                SUDO_CONV_ERROR_MSG,
                "jit: sudo refused: user_info uid is not the caller's",
            );
            return 0;
        }
        Err(e) => {
            say(
                printf,
                SUDO_CONV_ERROR_MSG,
                &format!("jit: sudo refused: {e}"),
            );
            return 0;
        }
    };
    // SAFETY: NULL-terminated vectors of C strings from sudo (or NULL).
    let ci = unsafe { cinfo::copy_vector(command_info) };
    // SAFETY: as above.
    let av = unsafe { cinfo::copy_vector(run_argv) };
    let cmd = match (ci, av) {
        (Ok(ci), Ok(av)) => cinfo::parse_command(&ci, &av),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    // Only a path nobody but root can re-point between this check and sudo's exec (merged
    // /usr: /bin/id is /usr/bin/id); a user's own symlink to an allowed command is not one.
    let alt = cmd
        .as_ref()
        .ok()
        .and_then(|c| local::trusted_alias(&c.command));
    // The decision from the gates file's shards of the user and of the groups the process
    // holds (format 1.6): they hold every record a decision about this user and these groups
    // reads (`decision::Parts`), so a user who is not jit's business (a local sudoer) is
    // approved, and a jit user decided, without reading the whole file, whose size grows with
    // the grants on the host. A file that cannot say (older, damaged, more than 4096 groups)
    // is read whole as before.
    let now = jit_core::time::now();
    let decide = |gates: Option<&dyn decision::Gates>, jit_by_ids: bool| {
        decision::decide(&decision::Input {
            inv: &inv,
            cmd: cmd.as_ref(),
            alt_command: alt.as_deref(),
            snapshot: gates,
            broken: opts.broken.as_deref(),
            jit_by_ids,
            now,
        })
    };
    let by_shards = jit_core::snapshot::keyed::GatesPart::read(
        GATES_PATH,
        GATES_DELTA_PATH,
        &inv.user,
        &inv.groups,
    )
    .and_then(|p| {
        p.answer(|own, held| decide(Some(&decision::Parts { own, held }), false))
            .ok()
    });
    // A user the decision finds none of jit's business is approved just below (`!d.jit`).
    let mut d = match by_shards {
        Some(d) => d,
        None => whole_file_decision(&inv, now, decide),
    };
    // Set when jitd could not be reached in this check: no second wait on it.
    let mut jitd_down = false;
    if d.verdict == decision::Verdict::StepUp {
        let outcome = match d.grant.clone() {
            Some(grant) => {
                let o = step_up(&opts, conv, &inv, &grant, first, stepped_up.as_deref());
                if o.is_ok() {
                    progress().stepped_up = Some(grant);
                }
                o.map_err(|r| {
                    jitd_down = r.unreachable;
                    r.reason
                })
            }
            None => {
                Err("jit: internal error in sudo_jit (step-up without a grant); refused".into())
            }
        };
        d = d.after_step_up(outcome);
    }
    let allowed = d.verdict == decision::Verdict::Allow;
    if !d.jit {
        return if allowed { 1 } else { 0 };
    }
    let rep = report::build(&inv, cmd.as_ref().ok(), &d);
    if allowed {
        // An approval of a jit user stands only once jitd has recorded it.
        return match report::confirm(&opts, rep) {
            Ok(()) => 1,
            Err(reason) => {
                say(printf, SUDO_CONV_ERROR_MSG, &reason);
                0
            }
        };
    }
    say(printf, SUDO_CONV_ERROR_MSG, &d.reason);
    if !jitd_down {
        report::send(&opts, rep);
    }
    0
}

/// The decision from the whole gates file (with its delta), or, without a trusted one, from
/// what still marks a jit identity: jitd's durable managed list, the public snapshot, the
/// reserved ids. `decide` runs `decision::decide` with the gates and the id test's answer.
fn whole_file_decision(
    inv: &cinfo::Invocation,
    now: jit_core::time::UnixTime,
    decide: impl FnOnce(Option<&dyn decision::Gates>, bool) -> decision::Decision,
) -> decision::Decision {
    // Grants added since the gates file was written are in its delta.
    let layers = jit_core::snapshot::file::read_trusted_layers(GATES_PATH, GATES_DELTA_PATH).ok();
    let delta = layers.as_ref().and_then(|l| l.parse_delta());
    let snap = layers
        .as_ref()
        .and_then(|l| jit_core::snapshot::Snapshot::parse(&l.base).ok())
        .map(|s| s.over(delta.as_ref()));
    let passwd = std::cell::OnceCell::new();
    let group = std::cell::OnceCell::new();
    // Without a snapshot, jitd's durable managed list still marks a managed admin (docs/design.md#fail-closed:
    // denied while the snapshot is missing), as the reserved ids mark a jit identity.
    let managed_without_snapshot = snap.is_none()
        && jit_core::managed::read_managed_list(MANAGED_LIST)
            .is_ok_and(|names| names.contains(&inv.user));
    // The public snapshot may still be there (NSS then still shows jit-sudo memberships):
    // it marks jit users, whatever uid_range jitd uses, so they are refused, not let through
    // by the sudoers rule.
    let public = if snap.is_none() {
        public_snapshot_view(inv, now)
    } else {
        None
    };
    let public_says_jit = public.is_some_and(|(jit, _)| jit);
    // jitd's configured uid range from whichever snapshot header is readable; the default
    // range only when neither file is there.
    let range = snap
        .as_ref()
        .and_then(|s| s.uid_range())
        .or(public.and_then(|(_, r)| r))
        .unwrap_or((
            jit_core::constants::DEFAULT_UID_MIN,
            jit_core::constants::DEFAULT_UID_MAX,
        ));
    let jit_by_ids = managed_without_snapshot
        || public_says_jit
        || decision::looks_jit_in_range(
            range,
            inv.uid,
            &inv.groups,
            |u| {
                passwd
                    .get_or_init(|| local::uids(jit_core::host::accounts::PASSWD_PATH))
                    .contains(&u)
            },
            |g| {
                group
                    .get_or_init(|| local::gids(jit_core::host::accounts::GROUP_PATH))
                    .contains(&g)
            },
        );
    decide(snap.as_ref().map(|s| s as &dyn decision::Gates), jit_by_ids)
}

/// The step-up of a `--mfa-sudo` grant: asked once per sudo invocation, at its first check;
/// an intercepted sub-command under the grant already proved in this invocation passes, any
/// other later check is refused (it must not prompt, docs/threat-model.md#s11), and so is `sudo -n`.
fn step_up(
    opts: &options::Options,
    conv: Option<stepup::SudoConv>,
    inv: &cinfo::Invocation,
    grant: &str,
    first: bool,
    stepped_up: Option<&str>,
) -> Result<(), stepup::Refused> {
    let g = jit_core::policy::sudo::shown(grant, 64);
    let refuse = |reason: String| {
        Err(stepup::Refused {
            reason,
            unreachable: false,
        })
    };
    if stepped_up == Some(grant) {
        return Ok(());
    }
    if !first {
        return refuse(format!(
            "jit: grant {g} needs a verification code, which a sub-command cannot ask for; refused"
        ));
    }
    if inv.noninteractive {
        return refuse(format!(
            "jit: grant {g} needs a verification code at every sudo; sudo -n cannot ask for it"
        ));
    }
    stepup::run(conv, opts, &inv.user, grant)
}

/// Whether the world-readable snapshot (same trust rules as the gates file) marks the invoking
/// user as jit, and the uid range its header states; used only when the gates file is missing
/// or untrusted. `None` if the public snapshot is not usable either.
fn public_snapshot_view(
    inv: &cinfo::Invocation,
    now: jit_core::time::UnixTime,
) -> Option<(bool, Option<(u32, u32)>)> {
    let layers = jit_core::snapshot::file::read_trusted_layers(
        PUBLIC_SNAPSHOT_PATH,
        jit_core::constants::DEFAULT_SNAPSHOT_DELTA_PATH_C,
    )
    .ok()?;
    let delta = layers.parse_delta();
    let s = jit_core::snapshot::Snapshot::parse(&layers.base)
        .ok()?
        .over(delta.as_ref());
    Some((
        decision::jit_in_public_snapshot(&s, inv, now),
        s.uid_range(),
    ))
}
