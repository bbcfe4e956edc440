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
