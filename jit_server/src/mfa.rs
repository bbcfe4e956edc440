//! Fleet TOTP: a person enrols once against the server; the secret reaches a host only sealed
//! to that host's X25519 key (`jit_proto::mfa_seal`), inside the host's signed state document,
//! and only while the person holds a live grant there that asks for a code. Steps a host
//! accepted are relayed to the person's other hosts, so a code used on one is refused on the
//! others. See docs/server.md "Fleet MFA".
//!
//! At rest the secret is sealed to `DATA/mfa.key` (an X25519 key made by `init`, or by the first
//! `serve` of an older data directory), so a copy of the database alone does not reveal it.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jit_proto::mfa_seal::{self, SealedSecret, UsedStep};
use jit_proto::state_doc::DocGrant;
use serde::Serialize;
use sqlx::Row;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::db::{audit, get_i64, get_opt_str, get_str, Db};
use crate::error::{Error, Result};
use crate::hosts::{bump_seq, bump_seqs};
use crate::keys::ServerKeys;
use crate::util::random_bytes;

/// The at-rest key's file in the data directory.
pub const MFA_KEY: &str = "mfa.key";
/// The "host" the at-rest sealing is bound to (no host is named like this: names have no
/// spaces).
const AT_REST: &str = "jit-server at rest";
/// RFC 6238 step.
pub const STEP_SECS: i64 = 30;
/// Steps either side of now accepted when confirming an enrolment.
const WINDOW: i64 = 1;
/// Wrong confirmation codes before the pending enrolment is discarded.
const MAX_CONFIRM_ATTEMPTS: i64 = 5;
/// A host may report a step at most this far ahead of the server's clock.
const MAX_STEP_AHEAD: i64 = 3;

/// Reads `DATA/mfa.key`, or makes it (32 random bytes, base64, 0600, created exclusively so two
/// processes never make two keys). A key file others can read is refused.
pub fn load_or_create_key(data: &Path) -> Result<[u8; 32]> {
    let path = data.join(MFA_KEY);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let k = random_bytes::<32>()?;
            f.write_all(STANDARD.encode(k).as_bytes())?;
            f.sync_all()?;
            return Ok(k);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::internal(format!("{}: {e}", path.display()))),
    }
    let mut f = std::fs::File::open(&path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    if f.metadata()?.mode() & 0o077 != 0 {
        return Err(Error::internal(format!(
            "{}: readable by others (want 0600)",
            path.display()
        )));
    }
    let mut text = String::new();
    Read::by_ref(&mut f).take(256).read_to_string(&mut text)?;
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::internal(format!("{}: not 32 bytes of base64", path.display())))
}

fn seal_to(
    pub_key: &[u8; 32],
    host: &str,
    person: &str,
    version: u64,
    secret: &[u8],
) -> Result<SealedSecret> {
    mfa_seal::seal(
        pub_key,
        host,
        person,
        version,
        secret,
        random_bytes::<32>()?,
        random_bytes::<24>()?,
    )
    .map_err(|e| Error::internal(e.to_string()))
}

fn at_rest(keys: &ServerKeys, person: &str, version: u64, secret: &[u8]) -> Result<String> {
    let pk = mfa_seal::public_key(&keys.mfa_key);
    Ok(serde_json::to_string(&seal_to(
        &pk, AT_REST, person, version, secret,
    )?)?)
}

fn open_at_rest(keys: &ServerKeys, stored: &str) -> Result<jit_core::host::secret::Secret> {
    let s: SealedSecret = serde_json::from_str(stored)?;
    mfa_seal::open(&keys.mfa_key, AT_REST, &s)
        .map_err(|e| Error::internal(format!("stored TOTP secret of {}: {e}", s.user)))
}

fn totp(secret: &[u8]) -> Result<Totp> {
    let raw: [u8; 20] = secret
        .try_into()
        .map_err(|_| Error::internal("TOTP secret is not 20 bytes"))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(STEP_SECS as u64)
        .with_secret(Secret::from(raw))
        .build()
        .map_err(|_| Error::internal("TOTP secret too short"))
}

/// The step a code is for, within ±[`WINDOW`] of `now`, compared in constant time.
fn code_step(secret: &[u8], code: &str, now: i64) -> Result<Option<u64>> {
    if code.len() != 6 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let t = totp(secret)?;
    let mut found = None;
    for k in -WINDOW..=WINDOW {
        let step = now.div_euclid(STEP_SECS) + k;
        let Ok(s) = u64::try_from(step) else { continue };
        let c = t.generate(s * STEP_SECS as u64).to_string();
        if jit_core::host::secret::ct_eq(c.as_bytes(), code.as_bytes()) {
            found = Some(s);
        }
    }
    Ok(found)
}

/// A new enrolment, shown once to its person.
#[derive(Debug, Serialize)]
pub struct Enrolment {
    pub user: String,
    pub version: u64,
    /// Base32, no padding.
    pub secret: String,
    pub uri: String,
}

fn otpauth_uri(person: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/jit:{person}?secret={secret_b32}&issuer=jit&algorithm=SHA1&digits=6&period=30"
    )
}

/// `POST /v1/mfa/enroll`: a fresh 160-bit secret for `person`, pending until one correct code
/// confirms it (`confirm`). A confirmed secret stays in force until then.
pub async fn enroll(db: &Db, keys: &ServerKeys, person: &str, now: i64) -> Result<Enrolment> {
    let raw = jit_core::host::secret::Secret::new(random_bytes::<20>()?.to_vec());
    let mut tx = db.write_tx().await?;
    let cur = sqlx::query("SELECT version FROM mfa_secret WHERE person = $1")
        .bind(person)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| get_i64(&r, "version"))
        .transpose()?
        .unwrap_or(0);
    let pend = sqlx::query("SELECT version FROM mfa_pending WHERE person = $1")
        .bind(person)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| get_i64(&r, "version"))
        .transpose()?
        .unwrap_or(0);
    let version = cur.max(pend) + 1;
    let v = u64::try_from(version).map_err(|_| Error::internal("version"))?;
    let sealed = at_rest(keys, person, v, raw.bytes())?;
    sqlx::query("DELETE FROM mfa_pending WHERE person = $1")
        .bind(person)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO mfa_pending (person, version, sealed, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(person)
    .bind(version)
    .bind(&sealed)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit(
        &mut tx,
        now,
        person,
        "mfa.enroll",
        person,
        &format!("version {version} pending confirmation"),
    )
    .await?;
    tx.commit().await?;
    let raw20: [u8; 20] = raw
        .bytes()
        .try_into()
        .map_err(|_| Error::internal("secret length"))?;
    let secret = Secret::from(raw20).to_base32();
    Ok(Enrolment {
        user: person.to_string(),
        version: v,
        uri: otpauth_uri(person, &secret),
        secret,
    })
}

/// `POST /v1/mfa/confirm`: one correct code makes the pending secret the person's; the hosts
/// where the person holds a live MFA grant receive the new version at once. Returns the version
/// and the hosts to wake. Five wrong codes discard the pending secret.
pub async fn confirm(
    db: &Db,
    keys: &ServerKeys,
    person: &str,
    code: &str,
    now: i64,
) -> Result<(u64, Vec<String>)> {
    let mut tx = db.write_tx().await?;
    let row = sqlx::query("SELECT version, sealed, attempts FROM mfa_pending WHERE person = $1")
        .bind(person)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            Error::not_found("no TOTP enrolment waiting: run jitctl mfa enroll first")
        })?;
    let version = get_i64(&row, "version")?;
    let sealed = get_str(&row, "sealed")?;
    let secret = open_at_rest(keys, &sealed)?;
    let Some(step) = code_step(secret.bytes(), code, now)? else {
        let attempts = get_i64(&row, "attempts")? + 1;
        if attempts >= MAX_CONFIRM_ATTEMPTS {
            sqlx::query("DELETE FROM mfa_pending WHERE person = $1")
                .bind(person)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE mfa_pending SET attempts = $2 WHERE person = $1")
                .bind(person)
                .bind(attempts)
                .execute(&mut *tx)
                .await?;
        }
        audit(
            &mut tx,
            now,
            person,
            "mfa.confirm_failed",
            person,
            &format!("attempt {attempts}"),
        )
        .await?;
        tx.commit().await?;
        return Err(Error::forbidden(if attempts >= MAX_CONFIRM_ATTEMPTS {
            "wrong code; too many attempts, the enrolment was discarded (enrol again)"
        } else {
            "wrong code"
        }));
    };
    set_secret(&mut tx, person, version, &sealed, now).await?;
    sqlx::query("DELETE FROM mfa_pending WHERE person = $1")
        .bind(person)
        .execute(&mut *tx)
        .await?;
    // The confirming code is spent: no host accepts it afterwards.
    record_step(&mut tx, person, step, "server", now).await?;
    let hosts = mfa_hosts(&mut tx, person, None, now).await?;
    bump_seqs(&mut tx, &hosts, "mfa", now).await?;
    audit(
        &mut tx,
        now,
        person,
        "mfa.confirm",
        person,
        &format!("version {version} in force"),
    )
    .await?;
    tx.commit().await?;
    db.notify_hosts(&hosts).await;
    Ok((u64::try_from(version).unwrap_or(0), hosts))
}

/// `POST /v1/mfa/remove`: `person`'s fleet TOTP secret (and any enrolment waiting for its
/// code) is deleted; the hosts where the person holds a live MFA grant get a document without
/// it at once (jitd keeps fleet secrets in memory only, replaced by each document's set), so
/// their codes stop working there and their MFA logins are refused until a new enrolment is
/// confirmed. For a lost or compromised authenticator. Returns the hosts to wake.
pub async fn remove(db: &Db, actor: &str, person: &str, now: i64) -> Result<Vec<String>> {
    let mut tx = db.write_tx().await?;
    let cur = sqlx::query("SELECT version, sealed FROM mfa_secret WHERE person = $1")
        .bind(person)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, Error>((get_i64(&r, "version")?, !get_str(&r, "sealed")?.is_empty())))
        .transpose()?;
    let pend = sqlx::query("SELECT version FROM mfa_pending WHERE person = $1")
        .bind(person)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| get_i64(&r, "version"))
        .transpose()?;
    if !cur.is_some_and(|(_, in_force)| in_force) && pend.is_none() {
        return Err(Error::not_found(format!(
            "{person} has no fleet TOTP enrolment"
        )));
    }
    // A tombstone keeps the highest version given out: the next enrolment gets a higher one,
    // so no (person, host, version) a host has seen ever names another secret.
    let last = cur.map_or(0, |(v, _)| v).max(pend.unwrap_or(0));
    sqlx::query("DELETE FROM mfa_pending WHERE person = $1")
        .bind(person)
        .execute(&mut *tx)
        .await?;
    set_secret(&mut tx, person, last, "", now).await?;
    let hosts = mfa_hosts(&mut tx, person, None, now).await?;
    bump_seqs(&mut tx, &hosts, "mfa remove", now).await?;
    audit(
        &mut tx,
        now,
        actor,
        "mfa.remove",
        person,
        &format!("hosts {hosts:?}"),
    )
    .await?;
    tx.commit().await?;
    db.notify_hosts(&hosts).await;
    Ok(hosts)
}

/// `person`'s one `mfa_secret` row becomes (`version`, `sealed`); an empty `sealed` is a
/// removed enrolment's tombstone, which only keeps the version.
async fn set_secret(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    person: &str,
    version: i64,
    sealed: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM mfa_secret WHERE person = $1")
        .bind(person)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO mfa_secret (person, version, sealed, confirmed_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(person)
    .bind(version)
    .bind(sealed)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn record_step(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    person: &str,
    step: u64,
    host: &str,
    now: i64,
) -> Result<bool> {
    let step = i64::try_from(step).map_err(|_| Error::bad("step out of range"))?;
    let n = sqlx::query(
        "UPDATE mfa_used SET step = $2, host = $3, at = $4 WHERE person = $1 AND step < $2",
    )
    .bind(person)
    .bind(step)
    .bind(host)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 1 {
        return Ok(true);
    }
    let n = sqlx::query(
        "INSERT INTO mfa_used (person, step, host, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(person)
    .bind(step)
    .bind(host)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Enrolled hosts (but `except`) where `person` holds a live grant that asks for a code.
async fn mfa_hosts(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    person: &str,
    except: Option<&str>,
    now: i64,
) -> Result<Vec<String>> {
    // The grant's user is its request's requester: only that person's live grants are read.
    let rows = sqlx::query(
        "SELECT s.host AS host, s.doc AS doc FROM sgrant s JOIN request r ON r.id = s.request_id \
         WHERE r.requester = $1 AND s.revoked_at IS NULL AND s.not_after > $2 ORDER BY s.host",
    )
    .bind(person)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        let host = get_str(&r, "host")?;
        let g: DocGrant = serde_json::from_str(&get_str(&r, "doc")?)?;
        if g.user == person
            && g.wants_code()
            && Some(host.as_str()) != except
            && !out.contains(&host)
        {
            out.push(host);
        }
    }
    Ok(out)
}

/// `POST /v1/host/mfa_used` (signed host call): `host` accepted `step` for `person`. Refused
/// unless the person holds a live grant there that asks for a code, and for a step ahead of the
/// server's clock. A higher step than known is recorded and every other host of the person gets
/// a new document (returned, to wake).
pub async fn used(db: &Db, host: &str, person: &str, step: u64, now: i64) -> Result<Vec<String>> {
    if person.len() > 64 {
        return Err(Error::bad("user too long"));
    }
    let ahead = now.div_euclid(STEP_SECS) + MAX_STEP_AHEAD;
    if i64::try_from(step).map_or(true, |s| s > ahead) {
        return Err(Error::bad("step ahead of the server's clock"));
    }
    let mut tx = db.write_tx().await?;
    let here = mfa_hosts(&mut tx, person, None, now).await?;
    if !here.iter().any(|h| h == host) {
        return Err(Error::forbidden(format!(
            "{person} holds no grant asking for a code on {host}"
        )));
    }
    let raised = record_step(&mut tx, person, step, host, now).await?;
    let mut others = Vec::new();
    if raised {
        others = here.into_iter().filter(|h| h != host).collect();
        bump_seqs(&mut tx, &others, "mfa", now).await?;
        audit(
            &mut tx,
            now,
            &format!("host:{host}"),
            "mfa.step_used",
            person,
            &format!("step {step} relayed to {} host(s)", others.len()),
        )
        .await?;
    }
    tx.commit().await?;
    db.notify_hosts(&others).await;
    Ok(others)
}

/// `POST /v1/host/seal_key` (signed host call): the host's X25519 public key. A host enrolled
/// before fleet MFA existed registers it on its next start; a change is audited.
pub async fn register_seal_key(db: &Db, host: &str, key_b64: &str, now: i64) -> Result<()> {
    let raw: [u8; 32] = (key_b64.len() <= 64)
        .then(|| STANDARD.decode(key_b64).ok())
        .flatten()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::bad("key is not a base64 X25519 public key"))?;
    if raw == [0u8; 32] {
        return Err(Error::bad("key is not a usable X25519 public key"));
    }
    let mut tx = db.write_tx().await?;
    let old = sqlx::query("SELECT seal_key FROM host WHERE name = $1")
        .bind(host)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::unauthorized("host authentication failed"))?;
    if get_opt_str(&old, "seal_key")?.as_deref() == Some(key_b64) {
        return Ok(());
    }
    sqlx::query("UPDATE host SET seal_key = $2 WHERE name = $1")
        .bind(host)
        .bind(key_b64)
        .execute(&mut *tx)
        .await?;
    // Secrets already delivered were sealed to the old key: a fresh document re-seals them.
    bump_seq(&mut tx, host, "seal_key", now).await?;
    audit(
        &mut tx,
        now,
        &format!("host:{host}"),
        "host.seal_key",
        host,
        &jit_proto::state_doc::key_fingerprint(&raw),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a host's state document carries for fleet MFA: for each person with a live grant in
/// `grants` that asks for a code, the confirmed secret sealed to the host's X25519 key (bound
/// to person, host and version), and the highest step used anywhere. A host without a
/// registered key gets neither (its MFA grants are refused locally until it registers).
pub async fn for_host(
    conn: &mut sqlx::AnyConnection,
    keys: &ServerKeys,
    host: &str,
    grants: &[DocGrant],
    now: i64,
) -> Result<(Vec<SealedSecret>, Vec<UsedStep>)> {
    let mut people: Vec<&str> = grants
        .iter()
        .filter(|g| g.wants_code() && g.not_before <= now && now < g.not_after)
        .map(|g| g.user.as_str())
        .collect();
    people.sort_unstable();
    people.dedup();
    if people.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let seal_key = sqlx::query("SELECT seal_key FROM host WHERE name = $1")
        .bind(host)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| get_opt_str(&r, "seal_key"))
        .transpose()?
        .flatten()
        .and_then(|k| STANDARD.decode(k).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok());
    // A host that registered no sealing key (a jitd older than fleet MFA) gets neither field:
    // its strict decoder would refuse a document with fields it does not know.
    let Some(pk) = seal_key else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut sealed = Vec::new();
    let mut used = Vec::new();
    for p in people {
        // An empty `sealed` is a removed enrolment's tombstone (it only keeps the version).
        if let Some(r) =
            sqlx::query("SELECT version, sealed FROM mfa_secret WHERE person = $1 AND sealed <> ''")
                .bind(p)
                .fetch_optional(&mut *conn)
                .await?
        {
            let version = u64::try_from(get_i64(&r, "version")?).unwrap_or(0);
            let secret = open_at_rest(keys, &get_str(&r, "sealed")?)?;
            sealed.push(seal_to(&pk, host, p, version, secret.bytes())?);
        }
        if let Some(r) = sqlx::query("SELECT step FROM mfa_used WHERE person = $1")
            .bind(p)
            .fetch_optional(&mut *conn)
            .await?
        {
            used.push(UsedStep {
                user: p.to_string(),
                step: u64::try_from(r.try_get::<i64, _>("step")?).unwrap_or(0),
            });
        }
    }
    Ok((sealed, used))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_within_one_step_and_malformed_ones_never_match() {
        let s = b"12345678901234567890";
        // RFC 6238 appendix B, SHA-1, T = 59: 94287082 → 6 digits 287082.
        assert_eq!(code_step(s, "287082", 59).unwrap(), Some(1));
        assert_eq!(code_step(s, "287082", 59 + 30).unwrap(), Some(1));
        assert_eq!(code_step(s, "287082", 59 + 90).unwrap(), None);
        assert_eq!(code_step(s, "28708", 59).unwrap(), None);
        assert_eq!(code_step(s, "2870820", 59).unwrap(), None);
    }
}
