//! jit-server on a real PostgreSQL cluster with two replicas: cross-replica wake-ups, one
//! outcome under concurrency, a killed LISTEN connection still delivering.

mod common;

use std::time::{Duration, Instant};

use common::pg::Pg;
use common::*;
use serde_json::json;

#[test]
fn request_on_a_approved_on_b_reaches_a_host_polling_a() {
    let pg = Pg::start();
    let mut f = fleet_in(&pg.data_dir());
    let a = &f.server;
    let b = Server::start(&a.data);
    f.web1.poll(a, 0).unwrap();
    let id = id_of(&file_request(a, &f.alice, web_request()));
    assert_eq!(approve(&b, &f.bob, &id).json()["state"], "pending");
    let t0 = Instant::now();
    let (doc, approved_at) = std::thread::scope(|sc| {
        let h = sc.spawn(|| f.web1.poll(a, 30));
        std::thread::sleep(Duration::from_millis(500));
        let r = approve(&b, &f.carol, &id);
        assert_eq!(r.json()["state"], "approved", "{:?}", r.json());
        let at = Instant::now();
        (h.join().unwrap().unwrap(), at)
    });
    let latency = approved_at.elapsed();
    eprintln!("approve on B -> document on A's long-poll: {latency:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "woken across replicas, not by the heartbeat"
    );
    assert_eq!(doc.grants.len(), 1);
    assert_eq!(doc.grants[0].request_id, id);
}

#[test]
fn fifty_concurrent_approvals_by_one_person_across_replicas_count_once() {
    let pg = Pg::start();
    let f = fleet_in(&pg.data_dir());
    let a = &f.server;
    let b = Server::start(&a.data);
    let id = id_of(&file_request(a, &f.alice, web_request()));
    let bob2 = token(&a.data, "bob");
    let ok = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let s = if i % 2 == 0 { a } else { &b };
                let t = if i % 3 == 0 {
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
    let v = a
        .call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
        .json();
    assert_eq!(v["state"], "pending");
    assert_eq!(v["approvals"], json!(["bob"]));
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM review WHERE request_id = '{id}'"
        ))
        .trim(),
        "1"
    );
}

#[test]
fn approve_and_deny_racing_across_replicas_have_one_outcome_and_at_most_one_grant() {
    let pg = Pg::start();
    let f = fleet_in(&pg.data_dir());
    let a = &f.server;
    let b = Server::start(&a.data);
    for _ in 0..5 {
        let id = id_of(&file_request(a, &f.alice, web_request()));
        assert_eq!(approve(a, &f.bob, &id).status, 200);
        let (ap, dn) = std::thread::scope(|sc| {
            let x = sc.spawn(|| approve(a, &f.carol, &id));
            let y = sc.spawn(|| deny(&b, &f.dave, &id));
            (x.join().unwrap(), y.join().unwrap())
        });
        let state = a
            .call("GET", &format!("/v1/requests/{id}"), &f.bob, None)
            .json()["state"]
            .clone();
        let grants = pg.psql(&format!(
            "SELECT count(DISTINCT id) FROM sgrant WHERE request_id = '{id}'"
        ));
        if state == "approved" {
            assert_eq!((ap.status, dn.status), (200, 409));
            assert_eq!(grants.trim(), "1");
        } else {
            assert_eq!(state, "denied");
            assert_eq!((ap.status, dn.status), (409, 200));
            assert_eq!(grants.trim(), "0");
        }
    }
    // Every sequence number was issued once per host (the unique constraint held).
    assert_eq!(
        pg.psql("SELECT count(*) FROM (SELECT host, seq FROM host_seq GROUP BY host, seq HAVING count(*) > 1) d").trim(),
        "0"
    );
}

#[test]
fn a_killed_listen_connection_still_delivers_a_revoke() {
    let pg = Pg::start();
    let mut f = fleet_in(&pg.data_dir());
    let a = &f.server;
    let b = Server::start(&a.data);
    let r = file_request(a, &f.erin, web_request());
    assert_eq!(r.json()["state"], "approved");
    let id = id_of(&r);
    assert_eq!(f.web1.poll(a, 0).unwrap().grants.len(), 1);
    let t0 = Instant::now();
    let doc = std::thread::scope(|sc| {
        let h = sc.spawn(|| f.web1.poll(a, 30));
        std::thread::sleep(Duration::from_millis(500));
        // Kill every LISTEN connection (both replicas'), then revoke on B.
        let killed = pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'");
        assert_ne!(killed.trim(), "0", "the replicas hold LISTEN connections");
        let r = b.call("POST", "/v1/revoke", &f.erin, Some(json!({ "id": id })));
        assert_eq!(r.status, 200, "{:?}", r.json());
        h.join().unwrap().unwrap()
    });
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "delivered by the re-read, not the heartbeat"
    );
    assert!(doc.grants.is_empty());
}

#[test]
fn replicas_migrating_at_once_take_turns_under_the_advisory_lock() {
    let pg = Pg::start();
    let url = pg.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let mut dbs = Vec::new();
        for _ in 0..4 {
            dbs.push(jit_server::db::Db::open(&url).await.unwrap());
        }
        // Interleaved on one runtime: each run's queries alternate with the others' at every
        // round trip, which is what two replicas starting together do.
        let (a, b, c, d) = tokio::join!(
            dbs[0].migrate(),
            dbs[1].migrate(),
            dbs[2].migrate(),
            dbs[3].migrate()
        );
        [a, b, c, d].map(|r| r.map_err(|e| e.to_string()))
    });
    for r in &results {
        assert!(r.is_ok(), "{results:?}");
    }
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version")
            .trim(),
        "1,2,3,4,5",
        "each migration ran once"
    );
}

/// Enrols more env=prod hosts beside the fleet's web1.
fn more_prod_hosts(s: &Server, names: &[&str]) -> Vec<Host> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let j = join_token(&s.data, n, &["env=prod"]);
            let mut h = Host::new("?", 60 + i as u8);
            assert_eq!(h.enroll(s, &j).status, 200);
            h
        })
        .collect()
}

fn seqs(pg: &Pg) -> String {
    pg.psql(
        "SELECT string_agg(name || '=' || seq, ',' ORDER BY name) FROM host WHERE name LIKE 'web%'",
    )
    .trim()
    .to_string()
}

#[test]
fn a_fan_out_with_one_failing_host_changes_no_host() {
    // One transaction, one commit for every host of an approval or revocation: a number
    // already taken on one host fails the whole batch on PostgreSQL as on SQLite.
    let pg = Pg::start();
    let f = fleet_in(&pg.data_dir());
    let s = &f.server;
    let _more = more_prod_hosts(s, &["web2", "web3"]);
    let body = json!({ "role": "web-admin", "hosts": ["web3", "web1", "web2"], "duration": "30m",
                       "reason": "batch test, three hosts", "ticket": "OPS-7" });
    let id = id_of(&file_request(s, &f.alice, body));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    let before = seqs(&pg);
    let plant = "INSERT INTO host_seq (host, seq, at, why) \
                 SELECT name, seq + 1, 0, 'planted' FROM host WHERE name = 'web2'";
    pg.psql(plant);
    let r = approve(s, &f.carol, &id);
    assert_eq!(r.status, 500, "{:?}", r.json());
    assert_eq!(seqs(&pg), before, "no host's number moved");
    assert_eq!(pg.psql("SELECT count(*) FROM sgrant").trim(), "0");
    assert_eq!(
        pg.psql(&format!("SELECT state FROM request WHERE id = '{id}'"))
            .trim(),
        "pending"
    );
    pg.psql("DELETE FROM host_seq WHERE why = 'planted'");
    assert_eq!(approve(s, &f.carol, &id).json()["state"], "approved");
    let granted = seqs(&pg);
    assert_ne!(granted, before);
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM sgrant WHERE request_id = '{id}'"
        ))
        .trim(),
        "3"
    );
    pg.psql(plant);
    let r = s.call("POST", "/v1/revoke", &f.alice, Some(json!({ "id": id })));
    assert_eq!(r.status, 500, "{:?}", r.json());
    assert_eq!(seqs(&pg), granted);
    assert_eq!(
        pg.psql("SELECT count(*) FROM sgrant WHERE revoked_at IS NOT NULL")
            .trim(),
        "0"
    );
}

#[test]
fn overlapping_fan_outs_across_replicas_neither_deadlock_nor_reuse_a_sequence() {
    // Many approvals, then many revocations, each for the same three hosts, at once on two
    // replicas: every host row is locked in name order, so they queue instead of deadlocking;
    // each host gets exactly one number per change and no number twice.
    let pg = Pg::start();
    let f = fleet_in(&pg.data_dir());
    let a = &f.server;
    let b = Server::start(&a.data);
    let _more = more_prod_hosts(a, &["web2", "web3"]);
    let n = 12;
    let ids: Vec<String> = (0..n)
        .map(|i| {
            // The hosts in different orders: the lock order must not depend on the request.
            let hosts = match i % 3 {
                0 => json!(["web1", "web2", "web3"]),
                1 => json!(["web3", "web2", "web1"]),
                _ => json!(["web2", "web3", "web1"]),
            };
            let body = json!({ "role": "web-admin", "hosts": hosts, "duration": "30m",
                               "reason": "overlap test, three hosts", "ticket": "OPS-8" });
            let id = id_of(&file_request(a, &f.alice, body));
            // The first of two approvals; the deciding ones race below.
            assert_eq!(approve(a, &f.bob, &id).json()["state"], "pending");
            id
        })
        .collect();
    let start: Vec<i64> = seqs(&pg)
        .split(',')
        .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
        .collect();
    let statuses = |calls: &(dyn Fn(&Server, &str) -> u16 + Sync)| -> Vec<u16> {
        std::thread::scope(|sc| {
            let hs: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let s = if i % 2 == 0 { a } else { &b };
                    sc.spawn(move || calls(s, id))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let approved = statuses(&|s, id| approve(s, &f.carol, id).status);
    assert!(approved.iter().all(|st| *st == 200), "{approved:?}");
    let revoked = statuses(&|s, id| {
        s.call("POST", "/v1/revoke", &f.alice, Some(json!({ "id": id })))
            .status
    });
    assert!(revoked.iter().all(|st| *st == 200), "{revoked:?}");
    let end: Vec<i64> = seqs(&pg)
        .split(',')
        .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
        .collect();
    for (s0, s1) in start.iter().zip(&end) {
        assert_eq!(
            s1 - s0,
            2 * n as i64,
            "one number per approval and per revocation"
        );
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM (SELECT host, seq FROM host_seq GROUP BY host, seq HAVING count(*) > 1) d").trim(),
        "0"
    );
    // Every number between start and end was issued once, to a change.
    assert_eq!(
        pg.psql("SELECT count(*) FROM host_seq WHERE why LIKE 'grant %' OR why LIKE 'revoke %'")
            .trim(),
        (3 * 2 * n).to_string()
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM sgrant WHERE revoked_at IS NOT NULL")
            .trim(),
        (3 * n).to_string()
    );
}

#[test]
fn a_revoke_racing_a_host_removal_neither_deadlocks_nor_fails_the_other_hosts() {
    // `host remove` locks the host row, then ends that host's grant rows. A revocation used to
    // end the grant rows first and lock the host rows after: the two waited for each other and
    // PostgreSQL aborted one (a 500 for the revoke, or a failed removal). Here the removal's
    // transaction (the statements of hosts::remove, in its order) holds the host row while a
    // revocation of a grant on that host and web1 starts: the revocation waits for it, leaves
    // the removed host out, and ends the grant on web1; the removal commits.
    let pg = Pg::start();
    let f = fleet_in(&pg.data_dir());
    let s = &f.server;
    let _more = more_prod_hosts(s, &["web9"]);
    let body = json!({ "role": "web-admin", "hosts": ["web1", "web9"], "duration": "30m",
                       "reason": "revoke racing a host removal", "ticket": "OPS-9" });
    let id = id_of(&file_request(s, &f.alice, body));
    assert_eq!(approve(s, &f.bob, &id).json()["state"], "pending");
    assert_eq!(approve(s, &f.carol, &id).json()["state"], "approved");
    let removal = "BEGIN; DELETE FROM host WHERE name = 'web9'; SELECT pg_sleep(1.5); \
                   DELETE FROM join_token WHERE host = 'web9'; \
                   DELETE FROM host_seq WHERE host = 'web9'; \
                   UPDATE sgrant SET revoked_at = 1 WHERE host = 'web9' AND revoked_at IS NULL; \
                   COMMIT;";
    let revoked = std::thread::scope(|sc| {
        // psql fails (and panics this thread) if PostgreSQL aborted the removal.
        let remover = sc.spawn(|| pg.psql(removal));
        std::thread::sleep(Duration::from_millis(500));
        let r = s.call("POST", "/v1/revoke", &f.alice, Some(json!({ "id": id })));
        remover.join().expect("the removal committed");
        r
    });
    assert_eq!(revoked.status, 200, "{:?}", revoked.json());
    assert_eq!(
        pg.psql("SELECT count(*) FROM host WHERE name = 'web9'")
            .trim(),
        "0"
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT host FROM sgrant WHERE request_id = '{id}' AND revoked_at IS NULL"
        ))
        .trim(),
        "",
        "no grant row of the request is left live"
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM host_seq WHERE host = 'web1' AND why = 'revoke {id}'"
        ))
        .trim(),
        "1",
        "web1 got its number for the revocation"
    );
}

#[test]
fn one_persons_and_one_hosts_limits_hold_under_concurrency_across_replicas() {
    let pg = Pg::start();
    let data = pg.data_dir();
    let mut config = std::fs::read_to_string(data.join("server.toml")).unwrap();
    config.push_str("max_open_requests = 3\nmax_grants_per_host = 2\n");
    std::fs::write(data.join("server.toml"), config).unwrap();
    let mut f = fleet_in(&data);
    let a = &f.server;
    let b = Server::start(&a.data);
    let at_once = |token: &str| -> Vec<u16> {
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let s = if i % 2 == 0 { a } else { &b };
                    sc.spawn(move || file_request(s, token, web_request()).status)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    // alice's requests wait for review: three are filed, the rest refused.
    let st = at_once(&f.alice);
    assert_eq!(st.iter().filter(|s| **s == 200).count(), 3, "{st:?}");
    assert!(st.iter().all(|s| *s == 200 || *s == 429), "{st:?}");
    // erin's are approved at once: web1 takes two, the rest find it full.
    let st = at_once(&f.erin);
    assert_eq!(st.iter().filter(|s| **s == 200).count(), 2, "{st:?}");
    assert!(st.iter().all(|s| *s == 200 || *s == 409), "{st:?}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM sgrant WHERE host = 'web1'")
            .trim(),
        "2"
    );
    assert_eq!(f.web1.poll(a, 0).unwrap().grants.len(), 2);
}
