//! `spec_weight` against the real images: whatever a grant asks for, adding it to files that
//! already hold other grants makes neither file grow by more than its weight.

use super::*;
use crate::localdb::{LocalGroup, LocalUser};
use jit_proto::{Grant, GrantSpec};
use serde_json::json;

const NOW: UnixTime = 1_800_000_000;

fn cfg() -> Config {
    Config::parse("uid_range = \"70000-79999\"\n", None).unwrap()
}

fn local() -> LocalDb {
    LocalDb {
        users: vec![LocalUser {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
        }],
        groups: (0..32)
            .map(|i| LocalGroup {
                name: format!("team-{i:02}-with-a-longer-name"),
                gid: 2000 + i,
                members: vec![],
            })
            .collect(),
    }
}

/// The grant jitd would hold for `spec` (uid `uid` if it asks for an account).
fn grant_of(id: usize, spec: &GrantSpec, uid: u32) -> Grant {
    serde_json::from_value(json!({
        "id": format!("{id:016x}"), "user": spec.user, "state": "live",
        "not_before": NOW - 60, "not_after": NOW + spec.duration_secs,
        "created_at": NOW - 60, "created_by": "root", "account": spec.account,
        "uid": spec.account.then_some(uid), "groups": spec.groups, "ssh_keys": spec.ssh_keys,
        "reason": spec.reason, "ticket": spec.ticket, "requested_by": spec.requested_by,
        "sudo": spec.sudo, "runas": spec.runas, "enable": spec.enable, "from": spec.from,
        "services": spec.services, "windows": spec.windows, "revoke_on": spec.revoke_on,
    }))
    .unwrap()
}

/// Sizes of the gates file and the public snapshot built from `grants`, as `write` builds them.
fn sizes(grants: &[Grant]) -> (u64, u64) {
    let (mut data, _) = project_grants(&cfg(), grants.iter(), &local(), NOW);
    let gates = jit_core::snapshot::build_snapshot_with(&data, &gates_options(7)).unwrap();
    data.grants = Vec::new();
    data.managed = Vec::new();
    let public = jit_core::snapshot::build_snapshot_with(&data, &public_options(7)).unwrap();
    (gates.len() as u64, public.len() as u64)
}

fn typical(i: usize) -> GrantSpec {
    GrantSpec {
        user: format!("eng{i:05}"),
        duration_secs: 3600,
        account: true,
        groups: vec!["team-01-with-a-longer-name".into()],
        ssh_keys: vec![format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{:0>43} eng{i}@laptop",
            i
        )],
        reason: "INC-4471: disk full on the build host".into(),
        sudo: vec!["ALL".into()],
        ..Default::default()
    }
}

/// Requests at the limits admission allows, and ordinary ones.
fn shapes() -> Vec<(&'static str, GrantSpec)> {
    let key = |n: usize| format!("ssh-rsa {} k{n}", "A".repeat(16 * 1024 - 16));
    let groups: Vec<String> = local().groups.iter().map(|g| g.name.clone()).collect();
    vec![
        ("typical", typical(90_000)),
        (
            "sixteen 16 KiB keys",
            GrantSpec {
                ssh_keys: (0..16).map(key).collect(),
                ..typical(90_001)
            },
        ),
        (
            "32 groups",
            GrantSpec {
                groups: groups.clone(),
                ..typical(90_002)
            },
        ),
        (
            "every list long",
            GrantSpec {
                user: "x".repeat(32),
                groups,
                reason: "r".repeat(256),
                ticket: "t".repeat(64),
                requested_by: "q".repeat(64),
                sudo: (0..64)
                    .map(|i| format!("/usr/bin/tool{i} --flag *"))
                    .collect(),
                runas: (0..16).map(|i| format!("svc{i}")).collect(),
                from: (0..16).map(|i| format!("10.{i}.0.0/16")).collect(),
                services: vec!["sshd".into(), "login".into(), "su".into()],
                windows: vec!["Mon-Fri 08:00-18:00".into()],
                ..typical(90_003)
            },
        ),
        (
            "a local user's",
            GrantSpec {
                user: "alice".into(),
                account: false,
                ssh_keys: vec![],
                ..typical(90_004)
            },
        ),
    ]
}

#[test]
fn no_grant_makes_either_file_grow_by_more_than_its_weight() {
    for base_count in [0usize, 1, 40, 400] {
        let base: Vec<Grant> = (0..base_count)
            .map(|i| grant_of(i, &typical(i), 70_000 + i as u32))
            .collect();
        let (gates_before, public_before) = sizes(&base);
        for (what, spec) in shapes() {
            let mut with = base.clone();
            with.push(grant_of(99_999, &spec, 79_999));
            let (gates, public) = sizes(&with);
            let w = spec_weight(&spec);
            for (file, grew) in [
                ("gates", gates - gates_before),
                ("public", public - public_before),
            ] {
                assert!(
                    grew <= w,
                    "{what} over {base_count} grants: the {file} file grew {grew} bytes, weight {w}"
                );
                // Not so loose that it would refuse grants long before the files are full.
                assert!(
                    w <= 8 * grew.max(1024),
                    "{what} over {base_count} grants: weight {w} for {grew} bytes in {file}"
                );
            }
        }
    }
}
