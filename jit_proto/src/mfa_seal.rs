//! A person's fleet TOTP secret sealed to one host: what jit-server puts in a host's signed
//! state document while the person holds a live MFA grant there, and what jitd opens with the
//! X25519 key it made at enrolment (`<state_dir>/server/seal.key`).
//!
//! Construction (an ECIES in the shape of HPKE's base mode, with fixed choices and no
//! negotiation):
//!
//! * the server makes a fresh X25519 key pair per sealing and computes the shared secret with
//!   the host's registered public key; an all-zero (non-contributory) shared secret is refused;
//! * key = HKDF-SHA256(ikm = shared, salt = ephemeral public || host public, info =
//!   [`SEAL_INFO`]);
//! * XChaCha20-Poly1305 with a random 24-byte nonce; the associated data binds the ciphertext to
//!   (identity, host, version): [`aad`]. A ciphertext moved to another person, another host or
//!   another version of the secret does not open.
//!
//! Authenticated encryption alone says nothing about who sealed (anyone knowing the host's
//! public key can seal): the sealed secret travels inside the state document, whose signature by
//! the root-certified online key is checked before anything in it is read. Pure code: the caller
//! supplies the randomness (ephemeral key, nonce) and stores nothing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use jit_core::host::secret::{wipe, Secret};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

/// HKDF info and first AAD field: a key or ciphertext made for anything else never opens here.
pub const SEAL_INFO: &[u8] = b"jit-mfa-seal-v1";
/// Largest secret sealed (a TOTP secret is 20 bytes).
pub const MAX_SECRET: usize = 64;

/// One person's secret, sealed to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// The person (account name on the host).
    pub user: String,
    /// Version of the person's enrolment on the server (a re-enrolment raises it).
    pub version: u64,
    /// The sealer's ephemeral X25519 public key, base64.
    pub epk: String,
    /// XChaCha20 nonce, base64 (24 bytes).
    pub nonce: String,
    /// Ciphertext and Poly1305 tag, base64.
    pub ct: String,
}

/// A TOTP time step a host accepted for a person, relayed to the person's other hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedStep {
    /// The person.
    pub user: String,
    /// The highest step accepted anywhere the server knows of.
    pub step: u64,
}

/// Why a secret could not be sealed or opened. Never carries secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// A key, nonce or ciphertext of the wrong size or encoding, or an empty/oversized secret.
    Malformed(&'static str),
    /// The shared secret was all zeros (a low-order public key).
    WeakKey,
    /// Authentication failed: another host's key, another identity, version or host name, or
    /// a changed ciphertext.
    Refused,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Malformed(m) => write!(f, "sealed secret malformed: {m}"),
            SealError::WeakKey => f.write_str("sealed secret: non-contributory key agreement"),
            SealError::Refused => f.write_str(
                "sealed secret does not open with this host's key for this identity and version",
            ),
        }
    }
}

impl std::error::Error for SealError {}

/// The X25519 public key of a 32-byte secret key.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// The associated data: `SEAL_INFO`, then identity, host (each with a 4-byte big-endian length)
/// and the version (8 bytes big-endian). Length-prefixed, so no two bindings share bytes.
pub fn aad(user: &str, host: &str, version: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(SEAL_INFO.len() + user.len() + host.len() + 16);
    a.extend_from_slice(SEAL_INFO);
    for field in [user.as_bytes(), host.as_bytes()] {
        a.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        a.extend_from_slice(field);
    }
    a.extend_from_slice(&version.to_be_bytes());
    a
}

fn cipher(shared: &[u8; 32], epk: &[u8; 32], host_pub: &[u8; 32]) -> XChaCha20Poly1305 {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(epk);
    salt[32..].copy_from_slice(host_pub);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit (255 × 32): expand cannot fail.
    let _ = hk.expand(SEAL_INFO, &mut key);
    let c = XChaCha20Poly1305::new(&key.into());
    wipe(&mut key);
    c
}

/// Seals `secret` for `user` (enrolment `version`) to the host `host` whose X25519 public key is
/// `host_pub`. `eph` (a fresh random X25519 secret) and `nonce` (24 random bytes) come from the
/// caller.
///
/// # Errors
/// [`SealError::Malformed`] for an empty or oversized secret, [`SealError::WeakKey`].
pub fn seal(
    host_pub: &[u8; 32],
    host: &str,
    user: &str,
    version: u64,
    secret: &[u8],
    eph: [u8; 32],
    nonce: [u8; 24],
) -> Result<SealedSecret, SealError> {
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(SealError::Malformed("secret length"));
    }
    let eph = StaticSecret::from(eph);
    let epk = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*host_pub));
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let c = cipher(shared.as_bytes(), &epk, host_pub);
    let ct = c
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad(user, host, version),
            },
        )
        .map_err(|_| SealError::Malformed("encryption"))?;
    Ok(SealedSecret {
        user: user.to_string(),
        version,
        epk: STANDARD.encode(epk),
        nonce: STANDARD.encode(nonce),
        ct: STANDARD.encode(ct),
    })
}

fn b64_array<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], SealError> {
    if s.len() > 4 * N.div_ceil(3) {
        return Err(SealError::Malformed(what));
    }
    STANDARD
        .decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(SealError::Malformed(what))
}

/// Opens `s` with this host's X25519 secret key for host name `host`. The identity and version
/// are the ones written in `s`; they are authenticated (AAD), so a changed one is refused.
///
/// # Errors
/// [`SealError::Malformed`], [`SealError::WeakKey`], [`SealError::Refused`].
pub fn open(host_secret: &[u8; 32], host: &str, s: &SealedSecret) -> Result<Secret, SealError> {
    let epk: [u8; 32] = b64_array(&s.epk, "ephemeral key")?;
    let nonce: [u8; 24] = b64_array(&s.nonce, "nonce")?;
    // Ciphertext: the secret plus a 16-byte tag.
    if s.ct.len() > 4 * (MAX_SECRET + 16).div_ceil(3) {
        return Err(SealError::Malformed("ciphertext length"));
    }
    let ct = STANDARD
        .decode(&s.ct)
        .map_err(|_| SealError::Malformed("ciphertext"))?;
    let sk = StaticSecret::from(*host_secret);
    let host_pub = PublicKey::from(&sk).to_bytes();
    let shared = sk.diffie_hellman(&PublicKey::from(epk));
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let c = cipher(shared.as_bytes(), &epk, &host_pub);
    let plain = c
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: &aad(&s.user, host, s.version),
            },
        )
        .map_err(|_| SealError::Refused)?;
    Ok(Secret::new(plain))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HOST_SK: [u8; 32] = [7u8; 32];
    const OTHER_SK: [u8; 32] = [9u8; 32];
    const SECRET: &[u8] = b"12345678901234567890";

    fn sealed() -> SealedSecret {
        seal(
            &public_key(&HOST_SK),
            "web1",
            "alice",
            3,
            SECRET,
            [42u8; 32],
            [5u8; 24],
        )
        .unwrap()
    }

    #[test]
    fn the_right_host_opens_it() {
        let s = sealed();
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap().bytes(), SECRET);
        assert!(!s.ct.contains(&STANDARD.encode(SECRET)));
    }

    #[test]
    fn another_hosts_key_or_name_is_refused() {
        let s = sealed();
        assert_eq!(open(&OTHER_SK, "web1", &s).unwrap_err(), SealError::Refused);
        assert_eq!(open(&HOST_SK, "web2", &s).unwrap_err(), SealError::Refused);
    }

    #[test]
    fn a_changed_identity_or_version_is_refused() {
        let mut s = sealed();
        s.user = "mallory".into();
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::Refused);
        let mut s = sealed();
        s.version = 4;
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::Refused);
    }

    #[test]
    fn tampering_is_refused() {
        let good = sealed();
        let raw = STANDARD.decode(&good.ct).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            let s = SealedSecret {
                ct: STANDARD.encode(&bad),
                ..good.clone()
            };
            assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::Refused);
        }
        let s = SealedSecret {
            nonce: STANDARD.encode([6u8; 24]),
            ..good.clone()
        };
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::Refused);
        let s = SealedSecret {
            epk: STANDARD.encode(public_key(&[1u8; 32])),
            ..good.clone()
        };
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::Refused);
        let s = SealedSecret {
            ct: STANDARD.encode(&raw[..raw.len() - 1]),
            ..good
        };
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::Refused);
    }

    #[test]
    fn low_order_keys_and_bad_sizes_are_refused() {
        let s = SealedSecret {
            epk: STANDARD.encode([0u8; 32]),
            ..sealed()
        };
        assert_eq!(open(&HOST_SK, "web1", &s).unwrap_err(), SealError::WeakKey);
        assert_eq!(
            seal(&[0u8; 32], "web1", "alice", 1, SECRET, [1; 32], [0; 24]).unwrap_err(),
            SealError::WeakKey
        );
        let s = SealedSecret {
            nonce: STANDARD.encode([6u8; 12]),
            ..sealed()
        };
        assert!(matches!(
            open(&HOST_SK, "web1", &s),
            Err(SealError::Malformed(_))
        ));
        assert!(seal(&public_key(&HOST_SK), "h", "a", 1, &[], [1; 32], [0; 24]).is_err());
        assert!(seal(
            &public_key(&HOST_SK),
            "h",
            "a",
            1,
            &[0; 65],
            [1; 32],
            [0; 24]
        )
        .is_err());
    }

    #[test]
    fn bindings_do_not_collide() {
        assert_ne!(aad("ab", "c", 1), aad("a", "bc", 1));
        assert_ne!(aad("a", "b", 1), aad("a", "b", 2));
    }
}
