//! Requests, reviews and revocation. Every approval or denial, from any path, goes through
//! [`review`]; every duration goes through [`clamp_duration`].

use std::collections::{BTreeMap, BTreeSet};

use jit_core::time::parse_duration;
use jit_proto::state_doc::DocGrant;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::db::{audit, get_i64, get_opt_i64, get_opt_str, get_str, Db};
use crate::error::{Error, Result};
use crate::hosts::bump_seq;
use crate::policy::{self, RoleDef, MAX_REASON};
use crate::util::{new_id, person_key, selector_matches, sha256_hex, valid_object_name};

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
}

/// The one duration rule for create, extend and re-issue: at most the role's max.
pub fn clamp_duration(role: &RoleDef, secs: i64) -> Result<i64> {
    if secs <= 0 {
        return Err(Error::bad("duration must be positive"));
    }
    Ok(secs.min(role.max_secs()?))
}

fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::bad(format!("{what} longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::bad(format!("{what} contains control characters")));
    }
    Ok(())
}

/// The immutable content of a request; reviews are bound to its hash.
#[derive(Serialize)]
struct RequestContent<'a> {
    id: &'a str,
    requester: &'a str,
    role_spec: &'a str,
    hosts: &'a [String],
    duration: i64,
    reason: &'a str,
    ticket: &'a str,
    created_at: i64,
}

impl RequestContent<'_> {
    fn hash(&self) -> Result<String> {
        Ok(sha256_hex(&serde_json::to_vec(self)?))
    }
}

/// An entitlement names the person or one of their groups, the role, and (if it has one) a
/// selector every host matches by its server-set labels.
fn is_entitled(
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

/// At approval, the policy as it is *now*: the role must still exist (its current max clamps
/// too), the requester must still be entitled, and only hosts still enrolled and still matching
/// the role's selector receive the grant. Returns the current role and those hosts.
async fn still_allowed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    requester: &str,
    role: &str,
    hosts: &[String],
) -> Result<(RoleDef, Vec<String>)> {
    let current: RoleDef = match sqlx::query("SELECT spec FROM role WHERE name = $1")
        .bind(role)
        .fetch_optional(&mut **tx)
        .await?
    {
        Some(r) => serde_json::from_str(&get_str(&r, "spec")?)?,
        None => return Err(Error::conflict(format!("role {role} no longer exists"))),
    };
    let mut labels = BTreeMap::new();
    for r in sqlx::query("SELECT name, labels FROM host WHERE pubkey IS NOT NULL")
        .fetch_all(&mut **tx)
        .await?
    {
        let l: BTreeMap<String, String> = serde_json::from_str(&get_str(&r, "labels")?)?;
        labels.insert(get_str(&r, "name")?, l);
    }
    let ok: Vec<String> = hosts
        .iter()
        .filter(|h| {
            labels
                .get(*h)
                .is_some_and(|l| selector_matches(&current.hosts, l))
        })
        .cloned()
        .collect();
    if ok.is_empty() {
        return Err(Error::conflict(
            "none of the requested hosts is still eligible",
        ));
    }
    let ents = sqlx::query("SELECT spec FROM entitlement ORDER BY idx")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok(serde_json::from_str(&get_str(r, "spec")?)?))
        .collect::<Result<Vec<policy::EntitlementDef>>>()?;
    let groups = policy::groups_of(tx, requester).await?;
    if !is_entitled(&ents, requester, &groups, role, &ok, &labels) {
        return Err(Error::forbidden(format!(
            "{requester} is no longer entitled to {role} on these hosts"
        )));
    }
    Ok((current, ok))
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
    let mut tx = db.pool.begin().await?;
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
    let mut changed = false;
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
        approve_now(
            &mut tx,
            &id,
            &format!("auto:{g}"),
            &[format!("auto:{g}")],
            now,
        )
        .await?;
        changed = true;
    }
    tx.commit().await?;
    if changed {
        db.notify_change().await;
    }
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
    let v = view(
        &row,
        reviews(db, id, "approve").await?,
        reviews(db, id, "deny").await?,
    )?;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

/// The one approval function. In one transaction that first takes the request's row lock:
/// refuses the requester (admins included), anyone not currently in an approver group, a
/// decided or expired request; records the review once per person (case-folded identity, any
/// number of tokens or sessions), bound to the request's hash; counts reviews whose authors are
/// *currently* approvers; decides at N approvals or the deny threshold.
pub async fn review(
    db: &Db,
    actor: &str,
    id: &str,
    verdict: Verdict,
    comment: &str,
    now: i64,
) -> Result<RequestView> {
    check_text("comment", comment, MAX_COMMENT)?;
    if id.len() > 64 {
        return Err(Error::bad("bad request id"));
    }
    let mut tx = db.pool.begin().await?;
    // Row lock first (PostgreSQL blocks concurrent reviewers here; SQLite has one writer).
    let locked = sqlx::query("UPDATE request SET lock = lock + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if locked == 0 {
        return Err(Error::not_found(format!("no request {id:?}")));
    }
    let row = sqlx::query("SELECT * FROM request WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let state = get_str(&row, "state")?;
    let requester = get_str(&row, "requester")?;
    let hash = get_str(&row, "hash")?;
    // The stored content must still hash to what reviews are bound to: a row altered outside
    // this code (or by a bug) is never approved on the strength of reviews of other content.
    let hosts_json = get_str(&row, "hosts")?;
    let hosts: Vec<String> = serde_json::from_str(&hosts_json)?;
    let content_hash = RequestContent {
        id: &get_str(&row, "id")?,
        requester: &requester,
        role_spec: &get_str(&row, "role_spec")?,
        hosts: &hosts,
        duration: get_i64(&row, "duration")?,
        reason: &get_str(&row, "reason")?,
        ticket: &get_str(&row, "ticket")?,
        created_at: get_i64(&row, "created_at")?,
    }
    .hash()?;
    if content_hash != hash {
        audit(
            &mut tx,
            now,
            actor,
            "review.refused",
            id,
            "request content does not match its hash",
        )
        .await?;
        tx.commit().await?;
        return Err(Error::conflict(format!(
            "request {id} was altered after it was filed"
        )));
    }
    let role: RoleDef = serde_json::from_str(&get_str(&row, "role_spec")?)?;
    if person_key(actor) == person_key(&requester) {
        audit(&mut tx, now, actor, "review.refused", id, "self-approval").await?;
        tx.commit().await?;
        return Err(Error::forbidden("you cannot review your own request"));
    }
    if state != "pending" {
        return Err(Error::conflict(format!("request {id} is {state}")));
    }
    if now >= get_i64(&row, "pending_until")? {
        sqlx::query("UPDATE request SET state = 'expired', decided_at = $2 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            "server",
            "request.expired",
            id,
            "pending TTL passed",
        )
        .await?;
        tx.commit().await?;
        return Err(Error::conflict(format!("request {id} is expired")));
    }
    let approvers: BTreeSet<String> = role.approval.approvers.iter().cloned().collect();
    let mine = policy::groups_of(&mut tx, actor).await?;
    if mine.is_disjoint(&approvers) {
        audit(&mut tx, now, actor, "review.refused", id, "not an approver").await?;
        tx.commit().await?;
        return Err(Error::forbidden(format!(
            "{actor} is not in an approver group of role {}",
            role.name
        )));
    }
    let inserted = sqlx::query(
        "INSERT INTO review (request_id, person_key, person, verdict, request_hash, comment, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(person_key(actor))
    .bind(actor)
    .bind(verdict.as_str())
    .bind(&hash)
    .bind(comment)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(Error::conflict(format!(
            "{actor} has reviewed {id} already"
        )));
    }
    audit(
        &mut tx,
        now,
        actor,
        &format!("review.{}", verdict.as_str()),
        id,
        comment,
    )
    .await?;

    // Count reviews bound to this request's hash by people who are approvers now.
    let mut approved_by = Vec::new();
    let mut denials = 0u32;
    for r in sqlx::query("SELECT person, verdict FROM review WHERE request_id = $1 AND request_hash = $2 ORDER BY at")
        .bind(id)
        .bind(&hash)
        .fetch_all(&mut *tx)
        .await?
    {
        let who = get_str(&r, "person")?;
        if person_key(&who) == person_key(&requester) {
            continue;
        }
        let g = policy::groups_of(&mut tx, &who).await?;
        if g.is_disjoint(&approvers) {
            continue;
        }
        match get_str(&r, "verdict")?.as_str() {
            "approve" => approved_by.push(who),
            _ => denials += 1,
        }
    }
    let mut changed = false;
    if denials >= role.approval.deny {
        let n = sqlx::query("UPDATE request SET state = 'denied', decided_at = $2, decided_by = $3 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .bind(now)
            .bind(actor)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            audit(
                &mut tx,
                now,
                actor,
                "request.denied",
                id,
                &format!("{denials} denials"),
            )
            .await?;
        }
    } else if approved_by.len() as u64 >= u64::from(role.approval.approvals) {
        approve_now(&mut tx, id, actor, &approved_by, now).await?;
        changed = true;
    }
    tx.commit().await?;
    if changed {
        db.notify_change().await;
    }
    get(db, id)
        .await?
        .ok_or_else(|| Error::internal("request vanished"))
}

/// Pending → approved (one conditional update: of racing deciders one wins) and one grant per
/// host, its duration counted from now, each host's sequence bumped in this transaction.
async fn approve_now(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    decided_by: &str,
    approved_by: &[String],
    now: i64,
) -> Result<()> {
    let row = sqlx::query("SELECT * FROM request WHERE id = $1")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    let role: RoleDef = serde_json::from_str(&get_str(&row, "role_spec")?)?;
    let requester = get_str(&row, "requester")?;
    let asked_hosts: Vec<String> = serde_json::from_str(&get_str(&row, "hosts")?)?;
    let (current, hosts) = still_allowed(tx, &requester, &role.name, &asked_hosts).await?;
    // Approvers approved the role as filed: a role changed since then (scope, max, policy) is
    // not silently granted in either form.
    if current != role {
        return Err(Error::conflict(format!(
            "role {} changed since this request was filed; file it again",
            role.name
        )));
    }
    // The one clamp, against the role as filed and as it is now.
    let duration = clamp_duration(&current, clamp_duration(&role, get_i64(&row, "duration")?)?)?;
    let not_after = now + duration;
    let n = sqlx::query(
        "UPDATE request SET state = 'approved', decided_at = $2, decided_by = $3, not_before = $2, not_after = $4 \
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(now)
    .bind(decided_by)
    .bind(not_after)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(());
    }
    let keys_row = sqlx::query("SELECT ssh_keys FROM person WHERE name = $1")
        .bind(&requester)
        .fetch_optional(&mut **tx)
        .await?;
    let ssh_keys: Vec<String> = match keys_row {
        Some(r) => serde_json::from_str(&get_str(&r, "ssh_keys")?)?,
        None => Vec::new(),
    };
    let grant_id = new_id("sg")?;
    for h in &hosts {
        let doc = DocGrant {
            id: grant_id.clone(),
            request_id: id.to_string(),
            user: requester.clone(),
            not_before: now,
            not_after,
            role: role.name.clone(),
            approved_by: approved_by.to_vec(),
            account: role.account,
            groups: role.groups.clone(),
            ssh_keys: ssh_keys.clone(),
            reason: get_str(&row, "reason")?,
            ticket: get_str(&row, "ticket")?,
            sudo: role.sudo.clone(),
            runas: role.runas.clone(),
            enable: role.enable,
            from: role.from.clone(),
            services: role.services.clone(),
            windows: role.windows.clone(),
            mfa: role.mfa,
            mfa_sudo: role.mfa_sudo,
            end_with_session: role.end_with_session,
            revoke_on: role.revoke_on.clone(),
            strict: role.strict,
        };
        sqlx::query(
            "INSERT INTO sgrant (id, host, request_id, doc, not_after) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&grant_id)
        .bind(h)
        .bind(id)
        .bind(serde_json::to_string(&doc)?)
        .bind(not_after)
        .execute(&mut **tx)
        .await?;
        bump_seq(tx, h, &format!("grant {grant_id}"), now).await?;
    }
    audit(
        tx,
        now,
        decided_by,
        "request.approved",
        id,
        &format!("grant {grant_id} on {hosts:?} until {not_after}, approved by {approved_by:?}"),
    )
    .await?;
    Ok(())
}

/// Ends a request's grant (or a grant by id) on every host. Allowed to the requester, a current
/// approver of the role, and admins.
pub async fn revoke(db: &Db, actor: &str, id: &str, admin: bool, now: i64) -> Result<Vec<String>> {
    revoke_inner(db, actor, id, admin, "", now).await
}

/// A revocation by the server itself (ticket closed or unverified), with its reason audited.
pub async fn revoke_because(
    db: &Db,
    actor: &str,
    id: &str,
    why: &str,
    now: i64,
) -> Result<Vec<String>> {
    revoke_inner(db, actor, id, true, why, now).await
}

async fn revoke_inner(
    db: &Db,
    actor: &str,
    id: &str,
    admin: bool,
    why: &str,
    now: i64,
) -> Result<Vec<String>> {
    if id.len() > 64 {
        return Err(Error::bad("bad id"));
    }
    let mut tx = db.pool.begin().await?;
    let req_id = if id.starts_with("sg-") {
        let r = sqlx::query("SELECT request_id FROM sgrant WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no grant {id:?}")))?;
        get_str(&r, "request_id")?
    } else {
        id.to_string()
    };
    let locked = sqlx::query("UPDATE request SET lock = lock + 1 WHERE id = $1")
        .bind(&req_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if locked == 0 {
        return Err(Error::not_found(format!("no request {id:?}")));
    }
    let row = sqlx::query("SELECT requester, role_spec FROM request WHERE id = $1")
        .bind(&req_id)
        .fetch_one(&mut *tx)
        .await?;
    let role: RoleDef = serde_json::from_str(&get_str(&row, "role_spec")?)?;
    let mine = policy::groups_of(&mut tx, actor).await?;
    let may = admin
        || person_key(&get_str(&row, "requester")?) == person_key(actor)
        || role.approval.approvers.iter().any(|g| mine.contains(g));
    if !may {
        return Err(Error::forbidden(format!("{actor} may not revoke {id}")));
    }
    let hosts = sqlx::query(
        "SELECT host FROM sgrant WHERE request_id = $1 AND revoked_at IS NULL AND not_after > $2 ORDER BY host",
    )
    .bind(&req_id)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| get_str(r, "host"))
    .collect::<Result<Vec<_>>>()?;
    sqlx::query("UPDATE sgrant SET revoked_at = $2 WHERE request_id = $1 AND revoked_at IS NULL")
        .bind(&req_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let ended = sqlx::query(
        "UPDATE request SET state = 'revoked' WHERE id = $1 AND state IN ('approved', 'pending')",
    )
    .bind(&req_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 && hosts.is_empty() {
        // Already revoked, denied or expired, nothing live: a second revoker (another replica's
        // ticket check, a retry) changes nothing and records nothing.
        return Err(Error::conflict(format!("{id} has ended already")));
    }
    for h in &hosts {
        bump_seq(&mut tx, h, &format!("revoke {req_id}"), now).await?;
    }
    audit(
        &mut tx,
        now,
        actor,
        "request.revoked",
        &req_id,
        &format!("hosts {hosts:?} {why}"),
    )
    .await?;
    tx.commit().await?;
    db.notify_change().await;
    Ok(hosts)
}
