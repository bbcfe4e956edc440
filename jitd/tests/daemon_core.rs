//! The daemon core driven directly (no socket, injected clock), over private temp files for
//! passwd, group, state, snapshot, audit and homes: grant validation (docs/threat-model.md: B1-B4),
//! stable uids, expiry at the boundary second, revocation, restart recovery (F11).
//!
//! Ids in comments and test names (B1-B4, F11, …) are rows of docs/threat-model.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use jit_core::snapshot::Snapshot;
use jit_proto::message::Payload;
use jit_proto::{ErrorCode, GrantSpec, GrantState, Request, Response};
use jitd::daemon::Daemon;

mod common;
use common::*;

#[test]
fn account_grant_lifecycle_at_the_boundary_second() {
    let env = Env::new("life");
    let d = env.daemon(T0);
    let g = add(
        &d,
        GrantSpec {
            groups: vec!["adm".into()],
            reason: "fix: nginx\n".replace('\n', ""),
            ..spec("alice", 60)
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        (g.not_before, g.not_after, g.state),
        (T0, T0 + 60, GrantState::Live)
    );
    assert_eq!(g.uid, Some(4_100_000));
    assert!(
        exists(&env.path("home/alice/.profile")),
        "home made from skel when live"
    );

    let img = env.snapshot();
    let s = Snapshot::parse(&img).unwrap();
    let a = s.account_by_name("alice", T0).unwrap();
    assert_eq!(
        a.gecos(),
        "jit grant ".to_string() + &g.id + " (fix_ nginx)"
    );
    assert_eq!(a.home(), format!("{}/alice", env.path("home").display()));
    assert_eq!(s.group_by_name("adm", T0).unwrap().gid(), 4);
    assert_eq!(
        s.user_gids("alice", T0).collect::<Vec<_>>().len(),
        2,
        "adm and jit-users"
    );

    d.tick(T0 + 59);
    assert!(exists(&env.path("home/alice")), "still live at not_after-1");
    d.tick(T0 + 60);
    settle(&d, T0 + 60);
    let s2 = env.snapshot();
    let s2 = Snapshot::parse(&s2).unwrap();
    assert!(
        s2.account_by_name("alice", T0).is_none(),
        "dropped from the snapshot once expired"
    );
    assert!(!exists(&env.path("home/alice")), "home removed at expiry");
    let audit = env.audit();
    // One group commit at the add, in this order (an auditor reads the creation first).
    let at = |ev: &str| audit.find(&format!("\"event\":\"{ev}\""));
    assert!(at("grant.created").is_some() && at("grant.created") < at("grant.live"));
    for ev in [
        "grant.created",
        "grant.live",
        "grant.expired",
        "grant.teardown",
    ] {
        assert!(
            audit.contains(&format!("\"event\":\"{ev}\"")),
            "{ev} missing in\n{audit}"
        );
    }
}

#[test]
fn bad_names_collisions_and_limits_change_nothing() {
    let env = Env::new("bad");
    let d = env.daemon(T0);
    let before = env.snapshot();
    let long = "a".repeat(33);
    for name in [
        "evil:0:0",
        "a\nroot:x:0:0",
        "a\0b",
        "-oProxyCommand",
        "+nis",
        "@grp",
        "../../bin/ls",
        "a/b",
        ".hidden",
        "a.b",
        "a~",
        "Alice",
        "аdmin",
        long.as_str(),
        "root",
        "daemon",
        "nobody",
        "jit-users",
    ] {
        let e = add(&d, spec(name, 60), T0).unwrap_err();
        assert_eq!(e.0, ErrorCode::Refused, "{name:?}: {e:?}");
    }
    // Existing local user, local group, and a case-insensitive look-alike.
    for name in ["carol", "devs", "dave"] {
        let e = add(&d, spec(name, 60), T0).unwrap_err();
        assert!(e.1.contains("exists locally"), "{name}: {e:?}");
    }
    // Groups: unknown, gid 0, already a local member; duration over max_grant; nothing granted.
    let cases = [
        GrantSpec {
            account: false,
            groups: vec!["nosuch".into()],
            ..spec("carol", 60)
        },
        GrantSpec {
            account: false,
            groups: vec!["root".into()],
            ..spec("carol", 60)
        },
        GrantSpec {
            account: false,
            groups: vec!["sudo".into()],
            ..spec("carol", 60)
        },
        spec("alice", 2 * 3600 + 1),
        GrantSpec {
            account: false,
            ..spec("carol", 60)
        },
        GrantSpec {
            account: false,
            groups: vec!["adm".into()],
            ..spec("ghost", 60)
        },
        GrantSpec {
            ssh_keys: vec!["command=\"x\" ssh-ed25519 AAAA".into()],
            ..spec("alice", 60)
        },
    ];
    for c in cases {
        assert_eq!(
            add(&d, c.clone(), T0).unwrap_err().0,
            ErrorCode::Refused,
            "{c:?}"
        );
    }
    // Login conditions: refused with the reason, never stored half-checked.
    for (c, why) in [
        (
            GrantSpec {
                mfa: true,
                ..spec("alice", 60)
            },
            "no TOTP secret",
        ),
        (
            GrantSpec {
                mfa_sudo: true,
                ..spec("alice", 60)
            },
            "--mfa-sudo needs --sudo",
        ),
        (
            GrantSpec {
                from: vec!["10.0.0.0/33".into()],
                ..spec("alice", 60)
            },
            "--from",
        ),
        (
            GrantSpec {
                windows: vec!["Mon-Fri 25:00-26:00".into()],
                ..spec("alice", 60)
            },
            "--window",
        ),
        (
            GrantSpec {
                services: vec!["ss:hd".into()],
                ..spec("alice", 60)
            },
            "--service",
        ),
        (
            GrantSpec {
                account: false,
                groups: vec!["adm".into()],
                from: vec!["10.0.0.0/8".into()],
                ..spec("carol", 60)
            },
            "applies to logins",
        ),
        (
            GrantSpec {
                account: false,
                enable: true,
                ..spec("carol", 60)
            },
            "not in managed_accounts",
        ),
        (
            GrantSpec {
                enable: true,
                ..spec("alice", 60)
            },
            "choose one",
        ),
    ] {
        let e = add(&d, c.clone(), T0).unwrap_err();
        assert_eq!(e.0, ErrorCode::Refused, "{c:?}");
        assert!(e.1.contains(why), "{why}: {e:?}");
    }
    assert_eq!(
        env.snapshot(),
        before,
        "snapshot unchanged by refused requests"
    );
    assert!(env.audit().contains("grant.rejected"));
}

#[test]
fn uids_are_stable_per_identity_and_never_reissued() {
    let env = Env::new("uid");
    let d = env.daemon(T0);
    let a1 = add(&d, spec("alice", 10), T0).unwrap();
    let b = add(&d, spec("bob", 10), T0).unwrap();
    assert_ne!(a1.uid, b.uid);
    d.tick(T0 + 20);
    let c = add(&d, spec("carl", 10), T0 + 20).unwrap();
    let a2 = add(&d, spec("alice", 10), T0 + 20).unwrap();
    assert_eq!(a1.uid, a2.uid, "same identity, same uid");
    assert!(
        c.uid != a1.uid && c.uid != b.uid,
        "an ended identity's uid is not handed to another"
    );
    // A local user that takes an identity's recorded uid blocks that identity rather than
    // sharing the uid.
    let mut passwd = std::fs::read_to_string(env.path("passwd")).unwrap();
    passwd.push_str(&format!("intruder:x:{}:100::/:/bin/sh\n", b.uid.unwrap()));
    std::fs::write(env.path("passwd"), passwd).unwrap();
    let e = add(&d, spec("bob", 10), T0 + 20).unwrap_err();
    assert!(e.1.contains("recorded uid"), "{e:?}");
}

#[test]
fn revoke_is_durable_and_tears_down() {
    let env = Env::new("revoke");
    let d = env.daemon(T0);
    let g = add(&d, spec("alice", 600), T0).unwrap();
    match d.handle(
        1001,
        Request::RevokeGrant {
            id: g.id.to_string(),
            reason: None,
        },
        T0,
    ) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        r => panic!("non-root revoke allowed: {r:?}"),
    }
    match d.handle(
        0,
        Request::RevokeGrant {
            id: g.id.to_string(),
            reason: Some("done".into()),
        },
        T0 + 1,
    ) {
        Response::Ok {
            payload: Payload::Grant(r),
            ..
        } => {
            // Torn down in the reply when the set-id sweep ended within its wait; either way
            // the home and record follow it (settle below).
            assert_eq!(r.state, GrantState::Revoked);
        }
        r => panic!("{r:?}"),
    }
    settle(&d, T0 + 1);
    match d.handle(
        0,
        Request::ShowGrant {
            id: g.id.to_string(),
        },
        T0 + 1,
    ) {
        Response::Ok {
            payload: Payload::Grant(r),
            ..
        } => assert!(r.torn_down),
        r => panic!("{r:?}"),
    }
    let img = env.snapshot();
    assert!(Snapshot::parse(&img)
        .unwrap()
        .account_by_name("alice", T0 + 1)
        .is_none());
    assert!(!exists(&env.path("home/alice")));
    // A second revoke says why it cannot.
    match d.handle(
        0,
        Request::RevokeGrant {
            id: g.id.to_string(),
            reason: None,
        },
        T0 + 2,
    ) {
        Response::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::Refused);
            assert!(message.contains("already ended"), "{message}");
        }
        r => panic!("{r:?}"),
    }
    // Durable: a new daemon over the same state sees it revoked.
    drop(d);
    let d2 = env.daemon(T0 + 3);
    match d2.handle(
        0,
        Request::ShowGrant {
            id: g.id.to_string(),
        },
        T0 + 3,
    ) {
        Response::Ok {
            payload: Payload::Grant(r),
            ..
        } => assert_eq!(r.state, GrantState::Revoked),
        r => panic!("{r:?}"),
    }
}

#[test]
fn expired_while_down_is_torn_down_at_start() {
    let env = Env::new("down");
    let d = env.daemon(T0);
    let g = add(&d, spec("alice", 30), T0).unwrap();
    assert!(exists(&env.path("home/alice")));
    drop(d);
    // Start again well after not_after: the first tick (before any socket) ends it.
    let d2 = Daemon::open(env.config(), T0 + 300).unwrap();
    d2.tick(T0 + 300);
    settle(&d2, T0 + 300);
    assert!(!exists(&env.path("home/alice")));
    let audit = env.audit();
    let line = audit.lines().find(|l| l.contains("grant.expired")).unwrap();
    assert!(
        line.contains(&format!("\"not_after\":{}", g.not_after)),
        "original expiry recorded: {line}"
    );
    assert!(line.contains("\"late_secs\":270"), "{line}");
}

#[test]
fn users_see_only_their_own_grants() {
    let env = Env::new("peer");
    let d = env.daemon(T0);
    add(&d, spec("alice", 60), T0).unwrap();
    add(
        &d,
        GrantSpec {
            account: false,
            groups: vec!["adm".into()],
            ..spec("carol", 60)
        },
        T0,
    )
    .unwrap();
    let list = |uid| match d.handle(
        uid,
        Request::ListGrants {
            all: true,
            page: None,
        },
        T0,
    ) {
        Response::Ok {
            payload: Payload::Grants { grants, .. },
            ..
        } => grants.into_iter().map(|g| g.user).collect::<Vec<_>>(),
        r => panic!("{r:?}"),
    };
    assert_eq!(list(0).len(), 2);
    assert_eq!(list(1001), ["carol"]);
    assert_eq!(
        list(4_100_000),
        ["alice"],
        "an ephemeral account sees its own grant"
    );
    assert!(list(1500).is_empty());
    match d.handle(
        1001,
        Request::AddGrant {
            spec: Box::new(spec("mallory", 60)),
        },
        T0,
    ) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        r => panic!("{r:?}"),
    }
    match d.handle(
        1001,
        Request::ReadAudit {
            grant: None,
            since: None,
            after_offset: None,
        },
        T0,
    ) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        r => panic!("{r:?}"),
    }
}

#[test]
fn damaged_snapshot_is_rewritten() {
    let env = Env::new("repair");
    let d = env.daemon(T0);
    add(&d, spec("alice", 600), T0).unwrap();
    let good = env.snapshot();
    std::fs::write(env.path("run/snapshot"), &good[..good.len() / 2]).unwrap();
    d.tick(T0 + 1);
    let fixed = env.snapshot();
    assert!(Snapshot::parse(&fixed)
        .unwrap()
        .account_by_name("alice", T0 + 1)
        .is_some());
    std::fs::remove_file(env.path("run/snapshot")).unwrap();
    d.tick(T0 + 2);
    assert!(Snapshot::parse(&env.public_snapshot()).is_ok());
    assert!(env.audit().contains("snapshot.repaired"));
    // The gates file is watched the same way: removed or altered, it is rewritten.
    std::fs::remove_file(env.path("run/gates")).unwrap();
    d.tick(T0 + 3);
    assert!(Snapshot::parse(&env.snapshot())
        .unwrap()
        .grants_for_user("alice")
        .next()
        .is_some());
    std::fs::write(env.path("run/gates"), b"junk").unwrap();
    d.tick(T0 + 4);
    assert!(Snapshot::parse(&env.snapshot()).is_ok());
}

#[test]
fn local_user_created_later_wins_over_the_account() {
    let env = Env::new("later");
    let d = env.daemon(T0);
    add(&d, spec("alice", 600), T0).unwrap();
    let mut passwd = std::fs::read_to_string(env.path("passwd")).unwrap();
    passwd.push_str("alice:x:1003:1003::/home/alice:/bin/bash\n");
    std::fs::write(env.path("passwd"), passwd).unwrap();
    d.tick(T0 + 1);
    let img = env.snapshot();
    assert!(Snapshot::parse(&img)
        .unwrap()
        .account_by_name("alice", T0 + 1)
        .is_none());
    assert!(env.audit().contains("account.collision"));
}

/// oathtool's code (the independent RFC 6238 implementation) for `secret` at Unix time `t`.
#[test]
fn mfa_group_grant_gives_nothing_until_activated() {
    let env = Env::new("mfa");
    let d = env.daemon(T0);
    let carol_adm = GrantSpec {
        account: false,
        groups: vec!["adm".into()],
        mfa: true,
        ..spec("carol", 600)
    };
    let e = add(&d, carol_adm.clone(), T0).unwrap_err();
    assert!(e.1.contains("no TOTP secret"), "{e:?}");
    let secret = match d.handle(
        0,
        Request::EnrollMfa {
            user: "carol".into(),
            replace: false,
        },
        T0,
    ) {
        Response::Ok {
            payload: Payload::Enrollment { secret, uri, .. },
            ..
        } => {
            assert!(uri.starts_with("otpauth://totp/") && uri.contains(&secret));
            secret
        }
        r => panic!("{r:?}"),
    };
    assert!(
        !env.audit().contains(&secret),
        "the secret never reaches the audit trail"
    );
    match d.handle(
        1001,
        Request::EnrollMfa {
            user: "carol".into(),
            replace: true,
        },
        T0,
    ) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        r => panic!("a user re-enrolled itself: {r:?}"),
    }
    let g = add(&d, carol_adm, T0).unwrap();
    assert_eq!(g.state, GrantState::Armed);
    let img = env.snapshot();
    assert_eq!(
        Snapshot::parse(&img)
            .unwrap()
            .user_gids("carol", T0)
            .count(),
        0,
        "armed: no membership"
    );
    // --mfa needs an enrolled secret (docs/threat-model.md#p7: no secret is never "no second factor").
    assert!(add(
        &d,
        GrantSpec {
            mfa: true,
            ..spec("alice", 60)
        },
        T0
    )
    .unwrap_err()
    .1
    .contains("no TOTP secret"));

    // Another user cannot activate carol's grant; a wrong code is refused and counted.
    assert!(activate(&d, 1002, &oathtool(&secret, T0), T0).is_err());
    let wrong = if oathtool(&secret, T0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    assert_eq!(
        activate(&d, 1001, wrong, T0).unwrap_err().0,
        ErrorCode::Refused
    );
    let code = oathtool(&secret, T0 + 30);
    assert_eq!(
        activate(&d, 1001, &code, T0 + 30).unwrap(),
        vec![g.id.clone()]
    );
    let img = env.snapshot();
    assert_eq!(
        Snapshot::parse(&img)
            .unwrap()
            .user_gids("carol", T0 + 30)
            .collect::<Vec<_>>(),
        [4]
    );
    assert!(env.audit().contains("grant.activated") && env.audit().contains("mfa.fail"));

    // A second armed grant: the code just used is refused (replay), the next step works.
    add(
        &d,
        GrantSpec {
            account: false,
            groups: vec!["devs".into()],
            mfa: true,
            ..spec("carol", 600)
        },
        T0 + 31,
    )
    .unwrap();
    let e = activate(&d, 1001, &code, T0 + 31).unwrap_err();
    assert!(e.1.contains("already used"), "{e:?}");
    assert!(activate(&d, 1001, &oathtool(&secret, T0 + 60), T0 + 60).is_ok());
    // The activation is durable.
    drop(d);
    let d2 = env.daemon(T0 + 61);
    match d2.handle(
        0,
        Request::ListGrants {
            all: false,
            page: None,
        },
        T0 + 61,
    ) {
        Response::Ok {
            payload: Payload::Grants { grants, .. },
            ..
        } => {
            assert!(
                grants.iter().all(|g| g.state == GrantState::Live),
                "{grants:?}"
            )
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn sudo_reports_are_audited_and_root_only() {
    let env = Env::new("sudorep");
    let d = env.daemon(T0);
    let report = jit_proto::message::SudoReport {
        user: "carol".into(),
        uid: 1001,
        command: "/usr/bin/apt".into(),
        argv: vec!["install".into(), "nmap".into()],
        runas: "root".into(),
        allowed: false,
        reason: "jit: /usr/bin/apt is outside grant g-1234".into(),
        classes: jit_core::policy::classify::CLASS_SOFTWARE_INSTALL,
        ..Default::default()
    };
    match d.handle(
        1001,
        Request::ReportSudo {
            report: Box::new(report.clone()),
        },
        T0,
    ) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        r => panic!("a user forged a sudo report: {r:?}"),
    }
    match d.handle(
        0,
        Request::ReportSudo {
            report: Box::new(report),
        },
        T0,
    ) {
        Response::Ok { .. } => {}
        r => panic!("{r:?}"),
    }
    let audit = env.audit();
    let line = audit.lines().find(|l| l.contains("sudo.denied")).unwrap();
    assert!(
        line.contains("/usr/bin/apt")
            && line.contains("software-install")
            && line.contains("outside grant"),
        "{line}"
    );
}

#[test]
fn sudo_scope_needs_the_plugin_and_valid_entries() {
    let env = Env::new("sudoscope");
    let d = env.daemon(T0);
    let scoped = GrantSpec {
        account: false,
        groups: vec![],
        sudo: vec!["/usr/bin/systemctl restart nginx".into()],
        runas: vec!["root".into()],
        revoke_on: vec!["software-install".into()],
        ..spec("carol", 600)
    };
    // No sudo.conf loading sudo_jit: the jit-sudo sudoers rule would give everything.
    let e = add(&d, scoped.clone(), T0).unwrap_err();
    assert!(e.1.contains("sudo_jit plugin"), "{e:?}");
    let plugin = env.path("sudo_jit.so");
    std::fs::write(&plugin, b"not really a plugin").unwrap();
    std::fs::write(
        env.path("sudo.conf"),
        format!("Plugin sudo_jit {}\n", plugin.display()),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let e = add(&d, scoped.clone(), T0).unwrap_err();
    assert!(
        e.1.contains("not writable"),
        "a plugin others can replace is refused: {e:?}"
    );
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for bad in [
        GrantSpec {
            sudo: vec!["systemctl".into()],
            ..scoped.clone()
        },
        GrantSpec {
            sudo: vec!["/usr/bin/../bin/sh".into()],
            ..scoped.clone()
        },
        GrantSpec {
            runas: vec!["#-1".into()],
            ..scoped.clone()
        },
        GrantSpec {
            revoke_on: vec!["everything".into()],
            ..scoped.clone()
        },
        GrantSpec {
            sudo: vec![],
            runas: vec!["root".into()],
            revoke_on: vec![],
            groups: vec!["adm".into()],
            ..scoped.clone()
        },
    ] {
        assert_eq!(
            add(&d, bad.clone(), T0).unwrap_err().0,
            ErrorCode::Refused,
            "{bad:?}"
        );
    }
    let g = add(&d, scoped, T0).unwrap();
    assert_eq!(g.sudo, ["/usr/bin/systemctl restart nginx"]);
    let img = env.snapshot();
    let s = Snapshot::parse(&img).unwrap();
    let gate = s.grants_for_user("carol").next().unwrap();
    assert_eq!(
        gate.sudo().collect::<Vec<_>>(),
        ["/usr/bin/systemctl restart nginx"]
    );
    assert_eq!(
        gate.revoke_on(),
        jit_core::policy::classify::CLASS_SOFTWARE_INSTALL
    );
    let js = s.group_by_name("jit-sudo", T0).unwrap();
    assert_eq!(js.live_members(T0).collect::<Vec<_>>(), ["carol"]);
    assert!(s.user_gids("carol", T0).any(|gid| gid == js.gid()));

    // A reported software install under that grant ends it.
    let report = jit_proto::message::SudoReport {
        user: "carol".into(),
        uid: 1001,
        grant: Some(g.id.to_string()),
        command: "/usr/bin/apt-get".into(),
        argv: vec!["install".into(), "nmap".into()],
        runas: "root".into(),
        allowed: false,
        classes: jit_core::policy::classify::CLASS_SOFTWARE_INSTALL,
        ..Default::default()
    };
    match d.handle(
        0,
        Request::ReportSudo {
            report: Box::new(report),
        },
        T0 + 5,
    ) {
        Response::Ok { .. } => {}
        r => panic!("{r:?}"),
    }
    match d.handle(
        0,
        Request::ShowGrant {
            id: g.id.to_string(),
        },
        T0 + 5,
    ) {
        Response::Ok {
            payload: Payload::Grant(r),
            ..
        } => {
            assert_eq!(r.state, GrantState::Revoked);
            assert!(r
                .end_reason
                .unwrap_or_default()
                .contains("software-install"));
        }
        r => panic!("{r:?}"),
    }
    let img = env.snapshot();
    assert!(Snapshot::parse(&img)
        .unwrap()
        .group_by_name("jit-sudo", T0 + 5)
        .is_none());
}

/// The world-readable snapshot carries what NSS needs and nothing of the gates: no sudo scope,
/// no `--from`, no `--window`, no managed list. Those live in the 0600 gates file only.
#[test]
fn gate_data_is_only_in_the_root_only_gates_file() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new("split");
    env.install_sudo_conf();
    let d = env.daemon(T0);
    let g = add(
        &d,
        GrantSpec {
            sudo: vec!["/usr/bin/systemctl restart nginx".into()],
            from: vec!["192.0.2.0/24".into()],
            windows: vec!["Mon-Fri 09:00-18:00".into()],
            ..spec("alice", 600)
        },
        T0,
    )
    .unwrap();
    let public = env.public_snapshot();
    let p = Snapshot::parse(&public).unwrap();
    assert!(
        p.account_by_name("alice", T0).is_some(),
        "NSS still sees the account"
    );
    assert_eq!(p.grant_count(), 0, "no gate records in the public snapshot");
    for secret in ["systemctl restart nginx", "192.0.2.0/24", "09:00-18:00"] {
        assert!(
            !public.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} in the public snapshot"
        );
    }
    let gates = env.snapshot();
    let s = Snapshot::parse(&gates).unwrap();
    let gate = s.grants_for_user("alice").next().unwrap();
    assert_eq!(gate.id(), g.id);
    assert_eq!(
        gate.sudo().collect::<Vec<_>>(),
        ["/usr/bin/systemctl restart nginx"]
    );
    assert_eq!(gate.from().collect::<Vec<_>>(), ["192.0.2.0/24"]);
    let mode = |f: &str| std::fs::metadata(env.path(f)).unwrap().mode() & 0o777;
    assert_eq!(mode("run/snapshot"), 0o644);
    assert_eq!(mode("run/gates"), 0o600);
}

/// A `snapshot_path` named like the gates file would make the two one file, readable by all:
/// jitd refuses to write it (audited) rather than publish the gate records.
#[test]
fn snapshot_path_named_gates_is_not_written() {
    let env = Env::new("samepath");
    let mut cfg = env.config();
    cfg.snapshot_path = env.path("run/gates");
    let d = Daemon::open(cfg, T0).unwrap();
    d.tick(T0);
    let _ = add(&d, spec("alice", 600), T0);
    assert!(!env.path("run/gates").exists(), "nothing written");
    assert!(env.audit().contains("snapshot.write_failed"));
}

/// The tick remembers that no ended grant awaits teardown while grants are only added (it
/// skips its walk over every grant then); a grant that ends after such adds is still torn down
/// at the tick it ends, and so is one added before the tick learned that.
#[test]
fn grants_ending_after_adds_are_torn_down_at_their_tick() {
    let env = Env::new("tdclear");
    let d = env.daemon(T0);
    let torn_down =
        |id: &str, now: i64| match d.handle(0, Request::ShowGrant { id: id.into() }, now) {
            Response::Ok {
                payload: Payload::Grant(g),
                ..
            } => g.torn_down,
            r => panic!("{r:?}"),
        };
    let alice = add(&d, spec("alice", 30), T0).unwrap();
    d.tick(T0 + 1);
    let bob = add(&d, spec("bob", 5), T0 + 2).unwrap();
    d.tick(T0 + 3);
    add(&d, spec("zoe1", 600), T0 + 4).unwrap();
    d.tick(T0 + 6);
    assert!(!torn_down(&bob.id, T0 + 6), "live until not_after");
    assert!(exists(&env.path("home/bob")));
    d.tick(T0 + 7);
    settle(&d, T0 + 7);
    assert!(
        torn_down(&bob.id, T0 + 7),
        "ended at T0+7, torn down by that tick (and its sweep)"
    );
    assert!(!exists(&env.path("home/bob")));
    add(&d, spec("zoe2", 600), T0 + 8).unwrap();
    d.tick(T0 + 30);
    settle(&d, T0 + 30);
    assert!(torn_down(&alice.id, T0 + 30));
    assert!(!exists(&env.path("home/alice")));
    assert!(exists(&env.path("home/zoe1")) && exists(&env.path("home/zoe2")));
}
