//! jit-server on SQLite over real TLS on loopback: requests, approvals, entitlements, hosts,
//! signed documents verified with jitd's verifier.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jit_proto::state_doc::{verify_document, DocError};
use serde_json::json;

#[test]
fn two_approvals_deliver_a_signed_grant_counted_from_approval() {
    let mut f = fleet();
    let s = &f.server;
    let doc = f.web1.poll(s, 0).unwrap();
    assert!(doc.grants.is_empty());
    let r = file_request(s, &f.alice, web_request());
    assert_eq!(r.status, 200, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["state"], "pending");
    std::thread::sleep(Duration::from_millis(1100));
    let one = approve(s, &f.bob, &id);
    assert_eq!(one.json()["state"], "pending", "1 of 2 approvals");
    let two = approve(s, &f.carol, &id);
    assert_eq!(two.json()["state"], "approved", "{:?}", two.json());
    let v = two.json();
    let created = v["created_at"].as_i64().unwrap();
    let nb = v["not_before"].as_i64().unwrap();
    assert!(
        nb > created,
        "duration counts from approval, not from the request"
    );
    assert_eq!(v["not_after"].as_i64().unwrap() - nb, 3600);

    let doc = f.web1.poll(s, 0).unwrap();
    assert_eq!(doc.grants.len(), 1);
    let g = &doc.grants[0];
    assert_eq!(g.user, "alice");
    assert_eq!(g.approved_by, vec!["bob".to_string(), "carol".to_string()]);
    assert_eq!(g.sudo, vec!["/usr/bin/systemctl restart nginx".to_string()]);
    assert_eq!(
        g.ssh_keys.len(),
        1,
        "ssh keys come from the person's record"
    );
    assert_eq!(g.not_before, nb);
    // The other host gets nothing.
    assert!(f.dev1.poll(s, 0).unwrap().grants.is_empty());
}

#[test]
fn nobody_approves_their_own_request_not_even_an_admin() {
    let f = fleet();
    let s = &f.server;
    let r = file_request(s, &f.admin, web_request());
    assert_eq!(r.status, 200, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let own = approve(s, &f.admin, &id);
    assert_eq!(own.status, 403, "{:?}", own.json());
    // A second token of the same admin is the same person.
    let t2 = token(&s.data, "admin");
    assert_eq!(approve(s, &t2, &id).status, 403);
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    assert_eq!(approve(s, &f.carol, &id).json()["state"], "approved");
}

#[test]
fn one_person_is_counted_once_across_tokens() {
    let f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob2 = token(&s.data, "bob");
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    let again = approve(s, &bob2, &id);
    assert_eq!(again.status, 409, "the same person through another token");
    let v = s
        .call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
        .json();
    assert_eq!(v["state"], "pending");
    assert_eq!(v["approvals"], json!(["bob"]));
}

#[test]
fn fifty_concurrent_approvals_by_one_person_count_once() {
    let f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob2 = token(&s.data, "bob");
    let ok = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let t = if i % 2 == 0 {
                    f.bob.clone()
                } else {
                    bob2.clone()
                };
                let id = id.clone();
                sc.spawn(move || approve(s, &t, &id).status)
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|st| *st == 200)
            .count()
    });
    assert_eq!(ok, 1);
    assert_eq!(
        s.call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
            .json()["state"],
        "pending"
    );
}

#[test]
fn approve_deny_race_has_one_outcome() {
    let f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(approve(s, &f.bob, &id).status, 200);
    let (a, d) = std::thread::scope(|sc| {
        let a = sc.spawn(|| approve(s, &f.carol, &id));
        let d = sc.spawn(|| deny(s, &f.dave, &id));
        (a.join().unwrap(), d.join().unwrap())
    });
    let state = s
        .call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
        .json()["state"]
        .clone();
    if state == "approved" {
        assert_eq!((a.status, d.status), (200, 409));
    } else {
        assert_eq!(state, "denied");
        assert_eq!((a.status, d.status), (409, 200));
    }
}

#[test]
fn a_denial_ends_the_request_and_delivers_nothing() {
    let mut f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(deny(s, &f.bob, &id).json()["state"], "denied");
    assert_eq!(approve(s, &f.carol, &id).status, 409);
    assert!(f.web1.poll(s, 0).unwrap().grants.is_empty());
}

#[test]
fn a_person_outside_the_approver_groups_cannot_approve() {
    let f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(approve(s, &f.erin, &id).status, 403);
}

#[test]
fn approvals_count_against_current_approver_membership() {
    let f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    // bob leaves sre: his approval no longer counts.
    apply(
        &s.data,
        &POLICY.replacen(
            "name = \"bob\"\ngroups = [\"sre\"]",
            "name = \"bob\"\ngroups = []",
            1,
        ),
    );
    assert_eq!(approve(s, &f.carol, &id).json()["state"], "pending");
    assert_eq!(approve(s, &f.dave, &id).json()["state"], "approved");
}

#[test]
fn bad_reasons_tickets_and_selections_are_refused() {
    let f = fleet();
    let s = &f.server;
    let base = web_request();
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (what, body) in [
        ("short reason", with("reason", json!("fix"))),
        ("dot reason", with("reason", json!("."))),
        ("padded reason", with("reason", json!("   fix      "))),
        ("no ticket", with("ticket", json!(""))),
        ("ticket prefix only", with("ticket", json!("OPS-42x"))),
        ("ticket inside", with("ticket", json!("xOPS-42"))),
        ("no hosts", with("hosts", json!([]))),
        ("unknown host", with("hosts", json!(["nope"]))),
    ] {
        let r = file_request(s, &f.alice, body);
        assert_eq!(r.status, 400, "{what}: {:?}", r.json());
    }
    let sel = json!({ "role": "web-admin", "select": { "env": "staging" }, "duration": "1h",
                      "reason": "restart nginx after deploy", "ticket": "OPS-1" });
    assert_eq!(
        file_request(s, &f.alice, sel).status,
        400,
        "a selector matching nothing"
    );
    let sel = json!({ "role": "web-admin", "select": { "env": "prod" }, "duration": "1h",
                      "reason": "restart nginx after deploy", "ticket": "OPS-1" });
    let r = file_request(s, &f.alice, sel);
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["hosts"], json!(["web1"]));
    assert_eq!(
        s.call("GET", "/v1/requests", &f.alice, None).json()["requests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn entitlement_and_role_labels_are_the_servers() {
    let f = fleet();
    let s = &f.server;
    // dev1 is env=dev: the role is for env=prod.
    let r = file_request(
        s,
        &f.alice,
        json!({ "role": "web-admin", "hosts": ["dev1"], "duration": "1h",
        "reason": "restart nginx after deploy", "ticket": "OPS-1" }),
    );
    assert_eq!(r.status, 403, "{:?}", r.json());
    // bob is not entitled at all.
    assert_eq!(file_request(s, &f.bob, web_request()).status, 403);
    // The operator relabels dev1: now it may be requested.
    run_ok(&[
        "host",
        "label",
        "dev1",
        "env=prod",
        "--data",
        data_arg(&s.data),
    ]);
    let r = file_request(
        s,
        &f.alice,
        json!({ "role": "web-admin", "hosts": ["dev1"], "duration": "1h",
        "reason": "restart nginx after deploy", "ticket": "OPS-1" }),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
}

#[test]
fn duration_is_clamped_to_the_roles_max() {
    let f = fleet();
    let s = &f.server;
    let mut b = web_request();
    b["duration"] = json!("10h");
    let r = file_request(s, &f.alice, b);
    assert_eq!(r.json()["duration"], 7200);
}

#[test]
fn a_request_expires_after_the_roles_pending_ttl() {
    let f = fleet();
    let s = &f.server;
    let r = file_request(
        s,
        &f.alice,
        json!({ "role": "quick", "hosts": ["web1"], "duration": "30m", "reason": "look at logs" }),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(3100));
    let a = approve(s, &f.bob, &id);
    assert_eq!(a.status, 409, "{:?}", a.json());
    assert_eq!(
        s.call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
            .json()["state"],
        "expired"
    );
}

#[test]
fn auto_approve_groups_need_no_review_and_are_recorded_as_such() {
    let mut f = fleet();
    let s = &f.server;
    let r = file_request(s, &f.erin, web_request());
    assert_eq!(r.json()["state"], "approved", "{:?}", r.json());
    assert_eq!(r.json()["decided_by"], "auto:oncall");
    let doc = f.web1.poll(s, 0).unwrap();
    assert_eq!(doc.grants[0].approved_by, vec!["auto:oncall".to_string()]);
}

#[test]
fn the_long_poll_wakes_on_approval_and_revoke_reaches_the_host() {
    let mut f = fleet();
    let s = &f.server;
    f.web1.poll(s, 0).unwrap();
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    approve(s, &f.bob, &id);
    let t0 = Instant::now();
    let (got, approved_at) = std::thread::scope(|sc| {
        let h = sc.spawn(|| f.web1.poll(s, 30));
        std::thread::sleep(Duration::from_millis(300));
        approve(s, &f.carol, &id);
        let at = Instant::now();
        (h.join().unwrap(), at)
    });
    eprintln!(
        "approve answered -> verified document on the host: {:?}",
        approved_at.elapsed()
    );
    let got = got.unwrap();
    // Woken by the approval, not by the 30 s heartbeat.
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(got.grants.len(), 1);
    let seq = got.seq;
    let hosts = s.call("GET", "/v1/hosts", &f.bob, None).json();
    let web1 = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "web1")
        .unwrap()
        .clone();
    assert_eq!(web1["unconfirmed"], true, "not acknowledged yet");
    assert_eq!(f.web1.ack(s, seq).status, 200);
    let hosts = s.call("GET", "/v1/hosts", &f.bob, None).json();
    let web1 = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "web1")
        .unwrap()
        .clone();
    assert_eq!(web1["unconfirmed"], false);

    // alice revokes her own grant; the waiting poll returns a set without it.
    let t0 = Instant::now();
    let got = std::thread::scope(|sc| {
        let h = sc.spawn(|| f.web1.poll(s, 30));
        std::thread::sleep(Duration::from_millis(300));
        let r = s.call("POST", "/v1/revoke", &f.alice, Some(json!({ "id": id })));
        assert_eq!(r.status, 200, "{:?}", r.json());
        h.join().unwrap()
    })
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(got.grants.is_empty());
    assert!(got.seq > seq);
}

#[test]
fn only_the_requester_an_approver_or_an_admin_may_revoke() {
    let f = fleet();
    let s = &f.server;
    let id = file_request(s, &f.alice, web_request()).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.call("POST", "/v1/revoke", &f.erin, Some(json!({ "id": id })))
            .status,
        403
    );
    assert_eq!(
        s.call("POST", "/v1/revoke", &f.admin, Some(json!({ "id": id })))
            .status,
        200
    );
    // Revoking it again changes nothing and says so.
    assert_eq!(
        s.call("POST", "/v1/revoke", &f.admin, Some(json!({ "id": id })))
            .status,
        409
    );
}

#[test]
fn a_join_token_works_once_even_under_concurrency() {
    let data = temp_dir("join");
    init(&data);
    let j = join_token(&data, "web9", &["env=prod"]);
    let s = Server::start(&data);
    let winners: Vec<u8> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..10u8)
            .map(|i| {
                let s = &s;
                let j = j.clone();
                sc.spawn(move || {
                    let mut h = Host::new("claimed-name", 100 + i);
                    (i, h.enroll(s, &j).status)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|(_, st)| *st == 200)
            .map(|(i, _)| i)
            .collect()
    });
    assert_eq!(winners.len(), 1, "exactly one enrolment wins");
    // The winner may retry (its response was lost) with the same key; others may not.
    let mut same = Host::new("x", 100 + winners[0]);
    let r = same.enroll(&s, &j);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["host"],
        "web9",
        "the name comes from the token record"
    );
    let other = (0..10u8).find(|i| *i != winners[0]).unwrap();
    assert_eq!(Host::new("x", 100 + other).enroll(&s, &j).status, 403);
    assert_eq!(Host::new("x", 99).enroll(&s, "jitj_00").status, 403);
}

#[test]
fn a_host_cannot_read_another_hosts_grants() {
    let mut f = fleet();
    let s = &f.server;
    let r = file_request(s, &f.erin, web_request());
    assert_eq!(r.json()["state"], "approved");
    // dev1 signs with its key but claims to be web1.
    let r = f.dev1.signed(
        s,
        "web1",
        "GET",
        "/v1/host/state?since=0&wait=0s&nonce=x",
        b"",
    );
    assert_eq!(r.status, 401);
    // Its own document carries nothing of web1's.
    assert!(f.dev1.poll(s, 0).unwrap().grants.is_empty());
    // A person's token is no host credential.
    assert_eq!(
        s.call(
            "GET",
            "/v1/host/state?since=0&wait=0s&nonce=x",
            &f.alice,
            None
        )
        .status,
        401
    );
}

#[test]
fn a_removed_host_is_refused_on_its_next_poll() {
    let mut f = fleet();
    let s = &f.server;
    f.web1.poll(s, 0).unwrap();
    run_ok(&["host", "remove", "web1", "--data", data_arg(&s.data)]);
    let (r, _) = f.web1.poll_raw(s, 0, 0);
    assert_eq!(r.status, 401);
}

#[test]
fn documents_are_bound_to_the_poll_and_never_reuse_a_sequence() {
    let mut f = fleet();
    let s = &f.server;
    let first = f.web1.poll(s, 0).unwrap();
    // A document captured from one poll does not answer the next one (nonce), nor a later
    // state (sequence).
    let (r, _nonce) = f.web1.poll_raw(s, f.web1.applied, 0);
    let pins = f.web1.pins.clone().unwrap();
    let now = jit_core::time::now();
    assert_eq!(
        verify_document(&r.body, &pins, now, first.seq, "another"),
        Err(DocError::NonceMismatch)
    );
    // A host that applied more than the database knows (restored from an old backup) gets a
    // sequence above what it applied.
    f.web1.applied = 1000;
    let doc = f.web1.poll(s, 0).unwrap();
    assert!(doc.seq > 1000);
}

#[test]
fn oversized_bodies_and_fields_are_refused_and_state_stays_intact() {
    let f = fleet();
    let s = &f.server;
    let mut b = web_request();
    b["reason"] = json!("x".repeat(10 << 20));
    // Refused on its Content-Length: the server answers 413 and closes, so the client sees
    // either that answer or its write cut off.
    let headers = vec![("Authorization", format!("Bearer {}", f.alice))];
    let big = serde_json::to_vec(&b).unwrap();
    match jit_server::client::request(
        &s.cfg,
        &s.addr,
        "POST",
        "/v1/requests",
        &headers,
        &big,
        Duration::from_secs(30),
    ) {
        Ok(r) => assert_eq!(r.status, 413),
        Err(e) => assert!(e.contains("Broken pipe") || e.contains("reset"), "{e}"),
    }
    b["reason"] = json!("x".repeat(2000));
    assert_eq!(
        file_request(s, &f.alice, b).status,
        400,
        "a reason over the field cap"
    );
    let mut b = web_request();
    b["reason"] = json!("restart nginx \u{202e}yolped retfa");
    assert_eq!(file_request(s, &f.alice, b).status, 400, "bidi override");
    let mut b = web_request();
    b["reason"] = json!("restart nginx\u{1b}[2J after deploy");
    assert_eq!(
        file_request(s, &f.alice, b).status,
        400,
        "control characters"
    );
    assert_eq!(
        s.call("GET", "/v1/requests", &f.alice, None).json()["requests"],
        json!([])
    );
    let r = file_request(s, &f.alice, web_request());
    assert_eq!(r.status, 200);
}

#[test]
fn sqlite_mode_refuses_a_second_replica() {
    let data = temp_dir("lock");
    init(&data);
    let _a = Server::start(&data);
    let err = Server::try_start(&data)
        .err()
        .expect("second replica must be refused");
    assert!(err.contains("one replica"), "{err}");
}

#[test]
fn init_refuses_to_overwrite_and_apply_shows_a_diff() {
    let data = temp_dir("init");
    init(&data);
    let (rc, _, err) = run(&["init", "--data", data_arg(&data)]);
    assert_ne!(rc, 0);
    assert!(err.contains("initialised already"), "{err}");
    let f = data.join("p.toml");
    std::fs::write(&f, POLICY).unwrap();
    let out = run_ok(&[
        "apply",
        f.to_str().unwrap(),
        "--data",
        data_arg(&data),
        "--dry-run",
    ]);
    assert!(
        out.contains("+ person alice")
            && out.contains("+ role web-admin")
            && out.contains("dry run"),
        "{out}"
    );
    let out = run_ok(&["apply", f.to_str().unwrap(), "--data", data_arg(&data)]);
    assert!(out.contains("+ person alice"));
    let out = run_ok(&["apply", f.to_str().unwrap(), "--data", data_arg(&data)]);
    assert_eq!(out.trim(), "no changes");
    // A person named like one of the server's own audit actors is refused.
    std::fs::write(
        &f,
        POLICY.replacen("name = \"dave\"", "name = \"ticket\"", 1),
    )
    .unwrap();
    let (rc, _, err) = run(&["apply", f.to_str().unwrap(), "--data", data_arg(&data)]);
    assert_ne!(rc, 0);
    assert!(err.contains("reserved"), "{err}");
    // An empty role selector is refused whole.
    std::fs::write(
        &f,
        POLICY.replacen("hosts = { env = \"prod\" }", "hosts = {}", 1),
    )
    .unwrap();
    let (rc, _, err) = run(&["apply", f.to_str().unwrap(), "--data", data_arg(&data)]);
    assert_ne!(rc, 0);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn every_change_is_audited_and_no_secret_is() {
    let data = temp_dir("audit");
    let (admin, _) = init(&data);
    apply(&data, POLICY);
    let alice = token(&data, "alice");
    let (bob, carol, erin) = (
        token(&data, "bob"),
        token(&data, "carol"),
        token(&data, "erin"),
    );
    let join = join_token(&data, "web1", &["env=prod"]);
    let s = Server::start(&data);
    // A join token is for enrolment only.
    assert_eq!(s.call("GET", "/v1/whoami", &join, None).status, 401);
    let mut web1 = Host::new("?", 21);
    assert_eq!(web1.enroll(&s, &join).status, 200);
    let heartbeat = web1.poll(&s, 0).unwrap().seq;
    assert_eq!(web1.ack(&s, heartbeat).status, 200);
    assert_eq!(
        file_request(&s, &erin, web_request()).json()["state"],
        "approved"
    );
    let id = id_of(&file_request(&s, &alice, web_request()));
    approve(&s, &bob, &id);
    approve(&s, &carol, &id);
    let seq = web1.poll(&s, 0).unwrap().seq;
    assert_eq!(web1.ack(&s, seq).status, 200);
    assert_eq!(
        s.call("POST", "/v1/revoke", &alice, Some(json!({ "id": id })))
            .status,
        200
    );

    let out = run_ok(&[
        "audit",
        "--data",
        data_arg(&data),
        "--json",
        "--limit",
        "1000",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let rows = v["audit"].as_array().unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    for a in [
        "person.admin",
        "policy.apply",
        "token.issue",
        "host.add",
        "host.enroll",
        "request.create",
        "request.auto_approve",
        "review.approve",
        "request.approved",
        "request.revoked",
        "host.ack",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let auto = rows
        .iter()
        .find(|r| r["action"] == "request.auto_approve")
        .unwrap();
    assert_eq!(auto["actor"], "erin");
    assert!(auto["detail"].as_str().unwrap().contains("oncall"));
    // Only the acknowledgement of a real change is recorded, not the heartbeat's.
    assert_eq!(actions.iter().filter(|a| **a == "host.ack").count(), 1);
    for secret in [&admin, &alice, &bob, &join] {
        assert!(
            !out.contains(secret.as_str()),
            "a token is in the audit trail"
        );
    }
    // Over the API: admins only.
    assert_eq!(s.call("GET", "/v1/audit", &admin, None).status, 200);
    assert_eq!(s.call("GET", "/v1/audit", &bob, None).status, 403);
}

#[test]
fn approval_rechecks_entitlement_role_and_hosts_as_they_are_now() {
    let mut f = fleet();
    let s = &f.server;
    // Entitlement withdrawn while the request waits.
    let id = id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    apply(
        &s.data,
        &POLICY.replace("who = [\"dev\", \"oncall\"]", "who = [\"oncall\"]"),
    );
    let r = approve(s, &f.carol, &id);
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert!(f.web1.poll(s, 0).unwrap().grants.is_empty());
    apply(&s.data, POLICY);

    // The role changed (narrower max) while the request waits: not granted in either form.
    let id = id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    apply(&s.data, &POLICY.replace("max = \"2h\"", "max = \"30m\""));
    let r = approve(s, &f.carol, &id);
    assert_eq!(r.status, 409, "{:?}", r.json());
    assert!(r.json()["error"].as_str().unwrap().contains("changed"));
    assert!(f.web1.poll(s, 0).unwrap().grants.is_empty());

    // The only host was removed while the request waited.
    let id = id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    run_ok(&["host", "remove", "web1", "--data", data_arg(&s.data)]);
    let r = approve(s, &f.dave, &id);
    assert_eq!(r.status, 409, "{:?}", r.json());
}

#[test]
fn a_rotated_signing_key_is_accepted_by_enrolled_hosts_without_re_enrolling() {
    let data = temp_dir("rotate");
    init(&data);
    apply(&data, POLICY);
    let join = join_token(&data, "web1", &["env=prod"]);
    let mut web1 = Host::new("?", 31);
    let old_cert = {
        let s = Server::start(&data);
        assert_eq!(web1.enroll(&s, &join).status, 200);
        let (r, _) = web1.poll_raw(&s, 0, 0);
        web1.poll(&s, 0).unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["cert"].clone()
    };
    // A root key other than the pinned one is refused.
    let other = data.join("other.key");
    std::fs::write(&other, "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    let (rc, _, err) = run(&[
        "key",
        "rotate",
        "--root-key",
        other.to_str().unwrap(),
        "--data",
        data_arg(&data),
    ]);
    assert_ne!(rc, 0);
    assert!(err.contains("not the root key"), "{err}");
    // The real root key (brought back from offline) certifies a new online key.
    let root = data.join("root.key");
    run_ok(&[
        "key",
        "rotate",
        "--root-key",
        root.to_str().unwrap(),
        "--data",
        data_arg(&data),
    ]);
    let s = Server::start(&data);
    let (r, _) = web1.poll_raw(&s, 0, 0);
    let new_cert = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["cert"].clone();
    assert_ne!(
        new_cert, old_cert,
        "documents are signed under the new certificate"
    );
    // Verified with the pins from enrolment.
    web1.poll(&s, 0).unwrap();
    let out = run_ok(&["audit", "--data", data_arg(&data)]);
    assert!(out.contains("key.rotate"));
}

#[test]
fn serve_refuses_a_certificate_that_does_not_match_its_key() {
    let data = temp_dir("mismatch");
    init(&data);
    let other = temp_dir("mismatch-other");
    init(&other);
    std::fs::copy(other.join("signing.cert"), data.join("signing.cert")).unwrap();
    let err = Server::try_start(&data).err().expect("must refuse");
    assert!(err.contains("signing.cert"), "{err}");
}

#[test]
fn reviews_are_bound_to_the_request_content_they_saw() {
    let mut f = fleet();
    let s = &f.server;
    let id = id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    // The stored request is altered after bob reviewed it (another duration).
    tamper(
        &s.data,
        &format!("UPDATE request SET duration = 7200 WHERE id = '{id}'"),
    );
    let r = approve(s, &f.carol, &id);
    assert_eq!(r.status, 409, "{:?}", r.json());
    assert!(r.json()["error"].as_str().unwrap().contains("altered"));
    assert!(f.web1.poll(s, 0).unwrap().grants.is_empty());
}

#[test]
fn an_expired_join_token_is_refused_and_the_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let data = temp_dir("expired-join");
    init(&data);
    let mode = std::fs::metadata(data.join("server.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let join = join_token(&data, "web1", &["env=prod"]);
    // An hour later (the record's expiry moved into the past).
    tamper(
        &data,
        "UPDATE join_token SET expires_at = expires_at - 3601",
    );
    let s = Server::start(&data);
    assert_eq!(Host::new("x", 41).enroll(&s, &join).status, 403);
    // A new token for the same, never-enrolled host works.
    let join2 = join_token(&data, "web1", &["env=prod"]);
    assert_eq!(Host::new("x", 41).enroll(&s, &join2).status, 200);
    // And an enrolled host cannot be handed a second join token.
    let (rc, _, err) = run(&["host", "add", "web1", "--data", data_arg(&data)]);
    assert_ne!(rc, 0);
    assert!(err.contains("enrolled already"), "{err}");
}

#[test]
fn host_events_reach_the_server_audit_signed_and_capped() {
    let f = fleet();
    let s = &f.server;
    let post = |h: &Host, as_host: &str, body: serde_json::Value| {
        h.signed(
            s,
            as_host,
            "POST",
            "/v1/host/events",
            &serde_json::to_vec(&body).unwrap(),
        )
    };
    let ev = json!({ "events": [
        { "at": 1, "kind": "session_open", "grant": "sg-1", "detail": "alice ssh from 127.0.0.1" },
        { "at": 2, "kind": "teardown_complete", "grant": "sg-1" } ] });
    assert_eq!(post(&f.web1, "web1", ev.clone()).json()["recorded"], 2);
    // Another host's name with this host's key: refused.
    assert_eq!(post(&f.dev1, "web1", ev).status, 401);
    // Unknown kinds, control characters, too many: refused whole.
    let bad = json!({ "events": [ { "at": 1, "kind": "grant_live" }, { "at": 1, "kind": "root_shell" } ] });
    assert_eq!(post(&f.web1, "web1", bad).status, 400);
    let bad = json!({ "events": [ { "at": 1, "kind": "sudo", "detail": "x\u{1b}[2Jy" } ] });
    assert_eq!(post(&f.web1, "web1", bad).status, 400);
    let many: Vec<_> = (0..101)
        .map(|i| json!({ "at": i, "kind": "sudo" }))
        .collect();
    assert_eq!(post(&f.web1, "web1", json!({ "events": many })).status, 400);
    let out = run_ok(&[
        "audit",
        "--data",
        data_arg(&s.data),
        "--json",
        "--limit",
        "1000",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let events: Vec<_> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("host.event."))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["actor"], "host:web1");
    assert_eq!(events[0]["action"], "host.event.session_open");
}

#[test]
fn configured_tls_files_are_served_and_pinned() {
    let data = temp_dir("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["jit.example.org".into()]).unwrap();
    let (cert, key) = (data.join("my.crt"), data.join("my.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    std::fs::write(
        data.join("server.toml"),
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let (admin, fp) = init(&data);
    assert_eq!(fp, jit_proto::state_doc::bytes_fingerprint(ck.cert.der()));
    assert!(
        !data.join("tls.crt").exists(),
        "no self-signed pair when files are configured"
    );
    let s = Server::start(&data);
    assert_eq!(s.fingerprint, fp);
    assert_eq!(
        s.call("GET", "/v1/whoami", &admin, None).json()["name"],
        "admin"
    );
    // A client pinned to another certificate does not talk to it.
    let other = jit_server::client::pinned_config(&["SHA256:AAAA".to_string()]).unwrap();
    let headers = vec![("Authorization", format!("Bearer {admin}"))];
    let r = jit_server::client::request(
        &other,
        &s.addr,
        "GET",
        "/v1/whoami",
        &headers,
        b"",
        Duration::from_secs(10),
    );
    assert!(r.is_err());
}

#[test]
fn a_revoked_token_stops_working() {
    let f = fleet();
    let s = &f.server;
    assert_eq!(s.call("GET", "/v1/whoami", &f.bob, None).status, 200);
    let out = run_ok(&["token", "revoke", "bob", "--data", data_arg(&s.data)]);
    assert!(out.contains("revoked 1"), "{out}");
    assert_eq!(s.call("GET", "/v1/whoami", &f.bob, None).status, 401);
    // A person removed from the policy loses every token too.
    apply(
        &s.data,
        &POLICY.replacen("[[person]]\nname = \"carol\"\ngroups = [\"sre\"]\n", "", 1),
    );
    assert_eq!(s.call("GET", "/v1/whoami", &f.carol, None).status, 401);
}

#[test]
fn an_enrolment_retry_works_only_within_the_tokens_lifetime_and_is_audited() {
    let data = temp_dir("join-retry");
    init(&data);
    let j = join_token(&data, "web8", &["env=prod"]);
    let s = Server::start(&data);
    assert_eq!(Host::new("?", 81).enroll(&s, &j).status, 200);
    // The first answer was lost: the same key retries while the token would still be valid.
    assert_eq!(Host::new("?", 81).enroll(&s, &j).status, 200);
    let out = run_ok(&["audit", "--data", data_arg(&data)]);
    assert!(out.contains("host.enroll_retry\tweb8"), "{out}");
    // Past the token's lifetime the retry is refused, same key or not.
    tamper(&data, "UPDATE join_token SET expires_at = 1000");
    let r = Host::new("?", 81).enroll(&s, &j);
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_person_removed_and_added_again_does_not_get_old_tokens_back() {
    let f = fleet();
    let s = &f.server;
    let data = s.data.clone();
    assert_eq!(s.call("GET", "/v1/whoami", &f.alice, None).status, 200);
    // alice leaves (removed from the policy)…
    let without: String = POLICY.replacen(
        "[[person]]\nname = \"alice\"\ngroups = [\"dev\"]\nssh_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtest alice@laptop\"]\n",
        "",
        1,
    );
    assert_ne!(without, POLICY);
    apply(
        &data,
        &without.replace("who = [\"dev\", \"oncall\"]", "who = [\"oncall\"]"),
    );
    assert_eq!(s.call("GET", "/v1/whoami", &f.alice, None).status, 401);
    // …and someone is added later under the same name: the old token stays dead.
    apply(&data, POLICY);
    assert_eq!(s.call("GET", "/v1/whoami", &f.alice, None).status, 401);
    let fresh = token(&data, "alice");
    assert_eq!(s.call("GET", "/v1/whoami", &fresh, None).status, 200);
    let out = run_ok(&["audit", "--data", data_arg(&data)]);
    assert!(out.contains("token.revoke\tpolicy"), "{out}");
}

#[test]
fn heartbeats_keep_one_sequence_row_per_host_and_a_removed_host_can_enrol_again() {
    let mut f = fleet();
    let s = &f.server;
    let r = file_request(s, &f.erin, web_request());
    assert_eq!(r.json()["state"], "approved");
    let first = f.web1.poll(s, 0).unwrap();
    f.web1.ack(s, first.seq);
    for _ in 0..20 {
        let d = f.web1.poll(s, 0).unwrap();
        assert_eq!(f.web1.ack(s, d.seq).status, 200);
    }
    let data = s.data.clone();
    let hb = query_i64(
        &data,
        "SELECT COUNT(*) FROM host_seq WHERE host = 'web1' AND why = 'heartbeat'",
    );
    assert!(hb <= 1, "{hb} heartbeat rows kept for web1");
    // The grant's row stays, the sequence still only grows, and heartbeat acks are not audited.
    assert!(
        query_i64(
            &data,
            "SELECT COUNT(*) FROM host_seq WHERE host = 'web1' AND why <> 'heartbeat'"
        ) >= 1
    );
    assert!(f.web1.poll(s, 0).unwrap().seq > first.seq + 20);
    let out = run_ok(&["audit", "--data", data_arg(&data)]);
    assert!(!out.contains("()"), "{out}");
    // Removed and added again under the same name: a new key enrols and gets documents.
    run_ok(&["host", "remove", "web1", "--data", data_arg(&data)]);
    let j = join_token(&data, "web1", &["env=prod"]);
    let mut again = Host::new("?", 77);
    assert_eq!(again.enroll(s, &j).status, 200);
    again.poll(s, 0).unwrap();
}

#[test]
fn serve_applies_pending_migrations() {
    let data = temp_dir("migrate");
    init(&data);
    // A database as an older jit-server left it: schema version 1.
    tamper(&data, "ALTER TABLE request DROP COLUMN ticket_verified_at");
    tamper(&data, "DROP TABLE mfa_secret");
    tamper(&data, "DROP TABLE mfa_pending");
    tamper(&data, "DROP TABLE mfa_used");
    tamper(&data, "ALTER TABLE host DROP COLUMN seal_key");
    tamper(&data, "DROP INDEX request_requester");
    tamper(&data, "DROP INDEX sgrant_host");
    tamper(&data, "DROP INDEX sgrant_request");
    tamper(&data, "ALTER TABLE sgrant DROP COLUMN weight");
    // A grant row an older server wrote, without its weight in the host's document.
    tamper(
        &data,
        "INSERT INTO sgrant (id, host, request_id, doc, not_after) VALUES ('sg-1', 'h', 'r-1', 'ab\u{e9}', 0)",
    );
    tamper(&data, "DELETE FROM schema_version WHERE version >= 2");
    let _s = Server::start(&data);
    assert_eq!(
        query_i64(&data, "SELECT MAX(version) FROM schema_version"),
        5
    );
    assert_eq!(query_i64(&data, "SELECT COUNT(*) FROM schema_version"), 5);
    // Its weight is an upper bound: four bytes a character, and a secret.
    assert_eq!(
        query_i64(&data, "SELECT weight FROM sgrant WHERE id = 'sg-1'"),
        4 * 3 + 385
    );
    // An empty database is not served: init creates the keys and the first admin.
    let empty = temp_dir("migrate-empty");
    let err = Server::try_start(&empty).err().unwrap();
    assert!(err.contains("jit-server init"), "{err}");
}

#[test]
fn sighup_loads_a_rotated_signing_key_without_a_restart() {
    let data = temp_dir("hup");
    init(&data);
    apply(&data, POLICY);
    let join = join_token(&data, "web1", &["env=prod"]);
    let s = Server::start(&data);
    let mut web1 = Host::new("?", 41);
    assert_eq!(web1.enroll(&s, &join).status, 200);
    let cert_of = |r: &jit_server::client::Reply| {
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["cert"].clone()
    };
    let (r, _) = web1.poll_raw(&s, 0, 0);
    let old_cert = cert_of(&r);
    let root = data.join("root.key");
    run_ok(&[
        "key",
        "rotate",
        "--root-key",
        root.to_str().unwrap(),
        "--data",
        data_arg(&data),
    ]);
    sighup(&s);
    // Bounded: the signal is handled within a few seconds at most.
    let mut switched = false;
    for _ in 0..100 {
        let (r, _) = web1.poll_raw(&s, 0, 0);
        if cert_of(&r) != old_cert {
            switched = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(switched, "documents are signed with the rotated key");
    // Still verified with the pins from enrolment.
    web1.poll(&s, 0).unwrap();
    let out = run_ok(&["audit", "--data", data_arg(&data)]);
    assert!(out.contains("key.reload"), "{out}");
}

#[test]
fn a_trickling_client_is_cut_off_and_one_address_holds_a_bounded_number_of_connections() {
    use std::io::{Read, Write};
    let data = temp_dir("loris");
    std::fs::write(
        data.join("server.toml"),
        "request_read_timeout = 2\nmax_connections_per_ip = 4\n",
    )
    .unwrap();
    init(&data);
    let s = Server::start(&data);
    // A body trickled one byte every 200 ms: answered 408 and closed at the deadline.
    let mut t = tls_stream(&s).unwrap();
    t.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    t.write_all(
        b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .unwrap();
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut ended = false;
    for _ in 0..100 {
        if t.write_all(b" ").and_then(|_| t.flush()).is_err() {
            ended = true;
            break;
        }
        match t.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    let took = start.elapsed();
    assert!(ended, "the trickling connection was never closed");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < Duration::from_secs(10), "cut off after {took:?}");
    // Four idle connections from one address: a fifth is closed before TLS.
    let held: Vec<_> = (0..4).map(|_| tls_stream(&s).unwrap()).collect();
    assert!(
        tls_stream(&s).is_err(),
        "a fifth connection from one address"
    );
    drop(held);
    // Slots come back when connections end (bounded wait).
    let mut back = false;
    for _ in 0..50 {
        if tls_stream(&s).is_ok() {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(back);
    assert_eq!(s.call("GET", "/v1/whoami", "nope", None).status, 401);
}

#[test]
fn the_next_tls_key_is_published_signed_and_served_after_promotion() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use jit_proto::state_doc::{strict_from_slice, SigningCert, CERT_DOMAIN};
    let data = temp_dir("tls-next");
    init(&data);
    let join = join_token(&data, "web1", &["env=prod"]);
    let s = Server::start(&data);
    let mut web1 = Host::new("?", 51);
    let e = web1.enroll(&s, &join);
    assert_eq!(e.status, 200);
    assert!(e.json()["tls_next_fingerprint"].is_null());
    let root_key = web1.pins.as_ref().unwrap().root_key;
    // What jitd does with the pin document: the chain to the pinned root, then the body.
    let pins = |nonce: &str| -> serde_json::Value {
        let r = web1.signed(
            &s,
            "web1",
            "GET",
            &format!("/v1/host/tls?nonce={nonce}"),
            b"",
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let env: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let b = |k: &str| STANDARD.decode(env[k].as_str().unwrap()).unwrap();
        let root = ed25519_dalek::VerifyingKey::from_bytes(&root_key).unwrap();
        let mut m = CERT_DOMAIN.to_vec();
        m.extend_from_slice(&b("cert"));
        let sig: [u8; 64] = b("cert_sig").try_into().unwrap();
        root.verify_strict(&m, &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
        let cert: SigningCert = strict_from_slice(&b("cert")).unwrap();
        let online: [u8; 32] = STANDARD.decode(&cert.key).unwrap().try_into().unwrap();
        let online = ed25519_dalek::VerifyingKey::from_bytes(&online).unwrap();
        let mut m = jit_server::pins::PINS_DOMAIN.to_vec();
        m.extend_from_slice(&b("body"));
        let sig: [u8; 64] = b("sig").try_into().unwrap();
        online
            .verify_strict(&m, &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&b("body")).unwrap();
        assert_eq!(body["host"], "web1");
        assert_eq!(body["nonce"], nonce);
        body
    };
    let p = pins("p1");
    assert_eq!(p["current"], s.fingerprint.as_str());
    assert!(p["next"].is_null());
    let out = run_ok(&["key", "tls-next", "--data", data_arg(&data)]);
    let next = out
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert!(next.starts_with("SHA256:"), "{out}");
    sighup(&s);
    let mut published = false;
    for i in 0..100 {
        if pins(&format!("p2-{i}"))["next"] == next.as_str() {
            published = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(published, "the next key's fingerprint is published");
    // A host enrolling now pins both.
    let j2 = join_token(&data, "web2", &["env=prod"]);
    let e = Host::new("?", 52).enroll(&s, &j2);
    assert_eq!(e.json()["tls_next_fingerprint"], next.as_str());
    // Promoted and reloaded: a client pinning only the published next key connects, one
    // pinning only the old key does not.
    run_ok(&["key", "tls-promote", "--data", data_arg(&data)]);
    sighup(&s);
    let only_next = jit_server::client::pinned_config(std::slice::from_ref(&next)).unwrap();
    let mut served = false;
    for _ in 0..100 {
        if let Ok(r) = jit_server::client::request(
            &only_next,
            &s.addr,
            "GET",
            "/v1/whoami",
            &[],
            b"",
            Duration::from_secs(10),
        ) {
            assert_eq!(r.status, 401);
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "the promoted key is served");
    assert!(jit_server::client::request(
        &s.cfg,
        &s.addr,
        "GET",
        "/v1/whoami",
        &[],
        b"",
        Duration::from_secs(10)
    )
    .is_err());
    let out = run_ok(&["audit", "--data", data_arg(&data)]);
    assert!(
        out.contains("key.tls_next") && out.contains("key.tls_promote"),
        "{out}"
    );
}

#[test]
fn a_host_ahead_of_a_restored_database_is_answered_at_once_past_its_sequence() {
    let mut f = fleet();
    let s = &f.server;
    f.web1.poll(s, 0).unwrap();
    // The host applied 1000; the database (restored from an old backup) knows less. A long
    // poll answers now, not at its wait, with a number above 1000.
    f.web1.applied = 1000;
    let t = Instant::now();
    let doc = f.web1.poll(s, 20).unwrap();
    assert!(doc.seq > 1000);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        t.elapsed()
    );
}

#[test]
fn operator_commands_wait_for_the_serving_writer_instead_of_failing() {
    let mut f = fleet();
    let data = f.server.data.clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        let (s, web1, stop) = (&f.server, &mut f.web1, &stop);
        // web1 heartbeats as fast as it can: a write transaction on the server each time.
        sc.spawn(move || {
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                web1.poll(s, 0).unwrap();
            }
        });
        for i in 0..15 {
            let (rc, out, err) = run(&[
                "host",
                "add",
                &format!("busy{i}"),
                "--data",
                data_arg(&data),
                "--json",
            ]);
            assert_eq!(rc, 0, "host add {i}: {out} {err}");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

#[test]
fn a_host_certifies_only_its_own_grants_and_people_see_only_theirs() {
    let mut f = fleet();
    let s = &f.server;
    // erin (on call) is approved at once; web1 holds the grant.
    let r = file_request(s, &f.erin, web_request());
    assert_eq!(r.json()["state"], "approved", "{:?}", r.json());
    let rq = r.json()["id"].as_str().unwrap().to_string();
    let doc = f.web1.poll(&f.server, 0).unwrap();
    let s = &f.server;
    let sg = doc.grants[0].id.clone();
    let cert = |item: &str| {
        json!({ "status": "changed", "baseline_at": 1, "taken_at": 2, "items": 3,
                "differences": [ { "area": "sudoers", "item": item, "change": "added",
                                   "after": { "kind": "file", "owner": 0, "mode": "0440" },
                                   "root_equivalent": true } ],
                "omitted": 0, "unreadable": [] })
    };
    let post = |h: &Host, as_host: &str, body: serde_json::Value| {
        h.signed(
            s,
            as_host,
            "POST",
            "/v1/host/certification",
            &serde_json::to_vec(&body).unwrap(),
        )
    };
    let mine = json!({ "grant": sg, "local_grant": "g-1a", "source": "server", "user": "erin",
                       "certification": cert("/etc/sudoers.d/planted") });
    let r = post(&f.web1, "web1", mine.clone());
    assert_eq!(r.status, 200, "{:?}", r.json());
    // The user is the server's record, not the host's word: alice cannot be shown erin's.
    let claim = json!({ "grant": sg, "local_grant": "g-1a", "source": "server", "user": "alice",
                        "certification": cert("/etc/shadow") });
    assert_eq!(post(&f.web1, "web1", claim).status, 200);
    assert_eq!(r.json()["recorded"], sg.as_str());
    // dev1 never held it: refused, even signed correctly.
    assert_eq!(post(&f.dev1, "dev1", mine).status, 403);
    // A local grant is stored under the reporting host's name, never another's.
    let local = json!({ "grant": "g-2b", "local_grant": "g-2b", "source": "local", "user": "root",
                        "certification": cert("/etc/passwd") });
    assert_eq!(post(&f.dev1, "dev1", local).json()["recorded"], "dev1/g-2b");
    // Control characters in what a host reports: refused.
    let bad = json!({ "grant": sg, "local_grant": "g-1a", "source": "server", "user": "erin",
                      "certification": cert("/etc/x\u{1b}[2J") });
    assert_eq!(post(&f.web1, "web1", bad).status, 400);

    let seen = |token: &str, id: &str| {
        s.call("GET", &format!("/v1/certifications/{id}"), token, None)
            .json()["certifications"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(seen(&f.erin, &rq), 2, "the grant's holder sees it");
    assert_eq!(seen(&f.erin, &sg), 2);
    assert_eq!(seen(&f.alice, &rq), 0, "another person does not");
    assert_eq!(seen(&f.admin, &rq), 2, "an admin does");
    assert_eq!(
        seen(&f.alice, "dev1%2Fg-2b"),
        0,
        "local grants: admins only"
    );
    assert_eq!(seen(&f.admin, "dev1%2Fg-2b"), 1);
    let out = run_ok(&["certification", &rq, "--data", data_arg(&s.data)]);
    assert!(
        out.contains("on web1")
            && out.contains("changed")
            && out.contains("/etc/sudoers.d/planted"),
        "{out}"
    );
}

/// Enrols more env=prod hosts beside the fleet's web1 (host add through the CLI, enrolment
/// over HTTPS).
fn more_prod_hosts(s: &Server, names: &[&str]) -> Vec<Host> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let j = join_token(&s.data, n, &["env=prod"]);
            let mut h = Host::new("?", 40 + i as u8);
            assert_eq!(h.enroll(s, &j).status, 200);
            h
        })
        .collect()
}

#[test]
fn a_fan_out_with_one_failing_host_changes_no_host() {
    // An approval or revocation for several hosts commits once, for all of them: a number
    // already taken on one host (planted here, as a bug or a racing writer would) fails the
    // whole batch, and no host gets the grant, the revocation or a number.
    let mut f = fleet();
    let s = &f.server;
    let mut more = more_prod_hosts(s, &["web2", "web3"]);
    f.web1.poll(s, 0).unwrap();
    let seqs = |d: &std::path::Path| -> Vec<i64> {
        ["web1", "web2", "web3"]
            .iter()
            .map(|h| query_i64(d, &format!("SELECT seq FROM host WHERE name = '{h}'")))
            .collect()
    };
    let body = json!({ "role": "web-admin", "hosts": ["web3", "web1", "web2"], "duration": "30m",
                       "reason": "batch test, three hosts", "ticket": "OPS-7" });
    let id = id_of(&file_request(s, &f.alice, body));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    let before = seqs(&s.data);
    let plant = |d: &std::path::Path| {
        tamper(
            d,
            "INSERT INTO host_seq (host, seq, at, why) \
             SELECT name, seq + 1, 0, 'planted' FROM host WHERE name = 'web2'",
        )
    };
    plant(&s.data);
    let r = approve(s, &f.carol, &id);
    assert_eq!(r.status, 500, "{:?}", r.json());
    assert_eq!(seqs(&s.data), before, "no host's number moved");
    assert_eq!(query_i64(&s.data, "SELECT COUNT(*) FROM sgrant"), 0);
    assert_eq!(
        query_i64(
            &s.data,
            "SELECT COUNT(*) FROM audit WHERE action = 'request.approved' \
             OR (action = 'review.approve' AND actor = 'carol')"
        ),
        0,
        "the deciding review went with the batch"
    );
    let v = s
        .call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
        .json();
    assert_eq!(v["state"], "pending");

    // Without the planted row the same approval goes through for all three at once.
    tamper(&s.data, "DELETE FROM host_seq WHERE why = 'planted'");
    assert_eq!(approve(s, &f.carol, &id).json()["state"], "approved");
    let granted = seqs(&s.data);
    assert_eq!(
        granted,
        before.iter().map(|x| x + 1).collect::<Vec<_>>(),
        "one number each"
    );
    assert_eq!(
        query_i64(
            &s.data,
            &format!("SELECT COUNT(*) FROM sgrant WHERE request_id = '{id}' AND host IN ('web1', 'web2', 'web3')")
        ),
        3
    );
    for h in std::iter::once(&mut f.web1).chain(more.iter_mut()) {
        let doc = h.poll(s, 0).unwrap();
        assert_eq!(doc.grants.len(), 1);
        assert_eq!(doc.grants[0].request_id, id);
        assert_eq!(doc.grants[0].user, "alice");
    }

    // The same for a revocation.
    plant(&s.data);
    let r = s.call("POST", "/v1/revoke", &f.alice, Some(json!({ "id": id })));
    assert_eq!(r.status, 500, "{:?}", r.json());
    assert_eq!(seqs(&s.data), granted);
    assert_eq!(
        query_i64(
            &s.data,
            "SELECT COUNT(*) FROM sgrant WHERE revoked_at IS NOT NULL"
        ),
        0
    );
    tamper(&s.data, "DELETE FROM host_seq WHERE why = 'planted'");
    let r = s.call("POST", "/v1/revoke", &f.alice, Some(json!({ "id": id })));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        seqs(&s.data),
        granted.iter().map(|x| x + 1).collect::<Vec<_>>()
    );
    for h in std::iter::once(&mut f.web1).chain(more.iter_mut()) {
        assert!(h.poll(s, 0).unwrap().grants.is_empty());
    }
}
