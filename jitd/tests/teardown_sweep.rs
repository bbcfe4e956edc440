//! The set-id sweep never holds anyone's processes. Any local user can fill /tmp with files,
//! and the sweep walks /tmp (up to ten million entries a root, ~3 µs each): walked inside the
//! teardown pass, a long walk kept every other ended grant's processes running until it was
//! done. Here the walk is held open (the real walk runs once it is let go): a second grant's
//! revocation still ends its processes at once, and each teardown finishes after the walk
//! that covers it, with its set-id files stripped before its home is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jit_proto::message::Payload;
use jit_proto::{Grant, Request, Response};
use jitd::daemon::Daemon;

mod common;
use common::*;

/// The tests here end grants of the same uids (every Env has the same range) and their sweeps
/// walk /tmp, where each test's files are: one at a time, or one test's sweep strips the file
/// another planted.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn revoke(d: &Daemon, id: &str, now: i64) -> Grant {
    match d.handle(
        0,
        Request::RevokeGrant {
            id: id.into(),
            reason: Some("test".into()),
        },
        now,
    ) {
        Response::Ok {
            payload: Payload::Grant(g),
            ..
        } => *g,
        r => panic!("{r:?}"),
    }
}

fn torn_down(d: &Daemon, id: &str, now: i64) -> bool {
    match d.handle(0, Request::ShowGrant { id: id.into() }, now) {
        Response::Ok {
            payload: Payload::Grant(g),
            ..
        } => g.torn_down,
        r => panic!("{r:?}"),
    }
}

/// Holds a background job until `open` is set, or 10 s (a jitd that waited for the job would
/// show here as a revocation taking 10 s and the assertions failing, not as a hang).
fn hold(open: &AtomicBool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !open.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_held_sweep_delays_no_other_grants_processes_and_each_teardown_follows_its_walk() {
    let _one = serial();
    let env = Env::new("sweephold");
    let d = env.daemon(T0);
    let open = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(AtomicUsize::new(0));
    {
        let (open, walks) = (Arc::clone(&open), Arc::clone(&walks));
        d.set_sweep_walk(Arc::new(move |roots, targets| {
            walks.fetch_add(1, Ordering::SeqCst);
            hold(&open);
            jitd::sweep::sweep(roots, targets)
        }));
    }
    let alice = add(&d, spec("alice", 600), T0).unwrap();
    let bob = add(&d, spec("bob", 600), T0).unwrap();
    let (ua, ub) = (alice.uid.unwrap(), bob.uid.unwrap());
    // A set-uid file alice leaves where the sweep looks (the test's directory is under /tmp).
    let drop = env.path("drop");
    std::fs::create_dir(&drop).unwrap();
    std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = drop.join("alice-shell");
    std::fs::write(&planted, b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(ua), Some(ua)).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut pa = sleeper(Some(ua));
    let mut pb = sleeper(Some(ub));

    // alice revoked: her processes end; her walk starts and is held, so her teardown waits.
    let r = revoke(&d, &alice.id, T0 + 1);
    assert!(!r.torn_down, "her home and record wait for the walk");
    assert!(
        ended_by_jitd(&mut pa),
        "alice's process ended by the revocation"
    );
    assert_eq!(walks.load(Ordering::SeqCst), 1);
    assert!(
        exists(&env.path("home/alice")),
        "the home waits for the sweep"
    );
    let mode = std::fs::metadata(&planted).unwrap().permissions().mode();
    assert_eq!(mode & 0o6000, 0o4000, "not swept yet");

    // bob revoked while alice's walk is still held: his processes end at once all the same.
    let r = revoke(&d, &bob.id, T0 + 1);
    assert!(!r.torn_down);
    assert!(
        ended_by_jitd(&mut pb),
        "bob's process ended while another grant's walk was running"
    );
    assert_eq!(
        walks.load(Ordering::SeqCst),
        1,
        "bob's sweep waits behind the running walk, not beside it"
    );
    d.tick(T0 + 2);
    assert!(!torn_down(&d, &alice.id, T0 + 2) && !torn_down(&d, &bob.id, T0 + 2));
    assert!(!env.audit().contains("\"grant.teardown\""));

    // The walk let go: both teardowns finish, the file is stripped before alice's home goes.
    open.store(true, Ordering::SeqCst);
    settle(&d, T0 + 2);
    assert!(torn_down(&d, &alice.id, T0 + 2) && torn_down(&d, &bob.id, T0 + 2));
    assert_eq!(walks.load(Ordering::SeqCst), 2, "bob's in a second walk");
    let mode = std::fs::metadata(&planted).unwrap().permissions().mode();
    assert_eq!(mode & 0o6000, 0, "set-uid bit stripped");
    assert!(!exists(&env.path("home/alice")) && !exists(&env.path("home/bob")));
    let audit = env.audit();
    let stripped = audit
        .lines()
        .find(|l| l.contains("\"file.setid_stripped\""))
        .expect("the stripped file is audited");
    assert!(stripped.contains(alice.id.as_str()), "{stripped}");
    for id in [&alice.id, &bob.id] {
        let rec = audit
            .lines()
            .find(|l| l.contains("\"grant.teardown\"") && l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no teardown record for {id}: {audit}"));
        assert!(rec.contains("\"setid_sweep\":{"), "{rec}");
    }
}

/// Waits (at most 30 s) until the daemon is not deleting removed homes.
fn purge_done(d: &Daemon) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while d.home_purge_busy() {
        assert!(std::time::Instant::now() < deadline, "purge still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A grantee can fill their home with millions of files; deleting it inside the teardown pass
/// kept every other grant's processes running meanwhile. The home is moved aside at once and
/// deleted on its own thread (held open here): another revocation meanwhile ends its processes
/// at once, and the home is gone from the home root before its deletion even starts.
#[test]
fn a_held_home_deletion_delays_no_other_grants_processes() {
    let _one = serial();
    let env = Env::new("purgehold");
    let d = env.daemon(T0);
    let open = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    {
        let (open, rounds) = (Arc::clone(&open), Arc::clone(&rounds));
        d.set_home_purge(Arc::new(move |root| {
            rounds.fetch_add(1, Ordering::SeqCst);
            hold(&open);
            jitd::home::purge_retired(root)
        }));
    }
    let alice = add(&d, spec("alice", 600), T0).unwrap();
    let bob = add(&d, spec("bob", 600), T0).unwrap();
    for i in 0..200 {
        std::fs::write(env.path(&format!("home/alice/f{i}")), b"x").unwrap();
    }
    let mut pb = sleeper(bob.uid);
    revoke(&d, &alice.id, T0 + 1);
    settle(&d, T0 + 1);
    assert!(torn_down(&d, &alice.id, T0 + 1));
    assert!(
        !exists(&env.path("home/alice")),
        "gone from the home root at once"
    );
    let aside = env.path(&format!("home/.jit-removing/alice-{}", alice.id));
    assert!(aside.join("f199").exists(), "its deletion is held");
    assert!(rounds.load(Ordering::SeqCst) >= 1);
    // bob revoked while alice's home is being deleted: his process ends at once all the same.
    revoke(&d, &bob.id, T0 + 1);
    assert!(
        ended_by_jitd(&mut pb),
        "bob's process ended while another home was being deleted"
    );
    settle(&d, T0 + 1);
    assert!(torn_down(&d, &bob.id, T0 + 1));
    open.store(true, Ordering::SeqCst);
    purge_done(&d);
    assert!(!aside.exists(), "deleted once let go");
    assert!(!exists(&env.path("home/bob")));
    d.tick(T0 + 2);
    assert!(
        !exists(&env.path("home/.jit-removing")),
        "no trace left under the home root"
    );
    let audit = env.audit();
    let rec = audit
        .lines()
        .find(|l| l.contains("\"grant.teardown\"") && l.contains(alice.id.as_str()))
        .unwrap();
    assert!(rec.contains("\"home\":\"removed\""), "{rec}");
}

/// Homes a stopped jitd left aside (it died before deleting them) are deleted after the next
/// start, at its first teardown pass.
#[test]
fn homes_left_aside_by_a_stopped_jitd_are_deleted_after_start() {
    let _one = serial();
    let env = Env::new("purgestart");
    let aside = env.path("home/.jit-removing/carl-g-000000000001");
    std::fs::create_dir_all(aside.join("deep/er")).unwrap();
    std::fs::write(aside.join("deep/er/f"), b"x").unwrap();
    std::fs::set_permissions(
        env.path("home/.jit-removing"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let d = env.daemon(T0);
    purge_done(&d);
    assert!(!aside.exists());
    d.tick(T0 + 1);
    assert!(!exists(&env.path("home/.jit-removing")));
}
