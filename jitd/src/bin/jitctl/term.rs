//! Reading a code from the terminal with echo off, and putting the terminal back on every way
//! out: a normal return, an error, and the signals a person sends from the keyboard or a
//! closing terminal (Ctrl-C, Ctrl-\, SIGTERM, SIGHUP). On such a signal the handler restores
//! the saved settings and dies of the same signal, so the shell sees the usual status.
//!
//! Not `rpassword`: 7.5 turns off ISIG and on Ctrl-C raises SIGINT before its guard restores
//! the terminal, which leaves the shell without echo — the very thing this file is for.

use std::io::{BufRead, IsTerminal, Read};
use std::sync::OnceLock;

use crate::client::Fail;

/// Signals whose default action ends the process while it waits at the prompt.
const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// The terminal settings before echo was turned off, for the signal handler.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

extern "C" fn restore_and_die(sig: libc::c_int) {
    if let Some(t) = SAVED.get() {
        // SAFETY: tcsetattr(3) is async-signal-safe; `t` is the valid termios read from fd 0.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
    }
    // SAFETY: write(2), signal(2) and raise(3) are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Echo is off on fd 0 while this lives; dropping it restores the terminal and the signal
/// dispositions that were there before.
struct EchoOff {
    old: libc::termios,
    old_actions: Vec<(libc::c_int, libc::sigaction)>,
}

impl EchoOff {
    /// `None` when fd 0 is no terminal or its settings cannot be read or changed.
    fn new() -> Option<EchoOff> {
        // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
        let mut old: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a writable termios.
        if unsafe { libc::tcgetattr(0, &mut old) } != 0 {
            return None;
        }
        let _ = SAVED.set(old);
        let mut old_actions = Vec::new();
        for sig in SIGNALS {
            // SAFETY: all-zero sigaction structs are valid; the handler is an extern "C" fn
            // taking the signal number, as sa_sigaction without SA_SIGINFO expects.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = restore_and_die as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut new.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &new, &mut prev) == 0 {
                    old_actions.push((sig, prev));
                }
            }
        }
        let guard = EchoOff { old, old_actions };
        let mut t = old;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: fd 0 and a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } != 0 {
            return None; // the guard's drop puts the handlers back
        }
        Some(guard)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same fd.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.old) };
        for (sig, prev) in &self.old_actions {
            // SAFETY: `prev` was filled by sigaction for this signal.
            unsafe { libc::sigaction(*sig, prev, std::ptr::null_mut()) };
        }
    }
}

/// Reads a TOTP code: from the terminal without echo when there is one, else one line of stdin.
pub fn read_code() -> Result<String, Fail> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("Verification code: ");
    }
    let echo_off = if tty { EchoOff::new() } else { None };
    let mut line = String::new();
    // Capped at 4 KiB so an endless stream on stdin cannot be read forever.
    let r = stdin.lock().take(4096).read_line(&mut line);
    if echo_off.is_some() {
        drop(echo_off);
        eprintln!();
    }
    r.map_err(|e| Fail::refused(format!("reading the code: {e}")))?;
    // Only the line ending is removed; anything else is jitd's to judge (and count).
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
