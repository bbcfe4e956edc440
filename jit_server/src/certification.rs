//! Grant certifications reported by hosts: at a grant's end jitd compares a fingerprint of
//! privilege-relevant host state with the one it took when the grant went live and sends the
//! record (`POST /v1/host/certification`, a signed host call). Stored in the audit trail as
//! `host.certification` (actor `host:NAME` from the host's record, subject the grant), shown by
//! `jit-server certification ID` and `GET /v1/certifications/{id}`.
//!
//! A host may certify only its own grants: a server grant id (`sg-…`) must be one the server
//! sent to that host; a local grant (`g-…`) is stored as `HOST/g-…`, so no host can write a
//! record under another host's grant.

use jit_proto::certification::{Certification, CertificationStatus};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{audit, get_str, Db};
use crate::error::{Error, Result};

/// Audit action of a stored certification.
pub const ACTION: &str = "host.certification";

/// What a host sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The server's grant id for a server grant, else the host's local id.
    pub grant: String,
    /// The host's local id.
    pub local_grant: String,
    /// `server` or `local`.
    pub source: String,
    /// The grant's user.
    pub user: String,
    /// The record.
    pub certification: Certification,
}

/// What is stored (the audit detail, JSON) and shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub host: String,
    pub grant: String,
    pub local_grant: String,
    pub source: String,
    pub user: String,
    pub status: String,
    pub certification: Certification,
}

fn id_ok(s: &str, prefix: &str) -> bool {
    s.len() <= 64
        && s.strip_prefix(prefix).is_some_and(|r| {
            !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Stores a host's certification of one grant (its own only).
pub async fn record(db: &Db, host: &str, r: &Report, now: i64) -> Result<String> {
    if !id_ok(&r.local_grant, "g-") {
        return Err(Error::bad("local_grant: g-… expected"));
    }
    if r.user.len() > 64 || r.user.chars().any(char::is_control) {
        return Err(Error::bad("user: at most 64 bytes, no control characters"));
    }
    let (subject, user) = match r.source.as_str() {
        "server" => {
            if !id_ok(&r.grant, "sg-") {
                return Err(Error::bad("grant: sg-… expected for a server grant"));
            }
            let row = sqlx::query("SELECT doc FROM sgrant WHERE id = $1 AND host = $2")
                .bind(&r.grant)
                .bind(host)
                .fetch_optional(&db.pool)
                .await?
                .ok_or_else(|| Error::forbidden("not a grant of this host"))?;
            // Whose grant it is comes from the server's record, never from the host: the
            // user decides who may read the certification.
            let doc: jit_proto::state_doc::DocGrant = serde_json::from_str(&get_str(&row, "doc")?)?;
            (r.grant.clone(), doc.user)
        }
        "local" => {
            if r.grant != r.local_grant {
                return Err(Error::bad("a local grant is reported under its local id"));
            }
            (format!("{host}/{}", r.local_grant), r.user.clone())
        }
        _ => return Err(Error::bad("source: server or local")),
    };
    let c = &r.certification;
    let text_ok = |s: &str| s.len() <= 4096 && !s.chars().any(char::is_control);
    let fields_ok = c.differences.len() <= jit_proto::certification::MAX_DIFFERENCES
        && c.unreadable.len() <= jit_proto::certification::MAX_DIFFERENCES
        && c.unreadable.iter().all(|u| text_ok(u))
        && c.differences.iter().all(|d| {
            text_ok(&d.area)
                && text_ok(&d.item)
                && [&d.before, &d.after].into_iter().flatten().all(|i| {
                    text_ok(&i.kind)
                        && [&i.mode, &i.sha256, &i.detail]
                            .into_iter()
                            .flatten()
                            .all(|t| text_ok(t))
                })
        });
    if !fields_ok {
        return Err(Error::bad(
            "certification: too many differences, or a field too long or with control characters",
        ));
    }
    let stored = Stored {
        host: host.to_string(),
        grant: subject.clone(),
        local_grant: r.local_grant.clone(),
        source: r.source.clone(),
        user,
        status: c.status.as_str().to_string(),
        certification: c.clone(),
    };
    let mut tx = db.write_tx().await?;
    audit(
        &mut tx,
        now,
        &format!("host:{host}"),
        ACTION,
        &subject,
        &serde_json::to_string(&stored)?,
    )
    .await?;
    tx.commit().await?;
    Ok(subject)
}

/// The certifications stored for `id`: a server grant (`sg-…`), every grant of a request
/// (`rq-…`, one per host), or a host's local grant (`HOST/g-…`). Oldest first.
pub async fn lookup(db: &Db, id: &str) -> Result<Vec<Stored>> {
    let subjects: Vec<String> = if id.starts_with("sg-") || id.contains('/') {
        vec![id.to_string()]
    } else {
        sqlx::query("SELECT DISTINCT id FROM sgrant WHERE request_id = $1")
            .bind(id)
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| get_str(r, "id"))
            .collect::<Result<_>>()?
    };
    let mut out = Vec::new();
    for s in subjects {
        let rows = sqlx::query(
            "SELECT detail FROM audit WHERE action = $1 AND subject = $2 ORDER BY at, id",
        )
        .bind(ACTION)
        .bind(&s)
        .fetch_all(&db.pool)
        .await?;
        for r in rows {
            let d: String = r.try_get("detail")?;
            if let Ok(st) = serde_json::from_str::<Stored>(&d) {
                out.push(st);
            }
        }
    }
    Ok(out)
}

/// One line per certification, then one per difference, for people.
pub fn describe(s: &Stored) -> String {
    let c = &s.certification;
    let mut out = format!(
        "{} on {} ({} grant {}, user {}): {}",
        s.grant,
        s.host,
        s.source,
        s.local_grant,
        s.user,
        c.status.as_str()
    );
    if c.status == CertificationStatus::Changed {
        out.push_str(&format!(
            ", {} difference(s){}",
            c.differences.len() + c.omitted,
            if c.omitted > 0 {
                format!(" ({} not listed)", c.omitted)
            } else {
                String::new()
            }
        ));
    }
    for d in &c.differences {
        let after = d.after.as_ref().or(d.before.as_ref());
        out.push_str(&format!(
            "\n  {:?} {} {}{}{}",
            d.change,
            d.area,
            d.item,
            after
                .and_then(|i| i.owner.map(|o| format!(" owner {o}")))
                .unwrap_or_default(),
            after
                .and_then(|i| i.mode.as_ref().map(|m| format!(" mode {m}")))
                .unwrap_or_default(),
        ));
        if d.root_equivalent {
            out.push_str(" [root-equivalent]");
        }
    }
    out
}
