//! nscd must not keep an expired account alive. The account's expiry is enforced by the NSS
//! module itself (it checks the time), and nscd's cache bypasses the module: with passwd and
//! group cached and jitd dead at `not_after`, the account would keep resolving. So the shipped
//! configuration caches neither, and `jitd --check-config` refuses a host whose nscd does.
//! Real nscd, real getent, jitd killed with SIGKILL before the grant ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use jit_tests::{
    artifacts, code, now, poll, sandbox::path_str, show, sleep_until, stderr, stdout, Sandbox,
    GETENT_NOT_FOUND,
};

fn check_config(sb: &Sandbox) -> std::process::Output {
    let a = artifacts();
    sb.run(&[
        path_str(&a.jitd),
        "--config",
        "/etc/jit/jitd.toml",
        "--check-config",
    ])
}

/// Grants `name` an account for `secs`, resolves it once through nscd, kills jitd and returns
/// whether `getent passwd name` still answers one second after `not_after`.
fn answers_after_expiry_with_jitd_dead(sb: &Sandbox, name: &str, secs: i64) -> bool {
    sb.start_jitd();
    let t0 = now();
    sb.grant(&[name, "--account", "--for", &format!("{secs}s")]);
    poll(&format!("{name} resolves"), Duration::from_secs(5), || {
        (code(&sb.run(&["getent", "passwd", name])) == 0).then_some(())
    });
    sb.kill_jitd();
    sleep_until((t0 + secs + 2) as f64);
    let o = sb.run(&["getent", "passwd", name]);
    assert!(
        code(&o) == 0 || code(&o) == GETENT_NOT_FOUND,
        "getent: {}",
        show(&o)
    );
    code(&o) == 0
}

#[test]
fn nscd_caching_identities_is_refused_and_off_lets_accounts_vanish_with_jitd_dead() {
    // nscd caching passwd and group: --check-config fails and says how to fix it, and the
    // hazard is real (the control: the expired account still answers).
    let on = Sandbox::new();
    on.set_nscd_identity_cache(true);
    on.start_nscd();
    let o = check_config(&on);
    let msg = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        code(&o) == 1
            && msg.contains("nscd")
            && msg.contains("enable-cache passwd no")
            && msg.contains("enable-cache group no"),
        "--check-config with nscd caching passwd/group must fail naming the fix: {}",
        show(&o)
    );
    assert!(
        answers_after_expiry_with_jitd_dead(&on, "alice", 4),
        "control: nscd caching passwd did not serve the expired account, so this test could not fail"
    );
    drop(on);

    // The shipped configuration: nscd runs, caches neither table.
    let off = Sandbox::new();
    off.set_nscd_identity_cache(false);
    off.start_nscd();
    let o = check_config(&off);
    assert_eq!(code(&o), 0, "--check-config with caching off: {}", show(&o));
    assert!(
        !answers_after_expiry_with_jitd_dead(&off, "alice", 4),
        "with nscd not caching passwd, the account must vanish at not_after with jitd dead"
    );
}
