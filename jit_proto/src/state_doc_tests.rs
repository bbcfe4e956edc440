use super::*;

const NOW: UnixTime = 1_800_000_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

struct Fixture {
    root: SigningKey,
    online: SigningKey,
    cert: CertBlob,
    pins: HostPins,
}

fn fixture() -> Fixture {
    let root = key(1);
    let online = key(2);
    let host_key = key(3);
    let cert = certify(&root, &online.verifying_key(), NOW - 10, NOW + 86_400).unwrap();
    let pins = HostPins {
        root_key: root.verifying_key().to_bytes(),
        host: "web1".into(),
        host_key: key_fingerprint(&host_key.verifying_key().to_bytes()),
    };
    Fixture {
        root,
        online,
        cert,
        pins,
    }
}

fn body(f: &Fixture, seq: u64) -> StateBody {
    StateBody {
        version: DOC_VERSION,
        host: f.pins.host.clone(),
        host_key: f.pins.host_key.clone(),
        seq,
        server_time: NOW,
        nonce: "n-1".into(),
        expires_at: NOW + 60,
        grants: vec![DocGrant {
            id: "sg-1".into(),
            request_id: "r-1".into(),
            user: "alice".into(),
            not_before: NOW,
            not_after: NOW + 3600,
            role: "web-admin".into(),
            approved_by: vec!["bob".into(), "carol".into()],
            account: true,
            sudo: vec!["/usr/bin/systemctl restart nginx".into()],
            ..DocGrant::default()
        }],
        mfa: Vec::new(),
        mfa_used: Vec::new(),
    }
}

fn signed(f: &Fixture, b: &StateBody) -> Vec<u8> {
    sign_document(&f.online, &f.cert, b).unwrap()
}

fn envelope(raw: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_slice(raw).unwrap()
}

fn body_bytes(raw: &[u8]) -> Vec<u8> {
    STANDARD
        .decode(envelope(raw)["body"].as_str().unwrap())
        .unwrap()
}

/// Re-wrap new body bytes with a fresh signature by `signer` and the fixture's certificate.
fn rewrap(f: &Fixture, signer: &SigningKey, body: &[u8]) -> Vec<u8> {
    let sig = signer.sign(&domain(DOC_DOMAIN, body)).to_bytes();
    let mut env = envelope(&signed(f, &self::body(f, 1)));
    env.insert("body".into(), STANDARD.encode(body).into());
    env.insert("sig".into(), STANDARD.encode(sig).into());
    serde_json::to_vec(&env).unwrap()
}

#[test]
fn a_good_document_verifies() {
    let f = fixture();
    let b = body(&f, 5);
    let got = verify_document(&signed(&f, &b), &f.pins, NOW, 4, "n-1").unwrap();
    assert_eq!(got, b);
}

#[test]
fn a_forged_body_is_refused() {
    let f = fixture();
    let raw = signed(&f, &body(&f, 5));
    // Flip the user inside the signed bytes, keep the old signature.
    let forged = String::from_utf8(body_bytes(&raw))
        .unwrap()
        .replace("alice", "mallo");
    let mut env = envelope(&raw);
    env.insert("body".into(), STANDARD.encode(forged.as_bytes()).into());
    let raw = serde_json::to_vec(&env).unwrap();
    assert_eq!(
        verify_document(&raw, &f.pins, NOW, 0, "n-1"),
        Err(DocError::BadSignature)
    );
}

#[test]
fn a_body_re_signed_with_another_key_is_refused() {
    let f = fixture();
    let raw = signed(&f, &body(&f, 5));
    let resigned = rewrap(&f, &key(9), &body_bytes(&raw));
    assert_eq!(
        verify_document(&resigned, &f.pins, NOW, 0, "n-1"),
        Err(DocError::BadSignature)
    );
}

#[test]
fn a_certificate_from_another_root_is_refused() {
    let f = fixture();
    let rogue = certify(&key(8), &key(9).verifying_key(), NOW - 10, NOW + 100).unwrap();
    let raw = sign_document(&key(9), &rogue, &body(&f, 5)).unwrap();
    assert_eq!(
        verify_document(&raw, &f.pins, NOW, 0, "n-1"),
        Err(DocError::BadCertSignature)
    );
}

#[test]
fn a_document_signed_by_the_root_key_directly_is_refused() {
    // The root key certifies; it never signs bodies (domain separation).
    let f = fixture();
    let raw = rewrap(&f, &f.root, &body_bytes(&signed(&f, &body(&f, 5))));
    assert_eq!(
        verify_document(&raw, &f.pins, NOW, 0, "n-1"),
        Err(DocError::BadSignature)
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let mut f = fixture();
    f.cert = certify(&f.root, &f.online.verifying_key(), NOW - 100, NOW - 1).unwrap();
    let raw = signed(&f, &body(&f, 5));
    assert!(matches!(
        verify_document(&raw, &f.pins, NOW, 0, "n-1"),
        Err(DocError::CertNotValid { .. })
    ));
}

#[test]
fn a_document_outliving_its_certificate_is_refused() {
    let mut f = fixture();
    f.cert = certify(&f.root, &f.online.verifying_key(), NOW - 100, NOW + 30).unwrap();
    let raw = signed(&f, &body(&f, 5)); // expires_at NOW + 60
    assert!(matches!(
        verify_document(&raw, &f.pins, NOW, 0, "n-1"),
        Err(DocError::Expired { .. })
    ));
}

#[test]
fn a_replayed_or_older_sequence_is_refused() {
    let f = fixture();
    let raw = signed(&f, &body(&f, 5));
    assert!(verify_document(&raw, &f.pins, NOW, 4, "n-1").is_ok());
    // The same document again once seq 5 is applied: a replay.
    assert_eq!(
        verify_document(&raw, &f.pins, NOW, 5, "n-1"),
        Err(DocError::Stale { seq: 5, applied: 5 })
    );
    // An older one.
    assert_eq!(
        verify_document(&raw, &f.pins, NOW, 9, "n-1"),
        Err(DocError::Stale { seq: 5, applied: 9 })
    );
}

#[test]
fn a_document_answering_another_poll_is_refused() {
    let f = fixture();
    let raw = signed(&f, &body(&f, 5));
    assert_eq!(
        verify_document(&raw, &f.pins, NOW, 0, "n-2"),
        Err(DocError::NonceMismatch)
    );
}

#[test]
fn a_document_for_another_host_or_host_key_is_refused() {
    let f = fixture();
    let mut b = body(&f, 5);
    b.host = "web2".into();
    assert_eq!(
        verify_document(&signed(&f, &b), &f.pins, NOW, 0, "n-1"),
        Err(DocError::WrongHost("web2".into()))
    );
    let mut b = body(&f, 5);
    b.host_key = key_fingerprint(&key(7).verifying_key().to_bytes());
    assert!(matches!(
        verify_document(&signed(&f, &b), &f.pins, NOW, 0, "n-1"),
        Err(DocError::WrongHostKey(_))
    ));
}

#[test]
fn an_expired_document_is_refused() {
    let f = fixture();
    let raw = signed(&f, &body(&f, 5));
    assert!(verify_document(&raw, &f.pins, NOW + 59, 0, "n-1").is_ok());
    assert!(matches!(
        verify_document(&raw, &f.pins, NOW + 60, 0, "n-1"),
        Err(DocError::Expired { .. })
    ));
}

fn resigned_text(f: &Fixture, text: &str) -> Result<StateBody, DocError> {
    let raw = rewrap(f, &f.online, text.as_bytes());
    verify_document(&raw, &f.pins, NOW, 0, "n-1")
}

#[test]
fn duplicate_keys_in_a_validly_signed_body_are_refused() {
    let f = fixture();
    let text = String::from_utf8(body_bytes(&signed(&f, &body(&f, 5)))).unwrap();
    // A second "seq" at the top level: a lenient parser would take the last one.
    let dup = text.replacen("{\"version\"", "{\"seq\":99,\"version\"", 1);
    assert!(
        matches!(resigned_text(&f, &dup), Err(DocError::Malformed(m)) if m.contains("duplicate"))
    );
    // And inside a grant.
    let dup = text.replacen(
        "\"user\":\"alice\"",
        "\"user\":\"alice\",\"user\":\"root\"",
        1,
    );
    assert!(
        matches!(resigned_text(&f, &dup), Err(DocError::Malformed(m)) if m.contains("duplicate"))
    );
}

#[test]
fn unknown_and_case_variant_keys_are_refused() {
    let f = fixture();
    let text = String::from_utf8(body_bytes(&signed(&f, &body(&f, 5)))).unwrap();
    let unknown = text.replacen("{\"version\"", "{\"admin\":true,\"version\"", 1);
    assert!(matches!(
        resigned_text(&f, &unknown),
        Err(DocError::Malformed(_))
    ));
    let variant = text.replacen(
        "\"user\":\"alice\"",
        "\"user\":\"alice\",\"User\":\"root\"",
        1,
    );
    assert!(
        matches!(resigned_text(&f, &variant), Err(DocError::Malformed(m)) if m.contains("duplicate"))
    );
    let renamed = text.replacen("\"host\":", "\"Host\":", 1);
    assert!(matches!(
        resigned_text(&f, &renamed),
        Err(DocError::Malformed(_))
    ));
}

#[test]
fn duplicate_keys_in_the_envelope_are_refused() {
    let f = fixture();
    let raw = String::from_utf8(signed(&f, &body(&f, 5))).unwrap();
    let dup = raw.replacen("{\"cert\"", "{\"sig\":\"AAAA\",\"cert\"", 1);
    assert!(matches!(
        verify_document(dup.as_bytes(), &f.pins, NOW, 0, "n-1"),
        Err(DocError::Malformed(m)) if m.contains("duplicate")
    ));
}

#[test]
fn an_oversized_document_is_refused_before_decoding() {
    let f = fixture();
    let big = vec![b' '; MAX_DOC_BYTES + 1];
    assert_eq!(
        verify_document(&big, &f.pins, NOW, 0, "n-1"),
        Err(DocError::TooLarge(MAX_DOC_BYTES + 1))
    );
}

#[test]
fn trailing_bytes_after_the_envelope_are_refused() {
    let f = fixture();
    let mut raw = signed(&f, &body(&f, 5));
    raw.extend_from_slice(b"{}");
    assert!(matches!(
        verify_document(&raw, &f.pins, NOW, 0, "n-1"),
        Err(DocError::Malformed(_))
    ));
}

#[test]
fn fingerprints_are_openssh_style() {
    let fp = key_fingerprint(&[0u8; 32]);
    assert!(fp.starts_with("SHA256:"));
    assert_eq!(fp.len(), "SHA256:".len() + 43);
}

fn pins_body(f: &Fixture) -> PinsBody {
    PinsBody {
        version: DOC_VERSION,
        host: f.pins.host.clone(),
        host_key: f.pins.host_key.clone(),
        current: "SHA256:cur".into(),
        next: Some("SHA256:nxt".into()),
        nonce: "p-1".into(),
        server_time: NOW,
        expires_at: NOW + 60,
    }
}

#[test]
fn a_pin_document_verifies_and_its_checks_hold() {
    let f = fixture();
    let raw = sign_pins(&f.online, &f.cert, &pins_body(&f)).unwrap();
    let b = verify_pins(&raw, &f.pins, NOW, "p-1").unwrap();
    assert_eq!(
        (b.current.as_str(), b.next.as_deref()),
        ("SHA256:cur", Some("SHA256:nxt"))
    );
    assert_eq!(
        verify_pins(&raw, &f.pins, NOW, "p-2"),
        Err(DocError::NonceMismatch)
    );
    assert!(matches!(
        verify_pins(&raw, &f.pins, NOW + 60, "p-1"),
        Err(DocError::Expired { .. })
    ));
    let mut other = f.pins.clone();
    other.host = "web2".into();
    assert!(matches!(
        verify_pins(&raw, &other, NOW, "p-1"),
        Err(DocError::WrongHost(_))
    ));
    // Signed by another key under the same certificate: refused.
    let bytes = serde_json::to_vec(&pins_body(&f)).unwrap();
    let sig = key(9).sign(&domain(PINS_DOMAIN, &bytes)).to_bytes();
    let mut env = envelope(&raw);
    env.insert("sig".into(), STANDARD.encode(sig).into());
    let forged = serde_json::to_vec(&env).unwrap();
    assert_eq!(
        verify_pins(&forged, &f.pins, NOW, "p-1"),
        Err(DocError::BadSignature)
    );
    // A pin that is not a fingerprint is refused even when signed.
    let mut b = pins_body(&f);
    b.next = Some("SHA256:a b".into());
    let raw = sign_pins(&f.online, &f.cert, &b).unwrap();
    assert!(matches!(
        verify_pins(&raw, &f.pins, NOW, "p-1"),
        Err(DocError::Malformed(_))
    ));
}

#[test]
fn a_state_document_is_never_a_pin_document_or_the_reverse() {
    let f = fixture();
    // The same body bytes signed for one domain never verify in the other.
    let pins_raw = sign_pins(&f.online, &f.cert, &pins_body(&f)).unwrap();
    assert!(verify_document(&pins_raw, &f.pins, NOW, 0, "p-1").is_err());
    let doc = signed(&f, &body(&f, 1));
    assert_eq!(
        verify_pins(&doc, &f.pins, NOW, "n-1"),
        Err(DocError::BadSignature)
    );
}

/// A body filled to what the server admits ([`MAX_BODY_WEIGHT`], [`MAX_DOC_GRANTS`]) with the
/// widest fields it can hold: its host, nonce and names at their caps, and for every grant that
/// asks for a code its person's sealed secret and used step at their largest. Returns the signed
/// document and the body's weight.
fn filled(f: &Fixture, grant: impl Fn(usize) -> DocGrant) -> (Vec<u8>, StateBody, u64) {
    let mut b = body(f, 9);
    b.host = "h".repeat(64);
    b.nonce = "n".repeat(64);
    b.grants.clear();
    let mut weight = 0;
    for i in 0..MAX_DOC_GRANTS {
        let g = grant(i);
        let w = grant_weight(serde_json::to_vec(&g).unwrap().len(), g.wants_code());
        if weight + w > MAX_BODY_WEIGHT {
            break;
        }
        weight += w;
        if !g.wants_code() {
            b.grants.push(g);
            continue;
        }
        b.mfa.push(crate::mfa_seal::SealedSecret {
            user: g.user.clone(),
            version: u64::MAX,
            epk: "e".repeat(44),
            nonce: "o".repeat(32),
            ct: "c".repeat(4 * (crate::mfa_seal::MAX_SECRET + 16).div_ceil(3)),
        });
        b.mfa_used.push(crate::mfa_seal::UsedStep {
            user: g.user.clone(),
            step: u64::MAX,
        });
        b.grants.push(g);
    }
    let raw = signed(f, &b);
    (raw, b, weight)
}

#[test]
fn a_document_filled_to_what_the_server_admits_still_verifies() {
    let f = fixture();
    let grant = |i: usize, reason: &str, keys: usize, key_len: usize| DocGrant {
        id: format!("sg-{i:0>32}"),
        request_id: format!("r-{i:0>32}"),
        user: format!("u{i:0>31}"),
        not_before: NOW,
        not_after: NOW + 3600,
        role: "r".repeat(64),
        approved_by: vec!["a".repeat(32); 2],
        reason: reason.into(),
        ssh_keys: vec!["k".repeat(key_len); keys],
        // Every grant but the plainest asks for a code: its person's secret travels too.
        mfa: keys > 0 || !reason.is_empty(),
        ..DocGrant::default()
    };
    // Characters JSON escapes take up to six bytes each: the weight counts them as sent.
    let escaped = "\"\\\u{1}é".repeat(200);
    // The most grants (plain ones, no code asked): the count binds first. Then reasons of 1000 bytes that
    // escape to 2400, and the widest grants (a person with 64 keys of 8 KiB, the policy's
    // caps): the weight does.
    for (what, reason, keys, key_len, at_count) in [
        ("small", "", 0, 0, true),
        ("escaped", escaped.as_str(), 0, 0, false),
        ("wide", "", 64, 8192, false),
    ] {
        let (raw, b, weight) = filled(&f, |i| grant(i, reason, keys, key_len));
        let mut pins = f.pins.clone();
        pins.host = b.host.clone();
        let got = verify_document(&raw, &pins, NOW, 0, &b.nonce);
        assert!(got.is_ok(), "{what}: {got:?} ({} bytes)", raw.len());
        assert!(raw.len() <= MAX_DOC_BYTES, "{what}");
        assert_eq!(b.grants.len() == MAX_DOC_GRANTS, at_count, "{what}");
        // The weights bound what the grants and their secrets take of the body.
        let fixed = serde_json::to_vec(&StateBody {
            grants: Vec::new(),
            mfa: Vec::new(),
            mfa_used: Vec::new(),
            ..b.clone()
        })
        .unwrap()
        .len() as u64;
        assert!(
            body_bytes(&raw).len() as u64 <= weight + fixed + 64,
            "{what}"
        );
        assert!(fixed < 4096, "{what}: {fixed}");
    }
}

#[test]
fn a_grant_weighs_its_json_and_a_secret_only_if_it_asks_for_a_code() {
    assert_eq!(grant_weight(100, false), 101);
    assert_eq!(grant_weight(100, true), 101 + MFA_ENTRY_WEIGHT);
    let g = DocGrant {
        mfa_sudo: true,
        ..DocGrant::default()
    };
    assert!(g.wants_code());
    assert!(!DocGrant::default().wants_code());
}
