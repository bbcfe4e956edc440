//! Reading the server's audit trail (written by `db::audit` inside every changing transaction).

use serde::Serialize;

use crate::db::{get_i64, get_str, Db};
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

/// The newest `limit` records (at most 10 000), oldest first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AuditRow>> {
    let limit = limit.clamp(1, 10_000);
    let mut rows = sqlx::query(
        "SELECT at, actor, action, subject, detail FROM audit ORDER BY at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(AuditRow {
            at: get_i64(r, "at")?,
            actor: get_str(r, "actor")?,
            action: get_str(r, "action")?,
            subject: get_str(r, "subject")?,
            detail: get_str(r, "detail")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}
