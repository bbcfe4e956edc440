//! `sudo_jit.so`: the sudo *approval* plugin that confines jit users to their grants.
//!
//! This file holds only the C entry points and the plugin structure `sudo_jit` that sudo looks
//! up from the `Plugin sudo_jit sudo_jit.so [timeout=N] [debug]` line of /etc/sudo.conf.
//! Each entry point's first statement is [`entry_guard`] (no panic unwinds into sudo), checks
//! its pointers, and leaves the work to [`options`], [`cinfo`], [`decision`] and [`report`].
//!
//! Return values (DESIGN §5, TEST-CATALOGUE S1/S2):
//! * `open` always returns 1 (0 would make sudo drop the plugin and run commands unchecked;
//!   -1 would break sudo for everyone, local admins included). A failure in `open` (bad options,
//!   unreadable `user_info`, wrong API major) is remembered as *broken*, and `check` then refuses
//!   every jit user while still approving root and non-jit users.
//! * `check` returns exactly 1 only for [`decision::Verdict::Allow`], 0 otherwise, and prints
//!   the one-line reason through `sudo_printf` (sudo does not show `errstr`).
//!
//! State: the plugin structure, and the session captured by `open` (options, `sudo_printf`,
//! invoking user) in one mutex held only inside a call. The snapshot is read afresh on every
//! `check`. Environment variables are never read; nothing is written to stdout/stderr except
//! through `sudo_printf`; no threads are started.

pub mod cinfo;
pub mod decision;
pub mod local;
pub mod options;
pub mod report;

use libc::{c_char, c_int, c_uint, c_void};
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
    *const c_void,
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
    inv: Result<cinfo::Invocation, String>,
}

static SESSION: Mutex<Option<Session>> = Mutex::new(None);

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
    _conversation: *const c_void,
    sudo_printf: Option<SudoPrintf>,
    settings: *const *const c_char,
    user_info: *const *const c_char,
    _submit_optind: c_int,
    _submit_argv: *const *const c_char,
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
        let inv = match (settings, user_info) {
            (Ok(s), Ok(u)) => cinfo::parse_invocation(&s, &u).map_err(|e| e.to_string()),
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        };
        *session() = Some(Session {
            opts,
            printf: sudo_printf,
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
    let (opts, printf, inv) = {
        let guard = session();
        match guard.as_ref() {
            Some(s) => (s.opts.clone(), s.printf, s.inv.clone()),
            None => (
                options::Options::default(),
                None,
                Err("open was not called".to_string()),
            ),
        }
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
    let alt = cmd.as_ref().ok().and_then(|c| {
        std::fs::canonicalize(&c.command)
            .ok()
            .and_then(|p| p.to_str().map(str::to_string))
            .filter(|p| *p != c.command)
    });
    let data = jit_core::snapshot::file::read_trusted(c"/run/jitd/snapshot").ok();
    let snap = data
        .as_deref()
        .and_then(|d| jit_core::snapshot::Snapshot::parse(d).ok());
    let passwd = std::cell::OnceCell::new();
    let group = std::cell::OnceCell::new();
    let jit_by_ids = decision::looks_jit_by_ids(
        inv.uid,
        &inv.groups,
        |u| {
            passwd
                .get_or_init(|| local::ids_in("/etc/passwd"))
                .contains(&u)
        },
        |g| {
            group
                .get_or_init(|| local::ids_in("/etc/group"))
                .contains(&g)
        },
    );
    let d = decision::decide(&decision::Input {
        inv: &inv,
        cmd: cmd.as_ref(),
        alt_command: alt.as_deref(),
        snapshot: snap.as_ref(),
        broken: opts.broken.as_deref(),
        jit_by_ids,
        now: jit_core::time::now(),
    });
    let allowed = d.verdict == decision::Verdict::Allow;
    if d.jit {
        if !allowed {
            say(printf, SUDO_CONV_ERROR_MSG, &d.reason);
        }
        report::send(&opts, report::build(&inv, cmd.as_ref().ok(), &d));
    }
    if allowed {
        1
    } else {
        0
    }
}
