//! The fleet benchmark, not a gate (ignored by default; it loads the machine for a minute or
//! two): N simulated hosts, one thread and one long-poll each over real TLS on 127.0.0.1, on one
//! `jit-server` (SQLite, or PostgreSQL with `JIT_FLEET_DB=postgres`: a throw-away cluster with
//! fsync on). Measured:
//! * approve → host-visible: from sending the approval to each host holding a verified document
//!   that carries the grant (p50/p99/max over hosts × rounds);
//! * revoke → host-ended: from sending the revocation to each host's verified document without it;
//! * the server's CPU time over the whole measured period and its RSS (now and peak);
//! * request + approve pairs per second (each for one host, four clients at once), while every
//!   host keeps its long-poll open.
//!
//! `bench/fleet` runs it for SQLite and PostgreSQL with 1 000 hosts and writes the table;
//! by hand: `JIT_FLEET_HOSTS=1000 cargo test --release -p jit_server --test fleet_latency -- --ignored --nocapture`.
//! `JIT_FLEET_OUT=FILE` appends one JSON line of figures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use jit_proto::state_doc::{key_fingerprint, verify_document, HostPins};
use jit_server::client::request;
use jit_server::hosts::host_request_message;
use serde_json::{json, Value};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf only reads a constant.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tck
}

/// (VmRSS, VmHWM) in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |k: &str| -> f64 {
        st.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A simulated host: its key, pins and applied sequence; polls as jitd will (signed call,
/// verified document), and survives a failed call (counted, retried after 200 ms).
struct SimHost {
    name: String,
    key: SigningKey,
    pins: HostPins,
    applied: u64,
    nonce: u64,
}

impl SimHost {
    fn poll(&mut self, s: &Server, wait: u32) -> Result<Vec<String>, String> {
        self.nonce += 1;
        let nonce = format!("n{}", self.nonce);
        let pq = format!(
            "/v1/host/state?since={}&wait={wait}s&nonce={nonce}",
            self.applied
        );
        let t = jit_core::time::now();
        let sig = self
            .key
            .sign(&host_request_message("GET", &pq, t, b""))
            .to_bytes();
        let headers = vec![
            ("x-jit-host", self.name.clone()),
            ("x-jit-time", t.to_string()),
            ("x-jit-sig", STANDARD.encode(sig)),
        ];
        let r = request(
            &s.cfg,
            &s.addr,
            "GET",
            &pq,
            &headers,
            b"",
            Duration::from_secs(u64::from(wait) + 30),
        )?;
        if r.status != 200 {
            return Err(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)));
        }
        let body = verify_document(
            &r.body,
            &self.pins,
            jit_core::time::now(),
            self.applied,
            &nonce,
        )
        .map_err(|e| format!("{e:?}"))?;
        self.applied = body.seq;
        Ok(body.grants.into_iter().map(|g| g.request_id).collect())
    }
}

/// A person's call that must succeed; a failure prints the whole answer (the earlier flake: an
/// approval answered without `state`).
fn must(s: &Server, method: &str, path: &str, token: &str, body: Value, want: &str) -> Value {
    let r = s.call(method, path, token, Some(body));
    let v = r.json();
    if r.status != 200 || (!want.is_empty() && v["state"] != want) {
        panic!(
            "{method} {path}: status {} body {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    v
}

const FLEET_ROLES: &str = "
[[role]]
name = \"fleet\"
hosts = { env = \"prod\" }
account = true
max = \"1h\"
[role.approval]
approvals = 1
approvers = [\"sre\"]
reason_min = 5

[[role]]
name = \"one\"
hosts = { env = \"prod\" }
account = true
max = \"1h\"
[role.approval]
approvals = 1
approvers = [\"sre\"]
reason_min = 5

[[entitlement]]
who = [\"dev\"]
roles = [\"fleet\", \"one\"]
";

#[test]
#[ignore]
fn fleet_benchmark() {
    let n: usize = env_or("JIT_FLEET_HOSTS", 100);
    let rounds: usize = env_or("JIT_FLEET_ROUNDS", 3);
    let pairs: usize = env_or("JIT_FLEET_PAIRS", 200);
    let wait: u32 = env_or("JIT_FLEET_WAIT", 30);
    let postgres = std::env::var("JIT_FLEET_DB").as_deref() == Ok("postgres");
    let pg = postgres.then(|| common::pg::Pg::start_with(true));
    let data = match &pg {
        Some(pg) => pg.data_dir(),
        None => temp_dir("fleet-bench"),
    };
    // One address holds every simulated host's connection.
    let mut toml = std::fs::read_to_string(data.join("server.toml")).unwrap_or_default();
    toml.push_str("max_connections_per_ip = 8192\n");
    std::fs::write(data.join("server.toml"), toml).unwrap();
    init(&data);
    apply(&data, &format!("{POLICY}\n{FLEET_ROLES}"));
    let alice = token(&data, "alice");
    let bob = token(&data, "bob");
    // Hosts and join tokens straight through the library (a process per host would take
    // minutes); enrolment goes over HTTPS like a host's.
    let url = jit_server::config::ServerConfig::load(&data, None)
        .unwrap()
        .database_url(&data);
    let joins: Vec<String> = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let db = jit_server::db::Db::open(&url).await.unwrap();
            let labels = [("env".to_string(), "prod".to_string())].into();
            let mut out = Vec::new();
            for i in 0..n {
                let now = jit_core::time::now();
                out.push(
                    jit_server::hosts::add(&db, &format!("h{i}"), &labels, now)
                        .await
                        .unwrap(),
                );
            }
            out
        });
    let s = Server::start(&data);
    let pid = s.child.id();
    let t_setup = Instant::now();
    let hosts: Vec<SimHost> = std::thread::scope(|sc| {
        let chunks: Vec<_> = joins
            .chunks(n.div_ceil(8))
            .enumerate()
            .map(|(c, js)| {
                let s = &s;
                let base = c * n.div_ceil(8);
                sc.spawn(move || {
                    js.iter()
                        .enumerate()
                        .map(|(k, j)| {
                            let i = base + k;
                            let mut seed = [7u8; 32];
                            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                            let key = SigningKey::from_bytes(&seed);
                            let body = json!({ "token": j, "key": STANDARD.encode(key.verifying_key().to_bytes()) });
                            let r = s.call("POST", "/v1/enroll", "", Some(body));
                            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                            let v = r.json();
                            let root: [u8; 32] = STANDARD
                                .decode(v["root_key"].as_str().unwrap())
                                .unwrap()
                                .try_into()
                                .unwrap();
                            let name = v["host"].as_str().unwrap().to_string();
                            let mut h = SimHost {
                                pins: HostPins {
                                    root_key: root,
                                    host: name.clone(),
                                    host_key: key_fingerprint(&key.verifying_key().to_bytes()),
                                },
                                name,
                                key,
                                applied: 0,
                                nonce: 0,
                            };
                            h.poll(s, 0).unwrap();
                            h
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    eprintln!("{n} hosts enrolled in {:?}", t_setup.elapsed());
    let stop = AtomicBool::new(false);
    let errors = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Instant, Vec<String>)>();
    let fig = std::thread::scope(|sc| {
        for (i, mut h) in hosts.into_iter().enumerate() {
            let (s, stop, tx, errors) = (&s, &stop, tx.clone(), &errors);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(sc, move || {
                    // Bounded: ends on the flag, or after 10 000 answers.
                    for _ in 0..10_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match h.poll(s, wait) {
                            Ok(ids) => {
                                let _ = tx.send((i, Instant::now(), ids));
                            }
                            Err(e) => {
                                if errors.fetch_add(1, Ordering::SeqCst) < 5 {
                                    eprintln!("host {i}: {e}");
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                })
                .unwrap();
        }
        // Every host is waiting in its long-poll.
        std::thread::sleep(Duration::from_secs(2));
        let cpu0 = cpu_secs(pid);
        let wall0 = Instant::now();
        let load_before = loadavg();
        let (mut up, mut down) = (Vec::new(), Vec::new());
        // A request names at most 256 hosts: one request per 250 hosts, approved (then
        // revoked) one after another; each host's latency counts from the sending of the call
        // that concerns it.
        let chunk = 250;
        let names: Vec<Vec<String>> = (0..n)
            .collect::<Vec<_>>()
            .chunks(chunk)
            .map(|c| c.iter().map(|i| format!("h{i}")).collect())
            .collect();
        let file_all = |reason: &str, dur: &str| -> Vec<String> {
            names
                .iter()
                .map(|hs| {
                    let req =
                        json!({ "role": "fleet", "hosts": hs, "duration": dur, "reason": reason });
                    must(&s, "POST", "/v1/requests", &alice, req, "pending")["id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        for _ in 0..rounds {
            while rx.try_recv().is_ok() {}
            let ids = file_all("fleet benchmark", "30m");
            for (seen, want) in [(&mut up, true), (&mut down, false)] {
                let mut sent = vec![Instant::now(); n];
                for (k, id) in ids.iter().enumerate() {
                    let t = Instant::now();
                    if want {
                        let p = format!("/v1/requests/{id}/approve");
                        must(&s, "POST", &p, &bob, json!({ "comment": "ok" }), "approved");
                    } else {
                        must(&s, "POST", "/v1/revoke", &alice, json!({ "id": id }), "");
                    }
                    for x in sent.iter_mut().skip(k * chunk).take(chunk) {
                        *x = t;
                    }
                }
                let mut done = vec![false; n];
                let end = Instant::now() + Duration::from_secs(60);
                while done.iter().any(|d| !d) && Instant::now() < end {
                    if let Ok((i, at, got)) = rx.recv_timeout(Duration::from_secs(1)) {
                        if !done[i] && got.contains(&ids[i / chunk]) == want {
                            done[i] = true;
                            seen.push(at.saturating_duration_since(sent[i]));
                        }
                    }
                }
                let missing = done.iter().filter(|d| !**d).count();
                assert_eq!(missing, 0, "{missing} hosts did not see it within 60 s");
            }
        }
        // request + approve throughput: four clients, one host per request.
        let t_pairs = Instant::now();
        let next = AtomicUsize::new(0);
        std::thread::scope(|sc2| {
            for _ in 0..4 {
                let (s, next, alice, bob) = (&s, &next, &alice, &bob);
                sc2.spawn(move || loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= pairs {
                        break;
                    }
                    let req = json!({ "role": "one", "hosts": [format!("h{}", k % n)], "duration": "10m", "reason": "throughput" });
                    let id = must(s, "POST", "/v1/requests", alice, req, "pending")["id"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let p = format!("/v1/requests/{id}/approve");
                    must(s, "POST", &p, bob, json!({ "comment": "ok" }), "approved");
                });
            }
        });
        let pair_secs = t_pairs.elapsed().as_secs_f64();
        let wall = wall0.elapsed().as_secs_f64();
        let cpu = cpu_secs(pid) - cpu0;
        let (rss, hwm) = rss_mib(pid);
        let load_after = loadavg();
        stop.store(true, Ordering::SeqCst);
        // Wake every host so its thread sees the flag now rather than at its wait.
        for id in file_all("fleet benchmark end", "1m") {
            let p = format!("/v1/requests/{id}/approve");
            must(&s, "POST", &p, &bob, json!({ "comment": "ok" }), "approved");
        }
        json!({
            "db": if postgres { "postgres" } else { "sqlite" },
            "hosts": n,
            "rounds": rounds,
            "approve_p50_ms": ms(pct(&mut up, 0.5)),
            "approve_p99_ms": ms(pct(&mut up, 0.99)),
            "approve_max_ms": ms(pct(&mut up, 1.0)),
            "revoke_p50_ms": ms(pct(&mut down, 0.5)),
            "revoke_p99_ms": ms(pct(&mut down, 0.99)),
            "revoke_max_ms": ms(pct(&mut down, 1.0)),
            "pairs": pairs,
            "pairs_per_s": pairs as f64 / pair_secs,
            "server_cpu_s": cpu,
            "wall_s": wall,
            "server_cpu_pct": 100.0 * cpu / wall,
            "server_rss_mib": rss,
            "server_hwm_mib": hwm,
            "poll_errors": errors.load(Ordering::SeqCst),
            "load_before": load_before,
            "load_after": load_after,
        })
    });
    eprintln!("{fig}");
    if let Ok(out) = std::env::var("JIT_FLEET_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap();
        writeln!(f, "{fig}").unwrap();
    }
    flush();
}
