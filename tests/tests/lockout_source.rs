//! TOTP lockout is keyed by where the attempts come from, not by whom they target: another
//! local user typing wrong codes at `su alice` locks only its own `su` attempts; alice still
//! logs in over ssh (remote address) and through su started by someone else (calling uid), and
//! the audit trail names the caller. Real su (run as carol through setpriv), real sshd on
//! loopback, codes from oathtool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use jit_tests::pam::{
    install_pam_jit, jit_service, mfa_enroll, oathtool, pam_service, require_tools,
    step_with_margin, su_from, Sshd, TIMEOUT,
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
