//! The snapshot files never outgrow what the modules read (docs/snapshot-format.md §6.1: a
//! reader refuses a file above 64 MiB, and with it every jit account and gate on the host).
//! Grants are what make them grow, so admission refuses a grant that could take either file
//! past 90 % of its limit: whoever can ask for grants with the widest sudo scopes or largest
//! ssh keys allowed cannot make every other grant on the host stop working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::ffi::CString;

use jit_core::constants::MAX_SNAPSHOT_BYTES;
use jit_core::snapshot::Snapshot;
use jit_proto::message::Payload;
use jit_proto::{ErrorCode, GrantSpec, Request, Response};
use jitd::daemon::Daemon;

mod common;
use common::*;

/// A local user's grant with the widest sudo scope admission allows: 64 entries of 4 KiB. The
/// gate records are in the gates file only (twice: the records and the person's shard), about
/// 0.5 MB a grant, so the gates file reaches its 64 MiB limit after ~115 of them.
fn heavy(n: usize) -> GrantSpec {
    GrantSpec {
        account: false,
        sudo: (0..64)
            .map(|k| format!("/usr/bin/tool{k} {}{n}", "x".repeat(4096 - 40)))
            .collect(),
        ..spec("carol", 3600)
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
    env.install_sudo_conf();
    let d = env.daemon(T0);
    // Someone else's ordinary grant, there before the flood.
    let eng = add(&d, spec("eng", 3600), T0).unwrap();
    let mut admitted = Vec::new();
    let refusal = loop {
        assert!(admitted.len() < 200, "never refused");
        match add(&d, heavy(admitted.len()), T0) {
            Ok(g) => admitted.push(g),
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.0, ErrorCode::Refused, "{}", refusal.1);
    assert!(
        refusal
            .1
            .starts_with("no new grants: with this one the gates file could reach")
            && refusal.1.contains("of the 64 MiB the jit modules read"),
        "{}",
        refusal.1
    );

    // Whole files (the timer folds the deltas): the gates file within what pam_jit and
    // sudo_jit copy, and not refused long before it (the bound is ~2x a grant's real size).
    d.tick(T0 + 1);
    assert!(!env.path("run/gates.delta").exists());
    let gates_len = size(&env, "run/gates");
    assert!(gates_len <= MAX_SNAPSHOT_BYTES * 90 / 100, "{gates_len}");
    assert!(gates_len > MAX_SNAPSHOT_BYTES * 80 / 100, "{gates_len}");
    // Read as the modules read them: every admitted gate is there, and the account of the
    // grant that came first still resolves.
    let public = as_a_reader_reads(&env, "run/snapshot");
    let gates = as_a_reader_reads(&env, "run/gates");
    let (public, gates) = (
        Snapshot::parse(&public).unwrap(),
        Snapshot::parse(&gates).unwrap(),
    );
    let live = |u| {
        gates
            .grants_for_user(u)
            .filter(|r| r.is_live(T0 + 1))
            .count()
    };
    assert_eq!(live("carol"), admitted.len());
    assert_eq!(live("eng"), 1);
    assert!(public.account_by_name("eng", T0 + 1).is_some());

    // Said once, before the refusals started; the refusal audited as the client saw it.
    let audit = env.audit();
    assert_eq!(audit.matches("\"snapshot.room_low\"").count(), 1, "{audit}");
    assert!(audit.contains("\"grant.rejected\""));
    assert!(!audit.contains("snapshot.over_limit"));
    let s = status(&d, T0 + 1);
    assert_eq!(s.snapshot_gates_limit_bytes, MAX_SNAPSHOT_BYTES);
    assert_eq!(s.snapshot_gates_bytes, gates_len);
    assert_eq!(s.snapshot_public_bytes, size(&env, "run/snapshot"));
    assert!(
        s.snapshot_room.starts_with("8") && s.snapshot_room.contains(" % (gates file "),
        "{}",
        s.snapshot_room
    );

    // Ending grants makes room at once (an end writes whole files).
    for g in admitted.iter().take(3) {
        revoke(&d, &g.id, T0 + 2);
    }
    add(&d, heavy(999), T0 + 2).expect("room after three ends");
    revoke(&d, &eng.id, T0 + 3);
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
