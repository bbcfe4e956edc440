//! Self-test of the PAM/ssh harness (tests/src/pam.rs), without pam_jit or jitd: pamtester runs
//! a service file written into the sandbox's private /etc/pam.d and reports the module's return;
//! `oathtool` gives RFC 6238's own test vectors; a real sshd starts on loopback in the sandbox
//! and a local user logs in with a key; `su` driven from an unprivileged user takes a password on
//! stdin; and a service written in the sandbox never appears in the host's /etc/pam.d.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use jit_tests::pam::{
    add_admin, oathtool, pam_service, pamtester, require_tools, su_from, Sshd, ADMIN,
    ADMIN_PASSWORD, ALL_OPS, E_AUTH,
};
use jit_tests::{code, show, stdout, Sandbox};

#[test]
fn pamtester_runs_sandbox_services() {
    require_tools(&["pamtester"]);
    let sb = Sandbox::new();
    pam_service(
        &sb,
        "jit-selftest",
        "auth required pam_permit.so\naccount required pam_permit.so\n\
         session required pam_permit.so\n",
    );
    pam_service(&sb, "jit-selftest-deny", "auth required pam_deny.so\n");
    assert!(
        !Path::new("/etc/pam.d/jit-selftest").exists(),
        "the service must exist only inside the sandbox"
    );
    for user in ["carol", "root"] {
        let r = pamtester(&sb, "jit-selftest", user, &ALL_OPS, &[], "");
        assert!(r.ok(), "{user}: {}", r.show());
        assert!(
            r.text().contains("session has successfully been closed"),
            "{}",
            r.show()
        );
    }
    let r = pamtester(
        &sb,
        "jit-selftest-deny",
        "carol",
        &["authenticate"],
        &[],
        "",
    );
    assert!(!r.ok(), "{}", r.show());
    assert_eq!(r.error(), E_AUTH, "{}", r.show());
    println!("pam_deny: {}", r.show());
    // Items reach the modules: pam_succeed_if on the remote host.
    pam_service(
        &sb,
        "jit-selftest-rhost",
        "auth required pam_succeed_if.so quiet rhost = 10.1.2.3\n",
    );
    let r = pamtester(
        &sb,
        "jit-selftest-rhost",
        "carol",
        &["authenticate"],
        &[("rhost", "10.1.2.3")],
        "",
    );
    assert!(r.ok(), "{}", r.show());
    let r = pamtester(
        &sb,
        "jit-selftest-rhost",
        "carol",
        &["authenticate"],
        &[("rhost", "127.0.0.1")],
        "",
    );
    assert!(!r.ok(), "{}", r.show());
}

#[test]
fn oathtool_matches_rfc6238_vectors() {
    require_tools(&["oathtool"]);
    // RFC 6238 appendix B, SHA-1 key "12345678901234567890" (base32 below), last 6 digits.
    let key = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(oathtool(key, 59), "287082");
    assert_eq!(oathtool(key, 1_111_111_109), "081804");
    assert_eq!(oathtool(key, 1_234_567_890), "005924");
    // One step is 30 s: the same code throughout a step, another one in the next.
    assert_eq!(oathtool(key, 60), oathtool(key, 89));
    assert_ne!(oathtool(key, 89), oathtool(key, 90));
}

#[test]
fn sshd_on_loopback_local_user_with_key() {
    let sb = Sandbox::new();
    pam_service(
        &sb,
        "sshd",
        "auth required pam_unix.so\naccount required pam_unix.so\n\
         session required pam_unix.so\n",
    );
    let sshd = Sshd::start(&sb, false);
    let (key, public) = sshd.keypair("carol");
    sshd.authorize("carol", &public);
    let r = sshd.ssh("carol", &key, None, "id -un; echo $SSH_CONNECTION");
    assert_eq!(code(&r.out), 0, "{}\n{}", r.show(), sshd.log());
    let out = stdout(&r.out);
    assert!(out.starts_with("carol\n127.0.0.1 "), "{}", r.show());
    assert!(
        r.prompts.is_empty(),
        "a key login needs no prompt: {}",
        r.show()
    );
    println!("sshd: carol logged in with a key in {:.3} s", r.secs);
    assert!(
        sshd.log().contains("Accepted publickey for carol"),
        "{}",
        sshd.log()
    );
    // A key sshd does not know is refused.
    let (other, _) = sshd.keypair("stranger");
    let r = sshd.ssh("carol", &other, None, "true");
    assert_eq!(code(&r.out), 255, "{}", r.show());
}

#[test]
fn su_from_a_user_with_password_on_stdin() {
    require_tools(&["su", "setpriv"]);
    let sb = Sandbox::new();
    add_admin(&sb);
    pam_service(
        &sb,
        "su",
        "auth sufficient pam_rootok.so\nauth required pam_unix.so\n\
         account required pam_unix.so\nsession required pam_unix.so\n",
    );
    let carol = sb.ids.carol;
    let (o, secs) = su_from(&sb, carol, ADMIN, "id -un", &format!("{ADMIN_PASSWORD}\n"));
    assert_eq!(
        (code(&o), stdout(&o).trim()),
        (0, ADMIN),
        "su with the right password: {}",
        show(&o)
    );
    println!("su carol → {ADMIN}: {secs:.3} s");
    let (o, _) = su_from(&sb, carol, ADMIN, "id -un", "wrong-password\n");
    assert_ne!(code(&o), 0, "{}", show(&o));
}
