//! pam_jit.so through real `pamtester` runs in a sandbox, with jitd, libnss_jit and codes from
//! `oathtool` (an independent RFC 6238 implementation):
//!
//! * TOTP for a JIT identity: steps −1, 0, +1 accepted, ±2 refused (X6), a code never works
//!   twice (also four logins at once with one code, and after a jitd restart) and an older step
//!   after a newer one is refused (X4), 5 wrong codes lock the person
//!   (a right code is then refused, also after a jitd restart) (X5), an `--mfa` grant's account
//!   step needs this transaction's code check (P12);
//! * grant conditions: `--from` against PAM_RHOST, `--service` against PAM_SERVICE, `--window`;
//! * root, local users and unknown names: PAM_IGNORE in every hook, with jitd running, stopped
//!   and SIGSTOPped, at once (no socket wait);
//! * jitd stopped or hung: a JIT login is refused within `timeout` + 0.5 s (timeout=2 and =1);
//! * `--end-with-session`: close_session ends the grant and its memberships;
//! * X3: an impostor serving the socket path as an ordinary user gets no code and no session;
//! * P11: `pam_jit.so` missing: root still in (bypass line before pam_jit), JIT identity out;
//! * X11: a managed admin with a valid password and no grant is denied in auth (even when the
//!   caller runs `pam_authenticate` alone) and in account; an `--enable` grant lets the password
//!   work; `root` in `managed_accounts` is rejected by `jitd --check-config`.
//!
//! Ids in comments and test names (X3, P12, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use jit_tests::pam::{
    add_admin, audit_matching, grant_state, install_pam_jit, is_ended, jit_service, members,
    mfa_enroll, oathtool, pam_service, pamtester, permit_service, require_tools, resolves,
    set_managed_accounts, step_with_margin, write_file, Pam, ADMIN, ADMIN_PASSWORD, ALL_OPS,
    CODE_PROMPT, E_AUTH, E_PERM, E_SESSION, TIMEOUT,
};
use jit_tests::{code, now, poll, procs, show, stdout, Sandbox};

/// The service every pamtester test uses: pam_jit's recommended lines, then pam_permit.
const SVC: &str = "jit-login";

/// A sandbox with pam_jit.so installed and [`SVC`] written (timeout=2); jitd not started yet.
fn setup() -> (Sandbox, String) {
    require_tools(&["pamtester", "oathtool"]);
    let sb = Sandbox::new();
    let module = install_pam_jit(&sb);
    pam_service(
        &sb,
        SVC,
        &permit_service(&module, &format!("timeout={TIMEOUT}")),
    );
    (sb, module)
}

fn login(sb: &Sandbox, user: &str, answer: &str) -> Pam {
    pamtester(sb, SVC, user, &ALL_OPS, &[], &format!("{answer}\n"))
}

fn assert_refused(r: &Pam, err: &str, what: &str) {
    assert!(!r.ok(), "{what}: must be refused: {}", r.show());
    assert_eq!(r.error(), err, "{what}: wrong PAM result: {}", r.show());
}

fn assert_ok(r: &Pam, what: &str) {
    assert!(r.ok(), "{what}: must succeed: {}", r.show());
    assert!(
        r.text().contains("session has successfully been closed")
            || !r.text().contains("close_session"),
        "{what}: {}",
        r.show()
    );
}

/// A code for `secret` that is none of the codes of steps t−1..t+1 around `t` (a wrong code).
fn wrong_code(secret: &str, t: i64, salt: i64) -> String {
    let near: Vec<String> = (-1..=1).map(|k| oathtool(secret, t + k * 30)).collect();
    let mut c = oathtool(secret, t + (100 + salt) * 30);
    while near.contains(&c) {
        c = format!("{:06}", (c.parse::<u32>().unwrap() + 1) % 1_000_000);
    }
    c
}

#[test]
fn totp_window_replay_and_lockout() {
    let (sb, _) = setup();
    sb.start_jitd();
    let users = ["twfar", "twprev", "twnow", "twnext", "twlock"];
    let mut secret = std::collections::HashMap::new();
    let mut grant = std::collections::HashMap::new();
    for u in users {
        secret.insert(u, mfa_enroll(&sb, u));
        grant.insert(u, sb.grant(&[u, "--account", "--mfa", "--for", "10m"]));
    }
    // Armed --mfa account grants: the accounts resolve (sshd must find them before PAM runs)
    // and jit-mfa lists every one of them (the sshd Match Group).
    let mfa = members(&sb, "jit-mfa");
    for u in users {
        assert!(resolves(&sb, u), "{u} must resolve while armed");
        assert!(mfa.contains(&u.to_string()), "jit-mfa lacks {u}: {mfa:?}");
    }

    // P12: an --mfa grant's account step alone (no code in this transaction) is refused.
    let r = pamtester(&sb, SVC, "twnow", &["acct_mgmt"], &[], "");
    assert_refused(&r, E_PERM, "acct_mgmt without the code check");
    // No answer at all (empty line) is refused too.
    let r = login(&sb, "twnow", "");
    assert_refused(&r, E_AUTH, "empty code");

    // X6: ±2 steps refused (2 failures: below the lockout).
    let t = step_with_margin(6.0);
    for k in [-2i64, 2] {
        let c = oathtool(&secret["twfar"], t + k * 30);
        let r = login(&sb, "twfar", &c);
        assert!(r.text().contains(CODE_PROMPT), "prompt: {}", r.show());
        assert_refused(&r, E_AUTH, &format!("code of step {k:+}"));
        println!("step {k:+}: refused in {:.3} s", r.secs);
    }
    // −1, 0, +1 accepted: a fresh person each, as after accepting step s every step ≤ s is a
    // replay for that person.
    for (u, k) in [("twprev", -1i64), ("twnow", 0), ("twnext", 1)] {
        let t = step_with_margin(3.0);
        let c = oathtool(&secret[u], t + k * 30);
        let r = login(&sb, u, &c);
        assert!(r.text().contains(CODE_PROMPT), "prompt: {}", r.show());
        assert_ok(&r, &format!("code of step {k:+} for {u}"));
        println!("step {k:+}: accepted in {:.3} s ({u})", r.secs);
    }
    // The ±2 refusals did not lock twfar: its step-0 code works.
    let t = step_with_margin(3.0);
    let r = login(&sb, "twfar", &oathtool(&secret["twfar"], t));
    assert_ok(&r, "twfar after two out-of-window codes");

    // X4: the same code twice → refused; a code of step t−1 after one of step t → refused.
    let t = now();
    let r = login(&sb, "twnext", &oathtool(&secret["twnext"], t + 30));
    assert_refused(&r, E_AUTH, "replay of the accepted step +1 code");
    let r = login(&sb, "twnow", &oathtool(&secret["twnow"], t - 30));
    assert_refused(&r, E_AUTH, "step −1 after step 0 was accepted");

    // The login activated the armed grant.
    assert_eq!(
        grant_state(&sb, &grant["twnow"]),
        "live",
        "activated by login"
    );

    // X5: 5 wrong codes lock the person: the right code is then refused.
    let t = step_with_margin(8.0);
    for i in 0..5 {
        let r = login(&sb, "twlock", &wrong_code(&secret["twlock"], t, i));
        assert_refused(&r, E_AUTH, &format!("wrong code {}", i + 1));
    }
    let t = step_with_margin(3.0);
    let right = oathtool(&secret["twlock"], t);
    let r = login(&sb, "twlock", &right);
    assert_refused(&r, E_AUTH, "a right code after 5 wrong ones (locked)");
    let fails = audit_matching(&sb, "mfa", "twlock");
    println!(
        "audit for twlock: {:?}",
        fails.iter().map(|e| e["event"].clone()).collect::<Vec<_>>()
    );
    assert!(
        fails
            .iter()
            .filter(|e| e["event"].as_str().unwrap().contains("fail"))
            .count()
            >= 5,
        "every wrong code is audited: {fails:?}"
    );
    // The lock is persisted: still locked after a jitd restart (a fresh step's code).
    sb.stop_jitd();
    sb.start_jitd();
    let r = login(&sb, "twlock", &oathtool(&secret["twlock"], now() + 30));
    assert_refused(&r, E_AUTH, "locked across a jitd restart");
    sb.assert_local_unaffected();
}

#[test]
fn grant_conditions_from_service_window() {
    let (sb, module) = setup();
    // The same stack under the service name sshd, for --service.
    pam_service(&sb, "sshd", &permit_service(&module, "timeout=2"));
    sb.start_jitd();

    // --from against PAM_RHOST.
    sb.grant(&["alice", "--account", "--from", "10.0.0.0/8", "--for", "10m"]);
    let ok = pamtester(&sb, SVC, "alice", &ALL_OPS, &[("rhost", "10.1.2.3")], "");
    assert_ok(&ok, "--from 10.0.0.0/8, rhost 10.1.2.3");
    for rhost in ["192.168.1.1", "127.0.0.1", "host.example"] {
        let r = pamtester(&sb, SVC, "alice", &ALL_OPS, &[("rhost", rhost)], "");
        assert_refused(&r, E_AUTH, &format!("--from 10.0.0.0/8, rhost {rhost}"));
        let r = pamtester(&sb, SVC, "alice", &["acct_mgmt"], &[("rhost", rhost)], "");
        assert_refused(&r, E_PERM, &format!("account, rhost {rhost}"));
    }
    // No PAM_RHOST (a local login) does not fit a --from list.
    let r = pamtester(&sb, SVC, "alice", &ALL_OPS, &[], "");
    assert_refused(&r, E_AUTH, "--from and no rhost");

    // --service against PAM_SERVICE.
    sb.grant(&["bob", "--account", "--service", "sshd", "--for", "10m"]);
    let r = pamtester(&sb, "sshd", "bob", &ALL_OPS, &[], "");
    assert_ok(&r, "--service sshd through sshd");
    let r = pamtester(&sb, SVC, "bob", &ALL_OPS, &[], "");
    assert_refused(&r, E_AUTH, &format!("--service sshd through {SVC}"));
    let r = pamtester(&sb, SVC, "bob", &["acct_mgmt"], &[], "");
    assert_refused(
        &r,
        E_PERM,
        &format!("account, --service sshd through {SVC}"),
    );

    // --window in host local time: one that holds now, one twelve hours away.
    let hour: i64 = sb.sh_ok("date +%H").trim().parse().unwrap();
    let minute: i64 = sb.sh_ok("date +%M").trim().parse().unwrap();
    if hour == 23 && minute >= 58 {
        std::thread::sleep(Duration::from_secs(125));
    }
    let hour: i64 = sb.sh_ok("date +%H").trim().parse().unwrap();
    let here = format!("* {hour:02}:00-{:02}:00", (hour + 1) % 24);
    let away = format!("* {:02}:00-{:02}:30", (hour + 12) % 24, (hour + 12) % 24);
    sb.grant(&["carl", "--account", "--window", &here, "--for", "10m"]);
    sb.grant(&["dan", "--account", "--window", &away, "--for", "10m"]);
    let r = pamtester(&sb, SVC, "carl", &ALL_OPS, &[], "");
    assert_ok(&r, &format!("--window {here:?}"));
    let r = pamtester(&sb, SVC, "dan", &ALL_OPS, &[], "");
    assert_refused(&r, E_AUTH, &format!("--window {away:?}"));
    let r = pamtester(&sb, SVC, "dan", &["acct_mgmt"], &[], "");
    assert_refused(&r, E_PERM, &format!("account, --window {away:?}"));
}

#[test]
fn root_local_and_unknown_users_never_wait_for_jitd() {
    let (sb, _) = setup();
    let pid = sb.start_jitd();
    sb.grant(&["alice", "--account", "--for", "10m"]);
    let check = |state: &str| {
        for user in ["root", "carol", "dave", "nosuchuser"] {
            let r = pamtester(&sb, SVC, user, &ALL_OPS, &[], "");
            assert!(r.ok(), "{user} with jitd {state}: {}", r.show());
            assert!(
                !r.text().contains(CODE_PROMPT),
                "{user} must not be asked for a code: {}",
                r.show()
            );
            println!("{user}, jitd {state}: full transaction in {:.3} s", r.secs);
            assert!(
                r.secs < 1.0,
                "{user} with jitd {state}: {:.3} s: pam_jit must not contact jitd for a non-JIT \
                 name (timeout={TIMEOUT})",
                r.secs
            );
        }
    };
    check("running");
    procs::signal(pid, libc::SIGSTOP);
    check("SIGSTOPped");
    procs::signal(pid, libc::SIGCONT);
    // jitd registered no session for any of them.
    let o = sb.jitctl(&["--json", "session", "list"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    for user in ["root", "carol", "dave", "nosuchuser"] {
        assert!(
            !stdout(&o).contains(&format!("\"{user}\"")),
            "jitd knows a session of {user}: {}",
            show(&o)
        );
    }
    sb.stop_jitd();
    check("stopped");
    // Snapshot gone too (jitd never ran on a fresh host, or /run was wiped).
    sb.sh_ok("rm -f /run/jitd/snapshot /run/jitd/gates /run/jitd/jitd.sock");
    check("stopped, no snapshot");
}

#[test]
fn jitd_down_or_hung_refuses_jit_login_within_timeout() {
    let (sb, module) = setup();
    pam_service(&sb, "jit-login-t1", &permit_service(&module, "timeout=1"));
    let pid = sb.start_jitd();
    sb.grant(&["alice", "--account", "--for", "10m"]);
    let bob_secret = mfa_enroll(&sb, "bob");
    let bob_grant = sb.grant(&["bob", "--account", "--mfa", "--for", "10m"]);
    let bob_before = grant_state(&sb, &bob_grant);
    let r = login(&sb, "alice", "");
    assert_ok(&r, "alice with jitd up");
    println!("alice (no MFA), jitd up: {:.3} s", r.secs);

    let mut figures = Vec::new();
    let mut refused = |state: &str, svc: &str, timeout: u64| {
        // alice: auth and account decide from the snapshot; the session must be registered.
        let r = pamtester(&sb, svc, "alice", &ALL_OPS, &[], "");
        assert_refused(&r, E_SESSION, &format!("alice, jitd {state}, {svc}"));
        // bob: the code cannot be checked.
        let c = oathtool(&bob_secret, now());
        let r2 = pamtester(&sb, svc, "bob", &ALL_OPS, &[], &format!("{c}\n"));
        assert_refused(&r2, E_AUTH, &format!("bob (MFA), jitd {state}, {svc}"));
        for (who, r) in [("alice", &r), ("bob", &r2)] {
            println!(
                "{who}, jitd {state}, timeout={timeout}: refused in {:.3} s",
                r.secs
            );
            figures.push(format!("{who}/{state}/t{timeout}: {:.3}", r.secs));
            assert!(
                r.secs <= timeout as f64 + 0.5,
                "{who}, jitd {state}: refused after {:.3} s, more than timeout={timeout} + 0.5 s",
                r.secs
            );
        }
        // A local user at once, meanwhile.
        let r = pamtester(&sb, svc, "carol", &ALL_OPS, &[], "");
        assert!(r.ok() && r.secs < 1.0, "carol, jitd {state}: {}", r.show());
    };
    procs::signal(pid, libc::SIGSTOP);
    refused("SIGSTOPped", SVC, TIMEOUT);
    refused("SIGSTOPped", "jit-login-t1", 1);
    procs::signal(pid, libc::SIGCONT);
    // What jitd did with the requests that queued while it was stopped (not asserted).
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "after SIGCONT: sessions {}; bob's --mfa grant was {bob_before} before the refused \
         logins, is {} now; mfa events {:?}",
        stdout(&sb.jitctl(&["--json", "session", "list"])).trim(),
        grant_state(&sb, &bob_grant),
        audit_matching(&sb, "mfa", "bob")
            .iter()
            .map(|e| e["event"].clone())
            .collect::<Vec<_>>()
    );
    sb.stop_jitd();
    refused("stopped", SVC, TIMEOUT);
    refused("stopped", "jit-login-t1", 1);
    println!("figures: {figures:?}");

    // Back up: both log in again (bob with a fresh step: the queued request may have spent
    // this step's code).
    sb.start_jitd();
    let r = login(&sb, "alice", "");
    assert_ok(&r, "alice after restart");
    let r = login(&sb, "bob", &oathtool(&bob_secret, now() + 30));
    assert_ok(&r, "bob after restart");
}

#[test]
fn end_with_session_ends_grant_and_memberships() {
    let (sb, module) = setup();
    pam_service(
        &sb,
        "jit-unix-acct",
        &jit_service(
            &module,
            "timeout=2",
            "pam_permit.so",
            "pam_unix.so",
            "pam_unix.so",
        ),
    );
    sb.start_jitd();
    let id = sb.grant(&[
        "alice",
        "--account",
        "--group",
        "devs",
        "--end-with-session",
        "--for",
        "10m",
    ]);
    let control = sb.grant(&["bob", "--account", "--group", "devs", "--for", "10m"]);
    let m = members(&sb, "devs");
    assert!(
        m.contains(&"alice".into()) && m.contains(&"bob".into()) && m.contains(&"carol".into()),
        "{m:?}"
    );
    assert!(members(&sb, "jit-users").contains(&"alice".into()));

    // Open and close a session in one transaction: the close ends the grant.
    let r = login(&sb, "alice", "");
    assert_ok(&r, "alice's login");
    let t = std::time::Instant::now();
    let state = poll("alice's grant ends", Duration::from_secs(5), || {
        let s = grant_state(&sb, &id);
        is_ended(&s).then_some(s)
    });
    println!(
        "--end-with-session: grant {state} {:.3} s after close_session returned; events {:?}",
        t.elapsed().as_secs_f64(),
        sb.audit_events(&id)
    );
    assert!(!resolves(&sb, "alice"), "alice must be gone");
    let m = members(&sb, "devs");
    assert!(
        !m.contains(&"alice".into()),
        "devs still lists alice: {m:?}"
    );
    assert!(
        m.contains(&"carol".into()),
        "devs lost its local member: {m:?}"
    );
    assert!(!members(&sb, "jit-users").contains(&"alice".into()));
    // A second login finds no account: pam_jit has nothing to say about an unknown name
    // (PAM_IGNORE), pam_unix refuses it.
    let r = pamtester(&sb, "jit-unix-acct", "alice", &ALL_OPS, &[], "");
    assert!(!r.ok(), "no second login: {}", r.show());

    // A grant without the flag outlives its sessions.
    let r = login(&sb, "bob", "");
    assert_ok(&r, "bob's login");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(grant_state(&sb, &control), "live");
    assert!(members(&sb, "devs").contains(&"bob".into()));
    sb.assert_local_unaffected();
}

#[test]
fn module_missing_root_in_jit_out() {
    let (sb, module) = setup();
    sb.start_jitd();
    sb.grant(&["alice", "--account", "--for", "10m"]);
    // The stack a package should install: root (uid 0) skips pam_jit on every line.
    let bypass = "[success=1 default=ignore] pam_succeed_if.so quiet uid eq 0";
    let stack = format!(
        "auth    {bypass}\n\
         auth    [success=done ignore=ignore default=die] {module} timeout=2\n\
         auth    required pam_permit.so\n\
         account {bypass}\n\
         account required {module} timeout=2\n\
         account required pam_permit.so\n\
         session {bypass}\n\
         session required {module} timeout=2\n\
         session required pam_permit.so\n"
    );
    pam_service(&sb, "jit-p11", &stack);
    for user in ["root", "alice", "carol"] {
        let r = pamtester(&sb, "jit-p11", user, &ALL_OPS, &[], "");
        assert_ok(&r, &format!("{user} with the module present"));
    }
    // A package upgrade removed the file.
    std::fs::remove_file(&module).expect("remove pam_jit.so");
    let r = pamtester(&sb, "jit-p11", "root", &ALL_OPS, &[], "");
    assert_ok(&r, "root with pam_jit.so missing");
    // Linux-PAM (1.5.2, Debian 12) loads a missing module as a "faulty" one whose every hook
    // returns PAM_MODULE_UNKNOWN ("Module is unknown"); `default=die` on the auth line ends the
    // stack with that code. The JIT identity is refused at its first step.
    let r = pamtester(&sb, "jit-p11", "alice", &ALL_OPS, &[], "");
    println!("alice with pam_jit.so missing: {}", r.show());
    assert!(!r.ok(), "alice must be refused: {}", r.show());
    assert_eq!(r.error(), "Module is unknown", "{}", r.show());
    let r = pamtester(&sb, "jit-p11", "alice", &["acct_mgmt"], &[], "");
    assert!(!r.ok(), "alice's account step must fail: {}", r.show());
    assert_eq!(r.error(), "Module is unknown", "{}", r.show());
    // A local user not covered by a bypass line is refused the same way: the module file
    // missing fails closed for every name the bypass lines do not cover (root here).
    let r = pamtester(&sb, "jit-p11", "carol", &ALL_OPS, &[], "");
    println!("carol with pam_jit.so missing: {}", r.show());
    assert!(!r.ok(), "{}", r.show());
}

#[test]
fn managed_admin_without_grant_denied_x11() {
    let (sb, module) = setup();
    add_admin(&sb);
    set_managed_accounts(&sb, &[ADMIN]);
    // pam_unix checks the real password after pam_jit.
    pam_service(
        &sb,
        "jit-unix",
        &jit_service(
            &module,
            "timeout=2",
            "pam_unix.so",
            "pam_unix.so",
            "pam_unix.so",
        ),
    );
    sb.start_jitd();
    let pw = format!("{ADMIN_PASSWORD}\n");
    // The password is valid: without pam_jit in the stack it logs in.
    pam_service(
        &sb,
        "plain-unix",
        "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n",
    );
    let r = pamtester(&sb, "plain-unix", ADMIN, &ALL_OPS, &[], &pw);
    assert_ok(&r, "the password itself is valid");

    // No grant: pam_authenticate alone fails (a caller that skips pam_acct_mgmt, P12), whatever
    // is typed at pam_jit's prompt (the password, nothing).
    for answer in [pw.as_str(), "\n"] {
        let r = pamtester(&sb, "jit-unix", ADMIN, &["authenticate"], &[], answer);
        assert_refused(
            &r,
            E_AUTH,
            &format!("authenticate alone, answer {answer:?}"),
        );
    }
    // No answer at all (end of input: a conversation error) is a refusal too.
    let r = pamtester(&sb, "jit-unix", ADMIN, &["authenticate"], &[], "");
    assert!(!r.ok(), "authenticate alone, no input: {}", r.show());
    let r = pamtester(&sb, "jit-unix", ADMIN, &["acct_mgmt"], &[], "");
    assert_refused(&r, E_PERM, "account without a grant");
    let r = pamtester(&sb, "jit-unix", ADMIN, &ALL_OPS, &[], &format!("{pw}{pw}"));
    assert_refused(&r, E_AUTH, "whole login without a grant");

    // An --enable grant: the password works (pam_jit leaves auth to pam_unix) and only it.
    let id = sb.grant(&[ADMIN, "--enable", "--for", "10m"]);
    let r = pamtester(&sb, "jit-unix", ADMIN, &ALL_OPS, &[], &pw);
    assert_ok(&r, "with an --enable grant");
    let r = pamtester(&sb, "jit-unix", ADMIN, &ALL_OPS, &[], "wrong\n");
    assert_refused(&r, E_AUTH, "wrong password with a grant");
    // Revoked: denied again, in both steps.
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let r = pamtester(&sb, "jit-unix", ADMIN, &["authenticate"], &[], &pw);
    assert_refused(&r, E_AUTH, "authenticate after revoke");
    let r = pamtester(&sb, "jit-unix", ADMIN, &["acct_mgmt"], &[], "");
    assert_refused(&r, E_PERM, "account after revoke");

    // root in managed_accounts: the config is rejected.
    let bad = std::fs::read_to_string(sb.host_path("/etc/jit/jitd.toml"))
        .unwrap()
        .replace(
            &format!("managed_accounts = [\"{ADMIN}\"]"),
            "managed_accounts = [\"root\"]",
        );
    write_file(&sb, "/etc/jit/jitd-root.toml", &bad, 0o644);
    let a = jit_tests::artifacts();
    let o = sb.run(&[
        jit_tests::sandbox::path_str(&a.jitd),
        "--config",
        "/etc/jit/jitd-root.toml",
        "--check-config",
    ]);
    assert_eq!(code(&o), 1, "root in managed_accounts: {}", show(&o));
    assert!(
        format!("{}{}", stdout(&o), jit_tests::stderr(&o)).contains("root"),
        "the message names root: {}",
        show(&o)
    );
}

#[test]
fn impostor_daemon_gets_no_code_x3() {
    let (sb, _) = setup();
    sb.start_jitd();
    let secret = mfa_enroll(&sb, "bob");
    sb.grant(&["bob", "--account", "--mfa", "--for", "10m"]);
    sb.grant(&["alice", "--account", "--for", "10m"]);
    // jitd goes away (its snapshot stays: the grants are still visible) and a process of an
    // ordinary user serves the socket path, answering every request with success.
    sb.stop_jitd();
    let imp = jit_tests::cprog::program("impostor");
    for uid in [sb.ids.carol, 0] {
        let log = sb.scratch(&format!("impostor-{uid}.log"));
        let pid = sb.spawn(
            "impostor",
            &[
                jit_tests::sandbox::path_str(&imp),
                "/run/jitd/jitd.sock",
                &uid.to_string(),
                jit_tests::sandbox::path_str(&log),
            ],
        );
        poll("impostor listening", Duration::from_secs(5), || {
            sb.log_of(pid).contains("listening").then_some(())
        });
        let t = step_with_margin(3.0);
        let c = oathtool(&secret, t);
        let bob = login(&sb, "bob", &c);
        let alice = login(&sb, "alice", "");
        let got = std::fs::read_to_string(&log).unwrap_or_default();
        if uid != 0 {
            assert_refused(&bob, E_AUTH, "bob's code with an impostor on the socket");
            assert_refused(
                &alice,
                E_SESSION,
                "alice's session with an impostor on the socket",
            );
            assert!(
                got.is_empty(),
                "pam_jit sent requests to a peer with uid {uid}: {got}"
            );
        } else {
            // Control: a root peer is trusted, so the same impostor gets the code. Proves the
            // refusal above comes from the peer check and not from the fake's answers.
            assert!(
                got.contains(&c),
                "control: the root impostor must receive bob's code: {got:?}; bob {}",
                bob.show()
            );
            println!(
                "control (root impostor): bob {}, alice {}",
                bob.show(),
                alice.show()
            );
        }
        procs::signal(pid, libc::SIGKILL);
        let _ = sb.wait_exit(pid, Duration::from_secs(5));
    }
}

#[test]
fn one_code_one_login_even_at_once_and_after_restart_x4() {
    let (sb, _) = setup();
    sb.start_jitd();
    let secret = mfa_enroll(&sb, "alice");
    sb.grant(&["alice", "--account", "--mfa", "--for", "10m"]);
    let t = step_with_margin(8.0);
    let c = oathtool(&secret, t);
    // Four logins with the same code at the same moment: exactly one gets in.
    let results: Vec<Pam> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| login(&sb, "alice", &c)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.ok()).count();
    for r in &results {
        println!("concurrent login: ok={} {}", r.ok(), r.error());
    }
    assert_eq!(
        ok,
        1,
        "one code, one login: {:?}",
        results.iter().map(Pam::show).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| !r.ok()) {
        assert_eq!(r.error(), E_AUTH, "{}", r.show());
    }
    // The spent code after a daemon restart: still spent.
    sb.stop_jitd();
    sb.start_jitd();
    let r = login(&sb, "alice", &c);
    assert_refused(&r, E_AUTH, "the same code after a jitd restart");
    let r = login(&sb, "alice", &oathtool(&secret, t + 30));
    assert_ok(&r, "the next step's code after the restart");
}

/// pam_jit decides from the root-only gates file: one it cannot trust (writable by others, not
/// root's, a symlink) refuses a jit account's login as a missing one does, while root and the
/// local users carol and dave are left alone (PAM_IGNORE, pam_permit decides).
#[test]
fn untrusted_gates_file_fails_closed_for_jit_identities_only() {
    let (sb, _) = setup();
    sb.start_jitd();
    sb.grant(&["alice", "--account", "--for", "10m"]);
    // Auth and account decide from the gates file alone: jitd stopped, so it does not repair
    // the file under the test.
    sb.stop_jitd();
    let ops = ["authenticate", "acct_mgmt"];
    let r = pamtester(&sb, SVC, "alice", &ops, &[], "");
    assert!(r.ok(), "intact gates file: {}", r.show());
    let dave = sb.sh_ok("id -u dave").trim().to_string();
    for (what, tamper, undo) in [
        (
            "writable by others",
            "chmod 0602 /run/jitd/gates".to_string(),
            "chmod 0600 /run/jitd/gates".to_string(),
        ),
        (
            "owned by dave",
            format!("chown {dave} /run/jitd/gates"),
            "chown 0 /run/jitd/gates".to_string(),
        ),
        (
            "a symlink to the snapshot",
            "mv /run/jitd/gates /run/jitd/gates.keep && ln -s snapshot /run/jitd/gates".to_string(),
            "rm /run/jitd/gates && mv /run/jitd/gates.keep /run/jitd/gates".to_string(),
        ),
    ] {
        sb.sh_ok(&tamper);
        let r = pamtester(&sb, SVC, "alice", &ops, &[], "");
        assert_refused(&r, E_AUTH, &format!("alice with a gates file {what}"));
        for user in ["root", "carol", "dave"] {
            let r = pamtester(&sb, SVC, user, &ops, &[], "");
            assert!(r.ok(), "{user} with a gates file {what}: {}", r.show());
        }
        sb.sh_ok(&undo);
    }
    let r = pamtester(&sb, SVC, "alice", &ops, &[], "");
    assert!(r.ok(), "gates file restored: {}", r.show());
}

/// One passwd parser for jitd and pam_jit (docs/threat-model.md#passwd-rules): a line whose gid
/// is not a number is skipped by the C library, so NSS shows the jit account of that name and
/// jitd issues it; pam_jit must gate that account, not take the name for a local user. Before,
/// pam_jit read the uid of such a line and ignored the name: a `--from` grant then logged in
/// from anywhere.
#[test]
fn a_passwd_line_with_a_bad_gid_does_not_hide_a_jit_account() {
    let (sb, _) = setup();
    sb.sh_ok("echo 'gina:x:1500:notanumber::/home/gina:/bin/sh' >> /etc/passwd");
    sb.start_jitd();
    sb.grant(&["gina", "--account", "--from", "10.0.0.0/8", "--for", "10m"]);
    let pw = stdout(&sb.run(&["getent", "passwd", "gina"]));
    let uid: u32 = pw.split(':').nth(2).unwrap_or("").parse().unwrap_or(0);
    assert!(
        uid >= 70000,
        "NSS shows the jit account, not the skipped line: {pw}"
    );
    let r = pamtester(&sb, SVC, "gina", &ALL_OPS, &[("rhost", "10.1.2.3")], "");
    assert_ok(&r, "gated jit account, rhost inside --from");
    let r = pamtester(&sb, SVC, "gina", &ALL_OPS, &[("rhost", "192.168.1.1")], "");
    assert_refused(&r, E_AUTH, "gated jit account, rhost outside --from");
    let r = pamtester(&sb, SVC, "gina", &["acct_mgmt"], &[], "");
    assert_refused(&r, E_PERM, "account step without rhost");
    sb.assert_local_unaffected();
}
