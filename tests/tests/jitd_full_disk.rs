//! jitd on a full filesystem: small tmpfs mounts inside the sandbox's private mount namespace
//! for the state directory or the audit log directory, filled to the last byte. The promise:
//! refuse new privilege, keep removing privilege, keep verifying codes for grants that exist,
//! and a revocation or expiry holds across `kill -9` and a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::procs::{self, describe, live_of_uid};
use jit_tests::sandbox::path_str;
use jit_tests::{
    artifacts, code, now, poll, show, sleep_until, stderr, stdout, Sandbox, GETENT_NOT_FOUND,
};

fn visible(sb: &Sandbox, name: &str) -> bool {
    code(&sb.run(&["getent", "passwd", name])) == 0
}

fn uid_of(sb: &Sandbox, name: &str) -> u32 {
    let o = sb.run(&["id", "-u", name]);
    assert_eq!(code(&o), 0, "id -u {name}: {}", show(&o));
    stdout(&o).trim().parse().unwrap()
}

/// Starts `cmd` as `user` through su, detached; returns the pid found in /proc by `marker`.
fn start_as(sb: &Sandbox, user: &str, uid: u32, cmd: &str, marker: &str) -> i32 {
    let o = sb.run(&[
        "su",
        user,
        "-c",
        &format!("{cmd} </dev/null >/dev/null 2>&1 &"),
    ]);
    assert_eq!(code(&o), 0, "su {user} -c {cmd:?}: {}", show(&o));
    poll(
        &format!("process {marker:?} of {user}"),
        Duration::from_secs(5),
        || {
            procs::live_where(|p| p.uid == uid && p.cmdline.contains(marker))
                .first()
                .map(|p| p.pid)
        },
    )
}

/// Mounts a small tmpfs (root-only) over `dir` inside the sandbox's namespace.
fn small_tmpfs(sb: &Sandbox, dir: &str) {
    sb.sh_ok(&format!(
        "mount -t tmpfs -o size=4m,mode=0700 jit-full {dir}"
    ));
}

/// Fills the filesystem of `dir` to the last byte; returns the free blocks `stat -f` reports.
fn fill(sb: &Sandbox, dir: &str) -> u64 {
    // cat writes until ENOSPC (its last write is short), so nothing is left.
    let _ = sb.sh(&format!("cat /dev/zero > {dir}/.fill 2>/dev/null"));
    let free: u64 = sb
        .sh_ok(&format!("stat -f -c %f {dir}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(free, 0, "precondition: {dir} is full");
    free
}

fn unfill(sb: &Sandbox, dir: &str) {
    sb.sh_ok(&format!("rm -f {dir}/.fill"));
}

fn grant_of<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|g| g["id"] == id)
        .unwrap_or_else(|| panic!("grant {id} not in {list:?}"))
}

/// The full-disk scenario (docs/design.md#durable-writes): state directory full, revoke, kill -9, restart: the grant stays
/// ended. Also an expiry while full, and new grants refused with a clear error.
#[test]
fn full_state_dir_revocation_and_expiry_survive_kill9() {
    let sb = Sandbox::new();
    small_tmpfs(&sb, "/var/lib/jitd");
    sb.start_jitd();
    let alice = sb.grant(&["alice", "--account", "--group", "sudo", "--for", "1h"]);
    let bob = sb.grant_json(&["bob", "--account", "--for", "6s"]);
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let bob_na = bob["not_after"].as_i64().unwrap();
    poll("alice visible", Duration::from_secs(5), || {
        visible(&sb, "alice").then_some(())
    });
    let uid = uid_of(&sb, "alice");
    let pid = start_as(&sb, "alice", uid, "setsid sleep 1717", "sleep 1717");
    poll("bob visible", Duration::from_secs(5), || {
        visible(&sb, "bob").then_some(())
    });
    let bob_uid = uid_of(&sb, "bob");
    let bob_pid = start_as(&sb, "bob", bob_uid, "setsid sleep 1727", "sleep 1727");

    fill(&sb, "/var/lib/jitd");
    // A small change is appended to the state journal, and an append that still fits in the
    // journal's last page succeeds on a full disk (the change is then durable there). After a
    // restart the first save must write state.json whole, which a full disk refuses: the path
    // under test, where ends go to the revocation journal.
    sb.kill_jitd();
    sb.start_jitd();

    // New privilege is refused, with a message that says why.
    let o = sb.jitctl(&["grant", "add", "dora", "--account", "--for", "1h"]);
    assert_eq!(code(&o), 1, "grant add on a full state dir: {}", show(&o));
    assert!(
        stderr(&o).contains("no new grants") || stderr(&o).contains("No space left"),
        "the refusal must say why: {}",
        show(&o)
    );
    assert!(!visible(&sb, "dora"), "a refused grant must not appear");

    // Privilege is still removed, and the command says where the revocation went.
    let t = jit_tests::now_f64();
    let o = sb.jitctl(&["grant", "revoke", &alice, "--reason", "disk full test"]);
    println!(
        "full disk: jitctl grant revoke (journal, teardown of 1 process) took {:.3} s",
        jit_tests::now_f64() - t
    );
    assert_eq!(code(&o), 0, "revoke on a full state dir: {}", show(&o));
    assert!(stdout(&o).contains("revoked"), "{}", show(&o));
    assert!(
        stderr(&o).contains("revocation journal"),
        "jitctl must say the revocation went to the journal: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));
    poll("alice's processes ended", Duration::from_secs(10), || {
        (!procs::is_alive(pid) && live_of_uid(uid).is_empty()).then_some(())
    });

    // bob expires while the disk is full.
    sleep_until(bob_na as f64 + 1.5);
    poll("bob gone at expiry", Duration::from_secs(5), || {
        (!visible(&sb, "bob")).then_some(())
    });
    poll(
        "bob's processes ended at expiry",
        Duration::from_secs(10),
        || (!procs::is_alive(bob_pid) && live_of_uid(bob_uid).is_empty()).then_some(()),
    );

    // kill -9 and a restart on the still-full disk: both grants stay ended. The teardowns
    // removed the grants' certification baselines (their size depends on the host's set-id
    // files), so the disk is filled again first.
    fill(&sb, "/var/lib/jitd");
    sb.kill_jitd();
    sb.start_jitd();
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(
        code(&o),
        GETENT_NOT_FOUND,
        "a revoked grant came back after kill -9 and a restart: {}\n{}",
        show(&o),
        sb.jitd_log()
    );
    assert!(!visible(&sb, "bob"), "an expired grant came back");
    let list = sb.grant_list();
    let a = grant_of(&list, &alice);
    assert_eq!(a["state"], "revoked", "{a}");
    assert_eq!(grant_of(&list, &bob_id)["state"], "expired");
    let st = sb.jitctl(&["--json", "status"]);
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        st["state_writable"],
        false,
        "{st}\n{}\nstate dir: {}",
        sb.jitd_log(),
        show(&sb.sh("ls -la /var/lib/jitd; df /var/lib/jitd; tail -5 /var/log/jit/audit.jsonl"))
    );
    // Still no new privilege.
    let o = sb.jitctl(&["grant", "add", "dora", "--account", "--for", "1h"]);
    assert_eq!(code(&o), 1, "{}", show(&o));

    // Space back: state.json takes the ends, the journal is cleared, and another kill -9 and
    // restart still finds them ended.
    unfill(&sb, "/var/lib/jitd");
    poll("state writable again", Duration::from_secs(5), || {
        let o = sb.jitctl(&["--json", "status"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["state_writable"] == true).then_some(())
    });
    sb.kill_jitd();
    sb.start_jitd();
    let list = sb.grant_list();
    assert_eq!(grant_of(&list, &alice)["state"], "revoked");
    assert!(!visible(&sb, "alice"));
    let g = sb.grant(&["dora", "--account", "--for", "1h"]);
    assert!(!g.is_empty());
    sb.assert_local_unaffected();
}

/// The audit log's filesystem full: new grants are refused (privilege that cannot be audited
/// is not given), revocation still ends the account and its processes.
#[test]
fn full_audit_dir_refuses_grants_and_still_revokes() {
    let sb = Sandbox::new();
    small_tmpfs(&sb, "/var/log/jit");
    sb.start_jitd();
    let alice = sb.grant(&["alice", "--account", "--for", "1h"]);
    poll("alice visible", Duration::from_secs(5), || {
        visible(&sb, "alice").then_some(())
    });
    let uid = uid_of(&sb, "alice");
    let pid = start_as(&sb, "alice", uid, "sleep 1718", "sleep 1718");

    fill(&sb, "/var/log/jit");

    let o = sb.jitctl(&["grant", "add", "dora", "--account", "--for", "1h"]);
    assert_eq!(
        code(&o),
        1,
        "a grant was given while its audit record could not be written: {}",
        show(&o)
    );
    assert!(
        stderr(&o).contains("no new grants") && stderr(&o).contains("/var/log/jit"),
        "{}",
        show(&o)
    );
    assert!(!visible(&sb, "dora"));

    let o = sb.jitctl(&["grant", "revoke", &alice]);
    assert_eq!(code(&o), 0, "revoke with the audit log full: {}", show(&o));
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));
    poll("alice's processes ended", Duration::from_secs(10), || {
        (!procs::is_alive(pid) && live_of_uid(uid).is_empty()).then_some(())
    });
    // jitd keeps serving (a record it cannot write goes to syslog, where the host has one).
    let o = sb.jitctl(&["status"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        live_of_uid(uid).is_empty(),
        "{}",
        describe(&live_of_uid(uid))
    );
    sb.assert_local_unaffected();
}

/// The state directory full: an enrolled user's TOTP code for a grant that exists is still
/// checked and accepted once (oathtool), and the grant gives its membership.
#[test]
fn full_state_dir_still_verifies_codes() {
    let sb = Sandbox::new();
    small_tmpfs(&sb, "/var/lib/jitd");
    sb.start_jitd();
    let carol = sb.ids.carol;
    let enroll = sb.jitctl(&["--json", "mfa", "enroll", "carol"]);
    assert_eq!(code(&enroll), 0, "{}", show(&enroll));
    let v: Value = serde_json::from_slice(&enroll.stdout).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let g = sb.grant_json(&["carol", "--group", "sudo", "--for", "10m", "--mfa"]);
    assert_eq!(g["state"], "armed", "{g}");
    let g2 = sb.grant_json(&["carol", "--group", "adm", "--for", "10m", "--mfa"]);
    let (id1, id2) = (g["id"].as_str().unwrap(), g2["id"].as_str().unwrap());

    fill(&sb, "/var/lib/jitd");

    let jitctl = artifacts().jitctl;
    let as_carol = |id: &str, input: &str| {
        sb.run_full(
            &[
                "setpriv",
                &format!("--reuid={carol}"),
                &format!("--regid={carol}"),
                "--clear-groups",
                path_str(&jitctl),
                "activate",
                id,
            ],
            Some(input.as_bytes()),
            Duration::from_secs(10),
        )
    };
    // Not at the very end of a step, so the code is still current when jitd checks it.
    let secs = now() % 30;
    if secs > 25 {
        std::thread::sleep(Duration::from_secs((31 - secs) as u64));
    }
    let good = stdout(&sb.run(&["oathtool", "--totp", "-b", &secret]))
        .trim()
        .to_string();
    let o = as_carol(id1, &format!("{good}\n"));
    assert_eq!(
        code(&o),
        0,
        "a right code for an existing grant must be accepted on a full disk: {}\n{}",
        show(&o),
        sb.jitd_log()
    );
    assert!(
        stdout(&sb.run(&["id", "carol"])).contains("(sudo)"),
        "live after activation"
    );
    // Spent: the same code for the other armed grant is a replay, even on the full disk.
    let o = as_carol(id2, &format!("{good}\n"));
    assert_eq!(code(&o), 1, "{}", show(&o));
    assert!(stderr(&o).contains("already used"), "{}", show(&o));
    assert!(
        !stdout(&sb.run(&["id", "carol"])).contains("(adm)"),
        "the replayed code activated nothing"
    );
    sb.assert_local_unaffected();
}

/// The state directory full: a managed admin with a live `--enable --mfa` grant still logs in
/// with `su` (pam_jit asks jitd to check the oathtool code, then registers the session), and
/// the code works once.
#[test]
fn full_state_dir_su_login_with_code_still_works() {
    use jit_tests::pam::{
        add_admin, install_pam_jit, mfa_enroll, oathtool, pam_service, require_tools,
        set_managed_accounts, step_with_margin, su_from, ADMIN, ADMIN_PASSWORD, TIMEOUT,
    };
    require_tools(&["su", "setpriv", "oathtool"]);
    let sb = Sandbox::new();
    small_tmpfs(&sb, "/var/lib/jitd");
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
    let secret = mfa_enroll(&sb, ADMIN);
    let id = sb.grant(&[ADMIN, "--enable", "--mfa", "--for", "10m"]);

    fill(&sb, "/var/lib/jitd");

    let su = |input: &str| {
        let (o, _) = su_from(&sb, sb.ids.carol, ADMIN, "id -un", input);
        (code(&o) == 0 && stdout(&o).trim() == ADMIN, o)
    };
    let now = step_with_margin(10.0);
    let c = oathtool(&secret, now);
    let (ok, o) = su(&format!("{c}\n{ADMIN_PASSWORD}\n"));
    assert!(
        ok,
        "code and password on a full state dir: {}\n{}",
        show(&o),
        sb.jitd_log()
    );
    let (ok, o) = su(&format!("{c}\n{ADMIN_PASSWORD}\n"));
    assert!(!ok, "the same code again: {}", show(&o));
    // And the grant still ends.
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let (ok, o) = su(&format!(
        "{}\n{ADMIN_PASSWORD}\n",
        oathtool(&secret, now + 30)
    ));
    assert!(!ok, "after revoke: {}", show(&o));
}

/// jitd must start on a full state filesystem even when its configuration changed what it
/// writes at start (the managed-accounts list): it is the process that removes privilege.
#[test]
fn starts_on_a_full_state_dir_after_a_config_change() {
    let sb = Sandbox::new();
    small_tmpfs(&sb, "/var/lib/jitd");
    sb.start_jitd();
    let alice = sb.grant(&["alice", "--account", "--for", "1h"]);
    fill(&sb, "/var/lib/jitd");
    sb.kill_jitd();
    jit_tests::pam::set_managed_accounts(&sb, &["dave"]);
    sb.start_jitd();
    let o = sb.jitctl(&["grant", "revoke", &alice]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(!visible(&sb, "alice"));
    sb.kill_jitd();
    sb.start_jitd();
    assert!(
        !visible(&sb, "alice"),
        "the revocation held across the restart"
    );
}
