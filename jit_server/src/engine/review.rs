//! The one approval function and what an approval does.

use std::collections::{BTreeMap, BTreeSet};

use jit_proto::state_doc::{grant_weight, DocGrant};

use super::room;
use super::{
    check_text, clamp_duration, get, is_entitled, RequestContent, RequestView, MAX_COMMENT,
};
use crate::db::{audit, get_i64, get_str, Db};
use crate::error::{Error, Result};
use crate::hosts::bump_seqs;
use crate::policy::{self, RoleDef};
use crate::util::{new_id, person_key, selector_matches};

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
    limits: &super::Limits,
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
    let mut tx = db.write_tx().await?;
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
    let mut granted = Vec::new();
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
        granted = approve_now(&mut tx, id, actor, &approved_by, limits, now).await?;
    }
    tx.commit().await?;
    db.notify_hosts(&granted).await;
    get(db, id)
        .await?
        .ok_or_else(|| Error::internal("request vanished"))
}

/// Pending → approved (one conditional update: of racing deciders one wins) and one grant per
/// host, its duration counted from now, each host's sequence bumped in this transaction.
/// Returns the hosts granted (none if another decider won).
pub(super) async fn approve_now(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    decided_by: &str,
    approved_by: &[String],
    limits: &super::Limits,
    now: i64,
) -> Result<Vec<String>> {
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
    let keys_row = sqlx::query("SELECT ssh_keys FROM person WHERE name = $1")
        .bind(&requester)
        .fetch_optional(&mut **tx)
        .await?;
    let ssh_keys: Vec<String> = match keys_row {
        Some(r) => serde_json::from_str(&get_str(&r, "ssh_keys")?)?,
        None => Vec::new(),
    };
    let grant_id = new_id("sg")?;
    // One document for every host (it does not name the host): serialized and bound once.
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
        ssh_keys,
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
        caps: role.cap_names()?,
        programs: role.programs.clone(),
    };
    let wants_code = doc.wants_code();
    let doc = serde_json::to_string(&doc)?;
    let weight = grant_weight(doc.len(), wants_code);
    // Only hosts whose signed document has room for it: a host refuses a document that is too
    // large, and with it every later change (revocations too).
    let (hosts, full) = room::split_by_room(tx, &hosts, weight, limits, now).await?;
    let why_full = full
        .iter()
        .map(|(h, f)| f.describe(h))
        .collect::<Vec<_>>()
        .join("; ");
    if hosts.is_empty() {
        return Err(Error::conflict(format!(
            "no room on any host of this request ({why_full}); nothing was recorded: approve again once grants there end"
        )));
    }
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
        return Ok(Vec::new());
    }
    if !full.is_empty() {
        audit(tx, now, "server", "request.hosts_full", id, &why_full).await?;
    }
    // All hosts' rows in one statement (a request names at most MAX_HOSTS = 256 hosts, 261
    // bound values), then all their sequence numbers: a fan-out costs a fixed number of round
    // trips inside this one transaction, and one commit.
    let rows = (0..hosts.len())
        .map(|i| format!("($1, $2, $3, $4, $5, ${})", i + 6))
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("INSERT INTO sgrant (id, request_id, doc, not_after, weight, host) VALUES {rows}");
    let mut q = sqlx::query(&sql)
        .bind(&grant_id)
        .bind(id)
        .bind(&doc)
        .bind(not_after)
        .bind(i64::try_from(weight).map_err(|_| Error::internal("grant weight"))?);
    for h in &hosts {
        q = q.bind(h.as_str());
    }
    q.execute(&mut **tx).await?;
    bump_seqs(tx, &hosts, &format!("grant {grant_id}"), now).await?;
    audit(
        tx,
        now,
        decided_by,
        "request.approved",
        id,
        &format!("grant {grant_id} on {hosts:?} until {not_after}, approved by {approved_by:?}"),
    )
    .await?;
    Ok(hosts)
}
