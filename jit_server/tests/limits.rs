//! What one person and one host may hold: open requests per person (`max_open_requests`), and
//! a host's live grants within what one signed document carries (`max_grants_per_host`, the
//! document's byte budget). A host refuses a document that is too large, and with it every
//! later change, revocations included: the server must never make one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jit_proto::state_doc::{grant_weight, MAX_BODY_WEIGHT, MAX_DOC_BYTES};
use serde_json::json;

fn fleet_with(config: &str) -> Fleet {
    let data = temp_dir("limits");
    std::fs::write(data.join("server.toml"), config).unwrap();
    fleet_in(&data)
}

fn revoke(s: &Server, token: &str, id: &str) {
    let r = s.call("POST", "/v1/revoke", token, Some(json!({ "id": id })));
    assert_eq!(r.status, 200, "{:?}", r.json());
}

fn quick_request() -> serde_json::Value {
    json!({ "role": "quick", "hosts": ["web1"], "duration": "10m", "reason": "look at logs" })
}

#[test]
fn one_person_holds_a_bounded_number_of_open_requests() {
    let f = fleet_with("max_open_requests = 2\n");
    let s = &f.server;
    // alice: one request that stays pending an hour, one that expires after two seconds.
    let _long = id_of(&file_request(s, &f.alice, web_request()));
    let _short = id_of(&file_request(s, &f.alice, quick_request()));
    let r = file_request(s, &f.alice, web_request());
    assert_eq!(r.status, 429, "{:?}", r.json());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("alice has 2 open requests"),
        "{:?}",
        r.json()
    );
    let filed = |who: &str| {
        query_i64(
            &s.data,
            &format!("SELECT COUNT(*) FROM request WHERE requester = '{who}'"),
        )
    };
    assert_eq!(filed("alice"), 2, "a refused filing records nothing");
    // Another person is not held back by alice's requests.
    let e1 = id_of(&file_request(s, &f.erin, web_request()));
    // A pending request that expired no longer counts.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(file_request(s, &f.alice, web_request()).status, 429);

    // erin is approved at once (auto_approve): live grants count as open requests...
    let _e2 = id_of(&file_request(s, &f.erin, web_request()));
    let r = file_request(s, &f.erin, web_request());
    assert_eq!(r.status, 429, "{:?}", r.json());
    // ...until one ends.
    revoke(s, &f.erin, &e1);
    let e3 = file_request(s, &f.erin, web_request());
    assert_eq!(e3.json()["state"], "approved", "{:?}", e3.json());
    assert_eq!(filed("erin"), 3);
}

#[test]
fn a_bad_limit_in_the_configuration_is_refused() {
    for (config, says) in [
        (
            "max_open_requests = 0\n",
            "max_open_requests must be at least 1",
        ),
        (
            "max_grants_per_host = 4097\n",
            "max_grants_per_host must be 1..4096",
        ),
        (
            "max_grants_per_host = 0\n",
            "max_grants_per_host must be 1..4096",
        ),
    ] {
        let data = temp_dir("limits-bad");
        init(&data);
        std::fs::write(data.join("server.toml"), config).unwrap();
        let err = Server::try_start(&data).err().expect(config);
        assert!(err.contains(says), "{config}: {err}");
        let _ = std::fs::remove_dir_all(&data);
    }
}

/// The policy with a person whose 64 ssh keys of 8000 bytes (within the policy's caps) make
/// each of her grants weigh ~0.5 MB in a host's document, approved at once (oncall).
fn with_heavy(f: &Fleet) -> String {
    let key = format!("ssh-ed25519 {}", "A".repeat(7988));
    let keys: Vec<String> = (0..64).map(|_| format!("{key:?}")).collect();
    let policy = POLICY.replace(
        "[[person]]\nname = \"admin\"",
        &format!(
            "[[person]]\nname = \"heavy\"\ngroups = [\"oncall\"]\nssh_keys = [{}]\n\n[[person]]\nname = \"admin\"",
            keys.join(", ")
        ),
    );
    assert!(policy.contains("heavy"));
    apply(&f.server.data, &policy);
    token(&f.server.data, "heavy")
}

#[test]
fn a_host_gets_no_grant_its_document_could_not_carry_and_revocations_still_reach_it() {
    let mut f = fleet();
    let heavy = with_heavy(&f);
    let s = &f.server;
    let mut granted = Vec::new();
    let refused = loop {
        let r = file_request(s, &heavy, web_request());
        if r.status != 200 {
            break r;
        }
        assert_eq!(r.json()["state"], "approved", "{:?}", r.json());
        granted.push(r.json()["id"].as_str().unwrap().to_string());
        assert!(granted.len() < 32, "never refused");
    };
    assert_eq!(refused.status, 409, "{:?}", refused.json());
    let msg = refused.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("no room on any host"), "{msg}");
    assert!(msg.contains("one signed document carries"), "{msg}");
    // Refused whole: no request row, no grant row for it.
    assert_eq!(
        query_i64(
            &s.data,
            "SELECT COUNT(*) FROM request WHERE requester = 'heavy'"
        ),
        granted.len() as i64
    );

    // What the host receives: every grant admitted, in a document it accepts, near the limit.
    let (raw, nonce) = f.web1.poll_raw(s, 0, 0);
    assert_eq!(raw.status, 200);
    assert!(raw.body.len() <= MAX_DOC_BYTES);
    assert!(
        raw.body.len() > MAX_DOC_BYTES / 2,
        "{} bytes",
        raw.body.len()
    );
    let doc = jit_proto::state_doc::verify_document(
        &raw.body,
        f.web1.pins.as_ref().unwrap(),
        jit_core::time::now(),
        0,
        &nonce,
    )
    .unwrap();
    assert_eq!(doc.grants.len(), granted.len());
    // As many as the budget holds, not fewer: one more would not have fitted.
    let w = grant_weight(serde_json::to_vec(&doc.grants[0]).unwrap().len(), false);
    assert_eq!(granted.len() as u64, MAX_BODY_WEIGHT / w, "weight {w}");
    eprintln!(
        "{} grants of {w} bytes admitted; the host's document {} bytes (at most {MAX_DOC_BYTES})",
        granted.len(),
        raw.body.len()
    );
    f.web1.applied = doc.seq;

    // A small grant of someone else still fits in the bytes left, through two approvals.
    let a = id_of(&file_request(s, &f.alice, web_request()));
    approve(s, &f.bob, &a);
    assert_eq!(approve(s, &f.carol, &a).json()["state"], "approved");

    // A revocation reaches the full host, and frees room for the next.
    revoke(s, &heavy, &granted[0]);
    let doc = f.web1.poll(s, 0).unwrap();
    assert_eq!(doc.grants.len(), granted.len());
    assert!(doc.grants.iter().all(|g| g.request_id != granted[0]));
    let again = file_request(s, &heavy, web_request());
    assert_eq!(again.json()["state"], "approved", "{:?}", again.json());
    let doc = f.web1.poll(s, 0).unwrap();
    assert_eq!(doc.grants.len(), granted.len() + 1);
}

#[test]
fn a_full_host_is_left_out_of_an_approval_and_an_approval_for_full_hosts_records_nothing() {
    let mut f = fleet_with("max_grants_per_host = 2\n");
    let s = &f.server;
    let j = join_token(&s.data, "web2", &["env=prod"]);
    let mut web2 = Host::new("?", 13);
    assert_eq!(web2.enroll(s, &j).status, 200);

    // web1 filled by erin (auto-approved).
    let e1 = id_of(&file_request(s, &f.erin, web_request()));
    id_of(&file_request(s, &f.erin, web_request()));
    // A request for every prod host: granted on web2, web1 left out and audited.
    let mut both = web_request();
    both["hosts"] = json!([]);
    both["select"] = json!({ "env": "prod" });
    let r = file_request(s, &f.erin, both);
    assert_eq!(r.json()["state"], "approved", "{:?}", r.json());
    assert_eq!(r.json()["hosts"], json!(["web1", "web2"]));
    assert_eq!(r.json()["granted_on"], json!(["web2"]), "{:?}", r.json());
    assert_eq!(f.web1.poll(s, 0).unwrap().grants.len(), 2);
    assert_eq!(web2.poll(s, 0).unwrap().grants.len(), 1);
    let audit = s.call("GET", "/v1/audit?limit=50", &f.admin, None).json();
    let full: Vec<&serde_json::Value> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "request.hosts_full")
        .collect();
    assert_eq!(full.len(), 1, "{audit:?}");
    assert!(full[0]["detail"]
        .as_str()
        .unwrap()
        .contains("web1 holds 2 grants"));

    // alice's request for web1 alone: the deciding approval is refused and records nothing.
    let a = id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(approve(s, &f.bob, &a).status, 200);
    let r = approve(s, &f.carol, &a);
    assert_eq!(r.status, 409, "{:?}", r.json());
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("web1 holds 2 grants"));
    let view = s
        .call("GET", &format!("/v1/requests/{a}"), &f.alice, None)
        .json();
    assert_eq!(view["state"], "pending", "{view:?}");
    assert_eq!(view["approvals"], json!(["bob"]));
    // Once one of erin's grants there ends, carol's approval goes through.
    revoke(s, &f.erin, &e1);
    let r = approve(s, &f.carol, &a);
    assert_eq!(r.json()["state"], "approved");
    assert_eq!(r.json()["granted_on"], json!(["web1"]));
    let doc = f.web1.poll(s, 0).unwrap();
    assert_eq!(doc.grants.len(), 2);
    assert!(doc.grants.iter().any(|g| g.request_id == a));
}
