//! The document path of the host link with real signatures: what jitd refuses and what it
//! keeps across a restart. The daemon is a recording fake behind the same seam.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use jit_proto::state_doc::{
    certify, key_fingerprint, sign_document, DocGrant, HostPins, StateBody,
};

use super::apply::{GrantSink, HeldGrant};
use super::state::LinkStore;
use super::*;

#[derive(Default)]
struct Recorder {
    held: Mutex<Vec<HeldGrant>>,
    events: Mutex<Vec<String>>,
    /// (user, version, secret bytes) of the fleet secrets handed over.
    fleet: Mutex<Vec<(String, u64, Vec<u8>)>>,
}

impl GrantSink for Recorder {
    fn server_grants(&self) -> Vec<HeldGrant> {
        self.held.lock().unwrap().clone()
    }
    fn admit_server_grant(&self, g: &DocGrant, _: u64, _: UnixTime) -> Result<String, String> {
        self.held.lock().unwrap().push(HeldGrant {
            local_id: format!("g-{}", g.id),
            server_id: g.id.clone(),
            ended: false,
            strict: g.strict,
        });
        Ok(format!("g-{}", g.id))
    }
    fn end_server_grants(
        &self,
        local_ids: &[String],
        _: &str,
        _: UnixTime,
    ) -> Vec<Result<(), String>> {
        let mut held = self.held.lock().unwrap();
        for h in held.iter_mut() {
            if local_ids.contains(&h.local_id) {
                h.ended = true;
            }
        }
        vec![Ok(()); local_ids.len()]
    }
    fn record(&self, _: UnixTime, _: bool, event: crate::audit::Event, _: serde_json::Value) {
        self.events.lock().unwrap().push(event.name().into());
    }
    fn set_fleet_mfa(
        &self,
        secrets: Vec<(String, u64, jit_core::host::secret::Secret)>,
        _: &[jit_proto::mfa_seal::UsedStep],
        _: UnixTime,
    ) {
        *self.fleet.lock().unwrap() = secrets
            .into_iter()
            .map(|(u, v, s)| (u, v, s.bytes().to_vec()))
            .collect();
    }
}

struct Server {
    root: SigningKey,
    online: SigningKey,
    host_key: SigningKey,
}

const NOW: UnixTime = 1_800_000_000;

impl Server {
    fn new() -> Server {
        Server {
            root: SigningKey::from_bytes(&[1; 32]),
            online: SigningKey::from_bytes(&[2; 32]),
            host_key: SigningKey::from_bytes(&[3; 32]),
        }
    }
    fn pins(&self) -> HostPins {
        HostPins {
            root_key: self.root.verifying_key().to_bytes(),
            host: "web1".into(),
            host_key: key_fingerprint(&self.host_key.verifying_key().to_bytes()),
        }
    }
    fn doc_with(
        &self,
        online: &SigningKey,
        host: &str,
        seq: u64,
        nonce: &str,
        grants: &[&str],
    ) -> Vec<u8> {
        let cert = certify(&self.root, &online.verifying_key(), NOW - 10, NOW + 86_400).unwrap();
        let body = StateBody {
            version: 1,
            host: host.into(),
            host_key: self.pins().host_key,
            seq,
            server_time: NOW,
            nonce: nonce.into(),
            expires_at: NOW + 60,
            grants: grants
                .iter()
                .map(|id| DocGrant {
                    id: (*id).into(),
                    user: "alice".into(),
                    not_before: NOW,
                    not_after: NOW + 3600,
                    ..DocGrant::default()
                })
                .collect(),
            mfa: Vec::new(),
            mfa_used: Vec::new(),
        };
        sign_document(online, &cert, &body).unwrap()
    }
    fn doc(&self, seq: u64, nonce: &str, grants: &[&str]) -> Vec<u8> {
        self.doc_with(&self.online, "web1", seq, nonce, grants)
    }
}

fn dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("jitd-sync-doc-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn accept(
    r: &Recorder,
    store: &LinkStore,
    s: &Server,
    raw: &[u8],
    nonce: &str,
) -> Result<u64, String> {
    let link = Link::default();
    accept_document(r, &link, store, &s.pins(), raw, nonce, NOW).map(|(b, _)| b.seq)
}

#[test]
fn forged_foreign_wrong_host_and_wrong_nonce_documents_change_nothing() {
    let (s, r) = (Server::new(), Recorder::default());
    let d = dir("forged");
    let store = LinkStore::new(&d);
    // Body altered after signing.
    let good = s.doc(5, "n1", &["sg-1"]);
    let text = String::from_utf8(good.clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = v["body"].as_str().unwrap();
    let forged_body = {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD;
        let b = String::from_utf8(e.decode(body).unwrap())
            .unwrap()
            .replace("alice", "mallo");
        e.encode(b)
    };
    let forged = text.replace(body, &forged_body);
    assert!(accept(&r, &store, &s, forged.as_bytes(), "n1")
        .unwrap_err()
        .contains("signature"));
    // Signed by a key the pinned root never certified (its own root).
    let other = Server {
        root: SigningKey::from_bytes(&[9; 32]),
        ..Server::new()
    };
    let foreign = other.doc(5, "n1", &["sg-1"]);
    assert!(accept(&r, &store, &s, &foreign, "n1").is_err());
    // Another host's document; an answer to another poll.
    let other_host = s.doc_with(&s.online, "web2", 5, "n1", &["sg-1"]);
    assert!(accept(&r, &store, &s, &other_host, "n1")
        .unwrap_err()
        .contains("host"));
    assert!(accept(&r, &store, &s, &good, "n2")
        .unwrap_err()
        .contains("nonce"));
    assert!(r.server_grants().is_empty(), "nothing admitted");
    assert_eq!(store.applied().unwrap().seq, 0, "no sequence recorded");
    assert_eq!(
        r.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "sync.document_refused")
            .count(),
        4
    );
    // The genuine one is applied.
    assert_eq!(accept(&r, &store, &s, &good, "n1"), Ok(5));
    assert_eq!(r.server_grants().len(), 1);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn older_and_replayed_documents_are_refused_even_after_a_restart() {
    let (s, r) = (Server::new(), Recorder::default());
    let d = dir("replay");
    let store = LinkStore::new(&d);
    let first = s.doc(5, "n1", &["sg-1"]);
    let revoked = s.doc(6, "n2", &[]);
    assert_eq!(accept(&r, &store, &s, &first, "n1"), Ok(5));
    assert_eq!(accept(&r, &store, &s, &revoked, "n2"), Ok(6));
    assert!(r.server_grants()[0].ended, "revoked by the newer set");
    // jitd restarts: a new store over the same directory, a new process's memory.
    let store = LinkStore::new(&d);
    let r2 = Recorder::default();
    let e = accept(&r2, &store, &s, &first, "n1").unwrap_err();
    assert!(e.contains("replay"), "{e}");
    // An older sequence with a fresh nonce (a server restored from an old backup, or an
    // attacker holding an old signature) is refused the same way.
    let older = s.doc(4, "n3", &["sg-1"]);
    assert!(accept(&r2, &store, &s, &older, "n3")
        .unwrap_err()
        .contains("replay"));
    assert!(
        r2.server_grants().is_empty(),
        "the revoked grant never comes back"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn only_secrets_sealed_to_this_host_for_their_person_and_version_are_opened() {
    use jit_proto::mfa_seal::{public_key, seal};
    let (s, r) = (Server::new(), Recorder::default());
    let d = dir("mfa");
    let store = LinkStore::new(&d);
    let mine = public_key(&store.seal_key(true).unwrap());
    let other = public_key(&[77u8; 32]);
    let secret = [5u8; 20];
    let good = seal(&mine, "web1", "alice", 2, &secret, [8; 32], [1; 24]).unwrap();
    let foreign = seal(&other, "web1", "bob", 1, &secret, [9; 32], [2; 24]).unwrap();
    let mut moved = seal(&mine, "web1", "carol", 1, &secret, [10; 32], [3; 24]).unwrap();
    moved.user = "dave".into();
    let mut tampered = seal(&mine, "web1", "erin", 1, &secret, [11; 32], [4; 24]).unwrap();
    tampered.ct = {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD;
        let mut b = e.decode(&tampered.ct).unwrap();
        b[0] ^= 0x80;
        e.encode(b)
    };
    let cert = certify(&s.root, &s.online.verifying_key(), NOW - 10, NOW + 86_400).unwrap();
    let body = StateBody {
        version: 1,
        host: "web1".into(),
        host_key: s.pins().host_key,
        seq: 3,
        server_time: NOW,
        nonce: "n1".into(),
        expires_at: NOW + 60,
        grants: Vec::new(),
        mfa: vec![good, foreign, moved, tampered],
        mfa_used: Vec::new(),
    };
    let raw = sign_document(&s.online, &cert, &body).unwrap();
    assert_eq!(accept(&r, &store, &s, &raw, "n1"), Ok(3));
    assert_eq!(
        *r.fleet.lock().unwrap(),
        vec![("alice".to_string(), 2, secret.to_vec())],
        "only alice's secret, sealed to this host, opens"
    );
    assert_eq!(
        r.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "sync.mfa_refused")
            .count(),
        3
    );
    let _ = std::fs::remove_dir_all(&d);
}
