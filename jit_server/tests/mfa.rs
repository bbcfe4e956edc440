//! Fleet TOTP on a real server (SQLite, real TLS on loopback) with simulated hosts that verify
//! documents and open sealed secrets as jitd does: enrolment needs one correct code (five wrong
//! ones discard it); a secret reaches a host only while its person holds a live MFA grant there,
//! only for a host that registered its sealing key, sealed to that host alone and bound to the
//! person and version; never stored in clear; used steps are accepted only from a host where the
//! person holds such a grant, never ahead of the clock, and relayed to the person's other hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use jit_proto::mfa_seal::{self, SealError};
use serde_json::json;
use totp_rs::{Algorithm, Builder, Secret};

const POLICY: &str = r#"
[[person]]
name = "alice"
groups = ["dev"]

[[person]]
name = "bob"
groups = ["sre"]

[[role]]
name = "ops-mfa"
hosts = { env = "prod" }
account = true
mfa = true
max = "1h"
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5
"#;

const ENTITLE: &str = r#"
[[entitlement]]
who = ["dev"]
roles = ["ops-mfa"]
"#;

fn code_at(secret_b32: &str, t: i64) -> String {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(secret_b32).unwrap())
        .build()
        .unwrap()
        .generate(t as u64)
        .to_string()
}

fn register(s: &Server, h: &Host, seal_sk: &[u8; 32]) -> u16 {
    let body =
        serde_json::to_vec(&json!({ "key": STANDARD.encode(mfa_seal::public_key(seal_sk)) }))
            .unwrap();
    h.signed(s, &h.name, "POST", "/v1/host/seal_key", &body)
        .status
}

fn used(s: &Server, h: &Host, user: &str, step: u64) -> u16 {
    let body = serde_json::to_vec(&json!({ "user": user, "step": step })).unwrap();
    h.signed(s, &h.name, "POST", "/v1/host/mfa_used", &body)
        .status
}

#[test]
fn fleet_secrets_reach_only_the_granted_host_sealed_and_steps_are_relayed() {
    let data = temp_dir("mfa");
    let db = data.join("server.db");
    scenario(&data, &|secret, raw| {
        let bytes = std::fs::read(&db).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret));
        assert!(!bytes.windows(raw.len()).any(|w| w == raw));
    });
}

#[test]
fn fleet_mfa_on_postgresql() {
    let pg = common::pg::Pg::start();
    scenario(&pg.data_dir(), &|secret, _| {
        let dump = pg.psql("SELECT person || version || sealed FROM mfa_secret");
        assert!(dump.contains("alice") && !dump.contains(secret), "{dump}");
    });
}

/// The whole scenario on the database `data` names; `at_rest(secret_base32, raw)` checks the
/// stored form once a secret is in force.
fn scenario(data: &std::path::Path, at_rest: &dyn Fn(&str, &[u8])) {
    let data = data.to_path_buf();
    let (admin, _) = init(&data);
    apply(&data, &format!("{POLICY}{ENTITLE}"));
    let (alice, bob) = (token(&data, "alice"), token(&data, "bob"));
    let j1 = join_token(&data, "web1", &["env=prod"]);
    let j2 = join_token(&data, "web2", &["env=prod"]);
    let j3 = join_token(&data, "web3", &["env=prod"]);
    let j4 = join_token(&data, "web4", &["env=prod"]);
    let s = Server::start(&data);
    let (mut web1, mut web2) = (Host::new("?", 21), Host::new("?", 22));
    let (mut web3, mut web4) = (Host::new("?", 23), Host::new("?", 24));
    for (h, j) in [
        (&mut web1, &j1),
        (&mut web2, &j2),
        (&mut web3, &j3),
        (&mut web4, &j4),
    ] {
        assert_eq!(h.enroll(&s, j).status, 200);
    }
    let (k1, k2, k4) = ([31u8; 32], [32u8; 32], [34u8; 32]);
    assert_eq!(register(&s, &web1, &k1), 200);
    assert_eq!(register(&s, &web2, &k2), 200);
    assert_eq!(register(&s, &web4, &k4), 200);
    // web3 never registers a sealing key (a jitd older than fleet MFA).
    let r = web1.signed(
        &s,
        "web1",
        "POST",
        "/v1/host/seal_key",
        br#"{"key":"AAAA"}"#,
    );
    assert_eq!(r.status, 400, "a key that is not 32 bytes");

    // Enrolment: pending until one right code; five wrong ones discard it.
    let e = s.call("POST", "/v1/mfa/enroll", &alice, None).json();
    let first = e["secret"].as_str().unwrap().to_string();
    assert_eq!(e["version"], 1);
    for i in 1..=5 {
        let r = s.call(
            "POST",
            "/v1/mfa/confirm",
            &alice,
            Some(json!({ "code": "12345" })),
        );
        assert_eq!(r.status, 403, "wrong code {i}");
    }
    let now = jit_core::time::now();
    let r = s.call(
        "POST",
        "/v1/mfa/confirm",
        &alice,
        Some(json!({ "code": code_at(&first, now) })),
    );
    assert_eq!(
        r.status,
        404,
        "discarded after five wrong codes: {:?}",
        r.json()
    );
    let e = s.call("POST", "/v1/mfa/enroll", &alice, None).json();
    let secret = e["secret"].as_str().unwrap().to_string();
    assert_eq!(e["version"], 1, "a discarded enrolment was never in force");
    let now = jit_core::time::now();
    let r = s.call(
        "POST",
        "/v1/mfa/confirm",
        &alice,
        Some(json!({ "code": code_at(&secret, now - 30) })),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());

    // No grant: no secret for anyone.
    assert!(web1.poll(&s, 0).unwrap().mfa.is_empty());

    let id = id_of(&file_request(
        &s,
        &alice,
        json!({ "role": "ops-mfa", "hosts": ["web1", "web2", "web3"], "duration": "1h", "reason": "fleet mfa" }),
    ));
    assert_eq!(approve(&s, &bob, &id).status, 200);
    let doc1 = web1.poll(&s, 0).unwrap();
    assert_eq!(doc1.grants.len(), 1);
    assert_eq!(doc1.mfa.len(), 1);
    let sealed = &doc1.mfa[0];
    assert_eq!((sealed.user.as_str(), sealed.version), ("alice", 1));
    let opened = mfa_seal::open(&k1, "web1", sealed).unwrap();
    let raw20: [u8; 20] = opened.bytes().try_into().unwrap();
    assert_eq!(
        Secret::from(raw20).to_base32(),
        secret,
        "web1 opens alice's confirmed secret"
    );
    // Only web1 can open it, only as alice's version 1 on web1.
    assert_eq!(
        mfa_seal::open(&k2, "web1", sealed).unwrap_err(),
        SealError::Refused
    );
    let doc2 = web2.poll(&s, 0).unwrap();
    assert_eq!(doc2.mfa.len(), 1);
    assert_ne!(doc2.mfa[0].ct, sealed.ct, "sealed for each host separately");
    assert_eq!(
        mfa_seal::open(&k1, "web2", &doc2.mfa[0]).unwrap_err(),
        SealError::Refused
    );
    assert!(mfa_seal::open(&k2, "web2", &doc2.mfa[0]).is_ok());
    assert_eq!(
        mfa_seal::open(&k1, "web2", sealed).unwrap_err(),
        SealError::Refused
    );
    let mut moved = sealed.clone();
    moved.user = "bob".into();
    assert_eq!(
        mfa_seal::open(&k1, "web1", &moved).unwrap_err(),
        SealError::Refused
    );
    let mut moved = sealed.clone();
    moved.version = 2;
    assert_eq!(
        mfa_seal::open(&k1, "web1", &moved).unwrap_err(),
        SealError::Refused
    );
    // The confirming code's step is spent everywhere.
    let confirm_step = (now - 30).div_euclid(30) as u64;
    assert!(doc1
        .mfa_used
        .iter()
        .any(|u| u.user == "alice" && u.step >= confirm_step));
    // web4 holds no grant: no secret. web3 holds one but registered no key: neither field (an
    // older jitd's strict decoder would refuse the document).
    assert!(web4.poll(&s, 0).unwrap().mfa.is_empty());
    let (r3, _) = web3.poll_raw(&s, 0, 0);
    assert!(!String::from_utf8_lossy(&r3.body).contains("mfa"));
    let doc3 = web3.poll(&s, 0).unwrap();
    assert_eq!(doc3.grants.len(), 1);
    assert!(doc3.mfa.is_empty() && doc3.mfa_used.is_empty());

    // Never stored in clear.
    at_rest(&secret, opened.bytes());

    // Used steps: only from a host where alice holds an MFA grant, never ahead of the clock.
    let step = (jit_core::time::now().div_euclid(30)) as u64;
    assert_eq!(
        used(&s, &web4, "alice", step),
        403,
        "no grant of alice on web4"
    );
    assert_eq!(
        used(&s, &web1, "alice", step + 100),
        400,
        "ahead of the clock"
    );
    let seq2 = web2.applied;
    assert_eq!(used(&s, &web1, "alice", step + 1), 200);
    // Relayed: web2's sequence moved, so its next poll answers at once with the step.
    let t0 = std::time::Instant::now();
    let doc2 = web2.poll(&s, 20).unwrap();
    assert!(doc2.seq > seq2);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "a new sequence, not a heartbeat"
    );
    assert!(doc2
        .mfa_used
        .iter()
        .any(|u| u.user == "alice" && u.step == step + 1));
    // A lower step never lowers it.
    assert_eq!(used(&s, &web1, "alice", step), 200);
    assert!(web1
        .poll(&s, 0)
        .unwrap()
        .mfa_used
        .iter()
        .any(|u| u.user == "alice" && u.step == step + 1));

    // Removal (a lost authenticator): bob, not an admin, may not remove alice's enrolment;
    // alice may. The hosts with her live MFA grant get a new document at once, without it.
    let r = s.call(
        "POST",
        "/v1/mfa/remove",
        &bob,
        Some(json!({ "person": "alice" })),
    );
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert_eq!(web1.poll(&s, 0).unwrap().mfa.len(), 1, "refused: unchanged");
    let seq1 = web1.applied;
    let r = s.call("POST", "/v1/mfa/remove", &alice, Some(json!({})));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["hosts"], json!(["web1", "web2", "web3"]));
    let t0 = std::time::Instant::now();
    let doc1 = web1.poll(&s, 20).unwrap();
    assert!(
        doc1.seq > seq1 && t0.elapsed() < std::time::Duration::from_secs(10),
        "a new sequence, not a heartbeat"
    );
    assert_eq!(doc1.grants.len(), 1, "the grant stays; its secret goes");
    assert!(doc1.mfa.is_empty());
    assert!(web2.poll(&s, 0).unwrap().mfa.is_empty());
    let r = s.call("POST", "/v1/mfa/remove", &alice, Some(json!({})));
    assert_eq!(r.status, 404, "nothing left to remove: {:?}", r.json());
    let r = s.call(
        "POST",
        "/v1/mfa/remove",
        &alice,
        Some(json!({ "person": "Alice; DROP" })),
    );
    assert_eq!(r.status, 403, "someone else's (by name): admins only");
    // A new enrolment, confirmed, reaches web1 as version 2; an admin removes it.
    let e = s.call("POST", "/v1/mfa/enroll", &alice, None).json();
    let again = e["secret"].as_str().unwrap().to_string();
    let r = s.call(
        "POST",
        "/v1/mfa/confirm",
        &alice,
        Some(json!({ "code": code_at(&again, jit_core::time::now()) })),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let doc1 = web1.poll(&s, 0).unwrap();
    assert_eq!((doc1.mfa.len(), doc1.mfa[0].version), (1, 2));
    let r = s.call(
        "POST",
        "/v1/mfa/remove",
        &admin,
        Some(json!({ "person": "alice" })),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(web1.poll(&s, 0).unwrap().mfa.is_empty());
    let r = s.call(
        "POST",
        "/v1/mfa/remove",
        &admin,
        Some(json!({ "person": "Alice; DROP" })),
    );
    assert_eq!(r.status, 400, "not a person's name");
    let trail = run_ok(&[
        "audit",
        "--limit",
        "500",
        "--json",
        "--data",
        data_arg(&data),
    ]);
    assert_eq!(trail.matches("mfa.remove").count(), 2, "{trail}");

    // Revoked: the next document carries no secret.
    let r = s.call("POST", "/v1/revoke", &bob, Some(json!({ "id": id })));
    assert_eq!(r.status, 200, "{:?}", r.json());
    let doc1 = web1.poll(&s, 0).unwrap();
    assert!(doc1.grants.is_empty() && doc1.mfa.is_empty());
    assert_eq!(
        used(&s, &web1, "alice", step + 2),
        403,
        "no live grant any more"
    );
}
