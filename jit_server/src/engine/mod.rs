//! Requests, reviews and revocation. Every approval or denial, from any path, goes through
//! [`review`]; every duration goes through [`clamp_duration`].

use std::collections::{BTreeMap, BTreeSet};

use jit_core::time::parse_duration;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::db::{audit, get_i64, get_opt_i64, get_opt_str, get_str, Db};
use crate::error::{Error, Result};
use crate::policy::{self, RoleDef, MAX_REASON};
use crate::util::{new_id, selector_matches, sha256_hex, valid_object_name};

mod review;
mod revoke;
mod room;

pub use review::{review, Verdict};
pub use revoke::{revoke, revoke_because};
pub use room::Limits;

/// Most hosts one request may name or select.
pub const MAX_HOSTS: usize = 256;
pub const MAX_TICKET: usize = 128;
pub const MAX_COMMENT: usize = 1024;

/// What a person asks for (API body).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub role: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub select: BTreeMap<String, String>,
    /// `1h`, `30m`…
    pub duration: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    pub id: String,
    pub requester: String,
    pub role: String,
    pub hosts: Vec<String>,
    pub duration: i64,
    pub reason: String,
    pub ticket: String,
    pub state: String,
    pub created_at: i64,
    pub pending_until: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub approvals: Vec<String>,
    pub denials: Vec<String>,
    /// The hosts that received the grant (one request's view only, not in lists): an approval
    /// leaves out a host without room for it (`engine/room.rs`), audited `request.hosts_full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_on: Option<Vec<String>>,
}

/// The one duration rule for create, extend and re-issue: at most the role's max.
pub fn clamp_duration(role: &RoleDef, secs: i64) -> Result<i64> {
    if secs <= 0 {
        return Err(Error::bad("duration must be positive"));
    }
    Ok(secs.min(role.max_secs()?))
}

pub(super) fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::bad(format!("{what} longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::bad(format!("{what} contains control characters")));
    }
    // Bidirectional overrides make a reason read differently to an approver than it is stored.
    if s.chars().any(is_bidi_control) {
        return Err(Error::bad(format!(
            "{what} contains bidirectional control characters"
        )));
    }
    Ok(())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The immutable content of a request; reviews are bound to its hash.
#[derive(Serialize)]
pub(super) struct RequestContent<'a> {
    pub(super) id: &'a str,
    pub(super) requester: &'a str,
    pub(super) role_spec: &'a str,
    pub(super) hosts: &'a [String],
    pub(super) duration: i64,
    pub(super) reason: &'a str,
    pub(super) ticket: &'a str,
    pub(super) created_at: i64,
}

impl RequestContent<'_> {
    pub(super) fn hash(&self) -> Result<String> {
        Ok(sha256_hex(&serde_json::to_vec(self)?))
    }
}

/// An entitlement names the person or one of their groups, the role, and (if it has one) a
/// selector every host matches by its server-set labels.
pub(super) fn is_entitled(
    ents: &[policy::EntitlementDef],
    person: &str,
    groups: &BTreeSet<String>,
    role: &str,
    hosts: &[String],
    labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    ents.iter().any(|e| {
        e.roles.iter().any(|r| r == role)
            && e.who.iter().any(|w| w == person || groups.contains(w))
            && hosts
                .iter()
                .all(|h| labels.get(h).is_some_and(|l| selector_matches(&e.hosts, l)))
    })
}

async fn host_labels(db: &Db) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for r in sqlx::query("SELECT name, labels FROM host WHERE pubkey IS NOT NULL")
        .fetch_all(&db.pool)
        .await?
    {
        out.insert(
            get_str(&r, "name")?,
            serde_json::from_str(&get_str(&r, "labels")?)?,
        );
    }
    Ok(out)
}

/// Files a request (or approves it at once for an auto-approve group, audited as such).
pub async fn create(
    db: &Db,
    tickets: Option<&crate::ticket::TicketConfig>,
    limits: &Limits,
    actor: &str,
    req: &NewRequest,
    now: i64,
) -> Result<RequestView> {
    if !valid_object_name(&req.role) {
        return Err(Error::bad("bad role name"));
    }
    check_text("reason", &req.reason, MAX_REASON)?;
    check_text("ticket", &req.ticket, MAX_TICKET)?;
    if req.hosts.len() > MAX_HOSTS || req.select.len() > 32 {
        return Err(Error::bad("too many hosts or labels"));
    }
    let role = policy::role(db, &req.role)
        .await?
        .ok_or_else(|| Error::not_found(format!("no role {:?}", req.role)))?;

    // Hosts: by name or by selector, never both, never empty.
    let all = host_labels(db).await?;
    let hosts: Vec<String> = match (req.hosts.is_empty(), req.select.is_empty()) {
        (false, true) => {
            let mut seen = BTreeSet::new();
            for h in &req.hosts {
                if !all.contains_key(h) {
                    return Err(Error::bad(format!("no enrolled host {h:?}")));
                }
                seen.insert(h.clone());
            }
            seen.into_iter().collect()
        }
        (true, false) => all
            .iter()
            .filter(|(_, l)| selector_matches(&req.select, l))
            .map(|(n, _)| n.clone())
            .collect(),
        (true, true) => return Err(Error::bad("no hosts: name hosts or a label selector")),
        (false, false) => return Err(Error::bad("name hosts or a label selector, not both")),
    };
    if hosts.is_empty() {
        return Err(Error::bad("the selector matches no enrolled host"));
    }
    if hosts.len() > MAX_HOSTS {
        return Err(Error::bad(format!("more than {MAX_HOSTS} hosts")));
    }
    for h in &hosts {
        let labels = all
            .get(h)
            .ok_or_else(|| Error::bad(format!("no host {h:?}")))?;
        if !selector_matches(&role.hosts, labels) {
            return Err(Error::forbidden(format!(
                "role {} is not for host {h} (labels)",
                role.name
            )));
        }
    }

    // Entitlement: a rule naming the person or one of their groups, the role, and (if it has
    // one) a selector every host matches. Labels come from the server only.
    let mut conn = db.pool.acquire().await?;
    let groups = policy::groups_of(&mut conn, actor).await?;
    drop(conn);
    let entitled = is_entitled(
        &policy::entitlements(db).await?,
        actor,
        &groups,
        &role.name,
        &hosts,
        &all,
    );
    if !entitled {
        return Err(Error::forbidden(format!(
            "{actor} is not entitled to {} on these hosts",
            role.name
        )));
    }

    let reason = req.reason.trim();
    if reason.chars().count() < role.approval.reason_min {
        return Err(Error::bad(format!(
            "reason must be at least {} characters",
            role.approval.reason_min
        )));
    }
    let ticket = req.ticket.trim();
    if let Some(re) = role.ticket_regex()? {
        if !re.is_match(ticket) {
            return Err(Error::bad(format!(
                "ticket {ticket:?} does not match the role's pattern"
            )));
        }
    }
    crate::ticket::check_at_request(tickets, &role, ticket).await?;
    let asked = parse_duration(&req.duration).map_err(|e| Error::bad(format!("duration: {e}")))?;
    let duration = clamp_duration(&role, asked)?;
    let pending_until = now + role.pending_ttl_secs()?;

    let id = new_id("r")?;
    let role_spec = serde_json::to_string(&role)?;
    let hash = RequestContent {
        id: &id,
        requester: actor,
        role_spec: &role_spec,
        hosts: &hosts,
        duration,
        reason,
        ticket,
        created_at: now,
    }
    .hash()?;
    let mut tx = db.write_tx().await?;
    room::check_open_requests(&mut tx, actor, limits, now).await?;
    sqlx::query(
        "INSERT INTO request (id, requester, role, role_spec, hosts, duration, reason, ticket, \
         created_at, pending_until, hash, state) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'pending')",
    )
    .bind(&id)
    .bind(actor)
    .bind(&role.name)
    .bind(&role_spec)
    .bind(serde_json::to_string(&hosts)?)
    .bind(duration)
    .bind(reason)
    .bind(ticket)
    .bind(now)
    .bind(pending_until)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    audit(&mut tx, now, actor, "request.create", &id, &format!(
        "role={} hosts={hosts:?} duration={duration}s (asked {asked}s) ticket={ticket:?} reason={reason:?}",
        role.name
    ))
    .await?;
    let auto = role
        .approval
        .auto_approve
        .iter()
        .find(|g| groups.contains(*g))
        .cloned();
    let mut granted = Vec::new();
    if let Some(g) = auto {
        audit(
            &mut tx,
            now,
            actor,
            "request.auto_approve",
            &id,
            &format!("member of {g}"),
        )
        .await?;
        granted = review::approve_now(
            &mut tx,
            &id,
            &format!("auto:{g}"),
            &[format!("auto:{g}")],
            limits,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    db.notify_hosts(&granted).await;
    get(db, &id)
        .await?
        .ok_or_else(|| Error::internal("request vanished"))
}

fn view(row: &AnyRow, approvals: Vec<String>, denials: Vec<String>) -> Result<RequestView> {
    Ok(RequestView {
        id: get_str(row, "id")?,
        requester: get_str(row, "requester")?,
        role: get_str(row, "role")?,
        hosts: serde_json::from_str(&get_str(row, "hosts")?)?,
        duration: get_i64(row, "duration")?,
        reason: get_str(row, "reason")?,
        ticket: get_str(row, "ticket")?,
        state: get_str(row, "state")?,
        created_at: get_i64(row, "created_at")?,
        pending_until: get_i64(row, "pending_until")?,
        decided_at: get_opt_i64(row, "decided_at")?,
        decided_by: get_opt_str(row, "decided_by")?,
        not_before: get_opt_i64(row, "not_before")?,
        not_after: get_opt_i64(row, "not_after")?,
        approvals,
        denials,
        granted_on: None,
    })
}

async fn reviews(db: &Db, id: &str, verdict: &str) -> Result<Vec<String>> {
    sqlx::query("SELECT person FROM review WHERE request_id = $1 AND verdict = $2 ORDER BY at")
        .bind(id)
        .bind(verdict)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| get_str(r, "person"))
        .collect()
}

pub async fn get(db: &Db, id: &str) -> Result<Option<RequestView>> {
    let Some(row) = sqlx::query("SELECT * FROM request WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    let mut v = view(
        &row,
        reviews(db, id, "approve").await?,
        reviews(db, id, "deny").await?,
    )?;
    v.granted_on = Some(
        sqlx::query("SELECT host FROM sgrant WHERE request_id = $1 ORDER BY host")
            .bind(id)
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| get_str(r, "host"))
            .collect::<Result<_>>()?,
    );
    Ok(Some(v))
}

/// Requests, newest first: `pending` only pending ones, `mine` only the actor's. History is
/// kept after expiry.
pub async fn list(
    db: &Db,
    actor: &str,
    pending: bool,
    mine: bool,
    now: i64,
) -> Result<Vec<RequestView>> {
    let rows = sqlx::query("SELECT * FROM request ORDER BY created_at DESC, id LIMIT 500")
        .fetch_all(&db.pool)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let mut v = view(r, Vec::new(), Vec::new())?;
        if v.state == "pending" && now >= v.pending_until {
            v.state = "expired".into();
        }
        if (pending && v.state != "pending") || (mine && v.requester != actor) {
            continue;
        }
        v.approvals = reviews(db, &v.id, "approve").await?;
        v.denials = reviews(db, &v.id, "deny").await?;
        out.push(v);
    }
    Ok(out)
}
