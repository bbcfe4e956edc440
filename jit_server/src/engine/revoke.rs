//! Revocation: a request's grant ends on every host.

use crate::db::{audit, get_str, Db};
use crate::error::{Error, Result};
use crate::hosts::{bump_seqs, lock_existing};
use crate::policy::{self, RoleDef};
use crate::util::person_key;

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
    let mut tx = db.write_tx().await?;
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
    // Host rows before grant rows (as `host remove` does); a host removed since is left out.
    let hosts = lock_existing(&mut tx, &hosts).await?;
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
    // Every host's number in a fixed number of statements, in this transaction (one commit).
    bump_seqs(&mut tx, &hosts, &format!("revoke {req_id}"), now).await?;
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
    db.notify_hosts(&hosts).await;
    Ok(hosts)
}
