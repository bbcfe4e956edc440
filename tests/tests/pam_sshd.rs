//! Real sshd on loopback in a sandbox (own config, port and host key; docs/design.md#paths's
//! sshd_config.d drop-in: `AuthorizedKeysCommand jit-authorized-keys %u`, `Match Group jit-mfa`
//! → `AuthenticationMethods publickey,keyboard-interactive`), /etc/pam.d/sshd with pam_jit's
//! recommended lines before pam_unix, and the OpenSSH client answering keyboard-interactive
//! through SSH_ASKPASS:
//!
//! * ephemeral `alice` logs in with the key from her grant plus a TOTP code (oathtool); a wrong
//!   code, no code, a replayed code and a key outside the grant are refused; wrong codes
//!   from one address through sshd and through another PAM service add up to one lockout (X5);
//! * an expired grant and a `--from` that excludes 127.0.0.1 are refused;
//! * her session (`sleep 600`) is ended within 2 s of expiry and of `jitctl grant revoke`;
//!   jitd lists it while it runs (`jitctl session list`);
//! * `--end-with-session`: logging out ends the grant and its memberships;
//! * root and a local user log in with their keys as before, with jitd running, SIGSTOPped or
//!   stopped, without waiting for it; a JIT login with jitd hung or stopped is refused within
//!   pam_jit's timeout.
//!
//! Ids in comments and test names (X5, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::pam::{
    grant_state, install_pam_jit, is_ended, jit_service, members, mfa_enroll, oathtool,
    pam_service, pamtester, permit_service, require_tools, resolves, sessions, step_with_margin,
    SshRun, Sshd, CODE_PROMPT, TIMEOUT,
};
use jit_tests::procs::{self, describe, live_of_uid};
use jit_tests::{code, now, now_f64, poll, show, stdout, Sandbox};

/// A sandbox with pam_jit in /etc/pam.d/sshd (before pam_unix), the pamtester service
/// `jit-login` (pam_jit, then pam_permit) and jitd running.
fn setup() -> Sandbox {
    require_tools(&["oathtool", "sshd", "ssh", "pamtester"]);
    let sb = Sandbox::new();
    let module = install_pam_jit(&sb);
    pam_service(&sb, "jit-login", &permit_service(&module, "timeout=2"));
    pam_service(
        &sb,
        "sshd",
        &jit_service(
            &module,
            &format!("timeout={TIMEOUT}"),
            "pam_unix.so",
            "pam_unix.so",
            "pam_unix.so",
        ),
    );
    sb.start_jitd();
    sb
}

fn assert_in(r: &SshRun, user: &str, sshd: &Sshd) {
    assert_eq!(
        (code(&r.out), stdout(&r.out).trim()),
        (0, user),
        "{user} must log in: {}\n{}",
        r.show(),
        sshd.log()
    );
}

/// Refused: ssh's own 255 (authentication or access denied), or 254, which sshd's session
/// child exits with when pam_open_session failed ("PAM session not opened, exiting"), before
/// the command runs.
fn assert_out(r: &SshRun, what: &str, sshd: &Sshd) {
    assert!(
        matches!(code(&r.out), 254 | 255),
        "{what}: ssh must be refused: {}\n{}",
        r.show(),
        sshd.log()
    );
    assert!(
        !stdout(&r.out).contains("alice") && !stdout(&r.out).contains("bob"),
        "{what}: the command ran: {}",
        r.show()
    );
}

fn uid_of(sb: &Sandbox, name: &str) -> u32 {
    let o = sb.run(&["id", "-u", name]);
    assert_eq!(code(&o), 0, "id -u {name}: {}", show(&o));
    stdout(&o).trim().parse().unwrap()
}

fn num(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("grant object lacks {k}: {v}"))
}

#[test]
fn alice_logs_in_with_grant_key_and_totp() {
    let sb = setup();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("alice");
    let secret = mfa_enroll(&sb, "alice");
    let id = sb.grant(&[
        "alice",
        "--account",
        "--mfa",
        "--ssh-key",
        &public,
        "--for",
        "10m",
    ]);
    // What sshd will see: the key from the grant, alice in jit-mfa.
    let o = sb.run(&[
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        jit_tests::pam::AUTH_KEYS_CMD,
        "alice",
    ]);
    assert!(
        code(&o) == 0 && stdout(&o).contains(public.split(' ').nth(1).unwrap()),
        "jit-authorized-keys alice: {}",
        show(&o)
    );
    assert!(members(&sb, "jit-mfa").contains(&"alice".into()));

    // Wrong code, no code: refused after the prompt.
    let t = step_with_margin(10.0);
    let near: Vec<String> = (-1..=1).map(|k| oathtool(&secret, t + k * 30)).collect();
    let mut wrong = oathtool(&secret, t + 3000);
    while near.contains(&wrong) {
        wrong = format!("{:06}", (wrong.parse::<u32>().unwrap() + 7) % 1_000_000);
    }
    let r = sshd.ssh("alice", &key, Some(&wrong), "id -un");
    assert_out(&r, "wrong code", &sshd);
    assert!(r.prompts.contains(CODE_PROMPT), "{}", r.show());
    let r = sshd.ssh("alice", &key, None, "id -un");
    assert_out(&r, "no code", &sshd);
    // A key that is not in her grant never reaches the code prompt.
    let (other, _) = sshd.keypair("mallory");
    let r = sshd.ssh("alice", &other, Some(&near[1]), "id -un");
    assert_out(&r, "a key outside the grant", &sshd);
    assert!(r.prompts.is_empty(), "{}", r.show());

    // The right code (oathtool, step 0).
    let t = step_with_margin(3.0);
    let c = oathtool(&secret, t);
    let r = sshd.ssh("alice", &key, Some(&c), "id -un");
    assert_in(&r, "alice", &sshd);
    assert!(r.prompts.contains(CODE_PROMPT), "{}", r.show());
    println!("alice: key + TOTP login in {:.3} s", r.secs);
    let log = sshd.log();
    assert!(
        log.contains("Partial publickey for alice")
            && log.contains("Accepted keyboard-interactive/pam for alice"),
        "sshd must have used both methods:\n{log}"
    );
    assert_eq!(grant_state(&sb, &id), "live", "activated by the login");
    // The same code again: refused.
    let r = sshd.ssh("alice", &key, Some(&c), "id -un");
    assert_out(&r, "replayed code", &sshd);
    sb.assert_local_unaffected();
}

#[test]
fn expired_grant_and_wrong_source_refused() {
    let sb = setup();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("alice");
    let g = sb.grant_json(&["alice", "--account", "--ssh-key", &public, "--for", "4s"]);
    let na = num(&g, "not_after");
    let r = sshd.ssh("alice", &key, None, "id -un");
    assert_in(&r, "alice", &sshd);
    jit_tests::sleep_until(na as f64 + 0.5);
    let r = sshd.ssh("alice", &key, None, "id -un");
    assert_out(&r, "expired grant", &sshd);

    // --from that excludes 127.0.0.1; a --from that holds it as the control.
    sb.grant(&[
        "bob",
        "--account",
        "--ssh-key",
        &public,
        "--from",
        "10.0.0.0/8",
        "--for",
        "10m",
    ]);
    sb.grant(&[
        "carl",
        "--account",
        "--ssh-key",
        &public,
        "--from",
        "127.0.0.0/8",
        "--for",
        "10m",
    ]);
    let r = sshd.ssh("bob", &key, None, "id -un");
    assert_out(&r, "--from 10.0.0.0/8 from 127.0.0.1", &sshd);
    let r = sshd.ssh("carl", &key, None, "id -un");
    assert_in(&r, "carl", &sshd);
    // Same with MFA: the code does not make up for the address.
    let secret = mfa_enroll(&sb, "dan");
    sb.grant(&[
        "dan",
        "--account",
        "--mfa",
        "--ssh-key",
        &public,
        "--from",
        "10.0.0.0/8",
        "--for",
        "10m",
    ]);
    let r = sshd.ssh("dan", &key, Some(&oathtool(&secret, now())), "id -un");
    assert_out(&r, "--from 10.0.0.0/8 with a right code", &sshd);
}

/// Starts `sleep 600` over ssh as `user` and waits until it runs; returns the client's pid.
fn session_running(
    sb: &Sandbox,
    sshd: &Sshd,
    user: &str,
    key: &std::path::Path,
    code: Option<&str>,
    marker: &str,
) -> i32 {
    let uid = uid_of(sb, user);
    let (pid, _) = sshd.ssh_spawn(user, key, code, &format!("sleep {marker}"));
    poll(
        &format!("{user}'s `sleep {marker}` over ssh"),
        Duration::from_secs(15),
        || {
            if sb.try_wait(pid).is_some() {
                panic!("ssh ended early: {}\n{}", sb.log_of(pid), sshd.log());
            }
            procs::live_where(|p| p.uid == uid && p.cmdline.contains(marker))
                .first()
                .map(|_| ())
        },
    );
    pid
}

#[test]
fn session_ended_within_2s_of_expiry_and_revoke() {
    let sb = setup();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("alice");
    let secret = mfa_enroll(&sb, "alice");
    let g = sb.grant_json(&[
        "alice",
        "--account",
        "--mfa",
        "--ssh-key",
        &public,
        "--for",
        "8s",
    ]);
    let na = num(&g, "not_after");
    let uid = uid_of(&sb, "alice");
    let c = oathtool(&secret, now());
    let client = session_running(&sb, &sshd, "alice", &key, Some(&c), "601");
    // jitd knows the session pam_jit registered.
    let list = sessions(&sb);
    let s = list
        .iter()
        .find(|s| s["user"] == "alice")
        .unwrap_or_else(|| panic!("no session of alice in {list:?}"));
    assert_eq!(s["service"], "sshd", "{s}");
    assert_eq!(s["rhost"], "127.0.0.1", "{s}");
    assert_eq!(s["grant"], g["id"], "{s}");
    println!("session while logged in: {s}");

    let st = sb
        .wait_exit(
            client,
            Duration::from_secs_f64((na as f64 - now_f64()).max(0.0) + 10.0),
        )
        .unwrap_or_else(|| panic!("alice's ssh still runs 10 s after expiry:\n{}", sshd.log()));
    let after = now_f64() - na as f64;
    println!("expiry: alice's ssh session ended {after:.3} s after not_after ({st})");
    assert!(
        after <= 2.0,
        "session ended {after:.3} s after not_after (> 2 s)"
    );
    poll("no process of alice", Duration::from_secs(3), || {
        live_of_uid(uid).is_empty().then_some(())
    });
    assert!(!resolves(&sb, "alice"));

    // Revocation: same bound from the moment `jitctl grant revoke` returns.
    let secret_b = mfa_enroll(&sb, "bob");
    let id = sb.grant(&[
        "bob",
        "--account",
        "--mfa",
        "--ssh-key",
        &public,
        "--for",
        "10m",
    ]);
    let uid_b = uid_of(&sb, "bob");
    let c = oathtool(&secret_b, now());
    let client = session_running(&sb, &sshd, "bob", &key, Some(&c), "602");
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let t0 = now_f64();
    sb.wait_exit(client, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("bob's ssh still runs 10 s after revoke:\n{}", sshd.log()));
    let took = now_f64() - t0;
    println!("revoke: bob's ssh session ended {took:.3} s after `grant revoke` returned");
    assert!(took <= 2.0, "{took:.3} s > 2 s");
    assert!(
        live_of_uid(uid_b).is_empty(),
        "{}",
        describe(&live_of_uid(uid_b))
    );
    assert!(
        sessions(&sb)
            .iter()
            .all(|s| s["user"] != "alice" && s["user"] != "bob"),
        "ended sessions still listed: {:?}",
        sessions(&sb)
    );
}

#[test]
fn logout_ends_end_with_session_grant() {
    let sb = setup();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("alice");
    let id = sb.grant(&[
        "alice",
        "--account",
        "--group",
        "devs",
        "--ssh-key",
        &public,
        "--end-with-session",
        "--for",
        "10m",
    ]);
    assert!(members(&sb, "devs").contains(&"alice".into()));
    let uid = uid_of(&sb, "alice");
    // A 3 s session: listed while it runs, then alice logs out.
    let (client, _) = sshd.ssh_spawn("alice", &key, None, "sleep 3");
    poll(
        "alice's session registered",
        Duration::from_secs(10),
        || {
            sessions(&sb)
                .iter()
                .any(|s| s["user"] == "alice")
                .then_some(())
        },
    );
    assert_eq!(grant_state(&sb, &id), "live", "live while the session runs");
    let st = sb
        .wait_exit(client, Duration::from_secs(20))
        .expect("ssh returns after sleep 3");
    assert!(st.success(), "{}\n{}", sb.log_of(client), sshd.log());
    let t0 = now_f64();
    let state = poll("grant ended by logout", Duration::from_secs(5), || {
        let s = grant_state(&sb, &id);
        is_ended(&s).then_some(s)
    });
    println!(
        "logout → grant {state} in {:.3} s; events {:?}",
        now_f64() - t0,
        sb.audit_events(&id)
    );
    assert!(!resolves(&sb, "alice"));
    let m = members(&sb, "devs");
    assert!(
        !m.contains(&"alice".into()) && m.contains(&"carol".into()),
        "{m:?}"
    );
    assert!(!members(&sb, "jit-users").contains(&"alice".into()));
    poll("no process of alice", Duration::from_secs(3), || {
        live_of_uid(uid).is_empty().then_some(())
    });
    let r = sshd.ssh("alice", &key, None, "id -un");
    assert_out(&r, "after logout", &sshd);
}

#[test]
fn local_users_unaffected_and_jit_refused_when_jitd_down() {
    let sb = setup();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("local");
    sshd.authorize("carol", &public);
    sshd.authorize("root", &public);
    let (akey, apub) = sshd.keypair("alice");
    sb.grant(&["alice", "--account", "--ssh-key", &apub, "--for", "10m"]);
    let pid = sb.jitd_pid().unwrap();

    let mut base = 0.0f64;
    for user in ["root", "carol"] {
        let r = sshd.ssh(user, &key, None, "id -un");
        assert_in(&r, user, &sshd);
        base = base.max(r.secs);
    }
    let r = sshd.ssh("alice", &akey, None, "id -un");
    assert_in(&r, "alice", &sshd);
    let base_jit = r.secs;
    println!("jitd up: local login {base:.3} s, alice {base_jit:.3} s");

    for state in ["SIGSTOPped", "stopped"] {
        if state == "SIGSTOPped" {
            procs::signal(pid, libc::SIGSTOP);
        } else {
            procs::signal(pid, libc::SIGCONT);
            sb.stop_jitd();
        }
        for user in ["root", "carol"] {
            let r = sshd.ssh(user, &key, None, "id -un");
            assert_in(&r, user, &sshd);
            println!("{user}, jitd {state}: {:.3} s", r.secs);
            assert!(
                r.secs < base + 1.5,
                "{user}, jitd {state}: {:.3} s vs {base:.3} s with jitd up: waited for jitd",
                r.secs
            );
        }
        let r = sshd.ssh("alice", &akey, None, "id -un");
        assert_out(&r, &format!("alice, jitd {state}"), &sshd);
        println!("alice, jitd {state}: refused in {:.3} s", r.secs);
        assert!(
            r.secs <= base_jit + TIMEOUT as f64 + 0.5,
            "alice, jitd {state}: refused after {:.3} s (> ssh {base_jit:.3} s + timeout + 0.5 s)",
            r.secs
        );
    }
}

#[test]
fn wrong_codes_through_sshd_and_pamtester_add_up() {
    let sb = setup();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("eve");
    let secret = mfa_enroll(&sb, "eve");
    sb.grant(&[
        "eve",
        "--account",
        "--mfa",
        "--ssh-key",
        &public,
        "--for",
        "10m",
    ]);
    let t = step_with_margin(10.0);
    let near: Vec<String> = (-1..=1).map(|k| oathtool(&secret, t + k * 30)).collect();
    let wrong = |i: i64| {
        let mut c = oathtool(&secret, t + (200 + i) * 30);
        while near.contains(&c) {
            c = format!("{:06}", (c.parse::<u32>().unwrap() + 1) % 1_000_000);
        }
        c
    };
    // 3 wrong codes through sshd, 2 through another PAM service from the same address: 5 for
    // one source (failures are counted per source, so pamtester names sshd's client address).
    for i in 0..3 {
        let r = sshd.ssh("eve", &key, Some(&wrong(i)), "id -un");
        assert_out(&r, &format!("wrong code {} over ssh", i + 1), &sshd);
    }
    for i in 3..5 {
        let r = pamtester(
            &sb,
            "jit-login",
            "eve",
            &jit_tests::pam::ALL_OPS,
            &[("rhost", "127.0.0.1")],
            &format!("{}\n", wrong(i)),
        );
        assert!(
            !r.ok(),
            "wrong code {} through pamtester: {}",
            i + 1,
            r.show()
        );
    }
    let r = sshd.ssh("eve", &key, Some(&near[1]), "id -un");
    assert_out(&r, "a right code after 5 wrong ones across services", &sshd);
    let fails = jit_tests::pam::audit_matching(&sb, "mfa.fail", "eve");
    println!(
        "eve: {} mfa.fail records; services {:?}",
        fails.len(),
        fails
            .iter()
            .map(|e| e["service"].clone())
            .collect::<Vec<_>>()
    );
    assert!(fails.len() >= 6, "{fails:?}");
}
