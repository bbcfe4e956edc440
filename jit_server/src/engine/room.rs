//! Limits on what one person and one host may hold, checked when a request is filed and when
//! it is approved.
//!
//! * A host receives its whole grant set in one signed document, and refuses a document above
//!   `MAX_DOC_BYTES` or with more than `MAX_DOC_GRANTS` grants. A refused document changes
//!   nothing on the host, revocations included: so the server never admits a grant that would
//!   make one. Each grant row carries its weight in the document
//!   (`jit_proto::state_doc::grant_weight`); an approval leaves out a host whose live rows
//!   would pass `MAX_BODY_WEIGHT` or the configured count.
//! * One person holds at most `max_open_requests` requests that are pending or approved and
//!   not yet ended: nobody fills the request table, the approvers' queue or a host's room.

use jit_proto::state_doc::MAX_BODY_WEIGHT;
use sqlx::Row;

use crate::db::get_str;
use crate::error::{Error, Result};
use crate::hosts;

/// What filing and approving may take (server.toml `max_open_requests`,
/// `max_grants_per_host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests one person may hold open (pending, or approved and not ended).
    pub open_requests: i64,
    /// Live grants one host may hold (at most `MAX_DOC_GRANTS`).
    pub grants_per_host: i64,
}

/// A host's live server grants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HostLoad {
    pub grants: i64,
    /// The sum of their weights.
    pub weight: i64,
}

/// Why a host has no room for one more grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// It holds this many grants already.
    Grants(i64),
    /// Its grants weigh this much, and the new one would take them past `MAX_BODY_WEIGHT`.
    Bytes(i64),
}

impl Full {
    pub(super) fn describe(self, host: &str) -> String {
        match self {
            Full::Grants(n) => format!("{host} holds {n} grants, the most allowed per host"),
            Full::Bytes(w) => format!(
                "{host}'s grants take {w} of the {MAX_BODY_WEIGHT} bytes one signed document carries"
            ),
        }
    }
}

/// The rule: one more grant of `weight` fits a host with `load`.
pub(super) fn fits(load: HostLoad, weight: u64, limits: &Limits) -> std::result::Result<(), Full> {
    if load.grants >= limits.grants_per_host {
        return Err(Full::Grants(load.grants));
    }
    let after = u64::try_from(load.weight)
        .unwrap_or(u64::MAX)
        .saturating_add(weight);
    if after > MAX_BODY_WEIGHT {
        return Err(Full::Bytes(load.weight));
    }
    Ok(())
}

/// Locks the rows of those of `hosts` that exist (name order: the order every fan-out and
/// revocation takes, so none of them deadlock) and splits them into the hosts with room for a
/// grant of `weight` and those without. Under the locks no other approval can fill a host
/// between this check and the insert.
pub(super) async fn split_by_room(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    hosts: &[String],
    weight: u64,
    limits: &Limits,
    now: i64,
) -> Result<(Vec<String>, Vec<(String, Full)>)> {
    let locked = hosts::lock_existing(tx, hosts).await?;
    let mut loads = std::collections::BTreeMap::new();
    for chunk in locked.chunks(hosts::SEQ_BATCH) {
        // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both databases answer BIGINT.
        let sql = format!(
            "SELECT host, COUNT(*) AS n, CAST(SUM(weight) AS BIGINT) AS w FROM sgrant \
             WHERE host IN ({}) AND revoked_at IS NULL AND not_after > ${} GROUP BY host",
            hosts::placeholders(chunk.len()),
            chunk.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for h in chunk {
            q = q.bind(h.as_str());
        }
        for r in q.bind(now).fetch_all(&mut **tx).await? {
            loads.insert(
                get_str(&r, "host")?,
                HostLoad {
                    grants: r.try_get::<i64, _>("n")?,
                    weight: r.try_get::<i64, _>("w")?,
                },
            );
        }
    }
    let (mut room, mut full) = (Vec::new(), Vec::new());
    for h in locked {
        match fits(loads.get(&h).copied().unwrap_or_default(), weight, limits) {
            Ok(()) => room.push(h),
            Err(why) => full.push((h, why)),
        }
    }
    Ok((room, full))
}

/// Refuses a new request from `person` who holds `limits.open_requests` open already. Inside
/// the filing transaction; on PostgreSQL the person's row is locked first, so two filings at
/// once by one person are counted one after the other.
pub(super) async fn check_open_requests(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    person: &str,
    limits: &Limits,
    now: i64,
) -> Result<()> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT name FROM person WHERE name = $1 FOR UPDATE")
            .bind(person)
            .fetch_optional(&mut **tx)
            .await?;
    }
    let open: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM request WHERE requester = $1 AND \
         ((state = 'pending' AND pending_until > $2) OR (state = 'approved' AND not_after > $2))",
    )
    .bind(person)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("n")?;
    if open >= limits.open_requests {
        return Err(Error::too_many(format!(
            "{person} has {open} open requests (pending, or approved and not ended), the most \
             one person may hold: wait for one to end, or revoke one"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        open_requests: 32,
        grants_per_host: 3,
    };

    #[test]
    fn a_host_has_room_until_its_count_or_its_document_would_be_full() {
        let load = |grants, weight| HostLoad { grants, weight };
        assert_eq!(fits(load(0, 0), 700, &LIMITS), Ok(()));
        assert_eq!(fits(load(2, 1400), 700, &LIMITS), Ok(()));
        assert_eq!(fits(load(3, 2100), 700, &LIMITS), Err(Full::Grants(3)));
        let w = MAX_BODY_WEIGHT as i64;
        assert_eq!(fits(load(1, w - 700), 700, &LIMITS), Ok(()));
        assert_eq!(
            fits(load(1, w - 699), 700, &LIMITS),
            Err(Full::Bytes(w - 699))
        );
        // Nonsense from the database never wraps into room.
        assert_eq!(fits(load(1, -1), 1, &LIMITS), Err(Full::Bytes(-1)));
        assert_eq!(fits(load(0, 0), u64::MAX, &LIMITS), Err(Full::Bytes(0)));
    }

    #[test]
    fn a_full_host_is_named_with_its_reason() {
        assert!(Full::Grants(4096)
            .describe("web1")
            .contains("web1 holds 4096 grants"));
        assert!(Full::Bytes(5)
            .describe("web1")
            .contains("one signed document carries"));
    }
}
