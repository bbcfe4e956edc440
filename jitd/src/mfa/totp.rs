//! TOTP second factor for JIT identities: RFC 6238 (HMAC-SHA1, 6 digits, 30 s steps), verified
//! by jitd alone.
//!
//! Storage: `<state_dir>/totp/` (root, 0700), one record per user, `<user>.json` (root, 0600),
//! written only through [`crate::durable::write_slotted`]: made whole once (temp, fsync, rename,
//! fsync dir), then updated in place in one of two fixed slots (generation + CRC32C, fdatasync,
//! read-back), so a full state filesystem does not stop codes for existing users from being
//! checked and spent. A record holds the secret, the last accepted time step, the
//! consecutive-failure counter and the lockout deadline, behind a `jitd-totp 1 <crc32c> <len>`
//! header line. The other slot is only the record before the last acknowledged write (a torn
//! write falls back to it, and that write was never answered); there is no older generation:
//! falling back further would roll the last accepted step back and make a used code valid
//! again. A damaged record is an error
//! (deny), never "not enrolled", and a missing one is [`TotpError::NotEnrolled`], which the
//! caller must treat as a denial for anyone who needs a second factor.
//!
//! Verification rules (all enforced under one in-process mutex shared by every connection):
//! * The code must be exactly 6 ASCII digits; the length is checked before anything else, so a
//!   1 MiB string costs nothing. Malformed codes count as failures.
//! * Steps `t-w ..= t+w` are tried, all of them, each compared in constant time; there is no
//!   skew learning.
//! * Only a step strictly greater than the last accepted one is accepted. A correct code
//!   for a step at or below it is [`TotpError::Replayed`] and counts as a failure: a replay is
//!   what an attacker who saw a code does, and it must not be a free guess.
//! * Every attempt on an enrolled user — success, wrong, malformed, replayed or locked out —
//!   ends in exactly one durable write of the record, and the result is returned only after that
//!   write. If the write fails the result is [`TotpError::Io`] whatever the code was, so a full
//!   or broken disk neither lets a code be reused nor turns into a "right/wrong" oracle
//!   with no failure counting.
//! * After `max_failures` consecutive failures the user is locked for `lockout_base_secs`,
//!   doubling with every further failure up to `lockout_max_secs`. While locked, attempts are
//!   refused without looking at the code and still counted (the next lockout is longer); they do
//!   not move the current deadline. A success resets the counter.
//! * The failure counter and lockout are kept **per source** ([`verify_from`]): a key the
//!   caller derives from where the code was typed (the calling uid for su, the remote address
//!   for sshd). A local user who types wrong codes at `su alice` locks only its own `su alice`
//!   attempts, never alice's logins from elsewhere. Replay is per person whatever the source.
//!   The per-source counters and their bound are `crate::mfa::strikes`'s. Attempts with no source
//!   ([`verify`], modules older than the source field) share the person's own counter, as
//!   before.
//!
//! [`verify_from`]: TotpStore::verify_from
//! [`verify`]: TotpStore::verify
//!
//! The module never reads the clock (`now` is a parameter) and never logs. Secrets and codes
//! appear in no `Display`/`Debug` output or error text; the only way a secret leaves the module
//! is [`Enrollment`], shown once to the enrolling administrator.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

use jit_core::host::trust::{self, Access};
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use super::store::{RecordDir, StoreError, FILE_MODE};
use crate::durable::{seal, unseal};
use crate::mfa::strikes::{self, Sources, Strikes};

/// Length of a time step, seconds (RFC 6238 §5.2).
pub const STEP_SECS: i64 = 30;
/// Digits in a code.
pub const DIGITS: usize = 6;
/// Bytes of a new shared secret (160 bits, RFC 4226 §4).
pub const SECRET_BYTES: usize = 20;
/// Longest code string a caller should ever pass on (e.g. the socket protocol's cap). `verify`
/// itself rejects anything that is not exactly [`DIGITS`] bytes long before any other work.
pub const MAX_CODE_INPUT: usize = 64;
/// Largest accepted `window_steps` (±90 s). RFC 6238 recommends 1.
pub const MAX_WINDOW_STEPS: u8 = 3;
/// Name of the directory under the state directory.
pub const TOTP_DIR: &str = "totp";
/// Directory of the replay and lockout records of fleet identities (no secret in them).
pub const FLEET_TOTP_DIR: &str = "fleet-totp";

/// A record file is at most this large: two slots of [`crate::durable::write_slotted`] (an older
/// record written whole is smaller). The per-source failure counters are bounded
/// (`strikes::MAX_SOURCES`) so a record stays well inside one slot.
const MAX_RECORD_BYTES: u64 = 2 * crate::durable::SLOT_BYTES as u64;
const HEADER: &str = "jitd-totp 1 ";
const ISSUER: &str = "jit";

/// Verification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpConfig {
    /// Steps accepted on either side of the current one (1: t-1, t, t+1).
    pub window_steps: u8,
    /// Consecutive failures that lock the user.
    pub max_failures: u32,
    /// First lockout, seconds.
    pub lockout_base_secs: i64,
    /// Longest lockout, seconds.
    pub lockout_max_secs: i64,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            window_steps: 1,
            max_failures: 5,
            lockout_base_secs: 30,
            lockout_max_secs: 900,
        }
    }
}

impl TotpConfig {
    /// Checks the values are sane.
    ///
    /// # Errors
    /// [`TotpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<(), TotpError> {
        if self.window_steps > MAX_WINDOW_STEPS {
            return Err(TotpError::Config(format!(
                "window_steps {} is above {MAX_WINDOW_STEPS}",
                self.window_steps
            )));
        }
        if !(1..=1000).contains(&self.max_failures) {
            return Err(TotpError::Config(
                "max_failures must be between 1 and 1000".into(),
            ));
        }
        if !(1..=86_400).contains(&self.lockout_base_secs) {
            return Err(TotpError::Config(
                "lockout_base_secs must be between 1 and 86400".into(),
            ));
        }
        if !(self.lockout_base_secs..=86_400).contains(&self.lockout_max_secs) {
            return Err(TotpError::Config(
                "lockout_max_secs must be between lockout_base_secs and 86400".into(),
            ));
        }
        Ok(())
    }

    /// Lockout length after `failures` consecutive failures (`failures >= max_failures`).
    fn lockout_secs(&self, failures: u32) -> i64 {
        lockout_secs(
            failures,
            self.max_failures,
            self.lockout_base_secs,
            self.lockout_max_secs,
        )
    }
}

/// The back-off shared by TOTP codes and break-glass codes: `base` seconds at the
/// `max_failures`-th consecutive failure, doubled at each further one, at most `max`.
pub(crate) fn lockout_secs(failures: u32, max_failures: u32, base: i64, max: i64) -> i64 {
    let mut secs = base;
    for _ in max_failures..failures {
        if secs >= max {
            break;
        }
        secs = secs.saturating_mul(2);
    }
    secs.min(max)
}

/// Why an operation failed. No variant ever carries a secret or a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotpError {
    /// The user has no TOTP record. For a user who needs a second factor this is a denial.
    NotEnrolled,
    /// Not exactly 6 ASCII digits (counted as a failure).
    BadCodeFormat,
    /// Wrong code; `failures` consecutive failures so far (locked once it reaches
    /// `max_failures`).
    WrongCode {
        /// Consecutive failures including this one.
        failures: u32,
    },
    /// A correct code for a step already used, or older than the last one used (counted as a
    /// failure).
    Replayed,
    /// Too many failures; refused without checking the code until this unix time.
    LockedOut {
        /// Unix time the lockout ends.
        until: i64,
    },
    /// `enroll` without `replace` for a user who already has a record.
    AlreadyEnrolled,
    /// The user name is not a valid name.
    InvalidUser(String),
    /// Invalid [`TotpConfig`].
    Config(String),
    /// The TOTP directory, a record, or the state directory is not root-only. jitd must
    /// refuse to start.
    InsecureStorage(String),
    /// Reading or durably writing a record failed, or a record is damaged. Nothing was accepted.
    Io(String),
}

impl fmt::Display for TotpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TotpError::NotEnrolled => f.write_str("no TOTP secret is enrolled for this user"),
            TotpError::BadCodeFormat => f.write_str("a TOTP code is exactly 6 digits"),
            TotpError::WrongCode { failures } => {
                write!(f, "wrong TOTP code ({failures} consecutive failures)")
            }
            TotpError::Replayed => {
                f.write_str("this TOTP code was already used; wait for the next one")
            }
            TotpError::LockedOut { until } => write!(
                f,
                "too many failed TOTP attempts; locked until {until} (unix time)"
            ),
            TotpError::AlreadyEnrolled => f.write_str(
                "a TOTP secret is already enrolled for this user (replace it explicitly)",
            ),
            TotpError::InvalidUser(m) => write!(f, "TOTP: {m}"),
            TotpError::Config(m) => write!(f, "invalid TOTP configuration: {m}"),
            TotpError::InsecureStorage(m) => write!(f, "insecure TOTP storage: {m}"),
            TotpError::Io(m) => write!(f, "TOTP storage error: {m}"),
        }
    }
}

impl std::error::Error for TotpError {}

/// A new secret, for the enrolling administrator only (show once, never log).
pub struct Enrollment {
    /// The user.
    pub user: String,
    /// The secret, RFC 4648 base32 without padding.
    pub secret_base32: String,
    /// `otpauth://totp/jit:<user>@<host>?secret=…&issuer=jit&algorithm=SHA1&digits=6&period=30`.
    pub uri: String,
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("user", &self.user)
            .field("secret_base32", &"<redacted>")
            .field("uri", &"<redacted>")
            .finish()
    }
}

/// One user's record as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRecord {
    /// Shared secret, base32 without padding.
    secret: String,
    /// When it was enrolled (unix time).
    enrolled_at: i64,
    /// Highest step ever accepted; 0 = none (step 0 is 1970 and is never accepted).
    last_step: u64,
    /// Consecutive failures.
    failures: u32,
    /// Locked until this unix time (0: not locked).
    locked_until: i64,
    /// Failure counters per source (absent in records written before sources existed).
    #[serde(default, skip_serializing_if = "Sources::is_empty")]
    sources: Sources,
}

impl UserRecord {
    /// The counter an attempt from `source` uses, with the key it is stored under
    /// (None: the person's own counter).
    fn strikes(&self, source: Option<&str>, now: i64, idle_secs: i64) -> (Option<String>, Strikes) {
        match source {
            Some(src) => {
                let (k, st) = strikes::pick(&self.sources, src, now, idle_secs);
                (Some(k), st)
            }
            None => (
                None,
                Strikes {
                    failures: self.failures,
                    locked_until: self.locked_until,
                    last: now,
                },
            ),
        }
    }

    /// Stores `st` as the counter of `key` (None: the person's own).
    fn set_strikes(&mut self, key: Option<String>, st: Strikes, now: i64, idle_secs: i64) {
        match key {
            Some(k) => strikes::store(&mut self.sources, k, st, now, idle_secs),
            None => {
                self.failures = st.failures;
                self.locked_until = st.locked_until;
            }
        }
    }
}

impl UserRecord {
    /// A fleet identity's record: replay and lockout state only.
    fn without_secret(now: i64) -> UserRecord {
        UserRecord {
            secret: String::new(),
            enrolled_at: now,
            last_step: 0,
            failures: 0,
            locked_until: 0,
            sources: Sources::new(),
        }
    }
}

impl Drop for UserRecord {
    /// The secret does not outlive the record in freed memory.
    fn drop(&mut self) {
        jit_core::host::secret::wipe_string(&mut self.secret);
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("secret", &"<redacted>")
            .field("enrolled_at", &self.enrolled_at)
            .field("last_step", &self.last_step)
            .field("failures", &self.failures)
            .field("locked_until", &self.locked_until)
            .field("sources", &self.sources)
            .finish()
    }
}

fn encode(rec: &UserRecord) -> Result<Vec<u8>, TotpError> {
    let body = serde_json::to_vec(rec).map_err(|_| TotpError::Io("cannot encode record".into()))?;
    Ok(seal(HEADER, &body))
}

/// Decodes a record. Error texts never quote the content (it holds the secret).
fn decode(bytes: &[u8]) -> Result<UserRecord, String> {
    let body = unseal(HEADER, bytes)?;
    let rec: UserRecord = serde_json::from_slice(body).map_err(|e| {
        // serde_json's message can quote values; report only the position.
        format!(
            "bad JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    // A fleet record (`fleet-totp`) holds no secret: it is in memory only (`mfa::fleet`).
    if !rec.secret.is_empty() {
        build_totp(&rec.secret)?;
    }
    Ok(rec)
}

/// The RFC 6238 generator for a base32 secret.
fn build_totp(secret_base32: &str) -> Result<Totp, String> {
    let secret = Secret::try_from_base32(secret_base32).map_err(|_| "secret is not base32")?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(0)
        .with_step_duration(STEP_SECS as u64)
        .with_secret(secret)
        .build()
        .map_err(|_| "secret is shorter than 128 bits".to_string())
}

/// The code for `step` as ASCII digits; a value no input can match if the step is out of range.
fn code_at_step(totp: &Totp, step: u64) -> [u8; DIGITS] {
    step.checked_mul(STEP_SECS as u64)
        .and_then(|t| totp.generate(t).to_string().as_bytes().try_into().ok())
        .unwrap_or([0xff; DIGITS])
}

/// Exactly 6 ASCII digits, else None. The length is checked before any byte is looked at.
fn parse_code(code: &str) -> Option<[u8; DIGITS]> {
    let bytes: [u8; DIGITS] = code.as_bytes().try_into().ok()?;
    let bad = bytes
        .iter()
        .fold(0u8, |acc, c| acc | u8::from(!c.is_ascii_digit()));
    (bad == 0).then_some(bytes)
}

enum Check {
    Accept(u64),
    Replayed,
    Wrong,
}

/// Tries every step of the window — no early exit — comparing each candidate in constant time.
fn check_window(totp: &Totp, code: &[u8; DIGITS], now: i64, window: u8, last_step: u64) -> Check {
    let t = now.div_euclid(STEP_SECS);
    let w = i64::from(window);
    let mut newest: Option<u64> = None;
    let mut stale = false;
    for k in -w..=w {
        let Some(step) = t.checked_add(k).and_then(|s| u64::try_from(s).ok()) else {
            continue;
        };
        let candidate = code_at_step(totp, step);
        if jit_core::host::secret::ct_eq(&candidate, code) {
            if step > last_step {
                newest = Some(newest.map_or(step, |n| n.max(step)));
            } else {
                stale = true;
            }
        }
    }
    match (newest, stale) {
        (Some(step), _) => Check::Accept(step),
        (None, true) => Check::Replayed,
        (None, false) => Check::Wrong,
    }
}

fn random_secret() -> Result<[u8; SECRET_BYTES], TotpError> {
    let mut buf = [0u8; SECRET_BYTES];
    jit_core::host::random::fill(&mut buf).map_err(|e| TotpError::Io(format!("getrandom: {e}")))?;
    Ok(buf)
}

/// Percent-encodes everything outside RFC 3986 "unreserved".
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn otpauth_uri(user: &str, host: &str, secret_base32: &str) -> String {
    let account = if host.is_empty() {
        pct(user)
    } else {
        format!("{}@{}", pct(user), pct(host))
    };
    format!(
        "otpauth://totp/{ISSUER}:{account}?secret={secret_base32}&issuer={ISSUER}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

fn io_err(path: &Path, e: &io::Error) -> TotpError {
    TotpError::Io(format!("{}: {e}", path.display()))
}

impl From<StoreError> for TotpError {
    fn from(e: StoreError) -> TotpError {
        match e {
            StoreError::Insecure(m) => TotpError::InsecureStorage(m),
            StoreError::Io(m) => TotpError::Io(m),
            StoreError::BadName(m) => TotpError::InvalidUser(m),
        }
    }
}

/// The TOTP records of all users. Create one per daemon and share it (`Arc`) between all
/// connections: its mutex is what makes the failure counter and replay check global.
pub struct TotpStore {
    records: RecordDir,
    cfg: TotpConfig,
    #[cfg(test)]
    fail_writes: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for TotpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpStore")
            .field("dir", &self.records.dir())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl TotpStore {
    /// Opens `<state_dir>/totp`, creating it (root, 0700) if missing, removing temp files a crash
    /// left, and checking that the state directory is root-owned and not group/other-writable,
    /// and that the TOTP directory and every file in it are root-owned, not symlinks and without
    /// group/other permissions.
    ///
    /// # Errors
    /// [`TotpError::InsecureStorage`] (jitd must refuse to start), [`TotpError::Config`],
    /// [`TotpError::Io`].
    pub fn open(state_dir: &Path, cfg: TotpConfig) -> Result<TotpStore, TotpError> {
        Self::open_dir(state_dir, TOTP_DIR, cfg)
    }

    /// The store of fleet identities' replay and lockout state, `<state_dir>/fleet-totp`: the
    /// same records, rules and durability, with an empty secret (the secret is held in memory
    /// and passed to [`TotpStore::verify_with_secret`]).
    ///
    /// # Errors
    /// As [`TotpStore::open`].
    pub fn open_fleet(state_dir: &Path, cfg: TotpConfig) -> Result<TotpStore, TotpError> {
        Self::open_dir(state_dir, FLEET_TOTP_DIR, cfg)
    }

    fn open_dir(state_dir: &Path, dir: &str, cfg: TotpConfig) -> Result<TotpStore, TotpError> {
        cfg.validate()?;
        let parent = std::fs::metadata(state_dir).map_err(|e| io_err(state_dir, &e))?;
        if !parent.is_dir() {
            return Err(TotpError::Io(format!(
                "{} is not a directory",
                state_dir.display()
            )));
        }
        if trust::check_metadata(&parent, Access::ReadableByAll).is_err() {
            return Err(TotpError::InsecureStorage(format!(
                "state directory {} must be owned by root and not group/other-writable \
                 (uid {}, mode {:04o})",
                state_dir.display(),
                parent.uid(),
                parent.mode() & 0o7777
            )));
        }
        Ok(TotpStore {
            records: RecordDir::open(state_dir, dir, true)?,
            cfg,
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The TOTP directory.
    pub fn dir(&self) -> &Path {
        self.records.dir()
    }

    /// The policy in force.
    pub fn config(&self) -> &TotpConfig {
        &self.cfg
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.records.guard()
    }

    fn user_path(&self, user: &str) -> Result<PathBuf, TotpError> {
        Ok(self.records.record_path("user name", user)?)
    }

    fn load(&self, path: &Path) -> Result<UserRecord, TotpError> {
        let buf = self
            .records
            .read(path, MAX_RECORD_BYTES)?
            .ok_or(TotpError::NotEnrolled)?;
        let damaged = |m: String| TotpError::Io(format!("{}: damaged record: {m}", path.display()));
        if crate::durable::is_slotted(&buf) {
            let (_, _, rec) = crate::durable::read_slotted(&buf).map_err(damaged)?;
            decode(rec).map_err(damaged)
        } else {
            decode(&buf).map_err(damaged)
        }
    }

    fn save(&self, path: &Path, rec: &UserRecord) -> Result<(), TotpError> {
        #[cfg(test)]
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(TotpError::Io(format!(
                "{}: injected write failure",
                path.display()
            )));
        }
        let bytes = encode(rec)?;
        // In place in space the file already owns, so codes are still checked (and spent) on
        // a full state filesystem; a new record is made whole and needs space.
        crate::durable::write_slotted(path, &bytes, FILE_MODE).map_err(|e| io_err(path, &e))
    }

    /// Enrolls `user` with a fresh 160-bit secret from getrandom(2). With `replace`, an existing
    /// record (even a damaged one) is replaced and its failure counter and lockout cleared; the
    /// last accepted step is kept.
    ///
    /// # Errors
    /// [`TotpError::InvalidUser`], [`TotpError::AlreadyEnrolled`], [`TotpError::Io`].
    pub fn enroll(
        &self,
        user: &str,
        issuer_host: &str,
        now: i64,
        replace: bool,
    ) -> Result<Enrollment, TotpError> {
        let path = self.user_path(user)?;
        let _guard = self.guard();
        let last_step = match (self.load(&path), replace) {
            (Err(TotpError::NotEnrolled), _) => 0,
            (_, false) => return Err(TotpError::AlreadyEnrolled),
            (Ok(old), true) => old.last_step,
            // Damaged or insecure: the fresh record replaces it (old codes die with the secret).
            (Err(_), true) => 0,
        };
        let mut raw = random_secret()?;
        let secret_base32 = Secret::from(raw).to_base32();
        jit_core::host::secret::wipe(&mut raw);
        build_totp(&secret_base32).map_err(TotpError::Io)?;
        let rec = UserRecord {
            secret: secret_base32.clone(),
            enrolled_at: now,
            last_step,
            failures: 0,
            locked_until: 0,
            sources: Sources::new(),
        };
        self.save(&path, &rec)?;
        Ok(Enrollment {
            user: user.to_string(),
            uri: otpauth_uri(user, issuer_host, &secret_base32),
            secret_base32,
        })
    }

    /// Removes `user`'s record. Ok(false) if there was none.
    ///
    /// # Errors
    /// [`TotpError::InvalidUser`], [`TotpError::Io`].
    pub fn remove(&self, user: &str) -> Result<bool, TotpError> {
        let path = self.user_path(user)?;
        let _guard = self.guard();
        Ok(self.records.remove(&path)?)
    }

    /// Whether `user` has a record. `false` must never mean "skip the second factor" for a user
    /// who needs one.
    pub fn is_enrolled(&self, user: &str) -> bool {
        let Ok(path) = self.user_path(user) else {
            return false;
        };
        let _guard = self.guard();
        std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
    }

    /// Checks `code` for `user` at unix time `now`; returns the accepted step. The new state
    /// (last step, or the failure count) is durable before this returns.
    ///
    /// # Errors
    /// [`TotpError::NotEnrolled`], [`TotpError::BadCodeFormat`], [`TotpError::WrongCode`],
    /// [`TotpError::Replayed`], [`TotpError::LockedOut`], [`TotpError::InvalidUser`],
    /// [`TotpError::InsecureStorage`], [`TotpError::Io`] (nothing accepted).
    pub fn verify(&self, user: &str, code: &str, now: i64) -> Result<u64, TotpError> {
        self.verify_from(user, code, None, now)
    }

    /// [`TotpStore::verify`] with the failure counter and lockout of `source` (None: the
    /// person's own counter). Replay is checked per person whatever the source.
    ///
    /// # Errors
    /// As [`TotpStore::verify`].
    pub fn verify_from(
        &self,
        user: &str,
        code: &str,
        source: Option<&str>,
        now: i64,
    ) -> Result<u64, TotpError> {
        self.verify_inner(user, code, source, now, None)
    }

    /// [`TotpStore::verify_from`] for a fleet identity: `secret` (raw bytes, held in memory)
    /// instead of one in the record; the record (made on first use) keeps the last accepted
    /// step and the failure counters, with the same rules.
    ///
    /// # Errors
    /// As [`TotpStore::verify`].
    pub fn verify_with_secret(
        &self,
        user: &str,
        code: &str,
        source: Option<&str>,
        now: i64,
        secret: &[u8],
    ) -> Result<u64, TotpError> {
        let raw: [u8; SECRET_BYTES] = secret
            .try_into()
            .map_err(|_| TotpError::Io("fleet secret is not 160 bits".into()))?;
        let mut b32 = Secret::from(raw).to_base32();
        let r = self.verify_inner(user, code, source, now, Some(&b32));
        jit_core::host::secret::wipe_string(&mut b32);
        r
    }

    /// Raises `user`'s last accepted step to `step` (a step another host accepted, relayed by
    /// the server), durably; never lowers it. Makes the record if there is none.
    ///
    /// # Errors
    /// [`TotpError::InvalidUser`], [`TotpError::Io`].
    pub fn raise_step(&self, user: &str, step: u64, now: i64) -> Result<bool, TotpError> {
        let path = self.user_path(user)?;
        let _guard = self.guard();
        let mut rec = match self.load(&path) {
            Err(TotpError::NotEnrolled) => UserRecord::without_secret(now),
            r => r?,
        };
        if step <= rec.last_step {
            return Ok(false);
        }
        rec.last_step = step;
        self.save(&path, &rec)?;
        Ok(true)
    }

    fn verify_inner(
        &self,
        user: &str,
        code: &str,
        source: Option<&str>,
        now: i64,
        secret: Option<&str>,
    ) -> Result<u64, TotpError> {
        // Format first: a wrong length is rejected before anything else looks at the input.
        let code = parse_code(code);
        let path = self.user_path(user)?;
        let idle = self.cfg.lockout_max_secs;
        let _guard = self.guard();
        let mut rec = match (self.load(&path), secret) {
            (Err(TotpError::NotEnrolled), Some(_)) => UserRecord::without_secret(now),
            (r, _) => r?,
        };
        let (key, mut strikes) = rec.strikes(source, now, idle);
        if now < strikes.locked_until {
            strikes.failures = strikes.failures.saturating_add(1);
            strikes.last = now;
            rec.set_strikes(key, strikes, now, idle);
            self.save(&path, &rec)?;
            return Err(TotpError::LockedOut {
                until: strikes.locked_until,
            });
        }
        let outcome = match code {
            None => Err(TotpError::BadCodeFormat),
            Some(code) => {
                let totp = build_totp(secret.unwrap_or(&rec.secret)).map_err(|m| {
                    TotpError::Io(format!("{}: damaged record: {m}", path.display()))
                })?;
                match check_window(&totp, &code, now, self.cfg.window_steps, rec.last_step) {
                    Check::Accept(step) => Ok(step),
                    Check::Replayed => Err(TotpError::Replayed),
                    Check::Wrong => Err(TotpError::WrongCode { failures: 0 }),
                }
            }
        };
        match outcome {
            Ok(step) => {
                rec.last_step = step;
                rec.set_strikes(key, Strikes::default(), now, idle);
                // Persist before act: if this fails the code is not accepted.
                self.save(&path, &rec)?;
                Ok(step)
            }
            Err(e) => {
                strikes.failures = strikes.failures.saturating_add(1);
                strikes.last = now;
                if strikes.failures >= self.cfg.max_failures {
                    strikes.locked_until =
                        now.saturating_add(self.cfg.lockout_secs(strikes.failures));
                }
                rec.set_strikes(key, strikes, now, idle);
                self.save(&path, &rec)?;
                Err(match e {
                    TotpError::WrongCode { .. } => TotpError::WrongCode {
                        failures: strikes.failures,
                    },
                    other => other,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
