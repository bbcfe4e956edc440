//! Grant adds reach the modules through the delta files (format 1.4), everything else through
//! whole files; the two never disagree with state, and a delta is never read over a base that
//! ended one of its grants (docs/snapshot-format.md §12, docs/architecture.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use jit_core::snapshot::Snapshot;
use jit_proto::message::Payload;
use jit_proto::{Request, Response};
use jitd::daemon::Daemon;

mod common;
use common::*;

fn raw(env: &Env, p: &str) -> Option<Vec<u8>> {
    std::fs::read(env.path(p)).ok()
}

fn serial(bytes: &[u8]) -> u32 {
    Snapshot::parse(bytes).unwrap().serial()
}

fn revoke(d: &Daemon, id: &str, now: i64) {
    match d.handle(
        0,
        Request::RevokeGrant {
            id: id.into(),
            reason: None,
        },
        now,
    ) {
        Response::Ok {
            payload: Payload::Grant(_),
            ..
        } => {}
        r => panic!("revoke: {r:?}"),
    }
}

/// What the modules see for `user` at `now`, through the files as they read them.
fn sees(env: &Env, user: &str, now: i64) -> (bool, bool, bool) {
    let public = env.public_snapshot();
    let gates = env.snapshot();
    let p = Snapshot::parse(&public).unwrap();
    let g = Snapshot::parse(&gates).unwrap();
    let seen = (
        p.account_by_name(user, now).is_some(),
        p.group_by_name("jit-users", now)
            .is_some_and(|j| j.live_members(now).any(|m| m == user)),
        g.grants_for_user(user).any(|r| r.is_live(now)),
    );
    seen
}

#[test]
fn an_add_writes_only_the_deltas_and_they_name_the_base() {
    let env = Env::new("delta-add");
    let d = env.daemon(T0);
    add(&d, spec("alice", 600), T0).unwrap();
    // An end writes whole files: alice is then in the base.
    let zed = add(&d, spec("zed", 600), T0).unwrap();
    revoke(&d, &zed.id, T0 + 1);
    assert!(raw(&env, "run/snapshot.delta").is_none());
    let (base_pub, base_gates) = (raw(&env, "run/snapshot"), raw(&env, "run/gates"));
    let s = serial(base_pub.as_deref().unwrap());
    assert_ne!(s, 0, "a base states its serial");
    assert_eq!(s, serial(base_gates.as_deref().unwrap()));

    let bob = add(&d, spec("bob", 600), T0 + 2).unwrap();
    assert_eq!(
        raw(&env, "run/snapshot"),
        base_pub,
        "the base is not rewritten"
    );
    assert_eq!(raw(&env, "run/gates"), base_gates);
    let pd = raw(&env, "run/snapshot.delta").expect("public delta");
    let gd = raw(&env, "run/gates.delta").expect("gates delta");
    let (pd, gd) = (Snapshot::parse(&pd).unwrap(), Snapshot::parse(&gd).unwrap());
    assert!(pd.is_delta() && pd.applies_over(s) && gd.applies_over(s));
    assert!(pd.account_by_name("bob", T0 + 2).is_some());
    assert!(
        pd.account_by_name("alice", T0 + 2).is_none(),
        "only what was added"
    );
    assert_eq!(pd.grant_count(), 0, "no gate record in the public delta");
    assert!(gd.grants_for_user("bob").any(|g| g.id() == bob.id));
    assert_eq!(sees(&env, "bob", T0 + 2), (true, true, true));
    assert_eq!(sees(&env, "alice", T0 + 2), (true, true, true));
    let mode = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(env.path(p)).unwrap().mode() & 0o7777
    };
    assert_eq!(mode("run/snapshot.delta"), 0o644);
    assert_eq!(mode("run/gates.delta"), 0o600);
}

#[test]
fn an_end_writes_whole_files_and_a_stale_delta_is_never_read_over_them() {
    let env = Env::new("delta-end");
    let d = env.daemon(T0);
    let bob = add(&d, spec("bob", 600), T0).unwrap();
    let dora = add(&d, spec("dora", 600), T0).unwrap();
    let old_pd = raw(&env, "run/snapshot.delta").unwrap();
    let old_gd = raw(&env, "run/gates.delta").unwrap();
    // bob is only in the deltas; his revocation writes whole files without him, with dora.
    revoke(&d, &bob.id, T0 + 1);
    assert_eq!(sees(&env, "bob", T0 + 1), (false, false, false));
    assert_eq!(sees(&env, "dora", T0 + 1), (true, true, true));
    assert!(
        raw(&env, "run/snapshot.delta").is_none() && raw(&env, "run/gates.delta").is_none(),
        "nothing outside the new base: the deltas are removed"
    );
    let base = Snapshot::parse(&raw(&env, "run/gates").unwrap())
        .unwrap()
        .grants_for_user("dora")
        .any(|g| g.id() == dora.id);
    assert!(base, "dora moved into the base");
    // Someone puts the old deltas (bob's grant) back: they name the old base, and are ignored.
    std::fs::write(env.path("run/snapshot.delta"), &old_pd).unwrap();
    std::fs::write(env.path("run/gates.delta"), &old_gd).unwrap();
    assert_eq!(sees(&env, "bob", T0 + 2), (false, false, false));
    for (file, delta) in [("run/gates", &old_gd), ("run/snapshot", &old_pd)] {
        let b = raw(&env, file).unwrap();
        let (b, dd) = (
            Snapshot::parse(&b).unwrap(),
            Snapshot::parse(delta).unwrap(),
        );
        assert!(
            !dd.applies_over(b.serial()),
            "{file}: stale delta names the new base"
        );
    }
}

#[test]
fn a_grown_delta_is_folded_into_whole_files_by_the_timer() {
    let env = Env::new("delta-fold");
    let d = env.daemon(T0);
    let n = 70; // above the soft limit (64)
    for i in 0..n {
        add(&d, spec(&format!("u{i}"), 600), T0).unwrap();
    }
    let pd = raw(&env, "run/snapshot.delta").expect("deltas while adds come");
    assert!(Snapshot::parse(&pd).unwrap().account_count() >= 64);
    for i in 0..n {
        assert_eq!(sees(&env, &format!("u{i}"), T0), (true, true, true), "u{i}");
    }
    d.tick(T0 + 1);
    assert!(
        raw(&env, "run/snapshot.delta").is_none(),
        "the timer wrote whole files and removed the deltas"
    );
    let base_bytes = raw(&env, "run/snapshot").unwrap();
    let base = Snapshot::parse(&base_bytes).unwrap();
    for i in 0..n {
        assert!(
            base.account_by_name(&format!("u{i}"), T0 + 1).is_some(),
            "u{i}"
        );
    }
    // A later add starts a new delta over the new base.
    add(&d, spec("late", 600), T0 + 2).unwrap();
    let pd = Snapshot::parse(&raw(&env, "run/snapshot.delta").unwrap())
        .unwrap()
        .account_count();
    assert_eq!(pd, 1);
    assert!(Snapshot::parse(&raw(&env, "run/snapshot.delta").unwrap())
        .unwrap()
        .applies_over(base.serial()));
}

#[test]
fn a_restarted_jitd_never_reads_its_predecessors_delta() {
    let env = Env::new("delta-restart");
    let d = env.daemon(T0);
    let bob = add(&d, spec("bob", 600), T0).unwrap();
    let old_pd = raw(&env, "run/snapshot.delta").unwrap();
    // bob's grant ends while jitd is down (state says so at the next start).
    revoke(&d, &bob.id, T0 + 1);
    drop(d);
    std::fs::write(env.path("run/snapshot.delta"), &old_pd).unwrap();
    let d = env.daemon(T0 + 2);
    d.tick(T0 + 2);
    assert_eq!(sees(&env, "bob", T0 + 2), (false, false, false));
    let base_bytes = raw(&env, "run/snapshot").unwrap();
    let base = Snapshot::parse(&base_bytes).unwrap();
    assert!(!Snapshot::parse(&old_pd)
        .unwrap()
        .applies_over(base.serial()));
}

#[test]
fn a_delta_removed_by_someone_else_is_repaired_by_the_next_tick() {
    let env = Env::new("delta-repair");
    let d = env.daemon(T0);
    add(&d, spec("bob", 600), T0).unwrap();
    std::fs::remove_file(env.path("run/snapshot.delta")).unwrap();
    assert!(!sees(&env, "bob", T0).0, "hidden while the delta is gone");
    d.tick(T0 + 1);
    assert_eq!(sees(&env, "bob", T0 + 1), (true, true, true));
    let base = raw(&env, "run/snapshot").unwrap();
    assert!(Snapshot::parse(&base)
        .unwrap()
        .account_by_name("bob", T0 + 1)
        .is_some());
    assert!(env.audit().contains("a delta file was removed or changed"));
    // Changed in place (same path, other content): the same.
    add(&d, spec("dora", 600), T0 + 2).unwrap();
    let gd = env.path("run/gates.delta");
    let mut bytes = std::fs::read(&gd).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&gd, &bytes).unwrap();
    d.tick(T0 + 3);
    let gates = raw(&env, "run/gates").unwrap();
    assert!(Snapshot::parse(&gates)
        .unwrap()
        .grants_for_user("dora")
        .next()
        .is_some());
}
