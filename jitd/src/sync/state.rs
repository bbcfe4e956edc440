//! What jitd keeps about its link to jit-server, in `<state_dir>/server/` (0700):
//!
//! * `host.key` — this host's ed25519 secret seed, base64, mode 0600. Made by jitd at
//!   enrolment, never sent anywhere (only its public half is registered).
//! * `seal.key` — this host's X25519 secret key, base64, mode 0600: fleet TOTP secrets are
//!   sealed to its public half (registered with the server), never sent anywhere.
//! * `enrolment.json` — the server URL, the host name the server gave, the pinned TLS
//!   fingerprints and root key (sealed with a checksum header).
//! * `applied` — the highest state-document sequence applied and that document's expiry,
//!   written durably (fsync, rename) BEFORE any grant of the document activates, so a replayed
//!   older document is refused even after a restart.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use jit_core::time::UnixTime;
use jit_proto::state_doc::{key_fingerprint, HostPins};
use serde::{Deserialize, Serialize};

use crate::durable::{replace_file, seal, unseal};

const ENROLMENT_HEADER: &str = "jitd-enrolment 1 ";
const APPLIED_HEADER: &str = "jitd-applied 1 ";

/// The enrolment, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// `https://HOST:PORT` of the server.
    pub url: String,
    /// This host's name on the server (from the join token's record, never claimed by us).
    pub host: String,
    /// Fingerprint of this host's key.
    pub host_key: String,
    /// The offline root key's public half, base64: certifies the online signing keys.
    pub root_key: String,
    /// Accepted TLS certificate fingerprints (the one given at enrolment, and the server's).
    pub tls_pins: Vec<String>,
    /// When it was made.
    pub enrolled_at: UnixTime,
}

impl Enrolment {
    /// The pins the verifier checks every document against.
    pub fn pins(&self) -> Result<HostPins, String> {
        let root: [u8; 32] = STANDARD
            .decode(&self.root_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or("enrolment: root key is not 32 bytes of base64")?;
        Ok(HostPins {
            root_key: root,
            host: self.host.clone(),
            host_key: self.host_key.clone(),
        })
    }
}

/// The highest applied document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    /// Its sequence (0: none yet).
    pub seq: u64,
    /// Its `expires_at`: from then on the host is stale until a newer document arrives.
    pub expires_at: UnixTime,
    /// When it was verified.
    pub at: UnixTime,
}

/// The files under `<state_dir>/server`.
#[derive(Debug, Clone)]
pub struct LinkStore {
    dir: PathBuf,
}

impl LinkStore {
    /// The store under `state_dir`.
    pub fn new(state_dir: &Path) -> LinkStore {
        LinkStore {
            dir: state_dir.join("server"),
        }
    }

    fn prepare(&self) -> Result<(), String> {
        crate::daemon::prepare_dir(&self.dir, 0o700)
    }

    /// The enrolment, if this host is enrolled.
    pub fn enrolment(&self) -> Result<Option<Enrolment>, String> {
        let p = self.dir.join("enrolment.json");
        match std::fs::read(&p) {
            Ok(b) => {
                let body =
                    unseal(ENROLMENT_HEADER, &b).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_slice(body)
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Stores the enrolment durably.
    pub fn save_enrolment(&self, e: &Enrolment) -> Result<(), String> {
        self.prepare()?;
        let body = serde_json::to_vec(e).map_err(|e| e.to_string())?;
        let p = self.dir.join("enrolment.json");
        replace_file(&p, &seal(ENROLMENT_HEADER, &body), 0o600, false)
            .map_err(|e| format!("{}: {e}", p.display()))
    }

    /// This host's key: the existing one, or a new one made from getrandom(2). A key file
    /// readable by anyone but root is refused (it would let them act as this host).
    pub fn host_key(&self, create: bool) -> Result<SigningKey, String> {
        self.key_file("host.key", create)
            .map(|seed| SigningKey::from_bytes(&seed))
    }

    /// This host's X25519 secret key (`seal.key`), which fleet TOTP secrets are sealed to: made
    /// like the host key (at enrolment, or at the first start of a host enrolled before), only
    /// its public half is registered with the server.
    pub fn seal_key(&self, create: bool) -> Result<[u8; 32], String> {
        self.key_file("seal.key", create)
    }

    /// 32 secret bytes in `<dir>/NAME` (base64, root, 0600), made from getrandom(2) if missing
    /// and `create`.
    fn key_file(&self, name: &str, create: bool) -> Result<[u8; 32], String> {
        self.prepare()?;
        let p = self.dir.join(name);
        match std::fs::metadata(&p) {
            Ok(m) => {
                if m.uid() != 0 || m.mode() & 0o077 != 0 {
                    return Err(format!(
                        "{}: must be owned by root with mode 0600 (is uid {} mode {:o})",
                        p.display(),
                        m.uid(),
                        m.mode() & 0o7777
                    ));
                }
                let text =
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                STANDARD
                    .decode(text.trim())
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| format!("{}: not 32 bytes of base64", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut seed = [0u8; 32];
                // SAFETY: `seed` is writable for its length.
                let got = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
                if got != seed.len() as isize {
                    return Err("getrandom failed".into());
                }
                let mut text = STANDARD.encode(seed);
                text.push('\n');
                replace_file(&p, text.as_bytes(), 0o600, false)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                jit_core::host::secret::wipe_string(&mut text);
                // Best effort: the key file's mode is what protects it.
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
                Ok(seed)
            }
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// The highest applied document (none: zero).
    pub fn applied(&self) -> Result<Applied, String> {
        let p = self.dir.join("applied");
        match std::fs::read(&p) {
            Ok(b) => {
                let body =
                    unseal(APPLIED_HEADER, &b).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_slice(body).map_err(|e| format!("{}: {e}", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Applied::default()),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Records `a` durably (before anything it carries takes effect).
    pub fn save_applied(&self, a: &Applied) -> Result<(), String> {
        self.prepare()?;
        let body = serde_json::to_vec(a).map_err(|e| e.to_string())?;
        let p = self.dir.join("applied");
        replace_file(&p, &seal(APPLIED_HEADER, &body), 0o600, false)
            .map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// The fingerprint of `key`'s public half, as the server binds documents to it.
pub fn fingerprint_of(key: &SigningKey) -> String {
    key_fingerprint(&key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("jitd-sync-state-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn host_key_is_made_once_private_and_reloaded() {
        let d = dir("key");
        let s = LinkStore::new(&d);
        assert!(
            s.host_key(false).is_err(),
            "no key yet and not asked to make one"
        );
        let k = s.host_key(true).unwrap();
        let m = std::fs::metadata(d.join("server/host.key")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(s.host_key(true).unwrap().to_bytes(), k.to_bytes());
        std::fs::set_permissions(
            d.join("server/host.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(s.host_key(false).unwrap_err().contains("0600"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn applied_survives_and_a_damaged_file_is_refused() {
        let d = dir("applied");
        let s = LinkStore::new(&d);
        assert_eq!(s.applied().unwrap().seq, 0);
        s.save_applied(&Applied {
            seq: 7,
            expires_at: 100,
            at: 40,
        })
        .unwrap();
        assert_eq!(LinkStore::new(&d).applied().unwrap().seq, 7);
        let p = d.join("server/applied");
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len() - 3;
        b[n] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(
            s.applied().is_err(),
            "a damaged sequence file never reads as 0"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
