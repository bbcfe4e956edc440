//! jitctl's own behaviour, without a jitd: option values are checked before anything is sent,
//! an unreachable jitd is explained, the help pages, and the terminal after Ctrl-C at the code
//! prompt.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output};

fn jitctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jitctl"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jitctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Each bad value is a usage error naming the option, and jitctl never connects: a listening
/// socket served by this (root) test process sees no connection. Before, these went to jitd
/// (and `--timeout 0` was quietly read as 1).
#[test]
fn option_values_are_checked_before_jitd_is_contacted() {
    let dir = temp_dir("validate");
    let sock = dir.join("jitd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let s = sock.to_str().unwrap();
    let add = |extra: &[&str]| {
        let mut a = vec!["--socket", s, "--timeout", "1", "grant", "add", "alice"];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            add(&["--for", "1h", "--revoke-on", "lateral"]),
            "--revoke-on",
        ),
        (add(&["--for", "1h", "--from", "10.0.0.0/33"]), "--from"),
        (add(&["--for", "1h", "--from", "10.1"]), "--from"),
        (
            add(&["--for", "1h", "--window", "Mon-Fri 25:00-26:00"]),
            "--window",
        ),
        (add(&["--for", "1h", "--window", "Mon-Fri"]), "--window"),
        (add(&["--for", "-5m"]), "--for"),
        (add(&["--for", "1h", "--start-in", "-1m"]), "--start-in"),
        (add(&["--for", "0s"]), "--for"),
        (
            ["--socket", s, "--timeout", "0", "status"]
                .map(str::to_string)
                .to_vec(),
            "--timeout",
        ),
        (
            ["--socket", s, "--timeout", "18446744073709551615", "status"]
                .map(str::to_string)
                .to_vec(),
            "--timeout",
        ),
        (
            ["--socket", s, "--timeout", "1", "audit", "--since", "-2h"]
                .map(str::to_string)
                .to_vec(),
            "--since",
        ),
    ];
    for (args, option) in &cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = jitctl(&refs);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let e = stderr(&o);
        assert!(
            e.contains(option),
            "{args:?}: the error names {option}: {e}"
        );
        assert!(
            listener.accept().is_err(),
            "{args:?}: jitctl connected to jitd with an invalid value"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--for -5m` says a duration cannot be negative, not clap's "to pass '-5m' as a value, use
/// '-- -5m'".
#[test]
fn negative_duration_is_explained() {
    let o = jitctl(&["grant", "add", "alice", "--for", "-5m"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let e = stderr(&o);
    assert!(e.contains("cannot be negative"), "{e}");
    assert!(!e.contains("-- -5m"), "{e}");
}

/// Valid values still reach jitd unchanged; with no jitd that is exit 3, and the message says
/// how to start it.
#[test]
fn unreachable_jitd_says_how_to_start_it() {
    let dir = temp_dir("unreachable");
    let sock = dir.join("absent.sock");
    let s = sock.to_str().unwrap();
    let o = jitctl(&[
        "--socket",
        s,
        "grant",
        "add",
        "alice",
        "--for",
        "1h30m",
        "--start-in",
        "5m",
        "--from",
        "10.0.0.0/8",
        "--window",
        "Mon-Fri 09:00-18:00",
        "--revoke-on",
        "ioc",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let e = stderr(&o);
    assert!(e.contains("cannot reach jitd") && e.contains(s), "{e}");
    assert!(
        e.contains("systemctl start jitd") && e.contains("jitd &"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `grant add --help` lists the global options under their own heading, after the
/// subcommand's; `report` is not offered in the help until it exists, and still answers
/// with a refusal (exit 1) as the documented interface spells it.
#[test]
fn help_lists_global_options_apart_and_no_report() {
    let o = jitctl(&["grant", "add", "--help"]);
    assert!(o.status.success(), "{o:?}");
    let h = stdout(&o);
    let (own, global) = h
        .split_once("Global options:")
        .unwrap_or_else(|| panic!("no global heading:\n{h}"));
    assert!(own.contains("--revoke-on") && own.contains("--for"), "{h}");
    for g in ["--socket", "--json", "--timeout"] {
        assert!(!own.contains(g), "{g} among grant add's own options:\n{h}");
        assert!(global.contains(g), "{g} not under Global options:\n{h}");
    }
    let o = jitctl(&["--help"]);
    let h = stdout(&o);
    assert!(h.contains("breakglass") && !h.contains("report"), "{h}");
    let o = jitctl(&["report", "--since", "7d"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("not supported yet"), "{o:?}");
}

/// Ctrl-C at `jitctl activate`'s code prompt leaves the terminal with echo on. Before, jitctl
/// died of SIGINT with echo off and the shell showed nothing typed after it. A real pty: python
/// opens it, runs jitctl on its slave side, waits for the prompt, types Ctrl-C and reads the
/// terminal's flags back.
#[test]
fn ctrl_c_at_the_code_prompt_restores_echo() {
    let script = r#"
import os, pty, select, signal, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--socket", "/nonexistent/jitd.sock", "activate"])
buf = b""
deadline = time.time() + 20
while b"Verification code:" not in buf and time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            buf += os.read(fd, 1024)
        except OSError:
            break
# The prompt is written before echo goes off; wait (bounded) for the flag to drop.
while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < deadline:
    time.sleep(0.05)
echo_during = bool(termios.tcgetattr(fd)[3] & termios.ECHO)
os.write(fd, b"\x03")
_, status = os.waitpid(pid, 0)
echo_after = bool(termios.tcgetattr(fd)[3] & termios.ECHO)
sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
print(f"prompt={b'Verification code:' in buf} during={echo_during} after={echo_after} sig={sig}")
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_jitctl"))
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out.contains("prompt=True during=False"),
        "echo must be off at the prompt: {out} {}",
        stderr(&o)
    );
    assert!(
        out.contains("after=True"),
        "echo must be back after Ctrl-C: {out}"
    );
    assert!(
        out.contains("sig=2"),
        "jitctl dies of SIGINT, as before: {out}"
    );
}
