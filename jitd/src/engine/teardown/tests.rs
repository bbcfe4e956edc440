//! Teardown plans, table-style: which uids, gid holders and sessions a teardown ends, which
//! set-id files it sweeps and what happens to the home, given the grants that remain.

use super::*;
use crate::localdb::{LocalGroup, LocalUser};
use jit_proto::{Grant, Session};
use serde_json::json;

const NOW: UnixTime = 1_000;

fn g(
    id: &str,
    user: &str,
    state: &str,
    account: Option<u32>,
    groups: &[&str],
    enable: bool,
) -> Grant {
    serde_json::from_value(json!({
        "id": id, "user": user, "state": state, "not_before": 100, "not_after": 10_000,
        "created_at": 100, "created_by": "root", "account": account.is_some(), "uid": account,
        "groups": groups, "ssh_keys": [], "reason": "", "ticket": "", "requested_by": "",
        "sudo": [], "runas": [], "enable": enable, "from": [], "services": [], "windows": [],
        "mfa": false, "mfa_sudo": false, "end_with_session": false, "revoke_on": [],
        "activated_at": null, "went_live_at": 100, "ended_at": 900, "end_reason": null,
        "torn_down": false,
    }))
    .unwrap()
}

fn local() -> LocalDb {
    LocalDb {
        users: vec![
            LocalUser {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
            },
            LocalUser {
                name: "opsadmin".into(),
                uid: 1500,
                gid: 1500,
            },
            // Made later with an account's uid (useradd -o -u 70005).
            LocalUser {
                name: "intruder".into(),
                uid: 70_005,
                gid: 70_005,
            },
        ],
        groups: vec![
            LocalGroup {
                name: "deploy".into(),
                gid: 2000,
                members: vec![],
            },
            LocalGroup {
                name: "web".into(),
                gid: 2001,
                members: vec!["alice".into()],
            },
            LocalGroup {
                name: "alice".into(),
                gid: 1000,
                members: vec![],
            },
        ],
    }
}

fn plan(grants: Vec<Grant>) -> TeardownPlan {
    let mut st = State::default();
    for gr in grants {
        st.grants.insert(gr.id.to_string().into(), gr);
    }
    plan_teardown(&st, &local(), NOW)
}

#[test]
fn nothing_pending_nothing_planned() {
    let p = plan(vec![g("g-1", "tmp1", "live", Some(70_001), &[], false)]);
    assert!(p.jobs.is_empty() && p.kill.is_empty() && p.sweep.is_empty());
    let mut done = g("g-2", "tmp2", "expired", Some(70_002), &[], false);
    done.torn_down = true;
    assert!(plan(vec![done]).jobs.is_empty());
}

#[test]
fn ended_account_table() {
    // (name, grants, uid killed?, home step)
    let rows: Vec<(&str, Vec<Grant>, bool, HomeStep)> = vec![
        (
            "alone",
            vec![g("g-1", "tmp1", "expired", Some(70_001), &[], false)],
            true,
            HomeStep::ApplyPolicy { uid: 70_001 },
        ),
        (
            "another live grant for the account keeps processes and home",
            vec![
                g("g-1", "tmp1", "expired", Some(70_001), &[], false),
                g("g-2", "tmp1", "live", Some(70_001), &[], false),
            ],
            false,
            HomeStep::KeptForOtherGrant,
        ),
        (
            "an armed grant keeps the home, not the processes",
            vec![g("g-1", "tmp1", "revoked", Some(70_001), &[], false), {
                let mut a = g("g-2", "tmp1", "live", Some(70_001), &[], false);
                a.mfa = true;
                a
            }],
            true,
            HomeStep::KeptForOtherGrant,
        ),
        (
            "uid taken by a local user: left alone",
            vec![g("g-1", "tmp5", "expired", Some(70_005), &[], false)],
            false,
            HomeStep::Collided {
                uid: 70_005,
                local_user: "intruder".into(),
            },
        ),
    ];
    for (name, grants, killed, home) in rows {
        let p = plan(grants);
        let job = p.jobs.iter().find(|j| j.id == "g-1").unwrap();
        let uid = match &job.home {
            HomeStep::ApplyPolicy { uid } | HomeStep::Collided { uid, .. } => *uid,
            _ => 70_001,
        };
        assert_eq!(job.home, home, "{name}");
        assert_eq!(p.kill.uids.contains(&uid), killed, "{name}");
        assert_eq!(
            p.sweep.uids.contains(&uid),
            killed,
            "{name}: swept with the kill"
        );
        if killed {
            assert_eq!(
                p.uid_grant.get(&uid).map(String::as_str),
                Some("g-1"),
                "{name}"
            );
        }
    }
}

#[test]
fn group_memberships_table() {
    // (name, grants, gids lost by alice's processes)
    let rows: Vec<(&str, Vec<Grant>, Vec<u32>)> = vec![
        (
            "ended membership",
            vec![g("g-1", "alice", "expired", None, &["deploy"], false)],
            vec![2000],
        ),
        (
            "still granted by a live grant",
            vec![
                g("g-1", "alice", "expired", None, &["deploy"], false),
                g("g-2", "alice", "live", None, &["deploy"], false),
            ],
            vec![],
        ),
        (
            "held locally",
            vec![g("g-1", "alice", "expired", None, &["web"], false)],
            vec![],
        ),
        (
            "primary group",
            vec![g("g-1", "alice", "expired", None, &["alice"], false)],
            vec![],
        ),
        (
            "group gone from /etc/group",
            vec![g("g-1", "alice", "expired", None, &["nosuch"], false)],
            vec![],
        ),
    ];
    for (name, grants, gids) in rows {
        let p = plan(grants);
        let job = p.jobs.iter().find(|j| j.id == "g-1").unwrap();
        assert_eq!(job.gids, gids, "{name}");
        let held: Vec<u32> = gids.clone();
        for gid in &held {
            assert!(p.kill.group_holders.contains(&(1000, *gid)), "{name}");
            assert!(p.sweep.owner_gids.contains(&(1000, *gid)), "{name}");
        }
        assert_eq!(p.kill.group_holders.len(), held.len(), "{name}");
        assert!(
            p.kill.uids.is_empty(),
            "{name}: a local user's uid is never a target"
        );
    }
}

#[test]
fn managed_admin_is_disabled_unless_still_enabled() {
    let p = plan(vec![g("g-1", "opsadmin", "expired", None, &[], true)]);
    assert!(p.kill.uids.contains(&1500));
    assert_eq!(p.uid_grant.get(&1500).map(String::as_str), Some("g-1"));
    let p = plan(vec![
        g("g-1", "opsadmin", "expired", None, &[], true),
        g("g-2", "opsadmin", "live", None, &[], true),
    ]);
    assert!(p.kill.uids.is_empty());
}

#[test]
fn registered_sessions_are_ended_by_pid_and_start_time() {
    let mut st = State::default();
    let gr = g("g-1", "tmp1", "expired", Some(70_001), &[], false);
    st.grants.insert(gr.id.to_string().into(), gr);
    st.sessions.insert(
        "s-1".into(),
        Session {
            id: "s-1".into(),
            user: "tmp1".into(),
            grant: "g-1".into(),
            pid: 4242,
            pid_start: 77,
            service: "sshd".into(),
            tty: String::new(),
            rhost: String::new(),
            opened_at: 500,
        },
    );
    let p = plan_teardown(&st, &local(), NOW);
    assert_eq!(p.jobs[0].sessions, [("s-1".to_string(), 4242, 77)]);
    assert!(p.kill.sessions.contains(&(4242, 77)));
    assert!(pending(&st));
}
