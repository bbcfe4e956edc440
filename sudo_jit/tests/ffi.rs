//! The C entry points called directly, the way sudo calls them, with hostile inputs
//! (docs/threat-model.md: B10, X9): `open` never returns 0; `check` never approves a jit user on
//! garbage; every entry point survives being called twice; huge vectors are handled quickly.
//!
//! As root, `check` approves (root is always approved). The jit-user half runs this same test
//! binary again as uid 70001 (absent from /etc/passwd: a jit identity by the daemon-free rule)
//! in a private mount namespace with an empty /run (no snapshot), via `unshare` + `setpriv`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::CString;
use std::os::raw::c_char;
use std::time::{Duration, Instant};
use sudo_jit::{sudo_jit, sudo_jit_check, sudo_jit_close, sudo_jit_open, SUDO_API_VERSION};

struct CVec {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CVec {
    fn new<S: AsRef<str>>(items: &[S]) -> Self {
        let strings: Vec<CString> = items
            .iter()
            .map(|s| CString::new(s.as_ref()).unwrap())
            .collect();
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CVec {
            _strings: strings,
            ptrs,
        }
    }
    fn p(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

fn open(version: u32, settings: &CVec, user_info: &CVec, opts: Option<&CVec>) -> i32 {
    let mut errstr: *const c_char = std::ptr::null();
    // SAFETY: NULL-terminated vectors of live C strings; null where sudo may pass null.
    unsafe {
        sudo_jit_open(
            version,
            None,
            None,
            settings.p(),
            user_info.p(),
            1,
            std::ptr::null(),
            std::ptr::null(),
            opts.map_or(std::ptr::null(), CVec::p),
            &mut errstr,
        )
    }
}

fn check(command_info: &CVec, argv: &CVec, envp: &CVec) -> i32 {
    let mut errstr: *const c_char = std::ptr::null();
    // SAFETY: as above.
    unsafe { sudo_jit_check(command_info.p(), argv.p(), envp.p(), &mut errstr) }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Every `open` variant returns 1; `check` returns `want` for each; everything twice.
fn exercise(want: i32, me: u32) {
    assert_eq!(sudo_jit.plugin_type, 4);
    assert_eq!(sudo_jit.version, SUDO_API_VERSION);
    let good_user = CVec::new(&[
        "user=ghost".to_string(),
        format!("uid={me}"),
        "groups=100,79001".to_string(),
    ]);
    let settings = CVec::new(&["noequals", "run_shell=false", "=x", "run_shell=false"]);
    let ci = CVec::new(&["command=/usr/bin/id", "runas_uid=0", "noequals"]);
    let mut args: Vec<String> = vec!["id".into()];
    args.extend((0..10_000).map(|i| format!("a{i}")));
    args.push("x".repeat(1 << 20));
    let argv = CVec::new(&args);
    let envp = CVec::new(
        &(0..10_000)
            .map(|i| format!("JIT_V{i}=1"))
            .collect::<Vec<_>>(),
    );
    let empty = CVec::new::<&str>(&[]);
    let cases: Vec<(u32, CVec, Option<CVec>)> = vec![
        (
            SUDO_API_VERSION,
            CVec::new(&[format!("uid={me}"), "user=ghost".into()]),
            None,
        ),
        (SUDO_API_VERSION, CVec::new(&["user=ghost"]), None), // no uid
        (
            SUDO_API_VERSION,
            CVec::new(&[format!("uid={me}"), "uid=0".into(), "user=g".into()]),
            None,
        ),
        (
            SUDO_API_VERSION,
            CVec::new(&["uid=4294967295", "user=ghost"]),
            None,
        ),
        (
            SUDO_API_VERSION,
            CVec::new(&[format!("uid={me}"), "user=ghost".into()]),
            Some(CVec::new(&["bogus"])),
        ),
        (
            2 << 16,
            CVec::new(&[format!("uid={me}"), "user=ghost".into()]),
            None,
        ),
        (
            SUDO_API_VERSION,
            CVec::new::<&str>(&[]),
            Some(CVec::new(&["timeout=1", "debug"])),
        ),
    ];
    for (version, ui, opts) in &cases {
        for _ in 0..2 {
            assert_eq!(open(*version, &settings, ui, opts.as_ref()), 1);
            let t = Instant::now();
            assert_eq!(check(&ci, &argv, &envp), want);
            assert_eq!(check(&empty, &empty, &empty), want);
            assert!(t.elapsed() < Duration::from_secs(3));
            sudo_jit_close();
        }
    }
    // check without open, close twice.
    assert_eq!(check(&ci, &argv, &envp), want);
    sudo_jit_close();
    sudo_jit_close();
    assert_eq!(open(SUDO_API_VERSION, &settings, &good_user, None), 1);
    assert_eq!(check(&ci, &argv, &envp), want);
    sudo_jit_close();
}

#[test]
fn entry_points_as_root_approve() {
    if uid() != 0 {
        return;
    }
    exercise(1, 0);
}

#[test]
fn entry_points_as_jit_user_refuse() {
    assert!(
        uid() == 0 && std::path::Path::new("/usr/bin/setpriv").exists(),
        "needs root and setpriv (scripts/test runs as root)"
    );
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /run && exec setpriv --reuid=70001 --regid=70001 --clear-groups \
         '{}' --exact jit_user_child --ignored --test-threads=1",
        exe.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// Run only by [`entry_points_as_jit_user_refuse`], as uid 70001.
#[test]
#[ignore]
fn jit_user_child() {
    let me = uid();
    assert_ne!(me, 0, "run through entry_points_as_jit_user_refuse");
    exercise(0, me);
}
