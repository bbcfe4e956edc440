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

#[test]
fn a_held_sweep_delays_no_other_grants_processes_and_each_teardown_follows_its_walk() {
    let env = Env::new("sweephold");
    let d = env.daemon(T0);
    let open = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(AtomicUsize::new(0));
    {
        let (open, walks) = (Arc::clone(&open), Arc::clone(&walks));
        d.set_sweep_walk(Arc::new(move |roots, targets| {
            walks.fetch_add(1, Ordering::SeqCst);
            // Held until let go, or 10 s (a jitd that waited for the walk would show here as
            // a revocation taking 10 s and the assertions below failing, not as a hang).
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while !open.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
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
