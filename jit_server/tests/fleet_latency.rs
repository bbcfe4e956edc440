//! A measurement, not a gate (ignored by default; it loads the machine for about half a
//! minute): N simulated hosts long-poll one SQLite server over real TLS; a request for all of
//! them is approved (then revoked) and each host records when its verified document showed it.
//! `JIT_FLEET_HOSTS=200 cargo test -p jit_server --test fleet_latency -- --ignored --nocapture`

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

#[test]
#[ignore]
fn approve_and_revoke_reach_every_host() {
    let n: usize = std::env::var("JIT_FLEET_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rounds = 3;
    let data = temp_dir("fleet-latency");
    init(&data);
    apply(
        &data,
        &format!(
            "{POLICY}\n[[role]]\nname = \"fleet\"\nhosts = {{ env = \"prod\" }}\naccount = true\nmax = \"1h\"\n\
             [role.approval]\napprovals = 1\napprovers = [\"sre\"]\nreason_min = 5\n\n\
             [[entitlement]]\nwho = [\"dev\"]\nroles = [\"fleet\"]\n"
        ),
    );
    let alice = token(&data, "alice");
    let bob = token(&data, "bob");
    let joins: Vec<String> = (0..n)
        .map(|i| join_token(&data, &format!("h{i}"), &["env=prod"]))
        .collect();
    let s = Server::start(&data);
    let mut hosts: Vec<Host> = Vec::new();
    for (i, j) in joins.iter().enumerate() {
        let mut h = Host::new("?", (i % 250) as u8 + 1);
        h.key = ed25519_dalek::SigningKey::from_bytes(&{
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed
        });
        assert_eq!(h.enroll(&s, j).status, 200);
        h.poll(&s, 0).unwrap();
        hosts.push(h);
    }
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Instant, Vec<String>)>();
    std::thread::scope(|sc| {
        for (i, mut h) in hosts.into_iter().enumerate() {
            let (s, stop, tx) = (&s, &stop, tx.clone());
            sc.spawn(move || {
                // Bounded: stops on the flag, or after 200 documents.
                for _ in 0..200 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let doc = h.poll(s, 5).unwrap();
                    let ids = doc.grants.iter().map(|g| g.request_id.clone()).collect();
                    let _ = tx.send((i, Instant::now(), ids));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            while rx.try_recv().is_ok() {}
            let req = json!({ "role": "fleet", "select": { "env": "prod" }, "duration": "30m", "reason": "fleet latency" });
            let id = id_of(&file_request(&s, &alice, req));
            let a = approve(&s, &bob, &id);
            assert_eq!(
                a.json()["state"],
                "approved",
                "{}",
                String::from_utf8_lossy(&a.body)
            );
            let t0 = Instant::now();
            for (seen, want) in [(&mut up, true), (&mut down, false)] {
                if !want {
                    assert_eq!(
                        s.call("POST", "/v1/revoke", &alice, Some(json!({ "id": id })))
                            .status,
                        200
                    );
                }
                let t = if want { t0 } else { Instant::now() };
                let mut done = vec![false; n];
                let end = Instant::now() + Duration::from_secs(60);
                while done.iter().any(|d| !d) && Instant::now() < end {
                    if let Ok((i, at, ids)) = rx.recv_timeout(Duration::from_secs(1)) {
                        if !done[i] && ids.contains(&id) == want {
                            done[i] = true;
                            seen.push(at.saturating_duration_since(t));
                        }
                    }
                }
                assert!(done.iter().all(|d| *d), "every host saw it");
            }
        }
        stop.store(true, Ordering::SeqCst);
        eprintln!(
            "{n} hosts, {rounds} rounds: approve->host p50 {:?} p99 {:?} max {:?}; revoke->host p50 {:?} p99 {:?} max {:?}",
            pct(&mut up, 0.5), pct(&mut up, 0.99), pct(&mut up, 1.0),
            pct(&mut down, 0.5), pct(&mut down, 0.99), pct(&mut down, 1.0)
        );
    });
}
