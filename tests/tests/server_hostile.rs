//! A hostile server between a real jitd and a real jit-server, over live HTTPS on loopback.
//!
//! The test plays an attacker who holds the server's TLS key (so jitd's pinned connection
//! accepts it) and, for some cases, the online signing key too (read from the test server's
//! data directory): a TLS-terminating proxy that passes every call through to the real server
//! and rewrites the state documents it returns. Each crafted document — forged body, body
//! re-signed with another key, certificate from another root, a replayed earlier answer, an
//! older sequence re-signed for this very poll, another host's name, an expired one — is
//! refused by jitd, audited on the host (`sync.document_refused`) and reported to the server
//! (`host.event.refused_document`), and the host's grants do not change: the grant it holds
//! stays, the forged one never appears. An older sequence is still refused after jitd restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use jit_proto::state_doc::{certify, sign_document, DocGrant, StateBody};
use jit_tests::fleet::Fleet;
use jit_tests::{code, poll, show, stdout, Sandbox, GETENT_NOT_FOUND};
use serde_json::Value;

const POLICY: &str = r#"
[[person]]
name = "pat"
groups = ["dev"]

[[person]]
name = "sam"
groups = ["sre"]

[[role]]
name = "ops"
hosts = { env = "prod" }
account = true
max = "2h"
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5

[[entitlement]]
who = ["dev"]
roles = ["ops"]
"#;

/// What the proxy does to state documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Body changed, signature kept.
    Forge,
    /// Body changed and signed by a key the root never certified (under the real certificate).
    OtherKey,
    /// Body changed, signed by a key certified by another root.
    OtherRoot,
    /// The last real answer (already applied, not yet expired) served again as it was.
    Replay,
    /// An earlier body re-signed with the real online key for this poll's nonce.
    OlderSeq,
    /// The real answer's body renamed to another host, signed with the real key.
    WrongHost,
    /// The real answer's body already expired, signed with the real key.
    Expired,
}

/// What the proxy's threads and the test share.
#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    /// Documents passed through unchanged, oldest first.
    seen: Mutex<Vec<Vec<u8>>>,
    /// Crafted documents served.
    crafted: Mutex<usize>,
}

struct Proxy {
    addr: String,
    sh: Arc<Shared>,
}

impl Proxy {
    fn set(&self, m: Mode) {
        *self.sh.mode.lock().unwrap() = Some(m);
    }
}

fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    // SAFETY: `seed` is writable for its length.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    assert_eq!(n, 32);
    SigningKey::from_bytes(&seed)
}

fn now() -> i64 {
    jit_tests::now()
}

/// Reads an HTTP head (up to the blank line) byte by byte.
fn read_head(s: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 || head.len() > 65536 {
            return None;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).ok()
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Decodes a chunked body.
fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

/// One request through to the real server: (status line, body).
fn upstream(target: &str, pin: &str, head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let cfg = jit_proto::tls_pin::pinned_config(&[pin.to_string()]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(target).unwrap());
    let mut req = String::new();
    for l in head.trim_end().split("\r\n") {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            req.push_str(l);
            req.push_str("\r\n");
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
    let mut resp = Vec::new();
    // A peer closing without close_notify ends the read with an error after the data.
    let _ = s.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let rhead = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut rbody = resp[split + 4..].to_vec();
    if rhead
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rbody = unchunk(&rbody);
    }
    (rhead.lines().next().unwrap().to_string(), rbody)
}

struct Keys {
    online: SigningKey,
    cert: jit_proto::state_doc::CertBlob,
}

fn body_of(doc: &[u8]) -> StateBody {
    let env: Value = serde_json::from_slice(doc).unwrap();
    serde_json::from_slice(&STANDARD.decode(env["body"].as_str().unwrap()).unwrap()).unwrap()
}

/// The forged set: the held grant dropped (a revocation if accepted), mallory added.
fn forged_grants(b: &mut StateBody) {
    b.grants = vec![DocGrant {
        id: "sg-forged".into(),
        request_id: "rq-forged".into(),
        user: "mallory".into(),
        not_before: now(),
        not_after: now() + 3600,
        role: "ops".into(),
        account: true,
        ..DocGrant::default()
    }];
}

fn craft(mode: Mode, real: &[u8], nonce: &str, keys: &Keys, seen: &[Vec<u8>]) -> Vec<u8> {
    let mut b = body_of(real);
    forged_grants(&mut b);
    match mode {
        Mode::Pass => real.to_vec(),
        Mode::Forge => {
            let mut env: Value = serde_json::from_slice(real).unwrap();
            env["body"] = STANDARD.encode(serde_json::to_vec(&b).unwrap()).into();
            serde_json::to_vec(&env).unwrap()
        }
        Mode::OtherKey => sign_document(&random_key(), &keys.cert, &b).unwrap(),
        Mode::OtherRoot => {
            let (root, online) = (random_key(), random_key());
            let cert = certify(&root, &online.verifying_key(), now() - 10, now() + 3600).unwrap();
            sign_document(&online, &cert, &b).unwrap()
        }
        // The newest answer already applied, still within its lifetime, served again.
        Mode::Replay => seen.last().cloned().unwrap(),
        Mode::OlderSeq => {
            let mut old = body_of(seen.first().unwrap());
            old.nonce = nonce.to_string();
            old.server_time = now();
            old.expires_at = now() + 60;
            forged_grants(&mut old);
            sign_document(&keys.online, &keys.cert, &old).unwrap()
        }
        Mode::WrongHost => {
            b.host = "web2".into();
            sign_document(&keys.online, &keys.cert, &b).unwrap()
        }
        Mode::Expired => {
            b.expires_at = now() - 1;
            sign_document(&keys.online, &keys.cert, &b).unwrap()
        }
    }
}

fn serve_one(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    target: &str,
    pin: &str,
    keys: &Keys,
    p: &Shared,
) {
    let conn = rustls::ServerConnection::new(tls).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let Some(head) = read_head(&mut s) else {
        return;
    };
    let mut body = vec![0u8; content_length(&head)];
    if s.read_exact(&mut body).is_err() {
        return;
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let (status, mut out) = upstream(target, pin, &head, &body);
    if path.starts_with("/v1/host/state") && status.contains(" 200") {
        let nonce = path
            .split("nonce=")
            .nth(1)
            .unwrap_or("")
            .split('&')
            .next()
            .unwrap_or("")
            .to_string();
        let mode = p.mode.lock().unwrap().unwrap_or(Mode::Pass);
        if mode == Mode::Pass {
            p.seen.lock().unwrap().push(out.clone());
        } else {
            out = craft(mode, &out, &nonce, keys, &p.seen.lock().unwrap());
            *p.crafted.lock().unwrap() += 1;
        }
    }
    let reply = format!(
        "{status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    );
    let _ = s.write_all(reply.as_bytes());
    let _ = s.write_all(&out);
    s.conn.send_close_notify();
    let _ = s.flush();
}

fn proxy(data: &Path, target: &str, pin: &str) -> Proxy {
    let d = data.to_path_buf();
    let cfg = jit_server::config::ServerConfig::load(&d, None).unwrap();
    let k = jit_server::keys::load(&d, &cfg).unwrap();
    let tls = jit_server::tls::server_config(&k).unwrap();
    let keys = Arc::new(Keys {
        online: k.online.clone(),
        cert: k.cert.clone(),
    });
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let px = Proxy {
        addr,
        sh: Arc::new(Shared::default()),
    };
    let sh = Arc::clone(&px.sh);
    let (target, pin) = (target.to_string(), pin.to_string());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let (tls, target, pin, keys) = (
                Arc::clone(&tls),
                target.clone(),
                pin.clone(),
                Arc::clone(&keys),
            );
            let sh = Arc::clone(&sh);
            std::thread::spawn(move || {
                serve_one(c, tls, &target, &pin, &keys, &sh);
            });
        }
    });
    px
}

fn visible(sb: &Sandbox, user: &str) -> bool {
    let o = sb.run(&["getent", "passwd", user]);
    match code(&o) {
        0 => true,
        GETENT_NOT_FOUND => false,
        _ => panic!("getent passwd {user}: {}", show(&o)),
    }
}

fn status(sb: &Sandbox) -> String {
    stdout(&sb.jitctl(&["status"]))
}

fn refusals(sb: &Sandbox) -> Vec<String> {
    sb.audit()
        .into_iter()
        .filter(|e| e["event"] == "sync.document_refused")
        .map(|e| e["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// pat's grant on the host: (local id, state).
fn pats_grant(sb: &Sandbox) -> (String, String) {
    let o = sb.jitctl(&["--json", "grant", "list", "--all"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let g = v
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["user"] == "pat")
        .cloned()
        .unwrap();
    (
        g["id"].as_str().unwrap().to_string(),
        g["state"].as_str().unwrap().to_string(),
    )
}

/// Serves `mode` until jitd refuses a crafted document with an error containing `want`, then
/// passes answers through again until the link is connected.
fn refused(sb: &Sandbox, px: &Proxy, mode: Mode, want: &str) {
    let before = refusals(sb).len();
    px.set(mode);
    let err = poll(
        &format!("{mode:?} refused"),
        Duration::from_secs(40),
        || refusals(sb).get(before).cloned(),
    );
    px.set(Mode::Pass);
    assert!(err.contains(want), "{mode:?}: refused with {err:?}");
    poll(
        &format!("connected after {mode:?}"),
        Duration::from_secs(60),
        || status(sb).contains(": connected").then_some(()),
    );
}

#[test]
fn crafted_state_documents_over_live_https_are_refused_audited_and_change_nothing() {
    let mut f = Fleet::init("hostile", "doc_ttl = 10\npoll_max_wait = 2\n", POLICY);
    let (pat, sam) = (f.token("pat"), f.token("sam"));
    let join = f.join_token("web1");
    f.serve();
    let px = proxy(&f.data, &f.addr, &f.fingerprint);
    let sb = Sandbox::new();
    sb.start_jitd();
    let o = sb.jitctl(&[
        "enroll",
        &format!("https://{}", px.addr),
        "--token",
        &join,
        "--fingerprint",
        &f.fingerprint,
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), sb.jitd_log());
    let id = f.request(&pat, "ops", "web1", "1h");
    f.approve(&sam, &id);
    poll("pat visible", Duration::from_secs(20), || {
        visible(&sb, "pat").then_some(())
    });
    let (gid, state) = pats_grant(&sb);
    assert_eq!(state, "live");
    // An answer with a higher sequence than the first one seen, so "older" is really older.
    poll("a later document", Duration::from_secs(30), || {
        let s = px.sh.seen.lock().unwrap();
        (s.len() >= 2 && body_of(s.last().unwrap()).seq > body_of(&s[0]).seq).then_some(())
    });

    for (mode, want) in [
        (Mode::Forge, "signature does not verify"),
        (Mode::OtherKey, "signature does not verify"),
        (Mode::OtherRoot, "not signed by the pinned root key"),
        (Mode::Replay, "nonce"),
        (Mode::OlderSeq, "not above the applied"),
        (Mode::WrongHost, "for host \"web2\""),
        (Mode::Expired, "expired"),
    ] {
        refused(&sb, &px, mode, want);
        assert!(
            !visible(&sb, "mallory"),
            "{mode:?}: the forged grant appeared"
        );
        assert!(visible(&sb, "pat"), "{mode:?}: the held grant was dropped");
        assert_eq!(
            pats_grant(&sb),
            (gid.clone(), "live".to_string()),
            "{mode:?}"
        );
    }
    assert!(*px.sh.crafted.lock().unwrap() >= 7);

    // After a restart the applied sequence is still the floor.
    sb.stop_jitd();
    sb.start_jitd();
    poll("connected after restart", Duration::from_secs(30), || {
        status(&sb).contains(": connected").then_some(())
    });
    refused(&sb, &px, Mode::OlderSeq, "not above the applied");
    assert!(!visible(&sb, "mallory"));
    assert_eq!(pats_grant(&sb), (gid.clone(), "live".to_string()));

    // The server's audit has the host's reports of what it refused.
    poll(
        "refusals reported to the server",
        Duration::from_secs(40),
        || {
            let out = f.cmd(&["audit", "--limit", "5000"]);
            (out.matches("host.event.refused_document").count() >= 8).then_some(())
        },
    );
}
