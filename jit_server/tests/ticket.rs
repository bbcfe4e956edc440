//! Ticket binding against a small local ticket service speaking the configured JSON: open when
//! filed, closed while live → revoked on the host, service down → no bulk revocation until
//! `max_unverified`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[derive(Default)]
struct Tickets {
    status: HashMap<String, String>,
    down: bool,
    seen: Vec<String>,
}

/// An HTTP/1.1 service: `GET /rest/api/2/issue/ID` → `{"fields":{"status":{"name":…}}}`, 404
/// for unknown tickets, 500 while down. Stops when dropped.
struct TicketService {
    port: u16,
    state: Arc<Mutex<Tickets>>,
    stop: Arc<AtomicBool>,
}

impl Drop for TicketService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn ticket_service() -> TicketService {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(Tickets::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (st, sp) = (state.clone(), stop.clone());
    std::thread::spawn(move || {
        // Bounded by the test's life: stops when the service is dropped (or after 10 minutes).
        let end = Instant::now() + Duration::from_secs(600);
        while !sp.load(Ordering::SeqCst) && Instant::now() < end {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut t = st.lock().unwrap();
            t.seen.push(head.clone());
            let id = path
                .strip_prefix("/rest/api/2/issue/")
                .unwrap_or("")
                .to_string();
            let (code, body) = if t.down {
                ("500 Internal Server Error", "{}".to_string())
            } else if let Some(s) = t.status.get(&id) {
                (
                    "200 OK",
                    json!({ "fields": { "status": { "name": s } } }).to_string(),
                )
            } else {
                ("404 Not Found", "{}".to_string())
            };
            drop(t);
            let _ = write!(
                c,
                "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    TicketService { port, state, stop }
}

const TICKETED: &str = r#"
[[role]]
name = "ticketed"
hosts = { env = "prod" }
account = true
max = "1h"
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5
ticket = "OPS-[0-9]+"
ticket_check = true

[[entitlement]]
who = ["dev"]
roles = ["ticketed"]
"#;

fn setup(svc: &TicketService, check_every: u64, max_unverified: i64) -> Fleet {
    let data = temp_dir("ticket");
    let token_file = data.join("ticket.token");
    std::fs::write(&token_file, "svc-secret\n").unwrap();
    std::fs::write(
        data.join("server.toml"),
        format!(
            "[ticket]\nurl = \"http://127.0.0.1:{}/rest/api/2/issue/{{id}}\"\nfield = \"fields.status.name\"\n\
             open = [\"Open\", \"In Progress\"]\ntoken_file = \"{}\"\ncheck_every = {check_every}\nmax_unverified = {max_unverified}\n",
            svc.port,
            token_file.display()
        ),
    )
    .unwrap();
    let f = fleet_in(&data);
    apply(&data, &format!("{POLICY}{TICKETED}"));
    f
}

fn ticketed(ticket: &str) -> serde_json::Value {
    json!({ "role": "ticketed", "hosts": ["web1"], "duration": "30m", "reason": "look at logs", "ticket": ticket })
}

#[test]
fn the_ticket_must_be_open_when_the_request_is_filed() {
    let svc = ticket_service();
    let f = setup(&svc, 300, 3600);
    let s = &f.server;
    {
        let mut t = svc.state.lock().unwrap();
        t.status.insert("OPS-1".into(), "In Progress".into());
        t.status.insert("OPS-2".into(), "Done".into());
    }
    assert_eq!(file_request(s, &f.alice, ticketed("OPS-1")).status, 200);
    let r = file_request(s, &f.alice, ticketed("OPS-2"));
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert!(r.json()["error"].as_str().unwrap().contains("Done"));
    assert_eq!(
        file_request(s, &f.alice, ticketed("OPS-404")).status,
        403,
        "missing ticket"
    );
    svc.state.lock().unwrap().down = true;
    assert_eq!(
        file_request(s, &f.alice, ticketed("OPS-1")).status,
        503,
        "service down refuses"
    );
    let seen = svc.state.lock().unwrap().seen.clone();
    assert!(
        seen.iter()
            .all(|h| h.contains("authorization: Bearer svc-secret")),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|h| h.starts_with("GET /rest/api/2/issue/OPS-1 ")));
}

fn wait_revoked(f: &mut Fleet) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if f.web1.poll(&f.server, 0).unwrap().grants.is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn a_ticket_closed_while_the_grant_is_live_revokes_it_on_the_host() {
    let svc = ticket_service();
    let mut f = setup(&svc, 1, 3600);
    svc.state
        .lock()
        .unwrap()
        .status
        .insert("OPS-7".into(), "Open".into());
    let id = id_of(&file_request(&f.server, &f.alice, ticketed("OPS-7")));
    assert_eq!(approve(&f.server, &f.bob, &id).json()["state"], "approved");
    assert_eq!(f.web1.poll(&f.server, 0).unwrap().grants.len(), 1);
    svc.state
        .lock()
        .unwrap()
        .status
        .insert("OPS-7".into(), "Closed".into());
    assert!(
        wait_revoked(&mut f),
        "the grant ends when its ticket closes"
    );
    let out = run_ok(&["audit", "--data", data_arg(&f.server.data)]);
    let line = out
        .lines()
        .find(|l| l.contains("request.revoked"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("\tticket\t") && line.contains("Closed"),
        "{line}"
    );
}

#[test]
fn a_ticket_service_outage_ends_grants_only_after_max_unverified() {
    let svc = ticket_service();
    let mut f = setup(&svc, 1, 4);
    svc.state
        .lock()
        .unwrap()
        .status
        .insert("OPS-8".into(), "Open".into());
    let id = id_of(&file_request(&f.server, &f.alice, ticketed("OPS-8")));
    let approved = approve(&f.server, &f.bob, &id);
    assert_eq!(approved.json()["state"], "approved");
    let decided = approved.json()["decided_at"].as_i64().unwrap();
    svc.state.lock().unwrap().down = true;
    // Checks fail from now on; before max_unverified has passed nothing is revoked.
    std::thread::sleep(Duration::from_millis(1500));
    if jit_core::time::now() - decided < 4 {
        assert_eq!(
            f.web1.poll(&f.server, 0).unwrap().grants.len(),
            1,
            "no revocation on outage alone"
        );
    }
    assert!(
        wait_revoked(&mut f),
        "unverified past max_unverified ends the grant"
    );
    let out = run_ok(&["audit", "--data", data_arg(&f.server.data)]);
    assert!(
        out.lines()
            .any(|l| l.contains("request.revoked") && l.contains("unverified")),
        "{out}"
    );
}
