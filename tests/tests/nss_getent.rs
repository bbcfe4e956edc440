//! NSS-level tests of `libnss_jit.so.2` through real clients (`getent`, `id`, `su`,
//! `faketime`), with snapshots written directly by the test (no jitd): what a live ephemeral
//! account and a group grant look like, the expiry boundary second (F3), root and local users
//! never answered or shadowed by jit (N10, N11, B5), and su into an ephemeral account.
//!
//! Ids in comments and test names (F3, N10, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jit_tests::sandbox::{group_members, parse_id};
use jit_tests::snap::{jit_users_gid, live_alice_in_sudo, passwd_line, GroupRef, SnapBuilder};
use jit_tests::{code, now, show, stdout, Sandbox, GETENT_NOT_FOUND};

fn line_fields(s: &str) -> Vec<String> {
    s.trim().split(':').map(str::to_string).collect()
}

/// alice: live account in sudo; carol: live group grant to sudo; pending and expired accounts.
#[test]
fn live_account_and_group_grant_are_visible() {
    let sb = Sandbox::new();
    let ids = sb.ids;
    let t = now();
    let ua = ids.jit_min + 100;
    let ju = jit_users_gid(&ids);
    let sudo = GroupRef::local("sudo", ids.sudo_gid);
    let mut b = SnapBuilder::new(ids);
    let gid_alice = b.account(
        "alice",
        ua,
        std::slice::from_ref(&sudo),
        t - 60,
        t + 3600,
        None,
    );
    b.group_grant("carol", std::slice::from_ref(&sudo), t - 60, t + 3600);
    b.account(
        "pending",
        ua + 1,
        std::slice::from_ref(&sudo),
        t + 3000,
        t + 3600,
        None,
    );
    b.account(
        "gone",
        ua + 2,
        std::slice::from_ref(&sudo),
        t - 3600,
        t - 10,
        None,
    );
    sb.write_snapshot(&b.data());

    let expect = passwd_line("alice", ua, &format!("jit grant {gid_alice} (test)"));
    for args in [
        vec!["getent", "passwd", "alice"],
        vec!["getent", "passwd", &*ua.to_string()],
        vec!["getent", "-s", "jit", "passwd", "alice"],
    ] {
        let o = sb.run(&args);
        assert_eq!(stdout(&o).trim(), expect, "{args:?}: {}", show(&o));
        assert_eq!(code(&o), 0, "{args:?}: {}", show(&o));
    }
    // The password field is `*` (pam_unix refuses `x` without a shadow entry).
    assert_eq!(line_fields(&expect)[1], "*");

    // Private group, jit-users, merged sudo.
    let o = sb.run(&["getent", "group", "alice"]);
    let f = line_fields(&stdout(&o));
    assert!(
        code(&o) == 0 && f[0] == "alice" && f[2] == ua.to_string(),
        "private group of alice: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", &ua.to_string()]);
    assert!(
        code(&o) == 0 && line_fields(&stdout(&o))[0] == "alice",
        "getent group <alice's gid>: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", "jit-users"]);
    let f = line_fields(&stdout(&o));
    assert!(
        code(&o) == 0 && f[2] == ju.to_string() && group_members(&stdout(&o)) == ["alice"],
        "jit-users must list exactly the live ephemeral account alice: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", "sudo"]);
    let mut m = group_members(&stdout(&o));
    m.sort();
    assert!(
        code(&o) == 0
            && line_fields(&stdout(&o))[2] == ids.sudo_gid.to_string()
            && m == ["alice", "carol", "dave"],
        "getent group sudo must merge the local member dave with the live jit members alice, \
         carol (and not pending/gone), each once, with the /etc/group gid: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "-s", "jit", "group", "sudo"]);
    let mut m = group_members(&stdout(&o));
    m.sort();
    assert!(
        code(&o) == 0 && m == ["alice", "carol"],
        "getent -s jit group sudo: the module's own part of the merge: {}",
        show(&o)
    );

    // id and initgroups.
    let o = sb.run(&["id", "alice"]);
    let ids_of = parse_id(&stdout(&o));
    assert!(
        code(&o) == 0
            && stdout(&o).starts_with(&format!("uid={ua}(alice) gid={ua}(alice)"))
            && ids_of.get("sudo") == Some(&ids.sudo_gid)
            && ids_of.get("jit-users") == Some(&ju),
        "id alice must show the private group, sudo and jit-users: {}",
        show(&o)
    );
    let o = sb.run(&["id", "carol"]);
    let ids_of = parse_id(&stdout(&o));
    assert!(
        code(&o) == 0
            && ids_of.get("sudo") == Some(&ids.sudo_gid)
            && ids_of.get("devs") == Some(&ids.devs)
            && !ids_of.contains_key("jit-users"),
        "id carol (local user with a group grant) must show sudo and keep devs: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "initgroups", "alice"]);
    let gids: Vec<String> = stdout(&o)
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert!(
        code(&o) == 0 && gids.contains(&ids.sudo_gid.to_string()) && gids.contains(&ju.to_string()),
        "getent initgroups alice: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "initgroups", "carol"]);
    assert!(
        code(&o) == 0
            && stdout(&o)
                .split_whitespace()
                .any(|g| g == ids.sudo_gid.to_string()),
        "getent initgroups carol: {}",
        show(&o)
    );

    // Not live: absent everywhere, with getent's "not found" code.
    for name in ["pending", "gone", "nosuchuser"] {
        for db in ["passwd", "group"] {
            let o = sb.run(&["getent", db, name]);
            assert_eq!(
                code(&o),
                GETENT_NOT_FOUND,
                "getent {db} {name} must be absent: {}",
                show(&o)
            );
        }
        let o = sb.run(&["id", name]);
        assert_eq!(code(&o), 1, "id {name}: {}", show(&o));
    }
    // The jit part answers nothing for a local user without an account grant.
    let o = sb.run(&["getent", "-s", "jit", "passwd", "carol"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));

    // Enumeration: alice once, nothing that is not live.
    let o = sb.run(&["getent", "passwd"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(
        out.lines().filter(|l| **l == *expect).count(),
        1,
        "getent passwd must list alice once: {out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.starts_with("pending:") || l.starts_with("gone:")),
        "getent passwd lists a grant that is not live: {out}"
    );
    assert!(
        out.contains("\ncarol:x:"),
        "getent passwd lost carol: {out}"
    );
    let o = sb.run(&["getent", "group"]);
    assert!(
        code(&o) == 0 && stdout(&o).lines().any(|l| l.starts_with("jit-users:")),
        "getent group must enumerate jit-users: {}",
        show(&o)
    );

    sb.assert_local_unaffected();
}

/// su into a live ephemeral account (home made by the test, as jitd would at go-live).
#[test]
fn su_into_live_ephemeral_account() {
    let sb = Sandbox::new();
    let ids = sb.ids;
    let (b, ua) = live_alice_in_sudo(ids);
    sb.write_snapshot(&b.data());
    let home = sb.host_path("/home/alice");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(ua), Some(ua)).unwrap();

    let o = sb.run(&["su", "-", "alice", "-c", "id; pwd; echo shell=$0"]);
    let out = stdout(&o);
    let ids_of = parse_id(&out);
    assert!(
        code(&o) == 0
            && out.contains(&format!("uid={ua}(alice) gid={ua}(alice)"))
            && ids_of.get("sudo") == Some(&ids.sudo_gid)
            && ids_of.contains_key("jit-users")
            && out.lines().any(|l| l == "/home/alice")
            && out.contains("shell=-bash"),
        "su - alice -c 'id; pwd' must log in with the private group, sudo, jit-users, \
         the home dir and the login shell: {}",
        show(&o)
    );
    // A plain `su` (no login shell) too.
    let o = sb.run(&["su", "alice", "-c", "id -un"]);
    assert!(
        code(&o) == 0 && stdout(&o).trim() == "alice",
        "su alice: {}",
        show(&o)
    );
    // su as a not-live account fails.
    let t = now();
    let mut b = SnapBuilder::new(ids);
    b.account("alice", ua, &[], t - 3600, t - 1, None);
    sb.write_snapshot(&b.data());
    let o = sb.run(&["su", "-", "alice", "-c", "id"]);
    assert_ne!(
        code(&o),
        0,
        "su into an expired account must fail: {}",
        show(&o)
    );
    sb.assert_local_unaffected();
}

/// F3: the account and its memberships flip exactly at `not_before` (inclusive) and
/// `not_after` (exclusive), seen through libfaketime (no jitd involved).
#[test]
fn expiry_boundary_seconds_with_faketime() {
    let sb = Sandbox::new();
    let ids = sb.ids;
    let t0 = now() + 7 * 24 * 3600; // a week ahead: nothing else is live then
    let t1 = t0 + 600;
    let ua = ids.jit_min + 100;
    let sudo = GroupRef::local("sudo", ids.sudo_gid);
    let mut b = SnapBuilder::new(ids);
    b.account("alice", ua, std::slice::from_ref(&sudo), t0, t1, None);
    b.group_grant("carol", &[sudo], t0, t1);
    sb.write_snapshot(&b.data());

    // `faketime -f 'YYYY-MM-DD HH:MM:SS'` (an absolute date, no '@') freezes the clock at that
    // second, so a slow start can never carry a lookup over the boundary. The date string is
    // made in the sandbox with the same time zone rules the faked process uses.
    let frozen = |at: i64| {
        let o = sb.run(&["date", "-d", &format!("@{at}"), "+%Y-%m-%d %H:%M:%S"]);
        assert_eq!(code(&o), 0, "{}", show(&o));
        stdout(&o).trim().to_string()
    };
    // Control: faketime really sets the clock the module reads, and holds it.
    let o = sb.run(&[
        "faketime",
        "-f",
        &frozen(t0),
        "sh",
        "-c",
        "date +%s; sleep 1.1; date +%s",
    ]);
    assert_eq!(
        stdout(&o),
        format!("{t0}\n{t0}\n"),
        "faketime control: {}",
        show(&o)
    );

    for (at, live) in [(t0 - 1, false), (t0, true), (t1 - 1, true), (t1, false)] {
        let fz = frozen(at);
        let ft = fz.as_str();
        let what = format!("at {at} (not_before {t0}, not_after {t1})");
        let o = sb.run(&["faketime", "-f", ft, "getent", "passwd", "alice"]);
        assert_eq!(
            code(&o),
            if live { 0 } else { GETENT_NOT_FOUND },
            "getent passwd alice {what}: {}",
            show(&o)
        );
        let o = sb.run(&["faketime", "-f", ft, "getent", "group", "sudo"]);
        let m = group_members(&stdout(&o));
        assert!(
            code(&o) == 0
                && m.contains(&"dave".to_string())
                && m.contains(&"alice".to_string()) == live
                && m.contains(&"carol".to_string()) == live,
            "getent group sudo {what} (live={live}): {}",
            show(&o)
        );
        let o = sb.run(&["faketime", "-f", ft, "id", "alice"]);
        assert_eq!(code(&o) == 0, live, "id alice {what}: {}", show(&o));
        let o = sb.run(&["faketime", "-f", ft, "getent", "initgroups", "carol"]);
        assert_eq!(
            stdout(&o)
                .split_whitespace()
                .any(|g| g == ids.sudo_gid.to_string()),
            live,
            "getent initgroups carol {what}: {}",
            show(&o)
        );
        let o = sb.run(&["faketime", "-f", ft, "getent", "passwd", "carol"]);
        assert_eq!(code(&o), 0, "carol {what}: {}", show(&o));
    }
    sb.assert_local_unaffected();
}

/// N10/N11: a snapshot that tries to answer for root, uid/gid 0 or a local name never wins.
#[test]
fn root_ids_zero_and_local_names_are_never_answered_by_jit() {
    let sb = Sandbox::new();
    let ids = sb.ids;
    let t = now();
    let mut b = SnapBuilder::new(ids);
    b.account("root", ids.jit_min + 100, &[], t - 60, t + 3600, None);
    b.account("carol", ids.jit_min + 101, &[], t - 60, t + 3600, None);
    b.account("mallory", ids.jit_min + 102, &[], t - 60, t + 3600, None);
    b.group_grant("mallory", &[GroupRef::local("root", 0)], t - 60, t + 3600);
    let mut data = b.data();
    // An account with uid 0 under another name, and one with gid 0.
    let mut zero = data.accounts[0].clone();
    zero.name = "toor".into();
    zero.uid = 0;
    zero.gid = 0;
    zero.home = "/home/toor".into();
    data.accounts.push(zero);
    sb.write_snapshot(&data);

    let o = sb.run(&["getent", "passwd", "root"]);
    assert!(
        stdout(&o).starts_with("root:x:0:0:") && stdout(&o).lines().count() == 1,
        "root must come from /etc/passwd only: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", "0"]);
    assert!(
        stdout(&o).starts_with("root:x:0:0:"),
        "uid 0 must resolve to the local root: {}",
        show(&o)
    );
    for args in [
        ["getent", "-s", "jit", "passwd", "root"],
        ["getent", "-s", "jit", "passwd", "0"],
        ["getent", "-s", "jit", "passwd", "toor"],
        ["getent", "-s", "jit", "group", "0"],
        ["getent", "-s", "jit", "group", "root"],
    ] {
        let o = sb.run(&args);
        assert_eq!(
            code(&o),
            GETENT_NOT_FOUND,
            "{args:?}: jit must never answer root or id 0: {}",
            show(&o)
        );
    }
    let o = sb.run(&["getent", "passwd", "toor"]);
    assert_eq!(
        code(&o),
        GETENT_NOT_FOUND,
        "an account with uid 0 from the snapshot must not resolve: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", "carol"]);
    assert_eq!(
        stdout(&o).trim(),
        format!(
            "carol:x:{c}:{c}:Carol Local:/home/carol:/bin/bash",
            c = ids.carol
        ),
        "local carol must win over a jit record of that name: {}",
        show(&o)
    );
    let o = sb.run(&["id", "mallory"]);
    assert!(
        !stdout(&o).contains("0(root)")
            && !stdout(&o).contains(",0(")
            && !stdout(&o).contains("gid=0"),
        "membership of gid 0 must never be handed out: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", "root"]);
    assert!(
        !group_members(&stdout(&o)).contains(&"mallory".to_string()),
        "group root must not gain members from jit: {}",
        show(&o)
    );
    sb.assert_local_unaffected();
}
