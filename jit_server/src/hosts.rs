//! Hosts: records and server-set labels, one-time join tokens, enrolment with the host's own
//! ed25519 key, signed host calls, the per-host sequence and the signed state document.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use jit_proto::state_doc::{key_fingerprint, sign_document, DocGrant, StateBody, DOC_VERSION};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{audit, get_i64, get_opt_i64, get_opt_str, get_str, Db};
use crate::error::{Error, Result};
use crate::keys::ServerKeys;
use crate::util::{new_secret, sha256_hex, valid_object_name};

/// A join token lives one hour.
pub const JOIN_TTL: i64 = 3600;
/// Domain separation for a host's request signature.
pub const HOST_REQ_DOMAIN: &str = "jit-host-req-v1";
/// Clock skew tolerated on a host's signed call.
pub const HOST_SKEW: i64 = 120;

#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled: bool,
    pub key: Option<String>,
    pub seq: i64,
    pub acked_seq: i64,
    pub last_poll: Option<i64>,
    /// A change the host has not confirmed applying (e.g. a revocation).
    pub unconfirmed: bool,
}

fn view(row: &AnyRow) -> Result<HostView> {
    let pubkey = get_opt_str(row, "pubkey")?;
    let seq = get_i64(row, "seq")?;
    let acked_seq = get_i64(row, "acked_seq")?;
    Ok(HostView {
        name: get_str(row, "name")?,
        labels: serde_json::from_str(&get_str(row, "labels")?)?,
        enrolled: pubkey.is_some(),
        key: pubkey.as_deref().and_then(pubkey_fingerprint),
        seq,
        acked_seq,
        last_poll: get_opt_i64(row, "last_poll")?,
        unconfirmed: pubkey.is_some() && acked_seq < seq,
    })
}

fn pubkey_fingerprint(b64: &str) -> Option<String> {
    let raw: [u8; 32] = STANDARD.decode(b64).ok()?.try_into().ok()?;
    Some(key_fingerprint(&raw))
}

pub async fn list(db: &Db) -> Result<Vec<HostView>> {
    sqlx::query("SELECT * FROM host ORDER BY name")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(view)
        .collect()
}

pub async fn get(db: &Db, name: &str) -> Result<Option<HostView>> {
    match sqlx::query("SELECT * FROM host WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?
    {
        Some(r) => Ok(Some(view(&r)?)),
        None => Ok(None),
    }
}

/// `jit-server host add NAME [--label k=v]`: the record and a join token (returned once,
/// stored as its hash). Adding an existing host that never enrolled issues a fresh token.
pub async fn add(
    db: &Db,
    name: &str,
    labels: &BTreeMap<String, String>,
    now: i64,
) -> Result<String> {
    if !valid_object_name(name) {
        return Err(Error::bad(format!(
            "host name {name:?}: [a-z0-9._-], 64 bytes at most"
        )));
    }
    let token = new_secret("jitj")?;
    let mut tx = db.write_tx().await?;
    let existing = sqlx::query("SELECT pubkey FROM host WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    match existing {
        Some(r) if get_opt_str(&r, "pubkey")?.is_some() => {
            return Err(Error::conflict(format!(
                "host {name} is enrolled already (host remove it first to re-enrol)"
            )))
        }
        Some(_) => {
            sqlx::query("UPDATE host SET labels = $2 WHERE name = $1")
                .bind(name)
                .bind(serde_json::to_string(labels)?)
                .execute(&mut *tx)
                .await?;
        }
        None => {
            sqlx::query("INSERT INTO host (name, labels) VALUES ($1, $2)")
                .bind(name)
                .bind(serde_json::to_string(labels)?)
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query("INSERT INTO join_token (hash, host, expires_at) VALUES ($1, $2, $3)")
        .bind(sha256_hex(token.as_bytes()))
        .bind(name)
        .bind(now + JOIN_TTL)
        .execute(&mut *tx)
        .await?;
    audit(
        &mut tx,
        now,
        "operator",
        "host.add",
        name,
        &format!("labels={labels:?}"),
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// `jit-server host label NAME k=v… [--remove k]`: labels only the server sets.
pub async fn label(
    db: &Db,
    name: &str,
    set: &BTreeMap<String, String>,
    remove: &[String],
    now: i64,
) -> Result<BTreeMap<String, String>> {
    let mut tx = db.write_tx().await?;
    let row = sqlx::query("SELECT labels FROM host WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no host {name:?}")))?;
    let mut labels: BTreeMap<String, String> = serde_json::from_str(&get_str(&row, "labels")?)?;
    for k in remove {
        labels.remove(k);
    }
    labels.extend(set.clone());
    sqlx::query("UPDATE host SET labels = $2 WHERE name = $1")
        .bind(name)
        .bind(serde_json::to_string(&labels)?)
        .execute(&mut *tx)
        .await?;
    audit(
        &mut tx,
        now,
        "operator",
        "host.label",
        name,
        &format!("labels={labels:?}"),
    )
    .await?;
    tx.commit().await?;
    Ok(labels)
}

/// `jit-server host remove NAME`: the host's next call is refused.
pub async fn remove(db: &Db, name: &str, now: i64) -> Result<()> {
    let mut tx = db.write_tx().await?;
    let n = sqlx::query("DELETE FROM host WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::not_found(format!("no host {name:?}")));
    }
    sqlx::query("DELETE FROM join_token WHERE host = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    // The sequence belongs to the host's key, which is gone: a host added again under this
    // name enrols with a new key and starts from 0 (its rows would collide with the old ones).
    sqlx::query("DELETE FROM host_seq WHERE host = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sgrant SET revoked_at = $2 WHERE host = $1 AND revoked_at IS NULL")
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    audit(&mut tx, now, "operator", "host.remove", name, "").await?;
    tx.commit().await?;
    Ok(())
}

/// What an enrolled host receives: its name (from the token record), the keys to pin.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled {
    pub host: String,
    pub host_key: String,
    pub root_key: String,
    pub tls_fingerprint: String,
    /// The next TLS certificate's fingerprint, if one is prepared: pin it too.
    pub tls_next_fingerprint: Option<String>,
}

/// Enrols the host a join token was issued for with the host's public key. The token is spent
/// by one conditional update, so of concurrent uses exactly one wins; a retry after a lost
/// response succeeds only with the same key.
pub async fn enroll(
    db: &Db,
    keys: &ServerKeys,
    token: &str,
    pubkey_b64: &str,
    now: i64,
) -> Result<Enrolled> {
    if token.len() > 128 || pubkey_b64.len() > 64 {
        return Err(Error::bad("field too long"));
    }
    let raw: [u8; 32] = STANDARD
        .decode(pubkey_b64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::bad("key is not a base64 ed25519 public key"))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| Error::bad("key is not a valid ed25519 point"))?;
    let hash = sha256_hex(token.as_bytes());
    let refused = || Error::forbidden("join token unknown, expired or used");
    let mut tx = db.write_tx().await?;
    let n = sqlx::query(
        "UPDATE join_token SET used_at = $2, used_key = $3 \
         WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(&hash)
    .bind(now)
    .bind(pubkey_b64)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let row = sqlx::query("SELECT host, used_key, expires_at FROM join_token WHERE hash = $1")
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(refused)?;
    let host = get_str(&row, "host")?;
    if n == 0 {
        // Spent already: only the same key may retry (its first response was lost), and only
        // within the token's own lifetime, so a leaked token and host key together do not open
        // a door that never closes. Each retry is audited.
        let expires_at = get_i64(&row, "expires_at")?;
        if get_opt_str(&row, "used_key")?.as_deref() != Some(pubkey_b64) || now >= expires_at {
            drop(tx);
            return Err(refused());
        }
        audit(
            &mut tx,
            now,
            &format!("host:{host}"),
            "host.enroll_retry",
            &host,
            &key_fingerprint(&raw),
        )
        .await?;
    } else {
        let m = sqlx::query(
            "UPDATE host SET pubkey = $2, enrolled_at = $3 WHERE name = $1 AND pubkey IS NULL",
        )
        .bind(&host)
        .bind(pubkey_b64)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if m == 0 {
            return Err(Error::conflict(format!("host {host} has a key already")));
        }
        audit(
            &mut tx,
            now,
            &format!("host:{host}"),
            "host.enroll",
            &host,
            &key_fingerprint(&raw),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Enrolled {
        host,
        host_key: key_fingerprint(&raw),
        root_key: STANDARD.encode(keys.root_public),
        tls_fingerprint: keys.tls_fingerprint.clone(),
        tls_next_fingerprint: keys.tls_next_fingerprint.clone(),
    })
}

/// The bytes a host signs for one call.
pub fn host_request_message(method: &str, path_and_query: &str, time: i64, body: &[u8]) -> Vec<u8> {
    format!(
        "{HOST_REQ_DOMAIN}\0{method}\0{path_and_query}\0{time}\0{}",
        sha256_hex(body)
    )
    .into_bytes()
}

/// One signed call from a host, as received.
pub struct HostCall<'a> {
    pub host: &'a str,
    pub time: i64,
    pub sig_b64: &'a str,
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

/// Checks a host's signed call; returns the host's name and key fingerprint.
pub async fn authenticate(db: &Db, c: &HostCall<'_>, now: i64) -> Result<(String, String)> {
    let refused = || Error::unauthorized("host authentication failed");
    if (now - c.time).abs() > HOST_SKEW || c.sig_b64.len() > 128 || c.host.len() > 64 {
        return Err(refused());
    }
    let row = sqlx::query("SELECT pubkey FROM host WHERE name = $1")
        .bind(c.host)
        .fetch_optional(&db.read)
        .await?
        .ok_or_else(refused)?;
    let pubkey = get_opt_str(&row, "pubkey")?.ok_or_else(refused)?;
    let raw: [u8; 32] = STANDARD
        .decode(&pubkey)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(refused)?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| refused())?;
    let sig: [u8; 64] = STANDARD
        .decode(c.sig_b64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(refused)?;
    let msg = host_request_message(c.method, c.path_and_query, c.time, c.body);
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| refused())?;
    Ok((c.host.to_string(), key_fingerprint(&raw)))
}

/// Allocates the next sequence number for `host` inside the caller's transaction. The unique
/// (host, seq) constraint makes a duplicate impossible even if two writers raced.
pub async fn bump_seq(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    host: &str,
    why: &str,
    now: i64,
) -> Result<i64> {
    let got = bump_seqs(tx, std::slice::from_ref(&host.to_string()), why, now).await?;
    got.into_iter()
        .next()
        .map(|(_, seq)| seq)
        .ok_or_else(|| Error::internal("no sequence allocated"))
}

/// Most hosts in one multi-row statement: 4 bound values a row stays far below SQLite's and
/// PostgreSQL's parameter limits (32 766 and 65 535), and a request names at most 256 hosts.
pub(crate) const SEQ_BATCH: usize = 500;

/// Allocates the next sequence number of every host in `hosts` inside the caller's transaction,
/// in a fixed number of statements whatever the number of hosts (a fan-out to 250 hosts used to
/// be 500 round trips inside the approving transaction). Returns (host, seq) in name order.
///
/// * The same transaction as the change: the numbers commit with it or not at all; a host that
///   does not exist (or a (host, seq) already taken) fails the whole batch, and the caller's
///   transaction is rolled back: no host of the batch gets the change or the number.
/// * PostgreSQL, several replicas: the host rows are first locked in name order (`SELECT … ORDER
///   BY name FOR UPDATE`; the lock node sits above the sort, so rows are locked in that order).
///   Two fan-outs over overlapping hosts therefore queue on their first common host instead of
///   each holding a row the other waits for (a multi-row UPDATE alone locks in whatever order
///   its plan scans, which can deadlock). Writers of one host row (heartbeat, ack) take no other
///   host lock, so they cannot close a cycle. SQLite has one writer; it needs no row locks.
/// * The unique (host, seq) constraint still makes a duplicate impossible.
pub async fn bump_seqs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    hosts: &[String],
    why: &str,
    now: i64,
) -> Result<Vec<(String, i64)>> {
    let mut names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let postgres = tx.backend_name() == "PostgreSQL";
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(SEQ_BATCH) {
        // `$1 … $n`: the host names; the same list serves the lock and the update.
        let list = placeholders(chunk.len());
        // One row needs no order (and no extra round trip): the UPDATE locks it.
        if postgres && chunk.len() > 1 {
            let sql =
                format!("SELECT name FROM host WHERE name IN ({list}) ORDER BY name FOR UPDATE");
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(*h);
            }
            q.fetch_all(&mut **tx).await?;
        }
        let sql =
            format!("UPDATE host SET seq = seq + 1 WHERE name IN ({list}) RETURNING name, seq");
        let mut q = sqlx::query(&sql);
        for h in chunk {
            q = q.bind(*h);
        }
        let mut got = q
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| Ok((get_str(r, "name")?, r.try_get::<i64, _>("seq")?)))
            .collect::<Result<Vec<(String, i64)>>>()?;
        if got.len() != chunk.len() {
            // Some host is gone (removed since the caller read it): nothing of this batch may
            // commit, so the error goes up and the caller's transaction is dropped.
            let missing = chunk
                .iter()
                .find(|h| !got.iter().any(|(n, _)| n == *h))
                .copied()
                .unwrap_or("?");
            return Err(Error::not_found(format!("no host {missing:?}")));
        }
        got.sort_unstable();
        // One row per host: ($1, $2) its name and number, then `at` and `why` bound once.
        let at_p = 2 * got.len() + 1;
        let why_p = at_p + 1;
        let rows = (0..got.len())
            .map(|i| format!("(${}, ${}, ${at_p}, ${why_p})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO host_seq (host, seq, at, why) VALUES {rows}");
        let mut q = sqlx::query(&sql);
        for (h, seq) in &got {
            q = q.bind(h.as_str()).bind(*seq);
        }
        q.bind(now).bind(why).execute(&mut **tx).await?;
        out.extend(got);
    }
    Ok(out)
}

/// Locks the rows of those of `hosts` that still exist, in name order (PostgreSQL; SQLite has
/// one writer), and returns their names. A revocation takes these locks before it touches any
/// grant row, the order `host remove` uses (host row, then its grants), so the two cannot
/// deadlock; and a host removed meanwhile simply drops out (its removal ended its grants),
/// instead of failing the revocation of every other host.
pub async fn lock_existing(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    hosts: &[String],
) -> Result<Vec<String>> {
    let mut names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let lock = if tx.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    };
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(SEQ_BATCH) {
        let list = placeholders(chunk.len());
        let sql = format!("SELECT name FROM host WHERE name IN ({list}) ORDER BY name{lock}");
        let mut q = sqlx::query(&sql);
        for h in chunk {
            q = q.bind(*h);
        }
        for r in q.fetch_all(&mut **tx).await? {
            out.push(get_str(&r, "name")?);
        }
    }
    Ok(out)
}

/// `$1,$2,…,$n`: the bind parameters of an `IN (…)` list of `n` names.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The host's current sequence (None: no such host).
pub async fn current_seq(db: &Db, host: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query("SELECT seq FROM host WHERE name = $1 AND pubkey IS NOT NULL")
            .bind(host)
            .fetch_optional(&db.read)
            .await?
            .map(|r| r.try_get::<i64, _>("seq"))
            .transpose()?,
    )
}

/// One authenticated poll.
pub struct Poll<'a> {
    pub host: &'a str,
    /// Fingerprint of the key that signed the poll.
    pub host_key: &'a str,
    /// The highest sequence the host has applied.
    pub since: i64,
    pub nonce: &'a str,
}

/// Builds and signs the host's whole current grant set. A heartbeat allocates a new sequence (a
/// heartbeat, or a host whose `since` is not below the current one); a host reporting a `since`
/// above the database's (a database restored from an old backup) moves the sequence past it
/// first, so no number is ever issued twice to a host.
pub async fn state_document(
    db: &Db,
    keys: &ServerKeys,
    poll: &Poll<'_>,
    ttl: i64,
    now: i64,
) -> Result<Vec<u8>> {
    let (host, host_key, since, nonce) = (poll.host, poll.host_key, poll.since, poll.nonce);
    // A change the host has not seen: read-only, on the readers, in one statement (one
    // snapshot on both databases, one round trip where a transaction of its own took four:
    // BEGIN, the sequence, the grants, COMMIT). The number and the set come from the same
    // snapshot, so the set is never older than the number it goes out with.
    let rows = sqlx::query(
        "SELECT h.seq AS seq, g.doc AS doc FROM host h \
         LEFT JOIN sgrant g ON g.host = h.name AND g.revoked_at IS NULL AND g.not_after > $2 \
         WHERE h.name = $1 AND h.pubkey IS NOT NULL ORDER BY g.id",
    )
    .bind(host)
    .bind(now)
    .fetch_all(&db.read)
    .await?;
    let first = rows
        .first()
        .ok_or_else(|| Error::unauthorized("host authentication failed"))?;
    let seq = first.try_get::<i64, _>("seq")?;
    let (seq, grants) = if seq > since {
        let mut grants = Vec::with_capacity(rows.len());
        for r in &rows {
            // No live grant: the one row has no document.
            if let Some(doc) = get_opt_str(r, "doc")? {
                grants.push(serde_json::from_str::<DocGrant>(&doc)?);
            }
        }
        (seq, grants)
    } else {
        heartbeat(db, host, since, now).await?
    };
    // Most documents carry no grant asking for a code: no extra connection for them.
    let (mfa, mfa_used) = if grants.iter().any(DocGrant::wants_code) {
        let mut conn = db.read.acquire().await?;
        crate::mfa::for_host(&mut conn, keys, host, &grants, now).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let body = StateBody {
        version: DOC_VERSION,
        host: host.to_string(),
        host_key: host_key.to_string(),
        seq: u64::try_from(seq).map_err(|_| Error::internal("negative sequence"))?,
        server_time: now,
        nonce: nonce.to_string(),
        expires_at: now + ttl,
        grants,
        mfa,
        mfa_used,
    };
    Ok(sign_document(&keys.online, &keys.cert, &body)?)
}

async fn live_grants(
    conn: &mut sqlx::AnyConnection,
    host: &str,
    now: i64,
) -> Result<Vec<DocGrant>> {
    sqlx::query(
        "SELECT doc FROM sgrant WHERE host = $1 AND revoked_at IS NULL AND not_after > $2 ORDER BY id",
    )
    .bind(host)
    .bind(now)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| Ok(serde_json::from_str::<DocGrant>(&get_str(r, "doc")?)?))
    .collect()
}

/// Nothing new for the host (its wait ran out, or it restarted): a fresh sequence in a write
/// transaction, past whatever the host reports having applied (a database restored from an old
/// backup never reissues a number).
async fn heartbeat(db: &Db, host: &str, since: i64, now: i64) -> Result<(i64, Vec<DocGrant>)> {
    let mut tx = db.write_tx().await?;
    let row = sqlx::query("UPDATE host SET last_poll = $2 WHERE name = $1 RETURNING seq")
        .bind(host)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::unauthorized("host authentication failed"))?;
    let seq = row.try_get::<i64, _>("seq")?;
    if since > seq {
        sqlx::query("UPDATE host SET seq = $2 WHERE name = $1 AND seq < $2")
            .bind(host)
            .bind(since)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            &format!("host:{host}"),
            "host.seq_ahead",
            host,
            &format!("host applied {since}, database had {seq}"),
        )
        .await?;
    }
    let seq = bump_seq(&mut tx, host, "heartbeat", now).await?;
    // Older heartbeat rows say nothing a later one does not: the sequence itself lives in
    // `host.seq` (never lowered, and moved past what a host reports), and the unique (host,
    // seq) constraint only has to guard numbers issued from now on. Rows of real changes
    // (grant, revoke) stay: acks are audited with them. So the table holds one heartbeat row
    // per host instead of growing by one every poll.
    sqlx::query("DELETE FROM host_seq WHERE host = $1 AND why = 'heartbeat' AND seq < $2")
        .bind(host)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    let grants = live_grants(&mut tx, host, now).await?;
    tx.commit().await?;
    Ok((seq, grants))
}

/// A host confirms it applied `seq` (signed call). Never moves backwards, never past what was
/// issued.
pub async fn ack(db: &Db, host: &str, seq: i64, now: i64) -> Result<()> {
    let mut tx = db.write_tx().await?;
    let n = sqlx::query(
        "UPDATE host SET acked_seq = $2, acked_at = $3 WHERE name = $1 AND acked_seq < $2 AND seq >= $2",
    )
    .bind(host)
    .bind(seq)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        // Confirmations of real changes (grants, revocations) are audited; heartbeats are not,
        // or the trail would grow by one record per host every poll.
        let why = sqlx::query("SELECT why FROM host_seq WHERE host = $1 AND seq = $2")
            .bind(host)
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| get_str(&r, "why"))
            .transpose()?
            // Only heartbeat rows are pruned: a number without a row was a heartbeat.
            .unwrap_or_else(|| "heartbeat".to_string());
        if why != "heartbeat" {
            let detail = format!("applied seq {seq} ({why})");
            audit(
                &mut tx,
                now,
                &format!("host:{host}"),
                "host.ack",
                host,
                &detail,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Kinds of event a host reports; anything else is refused.
pub const EVENT_KINDS: &[&str] = &[
    "grant_live",
    "grant_ended",
    "session_open",
    "session_close",
    "sudo",
    "teardown_complete",
    "teardown_incomplete",
    "stale",
    "local_grant",
    "refused_document",
    "grant_revoked",
    "sudo_allowed",
    "sudo_denied",
    "monitor_hit",
    "events_dropped",
    "certification_dropped",
    "grant_refused",
];
/// Most events in one report.
pub const MAX_EVENTS: usize = 100;

/// One event from a host.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEvent {
    /// Host clock when it happened.
    pub at: i64,
    pub kind: String,
    #[serde(default)]
    pub grant: String,
    #[serde(default)]
    pub detail: String,
}

/// Records a host's events in the server's audit, so it covers the fleet. All or nothing:
/// one bad event refuses the report.
pub async fn record_events(db: &Db, host: &str, events: &[HostEvent], now: i64) -> Result<usize> {
    if events.len() > MAX_EVENTS {
        return Err(Error::bad(format!("more than {MAX_EVENTS} events")));
    }
    for e in events {
        if !EVENT_KINDS.contains(&e.kind.as_str()) {
            return Err(Error::bad(format!(
                "unknown event kind {:?}",
                e.kind.chars().take(32).collect::<String>()
            )));
        }
        if e.grant.len() > 64 || e.detail.len() > 1024 {
            return Err(Error::bad("event field too long"));
        }
        if e.grant
            .chars()
            .chain(e.detail.chars())
            .any(char::is_control)
        {
            return Err(Error::bad(
                "event fields may not contain control characters",
            ));
        }
    }
    let mut tx = db.write_tx().await?;
    for e in events {
        let detail = format!("host time {}: {}", e.at, e.detail);
        audit(
            &mut tx,
            now,
            &format!("host:{host}"),
            &format!("host.event.{}", e.kind),
            &e.grant,
            &detail,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(events.len())
}
