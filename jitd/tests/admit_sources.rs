//! A grant from the central service and one from root on the socket go through the same
//! admission (`Daemon::admit`): the same refusals, the same durability, the same snapshot, and
//! the source recorded in the grant and in `grant.created`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use jit_core::snapshot::Snapshot;
use jit_proto::{ErrorCode, GrantSpec, GrantState};
use jitd::engine::GrantSource;

mod common;
use common::*;

/// A server grant's source as the sync module records it.
fn from_server() -> GrantSource {
    GrantSource::Server(Box::new(jit_proto::ServerSource {
        id: "sg-1".into(),
        request: "r-1".into(),
        role: "web-admin".into(),
        strict: false,
        seq: 7,
    }))
}

#[test]
fn server_grants_are_admitted_like_local_ones() {
    let env = Env::new("sources");
    let d = env.daemon(T0);
    let g = d.admit(from_server(), &spec("alice", 60), T0).unwrap();
    assert_eq!(
        (g.state, g.created_by.as_str()),
        (GrantState::Live, "server")
    );
    let img = env.snapshot();
    let s = Snapshot::parse(&img).unwrap();
    assert!(
        s.account_by_name("alice", T0).is_some(),
        "in the snapshot at once"
    );
    let created = env
        .audit()
        .lines()
        .find(|l| l.contains("\"grant.created\""))
        .unwrap()
        .to_string();
    assert!(created.contains("\"by\":\"server\""), "{created}");

    // The refusals root gets on the socket, a server gets too, with nothing changed.
    for (s, want) in [
        (spec("root", 60), "root is never managed"),
        (spec("carol", 60), "exists locally"),
        (spec("bob", 3 * 3600), "exceeds max_grant"),
        (
            GrantSpec {
                groups: vec!["sudo".into()],
                account: false,
                ..spec("carol", 60)
            },
            "already a local member of sudo",
        ),
    ] {
        let via_server = d.admit(from_server(), &s, T0).unwrap_err();
        let via_socket = add(&d, s, T0).unwrap_err();
        assert_eq!(via_server, via_socket, "{want}");
        assert_eq!(via_server.0, ErrorCode::Refused);
        assert!(via_server.1.contains(want), "{via_server:?}");
    }
    // What a restart would load (state.json and the state journal).
    let st = jitd::state::StateStore::new(&env.path("state"))
        .load()
        .unwrap()
        .state;
    assert_eq!(st.grants.len(), 1, "only the admitted grant is stored");
}

/// A document that drops several grants of this host ends them together: each outcome
/// reported in order (an unknown id refused without holding back the others), one whole
/// snapshot write for all of them, their revocations durable and audited, each torn down.
#[test]
fn server_grants_dropped_together_end_in_one_write_and_one_teardown_pass() {
    use jitd::sync::apply::GrantSink;
    let env = Env::new("sources-ends");
    let d = env.daemon(T0);
    let source = |id: &str| {
        GrantSource::Server(Box::new(jit_proto::ServerSource {
            id: id.into(),
            request: format!("r-{id}"),
            role: "web-admin".into(),
            strict: false,
            seq: 7,
        }))
    };
    let ids: Vec<String> = ["alice", "bob", "erin"]
        .iter()
        .enumerate()
        .map(|(i, u)| {
            d.admit(source(&format!("sg-{i}")), &spec(u, 600), T0)
                .unwrap()
                .id
                .to_string()
        })
        .collect();
    let serial = |env: &Env| {
        let bytes = std::fs::read(env.path("run/snapshot")).unwrap();
        Snapshot::parse(&bytes).unwrap().serial()
    };
    let before = serial(&env);
    let r = d.end_server_grants(
        &[ids[0].clone(), "g-nosuchgrant".into(), ids[2].clone()],
        "no longer in the server's set",
        T0 + 5,
    );
    assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
    assert!(
        r[1].as_ref().is_err_and(|e| e.contains("no grant")),
        "{r:?}"
    );
    assert_eq!(
        serial(&env),
        before + 1,
        "one whole snapshot write for both"
    );
    settle(&d, T0 + 5);
    let img = env.public_snapshot();
    let s = Snapshot::parse(&img).unwrap();
    assert!(s.account_by_name("alice", T0 + 5).is_none());
    assert!(s.account_by_name("erin", T0 + 5).is_none());
    assert!(s.account_by_name("bob", T0 + 5).is_some(), "the one kept");
    let audit = env.audit();
    for id in [&ids[0], &ids[2]] {
        let revoked = audit
            .lines()
            .filter(|l| l.contains("\"grant.revoked\"") && l.contains(id.as_str()))
            .count();
        let torn = audit
            .lines()
            .filter(|l| l.contains("\"grant.teardown\"") && l.contains(id.as_str()))
            .count();
        assert_eq!((revoked, torn), (1, 1), "{id}: {audit}");
    }
    assert!(
        !audit
            .lines()
            .any(|l| l.contains("\"grant.revoked\"") && l.contains(ids[1].as_str())),
        "bob's grant stays: {audit}"
    );
    // Durable: what a restart loads has both revoked and bob's live.
    let st = jitd::state::StateStore::new(&env.path("state"))
        .load()
        .unwrap()
        .state;
    let state_of = |id: &str| st.grants.get(id).unwrap().state_at(T0 + 6);
    assert_eq!(
        (state_of(&ids[0]), state_of(&ids[1]), state_of(&ids[2])),
        (GrantState::Revoked, GrantState::Live, GrantState::Revoked)
    );
}
