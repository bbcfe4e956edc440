//! The signed per-host state document: the whole current set of grants for one host, as the
//! central service (jit-server) signs it and jitd verifies it.
//!
//! Pure code (no I/O, no clock, no async): the producer and the verifier share one definition of
//! the bytes. See docs/server.md, "The signed state document".
//!
//! Wire form, one JSON object with exactly four keys, each base64 (standard alphabet, padded):
//!
//! ```text
//! {"cert":B64(cert bytes),"cert_sig":B64(sig),"body":B64(body bytes),"sig":B64(sig)}
//! ```
//!
//! * `cert` certifies the online signing key: `{"key","not_before","not_after"}`, signed by the
//!   offline root key over `CERT_DOMAIN || cert bytes`. jitd pins the root key at enrolment, so
//!   the online key can be rotated without re-enrolling and a stolen online key stops working at
//!   the certificate's `not_after`.
//! * `body` is [`StateBody`], signed by the certified online key over `DOC_DOMAIN || body bytes`.
//!
//! The verifier checks signatures over the raw decoded bytes before any of them is parsed, and
//! parses with a strict decoder: duplicate keys (at any depth), unknown keys and keys that differ
//! only by case are refused, so two parsers can never read one signed document differently.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use jit_core::time::UnixTime;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// Domain separation for the body signature: a signature made for anything else never verifies
/// as a state document.
pub const DOC_DOMAIN: &[u8] = b"jit-state-doc-v1\0";
/// Domain separation for the root key's certificate of an online signing key.
pub const CERT_DOMAIN: &[u8] = b"jit-signing-cert-v1\0";
/// Body format version.
pub const DOC_VERSION: u32 = 1;
/// Largest encoded document accepted (checked before any decoding): a few thousand grants.
pub const MAX_DOC_BYTES: usize = 4 << 20;
/// Most grants one document may carry.
pub const MAX_DOC_GRANTS: usize = 4096;

/// Room for grants in one document's body, in the bytes [`grant_weight`] counts. A document
/// the host refuses (too large, too many grants) changes nothing there, revocations included,
/// so the server must never sign one: it admits a grant to a host only while the weights of
/// the host's live grants stay within this. The body travels base64-encoded (4 bytes for 3)
/// inside an envelope of ~0.5 KiB (certificate, two signatures); the body's own fields besides
/// the grants (host ≤ 64, key fingerprint, nonce ≤ 64, numbers) take well under 4 KiB.
pub const MAX_BODY_WEIGHT: u64 = ((MAX_DOC_BYTES as u64 - 1024) / 4) * 3 - 4096;

/// The bytes a grant whose JSON is `json_len` long can add to a document's body: its JSON and
/// a separator, and for a grant that asks for a code its person's sealed secret and used step
/// (each person's appear once, so counting them per grant is an upper bound).
pub fn grant_weight(json_len: usize, wants_code: bool) -> u64 {
    json_len as u64 + 1 + if wants_code { MFA_ENTRY_WEIGHT } else { 0 }
}

/// An upper bound on one person's `mfa` entry (name ≤ 32, version, key, nonce and a
/// ciphertext of at most [`crate::mfa_seal::MAX_SECRET`] bytes, base64) plus its `mfa_used`
/// entry, with their JSON keys and separators (~360 bytes).
pub const MFA_ENTRY_WEIGHT: u64 = 384;

impl DocGrant {
    /// The grant asks for a TOTP code on the host (at login or at sudo): its person's fleet
    /// secret travels with it.
    pub fn wants_code(&self) -> bool {
        self.mfa || self.mfa_sudo
    }
}

/// The online signing key's certificate, signed by the root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningCert {
    /// The online ed25519 public key, base64.
    pub key: String,
    /// First second the key may sign.
    pub not_before: UnixTime,
    /// First second the key may no longer sign: documents verified after it are refused.
    pub not_after: UnixTime,
}

/// One grant as the server delivers it. Absolute times (the host never adds a duration); the
/// method fields carry `jitctl grant add`'s vocabulary and names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocGrant {
    /// Server grant id (`sg-` and hex).
    pub id: String,
    /// The request it came from.
    pub request_id: String,
    /// The person (account name on the host).
    pub user: String,
    /// First second of privilege.
    pub not_before: UnixTime,
    /// First second without privilege.
    pub not_after: UnixTime,
    /// Role name.
    pub role: String,
    /// People whose approvals made it (or `auto:GROUP`).
    pub approved_by: Vec<String>,
    /// Ephemeral account.
    pub account: bool,
    /// Groups joined while live.
    pub groups: Vec<String>,
    /// ssh public keys (from the person's record on the server).
    pub ssh_keys: Vec<String>,
    /// Why.
    pub reason: String,
    /// Ticket reference.
    pub ticket: String,
    /// Sudo scope.
    pub sudo: Vec<String>,
    /// Run-as targets.
    pub runas: Vec<String>,
    /// Enables a managed local account.
    pub enable: bool,
    /// Source networks.
    pub from: Vec<String>,
    /// PAM services.
    pub services: Vec<String>,
    /// Time windows.
    pub windows: Vec<String>,
    /// TOTP at login.
    pub mfa: bool,
    /// TOTP at sudo.
    pub mfa_sudo: bool,
    /// Ends with the first session.
    pub end_with_session: bool,
    /// Revocation classes.
    pub revoke_on: Vec<String>,
    /// End the grant when the host goes stale.
    pub strict: bool,
    /// Tokenization: capabilities the grant's programs run with (`jitctl run`), canonical
    /// names. Absent when empty, so a document without them reads the same to older hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Tokenization: the programs that may run with `caps` (absolute paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
}

/// The signed content: the host's whole current grant set (never a delta).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// [`DOC_VERSION`].
    pub version: u32,
    /// Host name as the server enrolled it.
    pub host: String,
    /// Fingerprint of the host's ed25519 key ([`key_fingerprint`]).
    pub host_key: String,
    /// Per-host sequence, strictly increasing with every change of the host's set.
    pub seq: u64,
    /// The server's clock when signing.
    pub server_time: UnixTime,
    /// Echo of the nonce the host sent with its poll.
    pub nonce: String,
    /// The document is worthless from this second on (the host goes stale).
    pub expires_at: UnixTime,
    /// Every grant the host should hold now.
    pub grants: Vec<DocGrant>,
    /// Fleet TOTP secrets, each sealed to this host's X25519 key, of the people who hold a live
    /// MFA grant here now (absent when none; `mfa_seal`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa: Vec<crate::mfa_seal::SealedSecret>,
    /// The highest TOTP step accepted anywhere for those people: a code used on one host is
    /// refused here (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa_used: Vec<crate::mfa_seal::UsedStep>,
}

/// The wire envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    cert: String,
    cert_sig: String,
    body: String,
    sig: String,
}

/// A certificate as issued: its exact bytes and the root's signature over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertBlob {
    /// The serialized [`SigningCert`].
    pub bytes: Vec<u8>,
    /// Root signature over `CERT_DOMAIN || bytes`.
    pub sig: [u8; 64],
}

/// What the host pinned at enrolment and must see in every document.
#[derive(Debug, Clone)]
pub struct HostPins {
    /// The offline root key's public half.
    pub root_key: [u8; 32],
    /// This host's name on the server.
    pub host: String,
    /// Fingerprint of this host's own key.
    pub host_key: String,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    /// Larger than [`MAX_DOC_BYTES`].
    TooLarge(usize),
    /// Not the expected shape (bad JSON, base64, duplicate/unknown keys, ...).
    Malformed(String),
    /// The root key did not sign this certificate.
    BadCertSignature,
    /// The certificate is not valid at `now`.
    CertNotValid {
        not_before: UnixTime,
        not_after: UnixTime,
        now: UnixTime,
    },
    /// The certified key did not sign this body.
    BadSignature,
    /// Unknown format version.
    Version(u32),
    /// Signed for another host.
    WrongHost(String),
    /// Signed for another key of this host name.
    WrongHostKey(String),
    /// Past its `expires_at`, or outliving the certificate that signs it.
    Expired { expires_at: UnixTime, now: UnixTime },
    /// Not an answer to the poll the host just made.
    NonceMismatch,
    /// Sequence at or below the highest one already applied (replay or rollback).
    Stale { seq: u64, applied: u64 },
    /// Too many grants.
    TooManyGrants(usize),
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocError::TooLarge(n) => write!(f, "state document of {n} bytes exceeds the cap"),
            DocError::Malformed(m) => write!(f, "malformed state document: {m}"),
            DocError::BadCertSignature => {
                write!(f, "signing certificate not signed by the pinned root key")
            }
            DocError::CertNotValid {
                not_before,
                not_after,
                now,
            } => write!(
                f,
                "signing certificate valid {not_before}..{not_after}, not at {now}"
            ),
            DocError::BadSignature => write!(f, "state document signature does not verify"),
            DocError::Version(v) => write!(f, "state document version {v} not supported"),
            DocError::WrongHost(h) => write!(f, "state document is for host {h:?}"),
            DocError::WrongHostKey(k) => write!(f, "state document is for host key {k}"),
            DocError::Expired { expires_at, now } => {
                write!(f, "state document expired at {expires_at} (now {now})")
            }
            DocError::NonceMismatch => write!(f, "state document does not echo this poll's nonce"),
            DocError::Stale { seq, applied } => write!(
                f,
                "state document sequence {seq} is not above the applied {applied} (replay)"
            ),
            DocError::TooManyGrants(n) => write!(f, "state document carries {n} grants"),
        }
    }
}

impl std::error::Error for DocError {}

/// `SHA256:` and the unpadded base64 of the SHA-256 of the raw 32-byte key (OpenSSH's style).
pub fn key_fingerprint(public: &[u8; 32]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(public)))
}

/// The same fingerprint form over arbitrary bytes (a TLS certificate's DER).
pub fn bytes_fingerprint(bytes: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(bytes)))
}

/// Certify `online` with `root` for `[not_before, not_after)`.
pub fn certify(
    root: &SigningKey,
    online: &VerifyingKey,
    not_before: UnixTime,
    not_after: UnixTime,
) -> Result<CertBlob, DocError> {
    let cert = SigningCert {
        key: STANDARD.encode(online.as_bytes()),
        not_before,
        not_after,
    };
    let bytes = serde_json::to_vec(&cert).map_err(|e| DocError::Malformed(e.to_string()))?;
    let sig = root.sign(&domain(CERT_DOMAIN, &bytes)).to_bytes();
    Ok(CertBlob { bytes, sig })
}

/// Sign `body` with the certified online key; the result is what goes on the wire.
pub fn sign_document(
    online: &SigningKey,
    cert: &CertBlob,
    body: &StateBody,
) -> Result<Vec<u8>, DocError> {
    sign_envelope(online, cert, DOC_DOMAIN, body)
}

/// The one signing path of every signed document (state documents and pin sets): `body` as
/// JSON, signed over its domain-separated bytes, in an envelope with the online key's
/// certificate. One copy, so a domain or encoding fix cannot reach one kind and miss the other.
fn sign_envelope(
    online: &SigningKey,
    cert: &CertBlob,
    domain_tag: &[u8],
    body: &impl Serialize,
) -> Result<Vec<u8>, DocError> {
    let body_bytes = serde_json::to_vec(body).map_err(|e| DocError::Malformed(e.to_string()))?;
    let sig = online.sign(&domain(domain_tag, &body_bytes)).to_bytes();
    let env = Envelope {
        cert: STANDARD.encode(&cert.bytes),
        cert_sig: STANDARD.encode(cert.sig),
        body: STANDARD.encode(&body_bytes),
        sig: STANDARD.encode(sig),
    };
    serde_json::to_vec(&env).map_err(|e| DocError::Malformed(e.to_string()))
}

/// Verify a document received in answer to the poll that sent `nonce`, at `now`, given the
/// highest sequence this host has durably applied. Returns the body only if every check passes.
pub fn verify_document(
    raw: &[u8],
    pins: &HostPins,
    now: UnixTime,
    applied_seq: u64,
    nonce: &str,
) -> Result<StateBody, DocError> {
    if raw.len() > MAX_DOC_BYTES {
        return Err(DocError::TooLarge(raw.len()));
    }
    let (cert, body_bytes) = verify_envelope(raw, pins, now, DOC_DOMAIN)?;
    let body: StateBody = strict_from_slice(&body_bytes)?;
    check_binding(
        Binding {
            version: body.version,
            host: &body.host,
            host_key: &body.host_key,
            expires_at: body.expires_at,
            nonce: &body.nonce,
        },
        pins,
        &cert,
        now,
        nonce,
    )?;
    if body.seq <= applied_seq {
        return Err(DocError::Stale {
            seq: body.seq,
            applied: applied_seq,
        });
    }
    if body.grants.len() > MAX_DOC_GRANTS {
        return Err(DocError::TooManyGrants(body.grants.len()));
    }
    Ok(body)
}

/// What binds a signed body (state document or pin set) to this host and this call.
struct Binding<'a> {
    version: u32,
    host: &'a str,
    host_key: &'a str,
    expires_at: UnixTime,
    nonce: &'a str,
}

/// The checks every signed body passes after its envelope: format version, host name and key,
/// expiry (never beyond the online key's certificate), and the call's nonce. One copy, so a
/// document kind cannot miss one.
fn check_binding(
    b: Binding<'_>,
    pins: &HostPins,
    cert: &SigningCert,
    now: UnixTime,
    nonce: &str,
) -> Result<(), DocError> {
    if b.version != DOC_VERSION {
        return Err(DocError::Version(b.version));
    }
    if b.host != pins.host {
        return Err(DocError::WrongHost(b.host.to_string()));
    }
    if b.host_key != pins.host_key {
        return Err(DocError::WrongHostKey(b.host_key.to_string()));
    }
    if now >= b.expires_at || b.expires_at > cert.not_after {
        return Err(DocError::Expired {
            expires_at: b.expires_at.min(cert.not_after),
            now,
        });
    }
    if b.nonce != nonce {
        return Err(DocError::NonceMismatch);
    }
    Ok(())
}

/// The envelope's checks shared by every signed server document, in order: strict parse, base64,
/// the pinned root's signature over the raw certificate bytes, the certificate's strict parse and
/// validity at `now`, the certified key's signature over `domain || body bytes`. Returns the
/// certificate and the verified (still unparsed) body bytes.
fn verify_envelope(
    raw: &[u8],
    pins: &HostPins,
    now: UnixTime,
    body_domain: &[u8],
) -> Result<(SigningCert, Vec<u8>), DocError> {
    let env: Envelope = strict_from_slice(raw)?;
    let cert_bytes = b64(&env.cert, "cert")?;
    let cert_sig = sig_from(&b64(&env.cert_sig, "cert_sig")?)?;
    let body_bytes = b64(&env.body, "body")?;
    let body_sig = sig_from(&b64(&env.sig, "sig")?)?;

    // Signatures over the raw bytes first; nothing signed is parsed before it verifies.
    let root = VerifyingKey::from_bytes(&pins.root_key)
        .map_err(|_| DocError::Malformed("pinned root key is not a valid ed25519 key".into()))?;
    root.verify_strict(&domain(CERT_DOMAIN, &cert_bytes), &cert_sig)
        .map_err(|_| DocError::BadCertSignature)?;
    let cert: SigningCert = strict_from_slice(&cert_bytes)?;
    if now < cert.not_before || now >= cert.not_after {
        return Err(DocError::CertNotValid {
            not_before: cert.not_before,
            not_after: cert.not_after,
            now,
        });
    }
    let online_raw: [u8; 32] = b64(&cert.key, "cert key")?
        .try_into()
        .map_err(|_| DocError::Malformed("certified key is not 32 bytes".into()))?;
    let online = VerifyingKey::from_bytes(&online_raw)
        .map_err(|_| DocError::Malformed("certified key is not a valid ed25519 key".into()))?;
    online
        .verify_strict(&domain(body_domain, &body_bytes), &body_sig)
        .map_err(|_| DocError::BadSignature)?;
    Ok((cert, body_bytes))
}

/// Domain separation for the TLS pin document: a pin set is never a state document.
pub const PINS_DOMAIN: &[u8] = b"jit-tls-pins-v1\0";
/// Largest pin document accepted.
pub const MAX_PINS_BYTES: usize = 16 << 10;

/// The signed TLS pin set for one host: the certificate the server serves now and the one it
/// will switch to (`jit-server key tls-next`), so a host learns the next TLS key from the key
/// it already trusts. Same envelope as the state document, signed over [`PINS_DOMAIN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinsBody {
    /// [`DOC_VERSION`].
    pub version: u32,
    /// Host name as the server enrolled it.
    pub host: String,
    /// Fingerprint of the host's key.
    pub host_key: String,
    /// `SHA256:…` of the certificate served now.
    pub current: String,
    /// `SHA256:…` of the next certificate, if one is prepared.
    pub next: Option<String>,
    /// Echo of the call's nonce.
    pub nonce: String,
    /// Server clock at signing.
    pub server_time: UnixTime,
    /// Worthless from this second.
    pub expires_at: UnixTime,
}

/// Sign a pin set with the certified online key (the server's side, and tests).
pub fn sign_pins(
    online: &SigningKey,
    cert: &CertBlob,
    body: &PinsBody,
) -> Result<Vec<u8>, DocError> {
    sign_envelope(online, cert, PINS_DOMAIN, body)
}

/// Verify a pin document answering the call that sent `nonce`: the envelope as for a state
/// document (over [`PINS_DOMAIN`]), then version, host name and key, expiry, nonce, and that
/// both fingerprints have the `SHA256:` form.
pub fn verify_pins(
    raw: &[u8],
    pins: &HostPins,
    now: UnixTime,
    nonce: &str,
) -> Result<PinsBody, DocError> {
    if raw.len() > MAX_PINS_BYTES {
        return Err(DocError::TooLarge(raw.len()));
    }
    let (cert, body_bytes) = verify_envelope(raw, pins, now, PINS_DOMAIN)?;
    let body: PinsBody = strict_from_slice(&body_bytes)?;
    check_binding(
        Binding {
            version: body.version,
            host: &body.host,
            host_key: &body.host_key,
            expires_at: body.expires_at,
            nonce: &body.nonce,
        },
        pins,
        &cert,
        now,
        nonce,
    )?;
    let well_formed = |f: &str| {
        f.len() <= 80
            && f.strip_prefix("SHA256:").is_some_and(|b| {
                !b.is_empty()
                    && b.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
            })
    };
    if !well_formed(&body.current) || body.next.as_deref().is_some_and(|n| !well_formed(n)) {
        return Err(DocError::Malformed("pin is not SHA256:… base64".into()));
    }
    Ok(body)
}

/// Parse JSON refusing duplicate keys at any depth, then into `T` (whose own
/// `deny_unknown_fields` refuses unknown and case-variant keys).
pub fn strict_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DocError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    NoDuplicates::deserialize(&mut de).map_err(|e| DocError::Malformed(e.to_string()))?;
    de.end().map_err(|e| DocError::Malformed(e.to_string()))?;
    serde_json::from_slice(bytes).map_err(|e| DocError::Malformed(e.to_string()))
}

fn domain(prefix: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + bytes.len());
    v.extend_from_slice(prefix);
    v.extend_from_slice(bytes);
    v
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, DocError> {
    STANDARD
        .decode(s)
        .map_err(|e| DocError::Malformed(format!("{what}: {e}")))
}

fn sig_from(bytes: &[u8]) -> Result<Signature, DocError> {
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| DocError::Malformed("signature is not 64 bytes".into()))?;
    Ok(Signature::from_bytes(&arr))
}

/// Walks any JSON value and fails on a key seen twice in one object.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // Keys differing only by case are refused too: no reader may fold them together.
            if !seen.insert(key.to_lowercase()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
#[path = "state_doc_tests.rs"]
mod tests;
