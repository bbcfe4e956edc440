//! Unit tests of the decision over snapshots built with `build_snapshot`.

use super::*;
use crate::cinfo::{Command, Invocation};
use jit_core::policy::classify::CLASS_ACCOUNT_CHANGE;
use jit_core::snapshot::build_snapshot;
use jit_core::types::{GateGrant, GateLists, GroupEntry, SnapshotData, GROUP_KIND_JIT};

const NOW: i64 = 1_000;
const JIT_SUDO_GID: u32 = 79_001;
const JIT_USERS_GID: u32 = 79_002;

fn grant(id: &str, user: &str, sudo: &[&str], runas: &[&str]) -> GateGrant {
    GateGrant {
        id: id.into(),
        user: user.into(),
        uid: 70_001,
        not_before: 500,
        not_after: 2_000,
        lists: GateLists {
            sudo: sudo.iter().map(|s| s.to_string()).collect(),
            runas: runas.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
        .boxed(),
        ..Default::default()
    }
}

fn data(grants: Vec<GateGrant>, managed: &[&str]) -> Vec<u8> {
    build_snapshot(&snapshot_data(grants, managed)).unwrap()
}

/// `grants` and `managed` with an empty `jit-sudo` group.
fn snapshot_data(grants: Vec<GateGrant>, managed: &[&str]) -> SnapshotData {
    SnapshotData {
        generated_at: NOW,
        accounts: vec![],
        groups: vec![GroupEntry {
            name: "jit-sudo".into(),
            gid: JIT_SUDO_GID,
            kind: GROUP_KIND_JIT,
            not_before: i64::MIN,
            not_after: i64::MAX,
            members: vec![],
        }],
        grants,
        managed: managed.iter().map(|s| s.to_string()).collect(),
        uid_range: None,
    }
}

fn inv(user: &str, uid: u32) -> Invocation {
    Invocation {
        user: user.into(),
        uid,
        groups: vec![uid, JIT_SUDO_GID],
        ..Default::default()
    }
}

fn cmd(path: &str, args: &[&str]) -> Command {
    Command {
        command: path.into(),
        argv: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn run(img: Option<&[u8]>, inv: &Invocation, c: &Command) -> Decision {
    let snap = img.map(|d| Snapshot::parse(d).unwrap());
    decide(&Input {
        inv,
        cmd: Ok(c),
        alt_command: None,
        snapshot: snap.as_ref().map(|s| s as &dyn Gates),
        broken: None,
        jit_by_ids: false,
        now: NOW,
    })
}

fn alice() -> Invocation {
    inv("alice", 70_001)
}

fn narrow() -> Vec<u8> {
    data(
        vec![grant(
            "g-1",
            "alice",
            &["/usr/bin/systemctl restart nginx", "/usr/bin/id"],
            &[],
        )],
        &[],
    )
}

#[track_caller]
fn denied(d: &Decision, needle: &str) {
    assert_eq!(d.verdict, Verdict::Deny, "{d:?}");
    assert!(d.jit);
    assert!(d.reason.starts_with("jit: "), "{}", d.reason);
    assert!(d.reason.contains(needle), "{} lacks {needle}", d.reason);
    assert!(!d.reason.contains('\n'));
}

#[test]
fn allowed_command_and_exact_args() {
    let img = narrow();
    let d = run(
        Some(&img),
        &alice(),
        &cmd("/usr/bin/systemctl", &["restart", "nginx"]),
    );
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.grant.as_deref(), Some("g-1"));
    assert_eq!(
        run(Some(&img), &alice(), &cmd("/usr/bin/id", &["-u"])).verdict,
        Verdict::Allow
    );
    let d = run(
        Some(&img),
        &alice(),
        &cmd("/usr/bin/systemctl", &["stop", "nginx"]),
    );
    denied(&d, "outside grant g-1");
}

#[test]
fn other_command_refused() {
    let d = run(
        Some(&narrow()),
        &alice(),
        &cmd("/usr/bin/apt", &["install", "x"]),
    );
    denied(&d, "/usr/bin/apt is outside grant g-1");
    assert_eq!(d.grant.as_deref(), Some("g-1"));
}

#[test]
fn merged_usr_alias() {
    let img = narrow();
    let snap = Snapshot::parse(&img).unwrap();
    let a = alice();
    let c = cmd("/bin/id", &[]);
    let d = decide(&Input {
        inv: &a,
        cmd: Ok(&c),
        alt_command: Some("/usr/bin/id"),
        snapshot: Some(&snap as &dyn Gates),
        broken: None,
        jit_by_ids: false,
        now: NOW,
    });
    assert_eq!(d.verdict, Verdict::Allow);
}

#[test]
fn runas_rules() {
    let img = data(vec![grant("g-2", "alice", &["ALL"], &["www-data"])], &[]);
    let mut i = alice();
    i.runas_user = Some("www-data".into());
    let mut c = cmd("/usr/bin/id", &[]);
    c.runas_uid = 33;
    assert_eq!(run(Some(&img), &i, &c).verdict, Verdict::Allow);
    // -u root when only www-data is granted (also the default target).
    let mut c0 = cmd("/usr/bin/id", &[]);
    c0.runas_uid = 0;
    denied(&run(Some(&img), &alice(), &c0), "outside grant g-2");
    let mut r = alice();
    r.runas_user = Some("root".into());
    denied(&run(Some(&img), &r, &c0), "root");
    // Default grant run-as is root only.
    let img = narrow();
    let mut c = cmd("/usr/bin/id", &[]);
    c.runas_uid = 33;
    denied(&run(Some(&img), &i, &c), "www-data");
    // #-1 style targets.
    for t in ["#-1", "#4294967295", "#0"] {
        let mut i = alice();
        i.runas_user = Some(t.into());
        denied(
            &run(Some(&img), &i, &cmd("/usr/bin/id", &[])),
            "outside grant g-1",
        );
    }
    // -g without a group entry.
    let mut g = alice();
    g.runas_group = Some("shadow".into());
    let mut c = cmd("/usr/bin/id", &[]);
    c.runas_gid = Some(42);
    denied(&run(Some(&img), &g, &c), "outside grant g-1");
}

#[test]
fn shell_edit_chroot_host() {
    let img = narrow();
    let mut s = alice();
    s.shell = true;
    denied(&run(Some(&img), &s, &cmd("/bin/bash", &[])), "shell");
    let mut e = alice();
    e.edit = true;
    denied(&run(Some(&img), &e, &cmd("/usr/bin/id", &[])), "sudoedit");
    let mut r = alice();
    r.chroot = Some("/tmp/root".into());
    denied(&run(Some(&img), &r, &cmd("/usr/bin/id", &[])), "chroot");
    let mut c = cmd("/usr/bin/id", &[]);
    c.chroot = Some("/tmp/root".into());
    denied(&run(Some(&img), &alice(), &c), "chroot");
    let mut h = alice();
    h.remote_host = Some("otherhost".into());
    denied(&run(Some(&img), &h, &cmd("/usr/bin/id", &[])), "--host");
    // Under ALL, a shell is fine, but chroot still is not.
    let all = data(vec![grant("g-3", "alice", &["ALL"], &[])], &[]);
    assert_eq!(
        run(Some(&all), &s, &cmd("/bin/bash", &[])).verdict,
        Verdict::Allow
    );
    denied(&run(Some(&all), &r, &cmd("/usr/bin/id", &[])), "chroot");
}

#[test]
fn expired_not_yet_and_armed() {
    let mut g = grant("g-4", "alice", &["ALL"], &[]);
    g.not_after = NOW;
    denied(
        &run(
            Some(&data(vec![g], &[])),
            &alice(),
            &cmd("/usr/bin/id", &[]),
        ),
        "g-4 has expired",
    );
    let mut g = grant("g-5", "alice", &["ALL"], &[]);
    g.not_before = NOW + 1;
    denied(
        &run(
            Some(&data(vec![g], &[])),
            &alice(),
            &cmd("/usr/bin/id", &[]),
        ),
        "not valid yet",
    );
    let mut g = grant("g-6", "alice", &["ALL"], &[]);
    g.flags = GATE_ARMED;
    denied(
        &run(
            Some(&data(vec![g], &[])),
            &alice(),
            &cmd("/usr/bin/id", &[]),
        ),
        "activate",
    );
    // Only the jit-sudo group left (no gate record at all): still a jit user, refused.
    denied(
        &run(Some(&data(vec![], &[])), &alice(), &cmd("/usr/bin/id", &[])),
        "no live grant",
    );
}

#[test]
fn managed_needs_enable() {
    let mut admin = inv("admin", 1000);
    admin.groups = vec![1000, 27];
    let img = data(vec![], &["admin"]);
    denied(
        &run(Some(&img), &admin, &cmd("/usr/bin/id", &[])),
        "--enable",
    );
    let mut en = grant("g-7", "admin", &[], &[]);
    en.uid = 0;
    en.flags = GATE_ENABLE;
    let img = data(vec![en.clone()], &["admin"]);
    let d = run(Some(&img), &admin, &cmd("/usr/bin/id", &[]));
    // Approved under the enabling grant (named in the report jitd must confirm).
    assert_eq!(
        (d.verdict, d.jit, d.grant.as_deref()),
        (Verdict::Allow, true, Some("g-7"))
    );
    en.flags |= GATE_ARMED;
    let img = data(vec![en], &["admin"]);
    denied(
        &run(Some(&img), &admin, &cmd("/usr/bin/id", &[])),
        "--enable",
    );
}

#[test]
fn non_jit_and_root_approved() {
    let img = narrow();
    let mut bob = inv("bob", 1001);
    bob.groups = vec![1001, 27];
    let d = run(Some(&img), &bob, &cmd("/usr/bin/apt", &[]));
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(!d.jit);
    // No snapshot: a non-jit user is approved, root always.
    assert_eq!(
        run(None, &bob, &cmd("/usr/bin/apt", &[])).verdict,
        Verdict::Allow
    );
    let root = inv("root", 0);
    assert_eq!(
        run(None, &root, &cmd("/usr/bin/apt", &[])).verdict,
        Verdict::Allow
    );
    let snap = Snapshot::parse(&img).unwrap();
    let c = cmd("/usr/bin/apt", &[]);
    let d = decide(&Input {
        inv: &root,
        cmd: Ok(&c),
        alt_command: None,
        snapshot: Some(&snap as &dyn Gates),
        broken: Some("bad option"),
        jit_by_ids: true,
        now: NOW,
    });
    assert_eq!(d.verdict, Verdict::Allow);
}

#[test]
fn no_snapshot_broken_or_bad_info_refuses_jit() {
    let a = alice();
    let c = cmd("/usr/bin/id", &[]);
    let base = |snapshot, broken, jit_by_ids| Input {
        inv: &a,
        cmd: Ok(&c),
        alt_command: None,
        snapshot,
        broken,
        jit_by_ids,
        now: NOW,
    };
    // Snapshot gone: known by ids only.
    denied(
        &decide(&base(None, None, true)),
        "no trusted grant snapshot",
    );
    let img = narrow();
    let snap = Snapshot::parse(&img).unwrap();
    denied(
        &decide(&base(Some(&snap), Some("unknown plugin option x"), false)),
        "not usable",
    );
    let e = crate::cinfo::InfoError::TooManyEntries;
    let mut i = base(Some(&snap), None, false);
    i.cmd = Err(&e);
    denied(&decide(&i), "too many entries");
}

#[test]
fn revoke_on_class_hit() {
    let mut g = grant("g-8", "alice", &["ALL"], &[]);
    g.revoke_on = CLASS_ACCOUNT_CHANGE;
    let img = data(vec![g], &[]);
    let d = run(Some(&img), &alice(), &cmd("/usr/sbin/useradd", &["eve"]));
    denied(&d, "ends grant g-8");
    assert_ne!(d.classes & CLASS_ACCOUNT_CHANGE, 0);
    assert_eq!(
        run(Some(&img), &alice(), &cmd("/usr/bin/id", &[])).verdict,
        Verdict::Allow
    );
    // Outside a narrow scope and in the class: the line says the grant ends (jitd revokes it
    // on the report), not only that the command is outside.
    let mut g = grant("g-9", "alice", &["/usr/bin/id"], &[]);
    g.revoke_on = CLASS_ACCOUNT_CHANGE;
    let img = data(vec![g], &[]);
    let d = run(Some(&img), &alice(), &cmd("/usr/sbin/useradd", &["eve"]));
    denied(
        &d,
        "/usr/sbin/useradd is in class account-change, which ends grant g-9",
    );
    assert_eq!(d.grant.as_deref(), Some("g-9"));
    let d = run(Some(&img), &alice(), &cmd("/usr/bin/whoami", &[]));
    denied(&d, "/usr/bin/whoami is outside grant g-9");
}

#[test]
fn mfa_sudo_needs_step_up() {
    let mut g = grant("g-9", "alice", &["/usr/bin/id"], &[]);
    g.flags = GATE_MFA_SUDO;
    let img = data(vec![g.clone()], &[]);
    let d = run(Some(&img), &alice(), &cmd("/usr/bin/id", &[]));
    assert_eq!(d.verdict, Verdict::StepUp, "{d:?}");
    assert!(d.jit);
    assert_eq!(d.grant.as_deref(), Some("g-9"));
    assert!(d.reason.is_empty());
    // Outside the scope: refused outright, no code asked.
    denied(
        &run(Some(&img), &alice(), &cmd("/usr/bin/whoami", &[])),
        "outside grant g-9",
    );
    // A grant without --mfa-sudo that also allows the command approves at once.
    let plain = grant("g-10", "alice", &["ALL"], &[]);
    let d = run(
        Some(&data(vec![g.clone(), plain], &[])),
        &alice(),
        &cmd("/usr/bin/id", &[]),
    );
    assert_eq!(
        (d.verdict, d.grant.as_deref()),
        (Verdict::Allow, Some("g-10"))
    );
    // A revoke-on hit under an --mfa-sudo grant is refused without a step-up.
    let mut rev = grant("g-11", "alice", &["ALL"], &[]);
    rev.flags = GATE_MFA_SUDO;
    rev.revoke_on = CLASS_ACCOUNT_CHANGE;
    denied(
        &run(
            Some(&data(vec![rev], &[])),
            &alice(),
            &cmd("/usr/sbin/useradd", &["eve"]),
        ),
        "ends grant g-11",
    );
    // Armed and expired --mfa-sudo grants are refused as before.
    let mut armed = g.clone();
    armed.flags |= GATE_ARMED;
    denied(
        &run(
            Some(&data(vec![armed], &[])),
            &alice(),
            &cmd("/usr/bin/id", &[]),
        ),
        "activate",
    );
    let mut old = g;
    old.not_after = NOW;
    denied(
        &run(
            Some(&data(vec![old], &[])),
            &alice(),
            &cmd("/usr/bin/id", &[]),
        ),
        "has expired",
    );
}

#[test]
fn after_step_up_only_turns_step_up_into_allow() {
    let mut g = grant("g-9", "alice", &["ALL"], &[]);
    g.flags = GATE_MFA_SUDO;
    let img = data(vec![g], &[]);
    let step = run(Some(&img), &alice(), &cmd("/usr/bin/id", &[]));
    let ok = step.clone().after_step_up(Ok(()));
    assert_eq!(
        (ok.verdict, ok.grant.as_deref()),
        (Verdict::Allow, Some("g-9"))
    );
    let no = step.after_step_up(Err("jit: verification code refused for grant g-9: x".into()));
    denied(&no, "verification code refused for grant g-9");
    assert_eq!(no.grant.as_deref(), Some("g-9"));
    // A denial stays a denial whatever the step-up said; an approval stays an approval.
    let deny = run(Some(&narrow()), &alice(), &cmd("/usr/bin/apt", &[]));
    assert_eq!(deny.clone().after_step_up(Ok(())), deny);
    let allow = run(Some(&narrow()), &alice(), &cmd("/usr/bin/id", &[]));
    assert_eq!(allow.clone().after_step_up(Err("x".into())), allow);
}

#[test]
fn grant_for_other_uid_ignored() {
    let mut g = grant("g-10", "alice", &["ALL"], &[]);
    g.uid = 70_002;
    denied(
        &run(
            Some(&data(vec![g], &[])),
            &alice(),
            &cmd("/usr/bin/id", &[]),
        ),
        "no live grant",
    );
}

#[test]
fn huge_argv_is_fast_and_refused_outside_scope() {
    let args: Vec<String> = (0..10_000).map(|i| format!("arg{i}")).collect();
    let big = "x".repeat(1 << 20);
    let mut c = cmd("/usr/bin/echo", &[]);
    c.argv = args;
    c.argv.push(big);
    let t = std::time::Instant::now();
    let d = run(Some(&narrow()), &alice(), &c);
    denied(&d, "outside grant g-1");
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    let all = data(vec![grant("g-3", "alice", &["ALL"], &[])], &[]);
    assert_eq!(run(Some(&all), &alice(), &c).verdict, Verdict::Allow);
}

#[test]
fn ids_heuristic() {
    let local = |_| false;
    assert!(looks_jit_by_ids(70_001, &[], local, local));
    assert!(!looks_jit_by_ids(70_001, &[], |_| true, local));
    assert!(looks_jit_by_ids(1000, &[1000, 79_001], local, local));
    assert!(!looks_jit_by_ids(1000, &[1000, 27], local, local));
    assert!(!looks_jit_by_ids(0, &[0], local, local));
}

/// jitd configured with another uid_range: the ids in that range are jit, 70000-79999 are not.
#[test]
fn ids_heuristic_follows_the_configured_range() {
    let local = |_| false;
    let range = (50_000, 50_999);
    assert!(looks_jit_in_range(range, 50_001, &[], local, local));
    assert!(looks_jit_in_range(
        range,
        1000,
        &[1000, 50_999],
        local,
        local
    ));
    assert!(!looks_jit_in_range(range, 70_001, &[70_001], local, local));
    assert!(!looks_jit_in_range(range, 50_001, &[], |_| true, local));
}

#[test]
fn verdict_discriminants_are_distant() {
    let v = [Verdict::Allow, Verdict::Deny, Verdict::StepUp];
    for (i, a) in v.iter().enumerate() {
        for b in &v[i + 1..] {
            let diff = (*a as u32 ^ *b as u32).count_ones();
            assert!(diff >= 8, "{a:?} vs {b:?}: {diff} bits");
        }
    }
}

#[test]
fn setting_the_environment_needs_all() {
    // `sudo LD_PRELOAD=/x.so /usr/bin/id`: the sudoers rule (ALL implies SETENV) lets sudo
    // hand LD_PRELOAD to the command, which would make the narrow grant a root shell.
    let mut e = alice();
    e.sets_env = true;
    let d = run(Some(&narrow()), &e, &cmd("/usr/bin/id", &[]));
    denied(&d, "environment");
    denied(&d, "needs an ALL grant (grant g-1)");
    assert_eq!(d.grant.as_deref(), Some("g-1"));
    // Under ALL it gives nothing more than ALL already does.
    let all = data(vec![grant("g-3", "alice", &["ALL"], &[])], &[]);
    assert_eq!(
        run(Some(&all), &e, &cmd("/usr/bin/id", &[])).verdict,
        Verdict::Allow
    );
    // Before any step-up: no code is asked for a request that is refused anyway.
    let mut m = grant("g-9", "alice", &["/usr/bin/id"], &[]);
    m.flags = GATE_MFA_SUDO;
    denied(
        &run(Some(&data(vec![m], &[])), &e, &cmd("/usr/bin/id", &[])),
        "environment",
    );
}

/// A snapshot whose jit groups carry the names an operator chose in jitd's `[groups]`.
fn renamed(grants: Vec<GateGrant>, managed: &[&str], mfa_member: Option<&str>) -> Vec<u8> {
    let group = |name: &str, gid, members| GroupEntry {
        name: name.into(),
        gid,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members,
    };
    let mut groups = vec![group("ops-sudo", JIT_SUDO_GID, vec![])];
    if let Some(u) = mfa_member {
        groups.push(group(
            "ops-mfa",
            JIT_SUDO_GID - 1,
            vec![jit_core::types::Member {
                name: u.into(),
                grant_id: "g-en".into(),
                not_before: 500,
                not_after: 2_000,
            }],
        ));
    }
    build_snapshot(&SnapshotData {
        generated_at: NOW,
        accounts: vec![],
        groups,
        grants,
        managed: managed.iter().map(|s| s.to_string()).collect(),
        uid_range: None,
    })
    .unwrap()
}

#[test]
fn kept_jit_sudo_gid_under_another_name() {
    // jitd.toml `[groups] sudo = "ops-sudo"`: bob's sudo grant has ended (gone from the
    // snapshot) but his session kept the group's gid, which the sudoers drop-in still honours
    // while anyone else is a live member. He must not be taken for a local user.
    let mut bob = inv("bob", 1001);
    bob.groups = vec![1001, JIT_SUDO_GID];
    let d = run(
        Some(&renamed(vec![], &[], None)),
        &bob,
        &cmd("/usr/bin/id", &[]),
    );
    denied(&d, "no live grant with a sudo scope");
    // A managed admin re-enabled (with --mfa: a live member of the renamed jit-mfa) whose
    // right comes from the local sudoers is still approved under the enabling grant...
    let mut admin = inv("admin", 1000);
    admin.groups = vec![1000, 27, JIT_SUDO_GID - 1];
    let mut en = grant("g-en", "admin", &[], &[]);
    en.uid = 0;
    en.flags = GATE_ENABLE;
    let img = renamed(vec![en], &["admin"], Some("admin"));
    let d = run(Some(&img), &admin, &cmd("/usr/bin/id", &[]));
    assert_eq!(
        (d.verdict, d.jit, d.grant.as_deref()),
        (Verdict::Allow, true, Some("g-en"))
    );
    // ...but not when its session kept the renamed jit-sudo gid of an ended sudo grant.
    admin.groups.push(JIT_SUDO_GID);
    denied(
        &run(Some(&img), &admin, &cmd("/usr/bin/id", &[])),
        "no live grant with a sudo scope",
    );
    // A local user holding no jit gid is still left to sudoers.
    let mut carol = inv("carol", 1002);
    carol.groups = vec![1002, 27];
    let d = run(
        Some(&renamed(vec![], &[], None)),
        &carol,
        &cmd("/usr/bin/id", &[]),
    );
    assert_eq!((d.verdict, d.jit), (Verdict::Allow, false));
}

/// Without a trusted gates file, the public snapshot (no gate records) still marks a holder of
/// jit-sudo or an ephemeral account as jit, whatever uid_range jitd uses (the id heuristic knows
/// only the default one), and leaves other local users alone.
#[test]
fn public_snapshot_marks_jit_users_outside_the_default_range() {
    const GID: u32 = 4_000_998;
    let public = build_snapshot(&SnapshotData {
        generated_at: NOW,
        accounts: vec![jit_core::types::Account {
            name: "alice".into(),
            uid: 4_000_001,
            gid: 4_000_001,
            gecos: String::new().into(),
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
            grant_id: "g-000000000001".into(),
            not_before: 500,
            not_after: 2_000,
            flags: 0,
            ssh_keys: vec![],
        }],
        groups: vec![GroupEntry {
            name: "jit-sudo".into(),
            gid: GID,
            kind: GROUP_KIND_JIT,
            not_before: i64::MIN,
            not_after: i64::MAX,
            members: vec![],
        }],
        ..Default::default()
    })
    .unwrap();
    let s = Snapshot::parse(&public).unwrap();
    let who = |user: &str, uid: u32, groups: Vec<u32>| Invocation {
        user: user.into(),
        uid,
        groups,
        ..Default::default()
    };
    assert!(jit_in_public_snapshot(
        &s,
        &who("carol", 1001, vec![1001, GID]),
        NOW
    ));
    assert!(jit_in_public_snapshot(
        &s,
        &who("alice", 4_000_001, vec![4_000_001]),
        NOW
    ));
    assert!(!jit_in_public_snapshot(
        &s,
        &who("dave", 1002, vec![1002, 27]),
        NOW
    ));
    assert!(!looks_jit_by_ids(1001, &[1001, GID], |_| true, |_| false));
}

/// The shards of an indexed gates file (format 1.6) of the invoking user and of the groups
/// the process holds decide exactly as the whole file does: whether the user is jit's business
/// at all, and then the whole decision (verdict, reason, grant, classes), for users with sudo
/// grants of every kind (narrow, ALL, run-as, `--mfa-sudo`, armed, expired, not yet valid,
/// revoke-on), without them, managed with and without an enabling grant, holding jit-sudo as a
/// member or without being one, and local users with nothing; for commands inside and outside
/// the scopes, as root and as another run-as user.
#[test]
fn the_gates_shards_decide_exactly_as_the_whole_file() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // the trust rules need a root-owned file
    }
    let with = |mut g: GateGrant, f: &dyn Fn(&mut GateGrant)| {
        f(&mut g);
        g
    };
    let mut sd = snapshot_data(
        vec![
            grant("g-a000000001", "alice", &["/usr/bin/id"], &[]),
            grant("g-b000000001", "bob", &[], &[]),
            grant("g-c000000001", "carol", &["ALL"], &[]),
            grant("g-d000000001", "erin", &["ALL"], &["www-data"]),
            with(grant("g-e000000001", "frank", &["ALL"], &[]), &|g| {
                g.flags |= GATE_MFA_SUDO;
            }),
            with(grant("g-f000000001", "gina", &["ALL"], &[]), &|g| {
                g.flags |= GATE_ARMED;
            }),
            with(grant("g-f000000002", "hank", &["ALL"], &[]), &|g| {
                g.not_after = NOW - 1;
            }),
            with(grant("g-f000000003", "ivy", &["ALL"], &[]), &|g| {
                g.not_before = NOW + 100;
            }),
            with(grant("g-f000000004", "jack", &["ALL"], &[]), &|g| {
                g.revoke_on = CLASS_ACCOUNT_CHANGE;
            }),
            with(grant("g-f000000005", "ops", &[], &[]), &|g| {
                g.flags |= GATE_ENABLE;
            }),
        ],
        &["admin", "ops"],
    );
    // carol is a live member of jit-sudo; the others are not.
    sd.groups[0].members.push(jit_core::types::Member {
        name: "carol".into(),
        grant_id: "g-c000000001".into(),
        not_before: 500,
        not_after: 2_000,
    });
    // jit-users (kind JIT), whose members are every account's person: alice, erin and bob here.
    let member = |n: &str, g: &str| jit_core::types::Member {
        name: n.into(),
        grant_id: g.into(),
        not_before: 500,
        not_after: 2_000,
    };
    sd.groups.push(GroupEntry {
        name: "jit-users".into(),
        gid: JIT_USERS_GID,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![
            member("alice", "g-a000000001"),
            member("bob", "g-b000000001"),
            member("erin", "g-d000000001"),
        ],
    });
    sd.uid_range = Some((70_000, 79_999));
    sd.grants
        .sort_by(|a, b| (&a.user, &a.id).cmp(&(&b.user, &b.id)));
    let img = jit_core::snapshot::build_snapshot_with(
        &sd,
        &jit_core::snapshot::BuildOptions {
            index: true,
            gates_index: true,
            serial: 9,
            ..Default::default()
        },
    )
    .unwrap();
    // The delta of two grants added since: lena with a sudo scope, and dave with an account
    // (a new member of jit-users; the older members stay members).
    let mut added = snapshot_data(
        vec![
            grant("g-f000000006", "lena", &["/usr/bin/id"], &[]),
            grant("g-f000000007", "dave", &[], &[]),
        ],
        &[],
    );
    added.groups = vec![GroupEntry {
        members: vec![member("dave", "g-f000000007")],
        ..sd.groups[1].clone()
    }];
    let delta = jit_core::snapshot::build_snapshot_with(
        &added,
        &jit_core::snapshot::BuildOptions {
            delta_of: Some([9, 0, 0, 0]),
            ..Default::default()
        },
    )
    .unwrap();
    let dir = std::env::temp_dir();
    let path = dir.join(format!("sudo-jit-gates-{}", std::process::id()));
    let delta_path = dir.join(format!("sudo-jit-gates-{}.delta", std::process::id()));
    std::fs::write(&path, &img).unwrap();
    std::fs::write(&delta_path, &delta).unwrap();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let cd = std::ffi::CString::new(delta_path.as_os_str().as_encoded_bytes()).unwrap();
    let parsed_delta = Snapshot::parse(&delta).unwrap();
    let base = Snapshot::parse(&img).unwrap();
    let (mut jit_seen, mut decided) = (0, 0);
    let mut verdicts = std::collections::BTreeMap::new();
    let commands = [
        (cmd("/usr/bin/id", &[]), None),
        (cmd("/usr/bin/apt", &["install", "x"]), None),
        (cmd("/usr/sbin/useradd", &["x"]), None),
        (cmd("/usr/bin/id", &[]), Some("www-data")),
    ];
    for with_delta in [false, true] {
        let (whole, dpath) = if with_delta {
            (base.over(Some(&parsed_delta)), cd.as_c_str())
        } else {
            (base, c"/nonexistent")
        };
        let users = [
            "alice", "bob", "carol", "erin", "frank", "gina", "hank", "ivy", "jack", "ops",
            "admin", "dave", "lena",
        ];
        for user in users {
            for groups in [
                vec![1001, 27],
                vec![1001, JIT_SUDO_GID],
                vec![],
                vec![1001, JIT_USERS_GID],
            ] {
                let mut i = inv(user, 70_001);
                i.groups = groups;
                let part =
                    jit_core::snapshot::keyed::GatesPart::read(&c, dpath, user, &i.groups).unwrap();
                let by_parts = part
                    .answer(|own, held| is_jit(&Parts { own, held }, &i, NOW))
                    .unwrap();
                let want = is_jit(&whole, &i, NOW);
                assert_eq!(by_parts, want, "{user} {:?}", i.groups);
                jit_seen += usize::from(want);
                for (command, runas) in &commands {
                    i.runas_user = runas.map(str::to_string);
                    let input = |gates: &dyn Gates| {
                        decide(&Input {
                            inv: &i,
                            cmd: Ok(command),
                            alt_command: None,
                            snapshot: Some(gates),
                            broken: None,
                            jit_by_ids: false,
                            now: NOW,
                        })
                    };
                    let by_parts = part
                        .answer(|own, held| input(&Parts { own, held }))
                        .unwrap();
                    let want = input(&whole);
                    assert_eq!(
                        by_parts, want,
                        "{user} {:?} {} as {runas:?}",
                        i.groups, command.command
                    );
                    decided += usize::from(want.jit);
                    *verdicts.entry(format!("{:?}", want.verdict)).or_insert(0) += 1;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&delta_path);
    // Without the delta, always jit: the ten with a sudo scope or managed (alice, carol, erin,
    // frank, gina, hank, ivy, jack; ops and admin managed); bob, dave and lena while holding
    // jit-sudo without being its member; holding jit-users without being its member: dave,
    // lena. With it, lena has a scope (always), and dave is a member of jit-users (through
    // the delta), so only bob and dave holding jit-sudo are added.
    assert_eq!(jit_seen, (10 * 4 + 3 + 2) + (11 * 4 + 2));
    assert_eq!(decided, jit_seen * commands.len());
    // Every kind of answer was compared, not only refusals.
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
}

/// A jit group's membership is the union of the base's and the delta's: a delta that adds a
/// member to `jit-users` (a new grant) must not make an old member look like one who kept the
/// gid without being a member. Before, the delta's own record of the group (new members only)
/// was looked at alone: every old member holding the gid was taken for jit, and one whose sudo
/// right comes from sudoers (an account grant plus a local group) was refused.
#[test]
fn a_delta_adding_members_to_a_jit_group_leaves_the_old_members_members() {
    let jit_users = |members: &[(&str, &str)]| GroupEntry {
        name: "jit-users".into(),
        gid: JIT_USERS_GID,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: members
            .iter()
            .map(|(n, g)| jit_core::types::Member {
                name: (*n).into(),
                grant_id: (*g).into(),
                not_before: 500,
                not_after: 2_000,
            })
            .collect(),
    };
    let mut base = snapshot_data(vec![grant("g-a000000001", "alice", &[], &[])], &[]);
    base.groups.push(jit_users(&[("alice", "g-a000000001")]));
    let mut delta = snapshot_data(vec![grant("g-b000000001", "bob", &[], &[])], &[]);
    delta.groups = vec![jit_users(&[("bob", "g-b000000001")])];
    let opts = |delta_of| jit_core::snapshot::BuildOptions {
        serial: 5,
        delta_of,
        ..Default::default()
    };
    let b = jit_core::snapshot::build_snapshot_with(&base, &opts(None)).unwrap();
    let d = jit_core::snapshot::build_snapshot_with(&delta, &opts(Some([5, 0, 0, 0]))).unwrap();
    let d = Snapshot::parse(&d).unwrap();
    let whole = Snapshot::parse(&b).unwrap().over(Some(&d));
    let mut a = inv("alice", 70_001);
    a.groups = vec![70_001, JIT_USERS_GID, 27];
    assert!(
        !is_jit(&whole, &a, NOW),
        "alice is a live member of jit-users"
    );
    let mut b = inv("bob", 70_002);
    b.groups = vec![70_002, JIT_USERS_GID];
    assert!(
        !is_jit(&whole, &b, NOW),
        "bob is a live member through the delta"
    );
    // Someone who kept the gid without being a member is still caught.
    let mut c = inv("carol", 70_003);
    c.groups = vec![70_003, JIT_USERS_GID];
    assert!(is_jit(&whole, &c, NOW));
}
