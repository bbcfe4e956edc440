//! `su` to a managed local admin (jitd.toml `managed_accounts = ["opsadmin"]`, a local account
//! with a known password in the sandbox's /etc/shadow), run by the unprivileged local user carol
//! with /etc/pam.d/su holding pam_jit's recommended lines before pam_unix:
//!
//! * refused with no grant although the password is right, allowed with an `--enable` grant,
//!   refused again after revoke and after expiry;
//! * a break-glass code from `jitctl breakglass init` opens an emergency grant (audited at
//!   `crit`) and works once: after that grant ends the same code is refused, another code works;
//! * root's own `su` (pam_rootok) is untouched;
//! * jitd SIGSTOPped: root's and local users' `su` at once, su to the enabled admin refused
//!   within pam_jit's timeout + 0.5 s (the session cannot be registered).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::pam::{
    add_admin, install_pam_jit, jitctl_json, mfa_enroll, oathtool, pam_service, require_tools,
    set_managed_accounts, step_with_margin, su_from, ADMIN, ADMIN_PASSWORD, TIMEOUT,
};
use jit_tests::{code, now_f64, procs, show, sleep_until, stdout, Sandbox};

fn setup() -> Sandbox {
    require_tools(&["su", "setpriv"]);
    let sb = Sandbox::new();
    let module = install_pam_jit(&sb);
    add_admin(&sb);
    set_managed_accounts(&sb, &[ADMIN]);
    let t = format!("timeout={TIMEOUT}");
    pam_service(
        &sb,
        "su",
        &format!(
            "# su as Debian has it, with pam_jit before pam_unix\n\
             auth    sufficient pam_rootok.so\n\
             auth    [success=done ignore=ignore default=die] {module} {t}\n\
             auth    required pam_unix.so\n\
             account required {module} {t}\n\
             account required pam_unix.so\n\
             session required {module} {t}\n\
             session required pam_unix.so\n"
        ),
    );
    sb.start_jitd();
    sb
}

/// carol runs `su opsadmin -c 'id -un'`, typing `input`.
fn su(sb: &Sandbox, input: &str) -> (std::process::Output, bool) {
    let (o, secs) = su_from(sb, sb.ids.carol, ADMIN, "id -un", input);
    let ok = code(&o) == 0 && stdout(&o).trim() == ADMIN;
    println!("su {ADMIN} typing {input:?}: ok={ok} in {secs:.3} s");
    (o, ok)
}

fn pw() -> String {
    format!("{ADMIN_PASSWORD}\n")
}

/// `--enable --mfa`: the code adds to the admin's password, it does not replace it: su needs
/// both (the code first, as pam_jit comes before pam_unix), and each code works once.
#[test]
fn su_to_managed_admin_with_mfa_needs_code_and_password() {
    require_tools(&["oathtool"]);
    let sb = setup();
    let secret = mfa_enroll(&sb, ADMIN);
    let id = sb.grant(&[ADMIN, "--enable", "--mfa", "--for", "10m"]);
    // Three codes inside jitd's ±1 step window, oldest first (a later step never reopens an
    // earlier one).
    let t = step_with_margin(15.0);
    let (o, ok) = su(&sb, &format!("{}\n", oathtool(&secret, t - 30)));
    assert!(!ok, "a code without the password: {}", show(&o));
    let (o, ok) = su(
        &sb,
        &format!("{}\nnot-the-password\n", oathtool(&secret, t)),
    );
    assert!(!ok, "a code with a wrong password: {}", show(&o));
    let last = oathtool(&secret, t + 30);
    let (o, ok) = su(&sb, &format!("{last}\n{}", pw()));
    assert!(ok, "code and password: {}\n{}", show(&o), sb.jitd_log());
    let (o, ok) = su(&sb, &format!("{last}\n{}", pw()));
    assert!(!ok, "the same code again: {}", show(&o));
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
}

#[test]
fn su_to_managed_admin_needs_enable_grant() {
    let sb = setup();
    // No grant: pam_jit asks for a break-glass code; neither the password there nor an empty
    // answer gets in.
    let (o, ok) = su(&sb, &format!("{}{}", pw(), pw()));
    assert!(!ok, "no grant: {}", show(&o));
    let (o, ok) = su(&sb, &format!("\n{}", pw()));
    assert!(!ok, "no grant, empty break-glass answer: {}", show(&o));

    // --enable: the password works.
    let id = sb.grant(&[ADMIN, "--enable", "--for", "10m"]);
    let (o, ok) = su(&sb, &pw());
    assert!(ok, "with an --enable grant: {}", show(&o));
    let (o, ok) = su(&sb, "not-the-password\n");
    assert!(!ok, "the grant does not replace the password: {}", show(&o));

    // Revoked: refused again.
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let (o, ok) = su(&sb, &format!("{}{}", pw(), pw()));
    assert!(!ok, "after revoke: {}", show(&o));

    // Expired: allowed inside the grant, refused after not_after.
    let g = sb.grant_json(&[ADMIN, "--enable", "--for", "4s"]);
    let (o, ok) = su(&sb, &pw());
    assert!(ok, "inside a 4 s grant: {}", show(&o));
    sleep_until(g["not_after"].as_i64().unwrap() as f64 + 0.5);
    let (o, ok) = su(&sb, &format!("{}{}", pw(), pw()));
    assert!(!ok, "after expiry: {}", show(&o));

    // root's own su is untouched (pam_rootok, then account: root is never managed).
    let o = sb.run(&["su", "root", "-c", "id -un"]);
    assert_eq!((code(&o), stdout(&o).trim()), (0, "root"), "{}", show(&o));
    let o = sb.run(&["su", "carol", "-c", "id -un"]);
    assert_eq!((code(&o), stdout(&o).trim()), (0, "carol"), "{}", show(&o));
}

fn emergency_grants(sb: &Sandbox) -> Vec<Value> {
    sb.grant_list()
        .into_iter()
        .filter(|g| g["user"] == ADMIN && g["state"] == "live")
        .collect()
}

#[test]
fn breakglass_code_works_once() {
    let sb = setup();
    let v = jitctl_json(
        &sb,
        &["breakglass", "init", "--account", ADMIN, "--count", "3"],
    );
    assert_eq!(v["account"], ADMIN, "{v}");
    let codes: Vec<String> = v["codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no codes: {v}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 3, "{v}");
    let mut uniq = codes.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3, "codes must differ: {codes:?}");
    // Only slow hashes are kept: no code in jitd's state directory or the audit trail.
    let o = sb.run(&[
        "grep",
        "-rF",
        &codes[0],
        "/var/lib/jitd",
        "/var/log/jit",
        "/run/jitd",
    ]);
    assert_eq!(
        code(&o),
        1,
        "a break-glass code is stored in clear: {}",
        show(&o)
    );

    // A wrong code is refused.
    let (o, ok) = su(&sb, "0000-0000-0000\n");
    assert!(!ok, "a made-up code: {}", show(&o));

    // The first code: in, no password asked (the code is the authentication).
    let (o, ok) = su(&sb, &format!("{}\n", codes[0]));
    assert!(ok, "break-glass code 1: {}\n{}", show(&o), sb.jitd_log());
    let live = emergency_grants(&sb);
    assert_eq!(live.len(), 1, "one emergency grant: {live:?}");
    let id = live[0]["id"].as_str().unwrap().to_string();
    println!("emergency grant: {}", live[0]);
    let crit: Vec<Value> = sb
        .audit()
        .into_iter()
        .filter(|e| e["severity"] == "crit" && e.to_string().contains(ADMIN))
        .collect();
    assert!(!crit.is_empty(), "break-glass must be audited at crit");
    println!("crit audit: {crit:?}");
    assert!(
        !sb.audit().iter().any(|e| e.to_string().contains(&codes[0])),
        "the code must not appear in the audit trail"
    );

    // End the emergency grant; the spent code is refused, the next one works.
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let (o, ok) = su(&sb, &format!("{}\n{}", codes[0], pw()));
    assert!(!ok, "a spent break-glass code: {}", show(&o));
    let (o, ok) = su(&sb, &format!("{}\n", codes[1]));
    assert!(ok, "break-glass code 2: {}", show(&o));
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn su_with_jitd_hung() {
    let sb = setup();
    sb.grant(&[ADMIN, "--enable", "--for", "10m"]);
    let (o, ok) = su(&sb, &pw());
    assert!(ok, "with an --enable grant, jitd up: {}", show(&o));
    let pid = sb.jitd_pid().unwrap();
    procs::signal(pid, libc::SIGSTOP);
    for (who, args) in [
        ("root → carol", ["su", "carol", "-c", "id -un"]),
        ("root → root", ["su", "root", "-c", "id -un"]),
    ] {
        let t = now_f64();
        let o = sb.run(&args);
        let secs = now_f64() - t;
        println!("{who}, jitd SIGSTOPped: {secs:.3} s");
        assert_eq!(code(&o), 0, "{who}: {}", show(&o));
        assert!(secs < 1.0, "{who} waited for jitd: {secs:.3} s");
    }
    let (o, secs) = su_from(&sb, sb.ids.carol, ADMIN, "id -un", &pw());
    println!(
        "carol → {ADMIN}, jitd SIGSTOPped: refused in {secs:.3} s: {}",
        show(&o)
    );
    assert!(
        !(code(&o) == 0 && stdout(&o).trim() == ADMIN),
        "the admin's session must not open without jitd: {}",
        show(&o)
    );
    assert!(
        secs <= TIMEOUT as f64 + 0.5,
        "refused after {secs:.3} s (> timeout + 0.5 s)"
    );
    procs::signal(pid, libc::SIGCONT);
}
