//! Admission, table-style: one request per row and the refusal (or the grant) it gets, with
//! the local files, the state and the host facts of each row given as values.

use super::*;
use crate::localdb::{LocalGroup, LocalUser};

const NOW: UnixTime = 1_800_000_000;

fn cfg() -> Config {
    let mut c = Config::parse(
        "managed_accounts = [\"opsadmin\"]\nmax_grant = \"8h\"\nuid_range = \"70000-70019\"\n",
        None,
    )
    .unwrap();
    c.passwd_file = "/test/passwd".into();
    c.group_file = "/test/group".into();
    c
}

fn local() -> LocalDb {
    let user = |name: &str, uid, gid| LocalUser {
        name: name.into(),
        uid,
        gid,
    };
    let group = |name: &str, gid, members: &[&str]| LocalGroup {
        name: name.into(),
        gid,
        members: members.iter().map(|m| m.to_string()).collect(),
    };
    LocalDb {
        users: vec![
            user("root", 0, 0),
            user("alice", 1000, 1000),
            user("opsadmin", 1500, 1500),
            // Holds a uid in jit's range: never handed out.
            user("squatter", 70_000, 70_000),
        ],
        groups: vec![
            group("root", 0, &[]),
            group("alice", 1000, &[]),
            group("adm", 4, &["alice"]),
            group("wheelish", 27, &[]),
            group("docker", 999, &[]),
            // A second name for the docker gid: denied by gid.
            group("containers", 999, &[]),
            group("nogroup", 65_534, &[]),
            group("deploy", 2000, &[]),
            group("web", 2001, &[]),
        ],
    }
}

/// Host facts of a row.
struct Facts {
    sudo_guarded: bool,
    enrolled: &'static [&'static str],
    /// Why jitd's process monitor does not run here, if it does not.
    no_monitor: Option<&'static str>,
}

impl HostFacts for Facts {
    fn sudo_guarded(&self) -> Result<(), String> {
        if self.sudo_guarded {
            Ok(())
        } else {
            Err("no sudo_jit in sudo.conf".into())
        }
    }

    fn mfa_enrolled(&self, user: &str) -> bool {
        self.enrolled.contains(&user)
    }

    fn monitoring(&self, classes: &[String]) -> Result<(), String> {
        assert!(!classes.is_empty(), "asked only for classes");
        self.no_monitor.map_or(Ok(()), |why| Err(why.to_string()))
    }

    // Whatever the test process holds: the check itself is tested in tokenize/holdable.rs.
    fn cap_holdable(&self, _cap: &str) -> Result<(), String> {
        Ok(())
    }
}

const HOST: Facts = Facts {
    sudo_guarded: true,
    enrolled: &["alice"],
    no_monitor: None,
};

/// A host without jitd's process monitor (no cgroup v2).
const NO_MONITOR: Facts = Facts {
    sudo_guarded: true,
    enrolled: &["alice"],
    no_monitor: Some("no per-grant cgroups (no cgroup2 filesystem is mounted)"),
};

fn spec(user: &str) -> GrantSpec {
    GrantSpec {
        user: user.into(),
        duration_secs: 3600,
        ..GrantSpec::default()
    }
}

fn account(user: &str) -> GrantSpec {
    GrantSpec {
        account: true,
        ..spec(user)
    }
}

fn groups(user: &str, g: &[&str]) -> GrantSpec {
    GrantSpec {
        groups: g.iter().map(|s| s.to_string()).collect(),
        ..spec(user)
    }
}

/// Runs both steps on a fresh state; `Err(text)` is the refusal's message.
fn admit(s: &GrantSpec, facts: &Facts) -> Result<Grant, (ErrorCode, String)> {
    let c = cfg();
    let l = local();
    let adm = validate(&c, Ok(&l), s, facts, NOW)?;
    let mut st = State::default();
    place(
        &c,
        &l,
        &mut st,
        adm,
        "g-000000000001".into(),
        GrantSource::Local,
        NOW,
    )
}

#[test]
fn refusals_table() {
    let with = |f: fn(&mut GrantSpec), base: GrantSpec| {
        let mut s = base;
        f(&mut s);
        s
    };
    let rows: Vec<(&str, GrantSpec, Facts, &str)> = vec![
        ("root", account("root"), HOST, "root is never managed"),
        ("bad account name", account("Alice"), HOST, ""),
        (
            "zero duration",
            with(|s| s.duration_secs = 0, account("tmp1")),
            HOST,
            "--for must be a positive",
        ),
        (
            "over max_grant",
            with(|s| s.duration_secs = 9 * 3600, account("tmp1")),
            HOST,
            "exceeds max_grant 8h",
        ),
        (
            "start too late",
            with(|s| s.start_in_secs = 32 * 86_400, account("tmp1")),
            HOST,
            "--start-in must be",
        ),
        (
            "negative start",
            with(|s| s.start_in_secs = -1, account("tmp1")),
            HOST,
            "--start-in must be",
        ),
        (
            "reason with newline",
            with(|s| s.reason = "a\nb".into(), account("tmp1")),
            HOST,
            "reason",
        ),
        (
            "key without account",
            with(
                |s| s.ssh_keys = vec!["ssh-ed25519 AAAA".into()],
                groups("alice", &["deploy"]),
            ),
            HOST,
            "--ssh-key needs --account",
        ),
        ("nothing to grant", spec("alice"), HOST, "nothing to grant"),
        (
            "jit's own name",
            groups("jit-sudo", &["deploy"]),
            HOST,
            "one of jit's own group names",
        ),
        (
            "reserved account name",
            account("jit-sudo"),
            HOST,
            "reserved",
        ),
        (
            "shadows a local user",
            account("alice"),
            HOST,
            "exists locally",
        ),
        (
            "shadows a local group",
            account("deploy"),
            HOST,
            "exists locally",
        ),
        (
            "runas without sudo",
            with(
                |s| s.runas = vec!["postgres".into()],
                groups("alice", &["deploy"]),
            ),
            HOST,
            "--runas applies to sudo: it needs --sudo",
        ),
        (
            "bad revoke-on class",
            with(
                |s| {
                    s.sudo = vec!["/usr/bin/systemctl".into()];
                    s.revoke_on = vec!["nuke".into()];
                },
                spec("alice"),
            ),
            HOST,
            "--revoke-on \"nuke\"",
        ),
        (
            "revoke-on for a grant without processes of its own",
            with(
                |s| s.revoke_on = vec!["sensitive-read".into()],
                groups("alice", &["deploy"]),
            ),
            HOST,
            "--revoke-on watches the grant's processes",
        ),
        (
            "revoke-on without sudo and without the monitor",
            with(
                |s| s.revoke_on = vec!["lateral-movement".into()],
                account("tmp1"),
            ),
            NO_MONITOR,
            "--revoke-on lateral-movement: without --sudo the grant's processes are seen only by \
             jitd's process monitor, which is not running on this host: no per-grant cgroups \
             (no cgroup2 filesystem is mounted)",
        ),
        (
            "lateral-movement through sudo without the monitor",
            with(
                |s| {
                    s.sudo = vec!["ALL".into()];
                    s.revoke_on = vec!["ioc".into(), "lateral-movement".into()];
                },
                spec("alice"),
            ),
            NO_MONITOR,
            "--revoke-on lateral-movement: this class is seen only by jitd's process monitor",
        ),
        (
            "sudo without the plugin",
            with(
                |s| s.sudo = vec!["/usr/bin/systemctl".into()],
                spec("alice"),
            ),
            Facts {
                sudo_guarded: false,
                enrolled: &[],
                no_monitor: None,
            },
            "needs the sudo_jit plugin",
        ),
        (
            "enable with account",
            with(|s| s.enable = true, account("tmp1")),
            HOST,
            "choose one",
        ),
        (
            "enable unmanaged",
            with(|s| s.enable = true, spec("alice")),
            HOST,
            "not in managed_accounts",
        ),
        (
            "managed without enable",
            groups("opsadmin", &["deploy"]),
            HOST,
            "must --enable it",
        ),
        (
            "from for a local user",
            with(
                |s| s.from = vec!["10.0.0.0/8".into()],
                groups("alice", &["deploy"]),
            ),
            HOST,
            "--from applies to logins",
        ),
        (
            "bad cidr",
            with(|s| s.from = vec!["10.0.0.0/33".into()], account("tmp1")),
            HOST,
            "--from \"10.0.0.0/33\"",
        ),
        (
            "bad window",
            with(|s| s.windows = vec!["someday".into()], account("tmp1")),
            HOST,
            "--window \"someday\"",
        ),
        (
            "mfa-sudo without sudo",
            with(|s| s.mfa_sudo = true, account("tmp1")),
            HOST,
            "--mfa-sudo needs --sudo",
        ),
        (
            "mfa not enrolled",
            with(|s| s.mfa = true, account("tmp1")),
            HOST,
            "has no TOTP secret yet",
        ),
        (
            "no such user, no account",
            groups("bob", &["deploy"]),
            HOST,
            "no local user \"bob\"",
        ),
        (
            "jit's own group",
            groups("alice", &["jit-users"]),
            HOST,
            "managed by jit itself",
        ),
        (
            "no such group",
            groups("alice", &["nosuch"]),
            HOST,
            "no local group \"nosuch\"",
        ),
        (
            "denied by name",
            groups("alice", &["docker"]),
            HOST,
            "root-equivalent",
        ),
        (
            "denied by gid",
            groups("alice", &["containers"]),
            HOST,
            "(gid 999 is also \"docker\")",
        ),
        (
            "gid 65534",
            groups("alice", &["nogroup"]),
            HOST,
            "never granted",
        ),
        (
            "already a member",
            groups("alice", &["adm"]),
            HOST,
            "already a local member of adm",
        ),
        (
            "primary group",
            groups("alice", &["alice"]),
            HOST,
            "already a local member of alice",
        ),
    ];
    for (name, s, facts, want) in rows {
        match admit(&s, &facts) {
            Ok(g) => panic!("{name}: admitted {g:?}"),
            Err((code, msg)) => {
                assert_eq!(code, ErrorCode::Refused, "{name}: {msg}");
                assert!(msg.contains(want), "{name}: {msg:?} lacks {want:?}");
            }
        }
    }
}

/// `--revoke-on` needs a grant whose processes are watched (its logins or its sudo commands)
/// and, except for what sudo_jit checks itself, jitd's monitor.
#[test]
fn revoke_on_without_sudo() {
    let with_classes = |mut s: GrantSpec, classes: &[&str]| {
        s.revoke_on = classes.iter().map(|c| c.to_string()).collect();
        s
    };
    let rows: Vec<(&str, GrantSpec, Facts)> = vec![
        (
            "account login",
            with_classes(account("tmp1"), &["lateral-movement", "sensitive-read"]),
            HOST,
        ),
        (
            "managed admin login",
            with_classes(
                GrantSpec {
                    enable: true,
                    ..spec("opsadmin")
                },
                &["account-change"],
            ),
            HOST,
        ),
        (
            "sudo classes without the monitor: sudo_jit checks them",
            with_classes(
                GrantSpec {
                    sudo: vec!["ALL".into()],
                    ..spec("alice")
                },
                &["software-install", "ioc"],
            ),
            NO_MONITOR,
        ),
    ];
    for (name, s, facts) in rows {
        let g = admit(&s, &facts).unwrap_or_else(|e| panic!("{name}: refused {e:?}"));
        let mut want = s.revoke_on.clone();
        want.sort();
        assert_eq!(g.revoke_on, want, "{name}");
    }
}

#[test]
fn admitted_table() {
    let mfa_account = GrantSpec {
        mfa: true,
        ..account("alice2")
    };
    let rows: Vec<(&str, GrantSpec, &[&str])> = vec![
        ("account", account("tmp1"), &[]),
        (
            "groups sorted and deduplicated",
            groups("alice", &["web", "deploy", "web"]),
            &["deploy", "web"],
        ),
        (
            "enable a managed admin",
            GrantSpec {
                enable: true,
                ..spec("opsadmin")
            },
            &[],
        ),
        (
            "sudo scope",
            GrantSpec {
                sudo: vec!["/usr/bin/systemctl restart nginx".into()],
                ..spec("alice")
            },
            &[],
        ),
        ("mfa account (name enrolled)", mfa_account, &[]),
    ];
    for (name, s, want_groups) in rows {
        let g = admit(
            &s,
            &Facts {
                sudo_guarded: true,
                enrolled: &["alice2"],
                no_monitor: None,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: refused {e:?}"));
        assert_eq!(g.user, s.user, "{name}");
        assert_eq!(g.groups, want_groups, "{name}");
        assert_eq!(g.created_by, "root", "{name}");
        assert_eq!((g.not_before, g.not_after), (NOW, NOW + 3600), "{name}");
        assert_eq!(g.state, GrantState::Live, "{name}: starts now");
        assert_eq!(g.went_live_at, Some(NOW), "{name}");
        assert_eq!(g.uid.is_some(), s.account, "{name}");
    }
}

#[test]
fn unreadable_local_files_refuse_as_internal_only_once_the_request_is_sound() {
    let c = cfg();
    // A bad request is refused for what it is, whatever the local files.
    let e = validate(&c, Err("cannot read"), &account("root"), &HOST, NOW).unwrap_err();
    assert_eq!(e.0, ErrorCode::Refused);
    let e = validate(
        &c,
        Err("cannot read /test/passwd"),
        &account("tmp1"),
        &HOST,
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        e,
        (ErrorCode::Internal, "cannot read /test/passwd".to_string())
    );
}

#[test]
fn server_grants_are_admitted_the_same_way_and_say_so() {
    let c = cfg();
    let l = local();
    let mut st = State::default();
    let adm = validate(&c, Ok(&l), &account("tmp1"), &HOST, NOW).unwrap();
    let g = place(
        &c,
        &l,
        &mut st,
        adm,
        "g-000000000002".into(),
        GrantSource::Server(Box::new(jit_proto::ServerSource {
            id: "sg-1".into(),
            request: "r-1".into(),
            role: "web-admin".into(),
            strict: false,
            seq: 1,
        })),
        NOW,
    )
    .unwrap();
    assert_eq!(g.created_by, "server");
    // The same request a local peer may not make, a server may not either.
    assert!(validate(&c, Ok(&l), &account("root"), &HOST, NOW).is_err());
}

#[test]
fn later_start_is_pending() {
    let c = cfg();
    let l = local();
    let s = GrantSpec {
        start_in_secs: 600,
        ..account("tmp1")
    };
    let adm = validate(&c, Ok(&l), &s, &HOST, NOW).unwrap();
    let g = place(
        &c,
        &l,
        &mut State::default(),
        adm,
        "g-1".into(),
        GrantSource::Local,
        NOW,
    )
    .unwrap();
    assert_eq!(g.state, GrantState::Pending);
    assert_eq!(g.went_live_at, None);
    assert_eq!((g.not_before, g.not_after), (NOW + 600, NOW + 4200));
}

#[test]
fn uids_skip_local_ids_and_stay_with_their_name() {
    let c = cfg();
    let l = local();
    let mut st = State::default();
    let uid_of = |name: &str, st: &mut State| {
        let adm = validate(&c, Ok(&l), &account(name), &HOST, NOW).unwrap();
        place(
            &c,
            &l,
            st,
            adm,
            format!("g-{name}"),
            GrantSource::Local,
            NOW,
        )
        .unwrap()
        .uid
    };
    // 70000 is a local user's: never handed out.
    assert_eq!(uid_of("tmp1", &mut st), Some(70_001));
    assert_eq!(uid_of("tmp2", &mut st), Some(70_002));
    // The ledger keeps a name's uid.
    assert_eq!(uid_of("tmp1", &mut st), Some(70_001));
    assert_eq!(st.uid_ledger.len(), 2);
}

#[test]
fn uid_range_exhausted_and_recorded_uid_taken() {
    let c = cfg();
    let l = local();
    let mut st = State::default();
    for (i, u) in (70_001..=c.account_uid_max()).enumerate() {
        st.uid_ledger.insert(format!("old{i}").into(), u);
    }
    let adm = validate(&c, Ok(&l), &account("tmp1"), &HOST, NOW).unwrap();
    let e = place(&c, &l, &mut st, adm, "g-1".into(), GrantSource::Local, NOW).unwrap_err();
    assert!(e.1.contains("uid_range is exhausted"), "{e:?}");
    let mut st = State::default();
    st.uid_ledger.insert("tmp1".into(), 70_000u32);
    let adm = validate(&c, Ok(&l), &account("tmp1"), &HOST, NOW).unwrap();
    let e = place(&c, &l, &mut st, adm, "g-1".into(), GrantSource::Local, NOW).unwrap_err();
    assert!(e.1.contains("recorded uid 70000 is now used"), "{e:?}");
}

#[test]
fn a_non_local_user_needs_an_account_grant_covering_the_window() {
    let c = cfg();
    let l = local();
    let mut st = State::default();
    let adm = validate(&c, Ok(&l), &account("tmp1"), &HOST, NOW).unwrap();
    let acct = place(&c, &l, &mut st, adm, "g-a".into(), GrantSource::Local, NOW).unwrap();
    st.grants.insert(acct.id.to_string().into(), acct);
    let inside = groups("tmp1", &["deploy"]);
    let adm = validate(&c, Ok(&l), &inside, &HOST, NOW).unwrap();
    assert!(place(&c, &l, &mut st, adm, "g-b".into(), GrantSource::Local, NOW).is_ok());
    // Longer than the account: refused.
    let outside = GrantSpec {
        duration_secs: 7200,
        ..groups("tmp1", &["deploy"])
    };
    let adm = validate(&c, Ok(&l), &outside, &HOST, NOW).unwrap();
    let e = place(&c, &l, &mut st, adm, "g-c".into(), GrantSource::Local, NOW).unwrap_err();
    assert!(e.1.contains("covering this window"), "{e:?}");
}

#[test]
fn breakglass_grant_enables_for_its_length() {
    let g = breakglass_grant("g-1".into(), "opsadmin", "code 01".into(), 900, NOW);
    assert!(g.enable && !g.account);
    assert_eq!(
        (g.state, g.not_after, g.created_by.as_str()),
        (GrantState::Live, NOW + 900, "break-glass")
    );
}
