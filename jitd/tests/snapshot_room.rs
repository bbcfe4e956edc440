//! The snapshot files never outgrow what the modules read (docs/snapshot-format.md §6.1: a
//! reader refuses a file above 64 MiB, and with it every jit account and gate on the host).
//! Grants are what make them grow, so admission refuses a grant that could take either file
//! past 90 % of that cap: whoever can ask for grants with the largest ssh keys allowed cannot
//! make every other grant on the host stop working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::ffi::CString;

use jit_core::constants::MAX_SNAPSHOT_BYTES;
use jit_core::snapshot::Snapshot;
use jit_proto::message::Payload;
use jit_proto::{ErrorCode, GrantSpec, Request, Response};
use jitd::daemon::Daemon;

mod common;
use common::*;

/// A grant with the most ssh key bytes admission allows: sixteen keys of 16 KiB.
fn heavy(user: &str) -> GrantSpec {
    GrantSpec {
        ssh_keys: (0..16)
            .map(|k| format!("ssh-rsa {} {user}-{k}", "A".repeat(16 * 1024 - 32)))
            .collect(),
        ..spec(user, 3600)
    }
}

fn size(env: &Env, p: &str) -> u64 {
    std::fs::metadata(env.path(p)).unwrap().len()
}

/// The file as a module reads it: trusted and within the readers' cap, or refused.
fn as_a_reader_reads(env: &Env, p: &str) -> Vec<u8> {
    let path = CString::new(env.path(p).into_os_string().into_encoded_bytes()).unwrap();
    jit_core::snapshot::file::read_trusted(&path).unwrap_or_else(|e| panic!("{p}: {e:?}"))
}

fn status(d: &Daemon, now: i64) -> jit_proto::message::Status {
    match d.handle(0, Request::GetStatus, now) {
        Response::Ok {
            payload: Payload::Status(s),
            ..
        } => *s,
        r => panic!("status: {r:?}"),
    }
}

fn revoke(d: &Daemon, id: &str, now: i64) {
    let r = d.handle(
        0,
        Request::RevokeGrant {
            id: id.into(),
            reason: None,
        },
        now,
    );
    assert!(matches!(r, Response::Ok { .. }), "revoke: {r:?}");
}

#[test]
fn grants_that_would_outgrow_what_the_modules_read_are_refused_and_the_rest_keep_working() {
    let env = Env::new("room");
    let d = env.daemon(T0);
    let mut admitted = Vec::new();
    let refusal = loop {
        assert!(admitted.len() < 100, "never refused");
        let user = format!("big{:03}", admitted.len());
        match add(&d, heavy(&user), T0) {
            Ok(g) => admitted.push(g),
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.0, ErrorCode::Refused, "{}", refusal.1);
    assert!(
        refusal
            .1
            .starts_with("no new grants: with this one the public snapshot could reach")
            && refusal.1.contains("of the 64 MiB every jit module reads"),
        "{}",
        refusal.1
    );
    // Each took ~0.8 MB of the public file: refused near 90 % of 64 MiB, not long before.
    assert!(
        (60..80).contains(&admitted.len()),
        "{} grants admitted",
        admitted.len()
    );

    // Whole files (the timer folds the deltas): both within what a reader accepts, which
    // reads them and finds every admitted account and gate.
    d.tick(T0 + 1);
    assert!(!env.path("run/snapshot.delta").exists());
    for f in ["run/snapshot", "run/gates"] {
        let n = size(&env, f);
        assert!(n <= MAX_SNAPSHOT_BYTES * 90 / 100, "{f}: {n} bytes");
    }
    assert!(size(&env, "run/snapshot") > MAX_SNAPSHOT_BYTES * 80 / 100);
    let public = as_a_reader_reads(&env, "run/snapshot");
    let gates = as_a_reader_reads(&env, "run/gates");
    let (public, gates) = (
        Snapshot::parse(&public).unwrap(),
        Snapshot::parse(&gates).unwrap(),
    );
    for g in &admitted {
        let a = public.account_by_name(&g.user, T0 + 1).expect("account");
        assert_eq!(a.ssh_keys().count(), 16, "{}", g.user);
        assert!(gates.grants_for_user(&g.user).any(|r| r.is_live(T0 + 1)));
    }

    // Said once, before the refusals started; each refusal audited as the client saw it.
    let audit = env.audit();
    assert_eq!(audit.matches("\"snapshot.room_low\"").count(), 1, "{audit}");
    assert!(audit.contains("\"grant.rejected\""));
    assert!(!audit.contains("snapshot.over_limit"));
    let s = status(&d, T0 + 1);
    assert_eq!(s.snapshot_limit_bytes, MAX_SNAPSHOT_BYTES);
    assert_eq!(s.snapshot_public_bytes, size(&env, "run/snapshot"));
    assert!(
        s.snapshot_room
            .contains("of the 64 MiB the modules read (public snapshot: ")
            && s.snapshot_room.ends_with("new grants refused from 90 %"),
        "{}",
        s.snapshot_room
    );

    // Ending grants makes room at once (an end writes whole files).
    for g in admitted.iter().take(3) {
        revoke(&d, &g.id, T0 + 2);
    }
    add(&d, heavy("again"), T0 + 2).expect("room after three ends");
}

#[test]
fn ordinary_grants_are_not_held_back_by_the_bound() {
    // Hundreds of ordinary grants are far from the cap: no warning, no refusal.
    let env = Env::new("room-small");
    let d = env.daemon(T0);
    for i in 0..90 {
        let mut s = spec(&format!("eng{i:03}"), 3600);
        s.ssh_keys = vec![format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i:0>43} eng{i}"
        )];
        add(&d, s, T0).unwrap();
    }
    assert!(!env.audit().contains("snapshot.room_low"));
    let s = status(&d, T0);
    assert!(s.snapshot_room.starts_with("0 % "), "{}", s.snapshot_room);
}
