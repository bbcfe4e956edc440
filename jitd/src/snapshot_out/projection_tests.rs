//! The projection of grants onto snapshot records: which grants show, one private group per
//! account name whatever the number of its grants, and the order of the groups.

use super::*;
use crate::localdb::{LocalGroup, LocalUser};
use jit_proto::Grant;
use serde_json::json;

const NOW: UnixTime = 1_800_000_000;

fn cfg() -> Config {
    Config::parse("uid_range = \"70000-70019\"\n", None).unwrap()
}

fn local() -> LocalDb {
    LocalDb {
        users: vec![LocalUser {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
        }],
        groups: vec![
            LocalGroup {
                name: "web".into(),
                gid: 2001,
                members: vec![],
            },
            LocalGroup {
                name: "deploy".into(),
                gid: 2000,
                members: vec![],
            },
        ],
    }
}

/// A grant of `user` (an account of `uid`, or for a local user with `None`) from `nb` to `na`.
fn g(id: &str, user: &str, uid: Option<u32>, nb: i64, na: i64, groups: &[&str]) -> Grant {
    serde_json::from_value(json!({
        "id": id, "user": user, "state": "live", "not_before": nb, "not_after": na,
        "created_at": nb, "created_by": "root", "account": uid.is_some(), "uid": uid,
        "groups": groups, "ssh_keys": [], "reason": "", "ticket": "", "requested_by": "",
        "sudo": ["ALL"],
    }))
    .unwrap()
}

fn project_of(grants: &[Grant]) -> SnapshotData {
    let (data, collisions) = project_grants(&cfg(), grants.iter(), &local(), NOW);
    assert!(collisions.is_empty(), "{collisions:?}");
    data
}

fn names_and_kinds(d: &SnapshotData) -> Vec<(&str, u32, u32)> {
    d.groups
        .iter()
        .map(|e| (e.name.as_str(), e.gid, e.kind))
        .collect()
}

#[test]
fn groups_come_in_order_jit_sudo_private_by_name_local_by_name_then_jit_users() {
    let d = project_of(&[
        g("g-3", "zed", Some(70_003), NOW - 10, NOW + 100, &["web"]),
        g(
            "g-1",
            "bob",
            Some(70_001),
            NOW - 10,
            NOW + 100,
            &["deploy", "web"],
        ),
        g("g-2", "alice", None, NOW - 10, NOW + 100, &["web"]),
        g("g-4", "amy", Some(70_004), NOW - 10, NOW + 100, &[]),
    ]);
    let c = cfg();
    assert_eq!(
        names_and_kinds(&d),
        [
            (c.group_sudo.as_str(), c.gid_sudo(), GROUP_KIND_JIT),
            ("amy", 70_004, GROUP_KIND_PRIVATE),
            ("bob", 70_001, GROUP_KIND_PRIVATE),
            ("zed", 70_003, GROUP_KIND_PRIVATE),
            ("deploy", 2000, GROUP_KIND_LOCAL),
            ("web", 2001, GROUP_KIND_LOCAL),
            (c.group_users.as_str(), c.gid_users(), GROUP_KIND_JIT),
        ]
    );
    let web = d.groups.iter().find(|e| e.name == "web").unwrap();
    let mut members: Vec<&str> = web.members.iter().map(|m| m.name.as_str()).collect();
    members.sort();
    assert_eq!(members, ["alice", "bob", "zed"]);
    // Every grant has its gate record; accounts only for the three with one.
    assert_eq!(d.grants.len(), 4);
    assert_eq!(d.accounts.len(), 3);
    assert_eq!(d.groups[0].members.len(), 4, "every grant has --sudo");
    // Sized exactly, not grown by doubling.
    assert_eq!(d.accounts.capacity(), d.accounts.len());
    assert_eq!(d.grants.capacity(), d.grants.len());
}

#[test]
fn one_private_group_per_name_spanning_all_its_grants_with_the_first_grants_gid() {
    // Two successive grants and one overlapping, for one name; the state map iterates by id.
    let d = project_of(&[
        g("g-a", "carol", Some(70_005), NOW - 50, NOW + 100, &[]),
        g("g-b", "bob", Some(70_001), NOW - 10, NOW + 100, &[]),
        g("g-c", "carol", Some(70_005), NOW + 100, NOW + 900, &[]),
        g("g-d", "carol", Some(70_005), NOW - 500, NOW + 20, &[]),
    ]);
    let private: Vec<&GroupEntry> = d
        .groups
        .iter()
        .filter(|e| e.kind == GROUP_KIND_PRIVATE)
        .collect();
    assert_eq!(private.len(), 2);
    assert_eq!(private[0].name, "bob");
    assert_eq!(
        (private[0].not_before, private[0].not_after),
        (NOW - 10, NOW + 100)
    );
    assert_eq!(private[1].name, "carol");
    assert_eq!(private[1].gid, 70_005);
    assert_eq!(
        (private[1].not_before, private[1].not_after),
        (NOW - 500, NOW + 900)
    );
    // Each grant keeps its own account record (the reader picks the live one).
    assert_eq!(d.accounts.iter().filter(|a| a.name == "carol").count(), 3);
}

#[test]
fn ended_and_past_grants_are_left_out() {
    let mut ended = g("g-1", "bob", Some(70_001), NOW - 10, NOW + 100, &["web"]);
    ended.state = jit_proto::GrantState::Revoked;
    let past = g("g-2", "amy", Some(70_002), NOW - 100, NOW, &["web"]);
    let d = project_of(&[ended, past]);
    assert!(d.accounts.is_empty());
    assert!(d.grants.is_empty());
    let c = cfg();
    // jit-sudo stays, empty; nothing else.
    assert_eq!(
        names_and_kinds(&d),
        [(c.group_sudo.as_str(), c.gid_sudo(), GROUP_KIND_JIT)]
    );
    assert!(d.groups[0].members.is_empty());
}

/// The records carry the grant's own name and id (shared with the state, not copied): the
/// account, its private group, its memberships and its gate record point at the same strings.
#[test]
fn records_share_the_grants_strings() {
    let grants = [g(
        "g-aaaaaaaaaaaa",
        "jb1",
        Some(70_001),
        NOW - 60,
        NOW + 60,
        &["web"],
    )];
    let d = project_of(&grants);
    let (user, id) = (grants[0].user.as_str(), grants[0].id.as_str());
    let same = |a: &str, b: &str| std::ptr::eq(a, b);
    assert!(same(d.accounts[0].name.as_str(), user));
    assert!(same(d.accounts[0].grant_id.as_str(), id));
    assert!(same(d.grants[0].user.as_str(), user));
    assert!(same(d.grants[0].id.as_str(), id));
    let members: Vec<&Member> = d.groups.iter().flat_map(|e| &e.members).collect();
    assert!(!members.is_empty());
    assert!(members
        .iter()
        .all(|m| same(m.name.as_str(), user) && same(m.grant_id.as_str(), id)));
    let private = d
        .groups
        .iter()
        .find(|e| e.kind == GROUP_KIND_PRIVATE)
        .unwrap();
    assert!(same(private.name.as_str(), user));
}
