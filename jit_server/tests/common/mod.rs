//! Test harness: real `jit-server` processes on loopback with real TLS, a simulated host that
//! signs its calls with its own ed25519 key and verifies documents with jitd's verifier.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use jit_proto::state_doc::{key_fingerprint, verify_document, DocError, HostPins, StateBody};
use jit_server::client::{pinned_config, request, Reply};
use jit_server::hosts::host_request_message;
use serde_json::{json, Value};

pub mod pg;

pub const BIN: &str = env!("CARGO_BIN_EXE_jit-server");

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let p = std::env::temp_dir().join(format!("jit-server-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn run_ok(args: &[&str]) -> String {
    let (rc, out, err) = run(args);
    assert_eq!(rc, 0, "jit-server {args:?} failed: {out} {err}");
    out
}

/// `init` a data directory; returns (admin token, TLS fingerprint).
pub fn init(data: &Path) -> (String, String) {
    let out = run_ok(&["init", "--data", data.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (
        v["token"].as_str().unwrap().into(),
        v["fingerprint"].as_str().unwrap().into(),
    )
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub fingerprint: String,
    pub data: PathBuf,
    pub cfg: Arc<rustls::ClientConfig>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::try_start(data).unwrap()
    }

    pub fn try_start(data: &Path) -> Result<Server, String> {
        // stderr goes to a file, never to a pipe nobody drains: a server writing more than a
        // pipe holds would block on it and stall whatever wrote.
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log = data.join(format!("serve-{n}.stderr"));
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            child.wait().unwrap();
            return Err(std::fs::read_to_string(&log).unwrap_or_default());
        }
        // "jit-server listening on ADDR fingerprint FP"
        let words: Vec<&str> = line.split_whitespace().collect();
        let addr = words[3].to_string();
        let fingerprint = words[5].to_string();
        let cfg = pinned_config(std::slice::from_ref(&fingerprint)).unwrap();
        Ok(Server {
            child,
            addr,
            fingerprint,
            data: data.to_path_buf(),
            cfg,
        })
    }

    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        let body = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.raw(method, path, token, &body)
    }

    pub fn raw(&self, method: &str, path: &str, token: &str, body: &[u8]) -> Reply {
        let headers = vec![("Authorization", format!("Bearer {token}"))];
        request(
            &self.cfg,
            &self.addr,
            method,
            path,
            &headers,
            body,
            Duration::from_secs(60),
        )
        .unwrap()
    }
}

pub fn data_arg(data: &Path) -> &str {
    data.to_str().unwrap()
}

/// Applies a policy file and returns the diff output.
pub fn apply(data: &Path, policy: &str) -> String {
    let f = data.join("policy.toml");
    std::fs::write(&f, policy).unwrap();
    run_ok(&["apply", f.to_str().unwrap(), "--data", data_arg(data)])
}

pub fn token(data: &Path, name: &str) -> String {
    let out = run_ok(&["token", "issue", name, "--data", data_arg(data), "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["token"].as_str().unwrap().into()
}

pub fn join_token(data: &Path, host: &str, labels: &[&str]) -> String {
    let mut args = vec!["host", "add", host, "--data", data_arg(data), "--json"];
    for l in labels {
        args.push("--label");
        args.push(l);
    }
    let out = run_ok(&args);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["token"].as_str().unwrap().into()
}

/// A host as jitd will be: its own key, pins from enrolment, signed calls, verified documents.
pub struct Host {
    pub name: String,
    pub key: SigningKey,
    pub pins: Option<HostPins>,
    pub applied: u64,
    nonce: u32,
}

impl Host {
    pub fn new(name: &str, seed: u8) -> Host {
        Host {
            name: name.into(),
            key: SigningKey::from_bytes(&[seed; 32]),
            pins: None,
            applied: 0,
            nonce: 0,
        }
    }

    pub fn enroll(&mut self, s: &Server, token: &str) -> Reply {
        let body =
            json!({ "token": token, "key": STANDARD.encode(self.key.verifying_key().to_bytes()) });
        let r = s.call("POST", "/v1/enroll", "", Some(body));
        if r.status == 200 {
            let v = r.json();
            let root: [u8; 32] = STANDARD
                .decode(v["root_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            self.name = v["host"].as_str().unwrap().into();
            self.pins = Some(HostPins {
                root_key: root,
                host: self.name.clone(),
                host_key: key_fingerprint(&self.key.verifying_key().to_bytes()),
            });
        }
        r
    }

    /// A call signed with this host's key, claiming `as_host`.
    pub fn signed(&self, s: &Server, as_host: &str, method: &str, pq: &str, body: &[u8]) -> Reply {
        let t = jit_core::time::now();
        let sig = self
            .key
            .sign(&host_request_message(method, pq, t, body))
            .to_bytes();
        let headers = vec![
            ("x-jit-host", as_host.to_string()),
            ("x-jit-time", t.to_string()),
            ("x-jit-sig", STANDARD.encode(sig)),
        ];
        request(
            &s.cfg,
            &s.addr,
            method,
            pq,
            &headers,
            body,
            Duration::from_secs(90),
        )
        .unwrap()
    }

    /// One long-poll; returns the raw reply and the nonce it sent.
    pub fn poll_raw(&mut self, s: &Server, since: u64, wait: u32) -> (Reply, String) {
        self.nonce += 1;
        let nonce = format!("n{}-{}", self.nonce, std::process::id());
        let pq = format!("/v1/host/state?since={since}&wait={wait}s&nonce={nonce}");
        (self.signed(s, &self.name.clone(), "GET", &pq, b""), nonce)
    }

    /// Poll and verify as jitd does; on success record the applied sequence.
    pub fn poll(&mut self, s: &Server, wait: u32) -> Result<StateBody, DocError> {
        let (r, nonce) = self.poll_raw(s, self.applied, wait);
        assert_eq!(r.status, 200, "poll: {}", String::from_utf8_lossy(&r.body));
        let body = verify_document(
            &r.body,
            self.pins.as_ref().unwrap(),
            jit_core::time::now(),
            self.applied,
            &nonce,
        )?;
        self.applied = body.seq;
        Ok(body)
    }

    pub fn ack(&self, s: &Server, seq: u64) -> Reply {
        let body = serde_json::to_vec(&json!({ "seq": seq })).unwrap();
        self.signed(s, &self.name, "POST", "/v1/host/ack", &body)
    }
}

/// The policy most tests use: bob, carol, dave approve (sre); alice requests; admin is in sre
/// too (to show an admin cannot approve their own request).
pub const POLICY: &str = r#"
[[person]]
name = "alice"
groups = ["dev"]
ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtest alice@laptop"]

[[person]]
name = "bob"
groups = ["sre"]

[[person]]
name = "carol"
groups = ["sre"]

[[person]]
name = "dave"
groups = ["sre"]

[[person]]
name = "erin"
groups = ["oncall"]

[[person]]
name = "admin"
groups = ["sre", "dev"]

[[role]]
name = "web-admin"
hosts = { env = "prod" }
account = true
groups = ["adm"]
sudo = ["/usr/bin/systemctl restart nginx"]
max = "2h"
[role.approval]
approvals = 2
approvers = ["sre"]
deny = 1
reason_min = 10
ticket = "OPS-[0-9]+"
pending_ttl = "1h"
auto_approve = ["oncall"]

[[role]]
name = "quick"
hosts = { env = "prod" }
account = true
max = "1h"
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5
pending_ttl = "2s"

[[entitlement]]
who = ["dev", "oncall"]
roles = ["web-admin", "quick"]
"#;

impl Drop for Fleet {
    fn drop(&mut self) {
        // The server process ends right after (its own Drop); its files need not outlive it.
        let _ = std::fs::remove_dir_all(&self.server.data);
    }
}

/// A server with POLICY applied and hosts web1 (env=prod) and dev1 (env=dev) enrolled.
pub struct Fleet {
    pub server: Server,
    pub admin: String,
    pub alice: String,
    pub bob: String,
    pub carol: String,
    pub dave: String,
    pub erin: String,
    pub web1: Host,
    pub dev1: Host,
}

pub fn fleet() -> Fleet {
    fleet_in(&temp_dir("fleet"))
}

/// POLICY and two enrolled hosts on a server initialised in `data` (which may hold a
/// server.toml, e.g. naming PostgreSQL).
pub fn fleet_in(data: &Path) -> Fleet {
    let data = data.to_path_buf();
    let (admin, _) = init(&data);
    apply(&data, POLICY);
    let tokens: Vec<String> = ["alice", "bob", "carol", "dave", "erin"]
        .iter()
        .map(|n| token(&data, n))
        .collect();
    let j1 = join_token(&data, "web1", &["env=prod"]);
    let j2 = join_token(&data, "dev1", &["env=dev"]);
    let server = Server::start(&data);
    let mut web1 = Host::new("?", 11);
    assert_eq!(web1.enroll(&server, &j1).status, 200);
    let mut dev1 = Host::new("?", 12);
    assert_eq!(dev1.enroll(&server, &j2).status, 200);
    let [alice, bob, carol, dave, erin] = <[String; 5]>::try_from(tokens).unwrap();
    Fleet {
        server,
        admin,
        alice,
        bob,
        carol,
        dave,
        erin,
        web1,
        dev1,
    }
}

pub fn file_request(s: &Server, token: &str, body: Value) -> Reply {
    s.call("POST", "/v1/requests", token, Some(body))
}

pub fn web_request() -> Value {
    json!({ "role": "web-admin", "hosts": ["web1"], "duration": "1h",
            "reason": "restart nginx after deploy", "ticket": "OPS-42" })
}

pub fn approve(s: &Server, token: &str, id: &str) -> Reply {
    s.call(
        "POST",
        &format!("/v1/requests/{id}/approve"),
        token,
        Some(json!({ "comment": "ok" })),
    )
}

pub fn deny(s: &Server, token: &str, id: &str) -> Reply {
    s.call(
        "POST",
        &format!("/v1/requests/{id}/deny"),
        token,
        Some(json!({ "comment": "no" })),
    )
}

pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// The id of a successfully filed request.
pub fn id_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["id"].as_str().unwrap().to_string()
}

/// Runs SQL on a server's SQLite database from outside the server (as someone with write access
/// to the file, or a bug, would).
pub fn tamper(data: &std::path::Path, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", data.join("server.db").display());
        let db = jit_server::db::Db::open(&url).await.unwrap();
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    });
}

/// Reads one integer from a server's SQLite database from outside the server.
pub fn query_i64(data: &std::path::Path, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", data.join("server.db").display());
        let db = jit_server::db::Db::open(&url).await.unwrap();
        use sqlx::Row;
        let row = sqlx::query(sql).fetch_one(&db.pool).await.unwrap();
        row.try_get::<i64, _>(0).unwrap()
    })
}

/// A TLS connection to the server (pinned), handshake done, nothing sent yet.
pub fn tls_stream(
    s: &Server,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("jit-server").unwrap();
    let conn = rustls::ClientConnection::new(s.cfg.clone(), name).unwrap();
    let sock = std::net::TcpStream::connect(&s.addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut t = rustls::StreamOwned::new(conn, sock);
    while t.conn.is_handshaking() {
        t.conn.complete_io(&mut t.sock)?;
    }
    Ok(t)
}

/// Sends SIGHUP to the server process.
pub fn sighup(s: &Server) {
    let st = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}
