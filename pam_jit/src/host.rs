//! The two seams between the hooks and the outside: [`Pam`] (the handle: items, conversation,
//! module data) and [`World`] (clock, files, jitd, syslog), with their real implementations for
//! `pam::module::PamHandle` and [`System`]. The hooks in `lib.rs` are written against the
//! traits so that every path through them is unit-tested with fakes; only this file and
//! `local.rs` touch libc.

use crate::jitd::Secret;
use crate::local::{LocalUser, ManagedFile};
use jit_core::policy::window::{local_time_from_tm, LocalTime};
use jit_core::snapshot::file::Layers;
use jit_core::snapshot::keyed::{GatesPart, NamePart};
use jit_core::time::UnixTime;
use jit_proto::client::ClientError;
use jit_proto::{Request, Response};
use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF};
use pam::conv::Conv;
use pam::items::{RHost, RUser, Service, Tty};
use pam::module::PamHandle;
use std::time::Duration;

/// The root-only gates file: the world-readable snapshot lacks the gate records pam_jit needs.
pub const GATES_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_GATES_PATH_C;
/// The delta read over the gates file (grants added since it was written).
pub const GATES_DELTA_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_GATES_DELTA_PATH_C;
/// The world-readable snapshot NSS reads.
pub const PUBLIC_SNAPSHOT_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_SNAPSHOT_PATH_C;
/// The delta read over it.
pub const PUBLIC_SNAPSHOT_DELTA_PATH: &std::ffi::CStr =
    jit_core::constants::DEFAULT_SNAPSHOT_DELTA_PATH_C;
/// jitd's durable managed list.
pub const MANAGED_LIST_PATH: &std::ffi::CStr = jit_core::constants::DEFAULT_MANAGED_LIST_C;
/// Where local users are listed.
pub const PASSWD_PATH: &std::ffi::CStr = jit_core::host::accounts::PASSWD_PATH;
/// Longest message handed to the conversation (Linux-PAM's `PAM_MAX_MSG_SIZE` is 512).
pub const MAX_MESSAGE_BYTES: usize = 500;

/// A local time no window contains: used when the host-local time cannot be told.
pub const UNKNOWN_TIME: LocalTime = LocalTime {
    weekday: 7,
    minute: 0,
};

/// The conversation failed (no conversation function, or it returned an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

/// What a hook uses of its PAM handle.
pub trait Pam {
    /// `PAM_USER` (asking through the conversation if unset, as `pam_get_user` does); `None`
    /// when there is no usable name.
    fn user(&mut self) -> Option<String>;
    /// `PAM_SERVICE`, empty when unset or not UTF-8.
    fn service(&self) -> String;
    /// `PAM_RHOST`, if set (and UTF-8).
    fn rhost(&self) -> Option<String>;
    /// `PAM_TTY`, if set (and UTF-8).
    fn tty(&self) -> Option<String>;
    /// `PAM_RUSER`, if set (and UTF-8): the requesting user as the application says (su sets
    /// it to its caller).
    fn ruser(&self) -> Option<String>;
    /// Asks for a secret with echo off. `Ok(None)`: no reply.
    ///
    /// # Errors
    /// The conversation failed.
    fn prompt_secret(&mut self, prompt: &str) -> Result<Option<Secret>, ConvError>;
    /// Shows one error line (the caller decides about `PAM_SILENT`); failures are ignored.
    fn error_msg(&mut self, msg: &str);
    /// Stores a string under `key` for later hooks on this handle; false if PAM refused.
    fn set_data(&mut self, key: &'static str, value: String) -> bool;
    /// The string stored under `key` by this module on this handle.
    fn get_data(&self, key: &'static str) -> Option<String>;
}

/// What a hook uses of the system.
pub trait World {
    /// The wall clock (Unix seconds).
    fn now(&self) -> UnixTime;
    /// The host-local time at `now`, or [`UNKNOWN_TIME`].
    fn local_time(&self, now: UnixTime) -> LocalTime;
    /// The trusted snapshot's bytes, or why there are none.
    ///
    /// # Errors
    /// The file is missing, untrusted or unreadable.
    fn snapshot(&self) -> Result<Layers<Vec<u8>>, String>;
    /// `name`'s own shard of the gates file's lookup index and the delta, read without the
    /// rest of the file; `None` when it cannot be read that way (no file, untrusted, damaged,
    /// written before format 1.6): the caller reads the whole file. A 1.6 or 1.7 shard tells
    /// only whether the name is managed (all there is to know of a local user with a uid other
    /// than 0); from 1.8 ([`GATES_ACCOUNTS_MINOR`]) it holds every record pam_jit asks about
    /// the person. The default reads nothing.
    ///
    /// [`GATES_ACCOUNTS_MINOR`]: jit_core::snapshot::keyed::GATES_ACCOUNTS_MINOR
    fn gates_part(&self, name: &str) -> Option<GatesPart> {
        let _ = name;
        None
    }
    /// Whether the world-readable snapshot (the one NSS reads, same trust rules) has an
    /// account record called `name`. Asked only for a name that is neither local nor in the
    /// gates file (or when that is unusable): NSS may still resolve such an account, which
    /// must not make its login ungated.
    fn public_account(&self, name: &str) -> bool;
    /// What `/etc/passwd` says about `name`.
    fn passwd(&self, name: &str) -> LocalUser;
    /// jitd's durable managed-account list.
    fn managed_file(&self) -> ManagedFile;
    /// One request to jitd within `timeout`.
    ///
    /// # Errors
    /// See [`ClientError`].
    fn call(&self, req: &Request, timeout: Duration) -> Result<Response, ClientError>;
    /// One line to syslog `authpriv` at `priority` (`libc::LOG_*`).
    fn log(&self, priority: libc::c_int, msg: &str);
    /// The real uid of this process: the caller of a set-uid program such as su, 0 in sshd
    /// and login. What jitd keys TOTP lockout on when there is no remote host.
    fn caller_uid(&self) -> u32;
}

/// A copy of a C string item, if it is UTF-8.
fn item_text(s: &std::ffi::CStr) -> Option<String> {
    s.to_str().ok().map(str::to_string)
}

/// Cuts a message for the conversation: no NUL (it would end the C string), at most
/// [`MAX_MESSAGE_BYTES`], on a character boundary.
fn conversation_text(msg: &str) -> String {
    let mut out = String::new();
    for c in msg.chars().filter(|&c| c != '\0') {
        if out.len() + c.len_utf8() > MAX_MESSAGE_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

impl Pam for PamHandle {
    fn user(&mut self) -> Option<String> {
        self.get_user(None).ok()
    }

    fn service(&self) -> String {
        match self.get_item::<Service>() {
            Ok(Some(s)) => item_text(s.0).unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn rhost(&self) -> Option<String> {
        match self.get_item::<RHost>() {
            Ok(Some(s)) => item_text(s.0),
            _ => None,
        }
    }

    fn tty(&self) -> Option<String> {
        match self.get_item::<Tty>() {
            Ok(Some(s)) => item_text(s.0),
            _ => None,
        }
    }

    fn ruser(&self) -> Option<String> {
        match self.get_item::<RUser>() {
            Ok(Some(s)) => item_text(s.0),
            _ => None,
        }
    }

    fn prompt_secret(&mut self, prompt: &str) -> Result<Option<Secret>, ConvError> {
        let Ok(Some(conv)) = self.get_item::<Conv>() else {
            return Err(ConvError);
        };
        match conv.send(PAM_PROMPT_ECHO_OFF, &conversation_text(prompt)) {
            // pam-bindings hands the reply over in a buffer it zeroes on drop; the copy lives
            // in a Secret, which does the same.
            Ok(reply) => Ok(reply.map(|r| crate::jitd::typed_code(r.as_bytes().to_vec()))),
            Err(_) => Err(ConvError),
        }
    }

    fn error_msg(&mut self, msg: &str) {
        if let Ok(Some(conv)) = self.get_item::<Conv>() {
            // A failed message changes nothing about the decision.
            let _ = conv.send(PAM_ERROR_MSG, &conversation_text(msg));
        }
    }

    fn set_data(&mut self, key: &'static str, value: String) -> bool {
        PamHandle::set_data(self, key, Box::new(value)).is_ok()
    }

    fn get_data(&self, key: &'static str) -> Option<String> {
        // SAFETY: every key this module reads (`pam_jit_*`) is stored only by `set_data` above,
        // always as a `String`, and the `pam_jit_` prefix keeps other modules' keys apart.
        let data = unsafe { PamHandle::get_data::<String>(self, key) };
        data.ok().cloned()
    }
}

/// The real world: the clock, the files at their fixed paths, jitd's socket, syslog.
pub struct System;

/// Whether the person logging in controls the time zone the C library would use: a
/// set-user-ID caller (`su`) runs with the invoking user's environment, and glibc honours a
/// `TZ` there (only file names are refused), which could move a `--window`. The module reads
/// no variable for configuration; this check only makes windows refuse.
fn caller_controls_tz() -> bool {
    // SAFETY: getauxval has no preconditions; AT_SECURE is set by the kernel for set-user-ID,
    // set-group-ID and capability-raising executions.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    // SAFETY: a constant NUL-terminated name; the result is only compared with NULL.
    secure && !unsafe { libc::getenv(c"TZ".as_ptr()) }.is_null()
}

impl World for System {
    fn now(&self) -> UnixTime {
        jit_core::time::now()
    }

    fn local_time(&self, now: UnixTime) -> LocalTime {
        if caller_controls_tz() {
            return UNKNOWN_TIME;
        }
        let t = now as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value (integers and a null `tm_zone`).
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
        let r = unsafe { libc::localtime_r(&t, &mut tm) };
        if r.is_null() {
            return UNKNOWN_TIME;
        }
        local_time_from_tm(&tm)
    }

    fn snapshot(&self) -> Result<Layers<Vec<u8>>, String> {
        jit_core::snapshot::file::read_trusted_layers(GATES_PATH, GATES_DELTA_PATH)
            .map_err(|e| e.to_string())
    }

    fn gates_part(&self, name: &str) -> Option<GatesPart> {
        GatesPart::read(GATES_PATH, GATES_DELTA_PATH, name, &[])
    }

    fn public_account(&self, name: &str) -> bool {
        // The name's shard of the index (the base region, a third of the file, for a file
        // without one); an account added since it was written is in the delta. Any name
        // someone tries to log in as lands here when nothing else knows it: a flat cost.
        NamePart::read(PUBLIC_SNAPSHOT_PATH, PUBLIC_SNAPSHOT_DELTA_PATH, name)
            .ok()
            .and_then(|p| {
                p.answer(|v| v.is_some_and(|s| s.has_account_record(name)))
                    .ok()
            })
            .unwrap_or(false)
    }

    fn passwd(&self, name: &str) -> LocalUser {
        crate::local::passwd_lookup(PASSWD_PATH, name)
    }

    fn managed_file(&self) -> ManagedFile {
        crate::local::read_managed(MANAGED_LIST_PATH)
    }

    fn call(&self, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
        crate::jitd::socket_call(timeout)(req)
    }

    fn log(&self, priority: libc::c_int, msg: &str) {
        jit_core::ffi::syslog_authpriv(priority, msg);
    }

    fn caller_uid(&self) -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_text_is_capped_and_nul_free() {
        assert_eq!(conversation_text("jit: a\0b"), "jit: ab");
        let long = "é".repeat(400);
        let t = conversation_text(&long);
        assert!(t.len() <= MAX_MESSAGE_BYTES && t.chars().all(|c| c == 'é'));
    }

    #[test]
    fn local_time_is_in_range() {
        // The test binary is not set-user-ID, so the C library's zone is used.
        let t = System.local_time(1_704_067_200);
        assert!(t.weekday < 7 && t.minute < 1440, "{t:?}");
        assert!(!caller_controls_tz());
    }
}
