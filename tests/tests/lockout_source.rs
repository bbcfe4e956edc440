//! TOTP lockout is keyed by where the attempts come from, not by whom they target: another
//! local user typing wrong codes at `su alice` locks only its own `su` attempts; alice still
//! logs in over ssh (remote address) and through su started by someone else (calling uid), and
//! the audit trail names the caller. The same holds for a managed admin's break-glass codes.
//! Real su (run as carol and dave through setpriv), real sshd on loopback, codes from oathtool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use jit_tests::pam::{
    add_admin, install_pam_jit, jit_service, jitctl_json, mfa_enroll, oathtool, pam_service,
    require_tools, set_managed_accounts, step_with_margin, su_from, Sshd, ADMIN, TIMEOUT,
};
use jit_tests::{code, show, stdout, Sandbox};

/// `su alice -c 'id -un'` run by `from`, typing `input`; whether it got in as alice.
fn su_alice(sb: &Sandbox, from: u32, input: &str) -> bool {
    let (o, _) = su_from(sb, from, "alice", "id -un", input);
    code(&o) == 0 && stdout(&o).trim() == "alice"
}

#[test]
fn another_local_users_wrong_codes_lock_only_that_user() {
    require_tools(&["oathtool", "sshd", "ssh", "su", "setpriv"]);
    let sb = Sandbox::new();
    let module = install_pam_jit(&sb);
    let t = format!("timeout={TIMEOUT}");
    let body = jit_service(&module, &t, "pam_unix.so", "pam_unix.so", "pam_unix.so");
    pam_service(&sb, "sshd", &body);
    pam_service(&sb, "su", &body);
    sb.start_jitd();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("alice");
    let secret = mfa_enroll(&sb, "alice");
    sb.grant(&[
        "alice",
        "--account",
        "--mfa",
        "--ssh-key",
        &public,
        "--for",
        "10m",
    ]);
    let (carol, dave) = (sb.ids.carol, sb.ids.dave);

    // carol, a local user, types six wrong codes at `su alice` (the limit is five).
    let t0 = step_with_margin(25.0);
    let near: Vec<String> = (-3..=3).map(|k| oathtool(&secret, t0 + k * 30)).collect();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap();
    for i in 0..6 {
        assert!(
            !su_alice(&sb, carol, &format!("{wrong}\n")),
            "wrong code {} from carol let her in",
            i + 1
        );
    }

    // Three codes of the current window, oldest first (only a later step is ever accepted).
    let t = step_with_margin(12.0);
    let (c_prev, c_now, c_next) = (
        oathtool(&secret, t - 30),
        oathtool(&secret, t),
        oathtool(&secret, t + 30),
    );
    // alice over ssh from 127.0.0.1: her source has no failures.
    let r = sshd.ssh("alice", &key, Some(&c_prev), "id -un");
    assert_eq!(
        (code(&r.out), stdout(&r.out).trim()),
        (0, "alice"),
        "carol's wrong codes at su locked alice's ssh login: {}\n{}",
        r.show(),
        sshd.log()
    );
    // su alice started by dave: another calling uid, not locked either.
    assert!(
        su_alice(&sb, dave, &format!("{c_now}\n")),
        "carol's wrong codes locked su alice for dave\n{}",
        sb.jitd_log()
    );
    // carol's own source is locked: even the right code is refused.
    assert!(
        !su_alice(&sb, carol, &format!("{c_next}\n")),
        "carol is not locked after six wrong codes"
    );

    // The audit trail names the caller of each failure.
    let audit = sb.audit();
    let fails: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event"] == "mfa.fail" && e["user"] == "alice")
        .collect();
    assert_eq!(fails.len(), 7, "{fails:#?}");
    for f in &fails {
        assert_eq!(
            (
                f["caller_uid"].as_u64(),
                f["service"].as_str(),
                f["source"].as_str()
            ),
            (
                Some(u64::from(carol)),
                Some("su"),
                Some(format!("uid:{carol}").as_str())
            ),
            "{f}"
        );
    }
    assert!(
        fails.last().unwrap()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("locked"),
        "{:?}",
        fails.last()
    );
    let oks: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event"] == "mfa.ok" && e["user"] == "alice")
        .collect();
    assert_eq!(oks.len(), 2, "{oks:#?}");
    assert_eq!(oks[0]["rhost"].as_str(), Some("127.0.0.1"), "{}", oks[0]);
    assert_eq!(oks[0]["service"].as_str(), Some("sshd"));
    assert_eq!(oks[1]["caller_uid"].as_u64(), Some(u64::from(dave)));
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
}

#[test]
fn another_local_users_wrong_breakglass_codes_do_not_lock_the_admins_codes() {
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
            "auth    sufficient pam_rootok.so\n\
             auth    [success=done ignore=ignore default=die] {module} {t}\n\
             auth    required pam_unix.so\n\
             account required {module} {t}\n\
             account required pam_unix.so\n\
             session required {module} {t}\n\
             session required pam_unix.so\n"
        ),
    );
    sb.start_jitd();
    let v = jitctl_json(
        &sb,
        &["breakglass", "init", "--account", ADMIN, "--count", "2"],
    );
    let codes: Vec<String> = v["codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no codes: {v}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let (carol, dave) = (sb.ids.carol, sb.ids.dave);
    let su_admin = |from: u32, input: &str| {
        let (o, _) = su_from(&sb, from, ADMIN, "id -un", input);
        code(&o) == 0 && stdout(&o).trim() == ADMIN
    };
    // carol types five wrong codes (the limit) at `su opsadmin`.
    for _ in 0..5 {
        assert!(!su_admin(carol, "01-00000-00000-00000\n"));
    }
    // Her source is locked: a real code is refused (and not spent).
    assert!(
        !su_admin(carol, &format!("{}\n", codes[0])),
        "carol is not locked after five wrong break-glass codes"
    );
    // The admin's codes still work from another caller.
    assert!(
        su_admin(dave, &format!("{}\n", codes[0])),
        "carol's wrong codes locked the admin's break-glass codes\n{}",
        sb.jitd_log()
    );
    let fails: Vec<Value> = sb
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "breakglass.fail")
        .collect();
    assert_eq!(fails.len(), 6, "{fails:#?}");
    assert!(
        fails
            .iter()
            .all(|f| f["caller_uid"].as_u64() == Some(u64::from(carol))
                && f["source"].as_str() == Some(format!("uid:{carol}").as_str())),
        "{fails:#?}"
    );
}
