//! Break-glass codes for managed admin accounts: made once by `jitctl breakglass init`, shown
//! once, kept only as Argon2id hashes in `<state_dir>/breakglass/<account>.json` (root, 0600,
//! directory 0700). One code opens one short emergency grant when no grant enables the account.
//!
//! A code reads `NN-XXXXX-XXXXX-XXXXX`: `NN` says which hash to check (so a guess costs one
//! Argon2 verification, not one per code) and the 15 secret characters carry 75 bits. A spent
//! code is recorded durably before jitd acts on it, failures are counted and locked out like
//! TOTP, and the record is written whole through `durable::replace_file` (never in place).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use super::store::{RecordDir, StoreError, FILE_MODE};
use crate::durable::{replace_file, seal, unseal};
use crate::mfa::strikes::{self, Sources, Strikes};

const DIR: &str = "breakglass";
const HEADER: &str = "jitd-breakglass 1 ";
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Most codes per account.
pub const MAX_CODES: u32 = 20;
/// Failures before a lockout; each further failure doubles it, up to an hour.
const MAX_FAILURES: u32 = 5;
const LOCKOUT_BASE_SECS: i64 = 60;
const LOCKOUT_MAX_SECS: i64 = 3600;
/// Crockford's base32 alphabet: no I, L, O, U to misread on a printed sheet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SECRET_CHARS: usize = 15;

/// One code's hash and whether it was spent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeRecord {
    n: u32,
    hash: String,
    used_at: Option<i64>,
}

/// The codes of one account.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountRecord {
    account: String,
    created_at: i64,
    codes: Vec<CodeRecord>,
    failures: u32,
    locked_until: i64,
    /// Failure counters per source (absent in records written before sources existed).
    #[serde(default, skip_serializing_if = "Sources::is_empty")]
    sources: Sources,
}

/// Stores a counter: a source's (see `crate::mfa::strikes`), or the account's own.
fn set_strikes(rec: &mut AccountRecord, key: Option<String>, st: Strikes, now: i64) {
    match key {
        Some(k) => strikes::store(&mut rec.sources, k, st, now, LOCKOUT_MAX_SECS),
        None => {
            rec.failures = st.failures;
            rec.locked_until = st.locked_until;
        }
    }
}

/// Why a break-glass operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakglassError {
    /// The account has no codes.
    NoCodes,
    /// Codes exist and `replace` was not given.
    AlreadyInitialised,
    /// Not the shape of a code.
    BadFormat,
    /// Wrong code (failures so far).
    Wrong {
        /// Failures counted.
        failures: u32,
    },
    /// That code was already used.
    Spent {
        /// When.
        at: i64,
    },
    /// Too many failures.
    LockedOut {
        /// Until this Unix time.
        until: i64,
    },
    /// Storage problem: nothing accepted.
    Io(String),
}

impl std::fmt::Display for BreakglassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BreakglassError::NoCodes => write!(f, "no break-glass codes for this account"),
            BreakglassError::AlreadyInitialised => write!(
                f,
                "break-glass codes already exist (--replace makes new ones and voids the old)"
            ),
            BreakglassError::BadFormat => {
                write!(f, "not a break-glass code (NN-XXXXX-XXXXX-XXXXX)")
            }
            BreakglassError::Wrong { failures } => {
                write!(f, "wrong break-glass code ({failures} failures)")
            }
            BreakglassError::Spent { at } => write!(
                f,
                "that break-glass code was already used at {}",
                jit_core::time::format_utc(*at)
            ),
            BreakglassError::LockedOut { until } => write!(
                f,
                "too many wrong break-glass codes: locked until {}",
                jit_core::time::format_utc(*until)
            ),
            BreakglassError::Io(m) => write!(f, "break-glass store: {m}"),
        }
    }
}

impl std::error::Error for BreakglassError {}

fn io_err(path: &Path, e: &io::Error) -> BreakglassError {
    BreakglassError::Io(format!("{}: {e}", path.display()))
}

fn random_bytes(n: usize) -> Result<Vec<u8>, BreakglassError> {
    jit_core::host::random::bytes(n).map_err(|e| BreakglassError::Io(format!("getrandom: {e}")))
}

/// `SECRET_CHARS` characters from `ALPHABET`, without modulo bias (32 divides 256).
fn random_secret() -> Result<String, BreakglassError> {
    Ok(random_bytes(SECRET_CHARS)?
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect())
}

/// `NN-XXXXX-XXXXX-XXXXX` for display.
fn format_code(n: u32, secret: &str) -> String {
    let groups: Vec<&str> = (0..3)
        .filter_map(|i| secret.get(i * 5..i * 5 + 5))
        .collect();
    format!("{n:02}-{}", groups.join("-"))
}

/// Splits a typed code into its number and its canonical secret (upper case, no separators;
/// the look-alikes O→0, I/L→1 are folded as Crockford's base32 does).
fn parse_code(code: &str) -> Option<(u32, String)> {
    let code = code.trim();
    if code.len() > 64 {
        return None;
    }
    let (n, rest) = code.split_once('-')?;
    let n: u32 = n.trim().parse().ok()?;
    let mut secret = String::with_capacity(SECRET_CHARS);
    for c in rest.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        secret.push(c);
    }
    (secret.len() == SECRET_CHARS && (1..=MAX_CODES).contains(&n)).then_some((n, secret))
}

fn hash(n: u32, secret: &str) -> Result<String, BreakglassError> {
    let salt = SaltString::encode_b64(&random_bytes(16)?)
        .map_err(|e| BreakglassError::Io(format!("salt: {e}")))?;
    // The number is hashed with the secret so a hash cannot be moved to another slot.
    Argon2::default()
        .hash_password(format!("{n:02}-{secret}").as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| BreakglassError::Io(format!("argon2: {e}")))
}

fn verify(n: u32, secret: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(format!("{n:02}-{secret}").as_bytes(), &parsed)
        .is_ok()
}

impl From<StoreError> for BreakglassError {
    fn from(e: StoreError) -> BreakglassError {
        BreakglassError::Io(e.to_string())
    }
}

/// The break-glass records of all managed accounts.
pub struct BreakglassStore {
    records: RecordDir,
}

impl std::fmt::Debug for BreakglassStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakglassStore")
            .field("dir", &self.records.dir())
            .finish_non_exhaustive()
    }
}

impl BreakglassStore {
    /// Opens `<state_dir>/breakglass` (made root 0700 if missing); refuses one that is not
    /// root's or that others can read.
    ///
    /// # Errors
    /// I/O or an unsafe directory.
    pub fn open(state_dir: &Path) -> Result<BreakglassStore, BreakglassError> {
        Ok(BreakglassStore {
            // A record others could read is refused when it is used, not at start: an
            // emergency code must not stop jitd from starting.
            records: RecordDir::open(state_dir, DIR, false)?,
        })
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.records.guard()
    }

    fn path(&self, account: &str) -> Result<PathBuf, BreakglassError> {
        Ok(self.records.record_path("account", account)?)
    }

    fn load(&self, path: &Path) -> Result<AccountRecord, BreakglassError> {
        let buf = self
            .records
            .read(path, MAX_RECORD_BYTES)?
            .ok_or(BreakglassError::NoCodes)?;
        let body = unseal(HEADER, &buf)
            .map_err(|e| BreakglassError::Io(format!("{}: damaged: {e}", path.display())))?;
        serde_json::from_slice(body)
            .map_err(|e| BreakglassError::Io(format!("{}: damaged: {e}", path.display())))
    }

    fn save(&self, path: &Path, rec: &AccountRecord) -> Result<(), BreakglassError> {
        let body = serde_json::to_vec(rec).map_err(|e| BreakglassError::Io(e.to_string()))?;
        replace_file(path, &seal(HEADER, &body), FILE_MODE, false).map_err(|e| io_err(path, &e))
    }

    /// Makes `count` codes for `account` and returns them (the only time they exist in the
    /// clear). With `replace`, earlier codes are voided.
    ///
    /// # Errors
    /// [`BreakglassError::AlreadyInitialised`], I/O.
    pub fn init(
        &self,
        account: &str,
        count: u32,
        replace: bool,
        now: i64,
    ) -> Result<Vec<String>, BreakglassError> {
        let path = self.path(account)?;
        let _g = self.guard();
        match self.load(&path) {
            Err(BreakglassError::NoCodes) => {}
            Ok(_) | Err(_) if replace => {}
            Ok(_) => return Err(BreakglassError::AlreadyInitialised),
            Err(e) => return Err(e),
        }
        let mut codes = Vec::new();
        let mut records = Vec::new();
        for n in 1..=count.clamp(1, MAX_CODES) {
            let secret = random_secret()?;
            records.push(CodeRecord {
                n,
                hash: hash(n, &secret)?,
                used_at: None,
            });
            codes.push(format_code(n, &secret));
        }
        self.save(
            &path,
            &AccountRecord {
                account: account.to_string(),
                created_at: now,
                codes: records,
                failures: 0,
                locked_until: 0,
                sources: Sources::new(),
            },
        )?;
        Ok(codes)
    }

    /// Unspent codes of `account` (None: no codes).
    pub fn remaining(&self, account: &str) -> Option<usize> {
        let path = self.path(account).ok()?;
        let _g = self.guard();
        let rec = self.load(&path).ok()?;
        Some(rec.codes.iter().filter(|c| c.used_at.is_none()).count())
    }

    /// Spends `code` for `account`; returns its number. The spent mark (or the failure count)
    /// is durable before this returns, so a code never opens two grants (persist before act).
    ///
    /// # Errors
    /// Every [`BreakglassError`] but `AlreadyInitialised`; nothing was accepted.
    pub fn spend(&self, account: &str, code: &str, now: i64) -> Result<u32, BreakglassError> {
        self.spend_from(account, code, None, now)
    }

    /// [`BreakglassStore::spend`] counting failures for `source` (None: the account's own
    /// counter); see `crate::mfa::strikes`.
    ///
    /// # Errors
    /// As [`BreakglassStore::spend`].
    pub fn spend_from(
        &self,
        account: &str,
        code: &str,
        source: Option<&str>,
        now: i64,
    ) -> Result<u32, BreakglassError> {
        let path = self.path(account)?;
        let _g = self.guard();
        let mut rec = self.load(&path)?;
        let (key, mut st) = match source {
            Some(src) => {
                let (k, st) = strikes::pick(&rec.sources, src, now, LOCKOUT_MAX_SECS);
                (Some(k), st)
            }
            None => (
                None,
                Strikes {
                    failures: rec.failures,
                    locked_until: rec.locked_until,
                    last: now,
                },
            ),
        };
        if now < st.locked_until {
            return Err(BreakglassError::LockedOut {
                until: st.locked_until,
            });
        }
        let outcome = match parse_code(code) {
            None => Err(BreakglassError::BadFormat),
            Some((n, secret)) => match rec.codes.iter().position(|c| c.n == n) {
                None => Err(BreakglassError::Wrong { failures: 0 }),
                Some(i) => {
                    let c = rec.codes.get(i).cloned();
                    match c {
                        Some(c) if verify(n, &secret, &c.hash) => match c.used_at {
                            Some(at) => Err(BreakglassError::Spent { at }),
                            None => Ok((i, n)),
                        },
                        _ => Err(BreakglassError::Wrong { failures: 0 }),
                    }
                }
            },
        };
        match outcome {
            Ok((i, n)) => {
                if let Some(c) = rec.codes.get_mut(i) {
                    c.used_at = Some(now);
                }
                set_strikes(&mut rec, key, Strikes::default(), now);
                self.save(&path, &rec)?;
                Ok(n)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.last = now;
                if st.failures >= MAX_FAILURES {
                    st.locked_until = now.saturating_add(crate::mfa::totp::lockout_secs(
                        st.failures,
                        MAX_FAILURES,
                        LOCKOUT_BASE_SECS,
                        LOCKOUT_MAX_SECS,
                    ));
                }
                set_strikes(&mut rec, key, st, now);
                self.save(&path, &rec)?;
                Err(match e {
                    BreakglassError::Wrong { .. } => BreakglassError::Wrong {
                        failures: st.failures,
                    },
                    other => other,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};

    struct TestDir(PathBuf);
    impl TestDir {
        fn new(tag: &str) -> TestDir {
            let p = std::env::temp_dir().join(format!("jitd-bg-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
            TestDir(p)
        }
    }
    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn codes_work_once_and_are_kept_only_as_hashes() {
        let d = TestDir::new("once");
        let s = BreakglassStore::open(&d.0).unwrap();
        let codes = s.init("opsadmin", 3, false, 1000).unwrap();
        assert_eq!(codes.len(), 3);
        assert!(codes[0].starts_with("01-") && codes[2].starts_with("03-"));
        assert_eq!(codes[0].len(), 20, "{}", codes[0]);
        let file = std::fs::read(d.0.join("breakglass/opsadmin.json")).unwrap();
        let text = String::from_utf8_lossy(&file);
        for c in &codes {
            assert!(!text.contains(&c[3..]), "clear code stored");
        }
        assert!(text.contains("$argon2id$"));
        let mode = std::fs::metadata(d.0.join("breakglass/opsadmin.json"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Lower case and without dashes is the same code.
        let typed = codes[1].replace('-', "").to_lowercase();
        let typed = format!("{}-{}", &typed[..2], &typed[2..]);
        assert_eq!(s.spend("opsadmin", &typed, 1010).unwrap(), 2);
        assert!(matches!(
            s.spend("opsadmin", &codes[1], 1020),
            Err(BreakglassError::Spent { at: 1010 })
        ));
        assert_eq!(s.remaining("opsadmin"), Some(2));
        assert_eq!(s.spend("opsadmin", &codes[0], 1030).unwrap(), 1);
        // Re-init without --replace refused; with it, old codes are void.
        assert_eq!(
            s.init("opsadmin", 2, false, 1040).unwrap_err(),
            BreakglassError::AlreadyInitialised
        );
        let fresh = s.init("opsadmin", 2, true, 1040).unwrap();
        assert!(s.spend("opsadmin", &codes[2], 1050).is_err());
        assert_eq!(s.spend("opsadmin", &fresh[1], 1060).unwrap(), 2);
        assert_eq!(
            s.spend("nobodyelse", &fresh[0], 1070).unwrap_err(),
            BreakglassError::NoCodes
        );
    }

    #[test]
    fn a_code_cannot_be_used_in_another_slot_and_failures_lock_out() {
        let d = TestDir::new("lock");
        let s = BreakglassStore::open(&d.0).unwrap();
        let codes = s.init("opsadmin", 2, false, 0).unwrap();
        let moved = format!("02{}", &codes[0][2..]);
        assert!(matches!(
            s.spend("opsadmin", &moved, 10),
            Err(BreakglassError::Wrong { failures: 1 })
        ));
        assert_eq!(
            s.spend("opsadmin", "hello", 11).unwrap_err(),
            BreakglassError::BadFormat
        );
        for t in 12..15 {
            let _ = s.spend("opsadmin", "01-00000-00000-00000", t);
        }
        // Five failures: locked for a minute, even for the right code; the lock survives a
        // reopen (it is in the record).
        let s = BreakglassStore::open(&d.0).unwrap();
        assert!(matches!(
            s.spend("opsadmin", &codes[0], 20),
            Err(BreakglassError::LockedOut { until: 74 })
        ));
        assert_eq!(s.spend("opsadmin", &codes[0], 80).unwrap(), 1);
    }

    #[test]
    fn failures_lock_out_their_source_only() {
        let d = TestDir::new("sources");
        let s = BreakglassStore::open(&d.0).unwrap();
        let codes = s.init("opsadmin", 2, false, 0).unwrap();
        // Another local user (uid 1001) types five wrong codes at `su opsadmin`.
        for t in 10..15 {
            let _ = s.spend_from("opsadmin", "01-00000-00000-00000", Some("uid:1001"), t);
        }
        assert!(matches!(
            s.spend_from("opsadmin", &codes[0], Some("uid:1001"), 20),
            Err(BreakglassError::LockedOut { .. })
        ));
        // The admin, from a console or over ssh: not locked.
        let s = BreakglassStore::open(&d.0).unwrap();
        assert_eq!(
            s.spend_from("opsadmin", &codes[0], Some("rhost:192.0.2.7"), 21)
                .unwrap(),
            1
        );
        assert_eq!(s.spend("opsadmin", &codes[1], 22).unwrap(), 2);
    }

    #[test]
    fn parse_rejects_junk() {
        for bad in [
            "",
            "01",
            "00-AAAAA-AAAAA-AAAAA",
            "21-AAAAA-AAAAA-AAAAA",
            "01-AAAAA-AAAAA-AAAA",
            "01-AAAAA-AAAAA-AAAAU",
            "01-AAAAA-AAAAA-AAAA\u{e9}",
            "x1-AAAAA-AAAAA-AAAAA",
        ] {
            assert!(parse_code(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse_code(" 7-abcde fghjk-mnpqr ").unwrap(),
            (7, "ABCDEFGHJKMNPQR".to_string())
        );
        assert_eq!(
            parse_code("01-OOOOO-IIIII-LLLLL").unwrap().1,
            "000001111111111"
        );
    }
}
