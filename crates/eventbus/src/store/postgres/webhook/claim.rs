//! Claims on PostgreSQL: which endpoints a claim looks at and in which order, the one-statement
//! claim of unordered endpoints, and the transaction that claims an ordered endpoint's head under
//! its endpoint row's lock (see the parent module's "Leases").
//!
//! A claim needs the enabled endpoints (which are ordered, and the rotation). It keeps them as
//! last read, with the endpoints version they were read at ([`KnownEndpoints`]): while none of
//! those with room is ordered, the claim is one statement that also returns the version as it
//! is now, and checks that each endpoint it claims from is still enabled and unordered. When the
//! version moved (an endpoint added, changed or removed, here or by another process), the
//! endpoints are read again and the rest of the claim's room is claimed with them, so a change
//! is seen by the very claim that notices it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::AssertSqlSafe;

use super::*;

/// The enabled endpoints `(id, ordered)` in claim order, as a claim last read them, and the
/// endpoints version of that read.
#[derive(Debug)]
pub(in crate::store::postgres) struct KnownEndpoints {
    version: i64,
    list: Vec<(String, bool)>,
}

/// The enabled endpoints and the endpoints version, from one snapshot (an endpoint change bumps
/// the version in its own transaction).
async fn read_endpoints(db: &Db) -> Result<KnownEndpoints, sqlx::Error> {
    let rows: Vec<(i64, Option<String>, Option<bool>)> = sqlx::query_as(
        "SELECT v.value, e.id, e.ordered FROM webhook_state v \
         LEFT JOIN webhook_endpoints e ON NOT e.disabled \
         WHERE v.name = 'endpoints_version' ORDER BY e.updated_at, e.id",
    )
    .fetch_all(db)
    .await?;
    let version = rows.first().map_or(-1, |r| r.0);
    let list = rows
        .into_iter()
        .filter_map(|(_, id, ordered)| Some((id?, ordered.unwrap_or(false))))
        .collect();
    Ok(KnownEndpoints { version, list })
}

/// Claims due deliveries (see the module docs): one statement while the known endpoints stand
/// and none of those with room is ordered.
pub(super) async fn claim_due(
    db: &Db,
    known: &Mutex<Option<Arc<KnownEndpoints>>>,
    c: &Claim,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let last = known.lock().expect("known endpoints").clone();
    let Some(last) = last else {
        return claim_fresh(db, known, c).await;
    };
    let order = claim_order(&last.list, c);
    if order.iter().any(|(_, ordered)| *ordered) {
        return claim_fresh(db, known, c).await;
    }
    let (mut out, version) = claim_unordered(db, c, &order).await?;
    if version != Some(last.version) {
        // `out` is leased already (its statement committed): a failure of the rest must not
        // hide it from the caller, or its leases would run out unused.
        match claim_fresh(db, known, &rest_of(c, &out)).await {
            Ok(more) => out.extend(more),
            Err(e) if !out.is_empty() => {
                *known.lock().expect("known endpoints") = None;
                tracing::warn!(error = %e, "webhook claim: the rest after an endpoint change failed");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads the endpoints, keeps them for the next claims, and claims with them.
async fn claim_fresh(
    db: &Db,
    known: &Mutex<Option<Arc<KnownEndpoints>>>,
    c: &Claim,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let fresh = Arc::new(read_endpoints(db).await?);
    *known.lock().expect("known endpoints") = Some(fresh.clone());
    if c.limit == 0 {
        return Ok(Vec::new());
    }
    let order = claim_order(&fresh.list, c);
    // Without an ordered endpoint to look at, one statement does; an ordered endpoint's head
    // needs the endpoint row lock of the transaction path.
    if order.iter().all(|(_, ordered)| !ordered) {
        return Ok(claim_unordered(db, c, &order).await?.0);
    }
    let mut tx = db.begin().await?;
    let out = claim(&mut tx, c, &order).await?;
    tx.commit().await?;
    Ok(out)
}

/// What is left of `c` once `got` is claimed: less room in all and per endpoint.
fn rest_of(c: &Claim, got: &[Delivery]) -> Claim {
    let mut rest = c.clone();
    rest.limit = c.limit.saturating_sub(got.len());
    for d in got {
        *rest.held.entry(d.endpoint_id.clone()).or_default() += 1;
    }
    rest
}

/// The endpoints a claim looks at, in its order: rotated by the claim's time so a full claim does
/// not always favour the same ones, without those that have no room.
pub(super) fn claim_order<'e>(
    endpoints: &'e [(String, bool)],
    claim: &Claim,
) -> Vec<&'e (String, bool)> {
    let start = if endpoints.is_empty() {
        0
    } else {
        (claim.now.as_micros() as usize) % endpoints.len()
    };
    endpoints
        .iter()
        .cycle()
        .skip(start)
        .take(endpoints.len())
        .filter(|(id, _)| claim.room(id) > 0)
        .collect()
}

/// Sorts claimed deliveries into the caller's order: endpoints as in `order`, each one's
/// deliveries by due time, then `seq`.
pub(super) fn sort_in_claim_order(deliveries: &mut [Delivery], order: &[&(String, bool)]) {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    deliveries.sort_by_key(|d| {
        (
            rank.get(d.endpoint_id.as_str())
                .copied()
                .unwrap_or(usize::MAX),
            d.next_attempt_at,
            d.event_seq,
        )
    });
}

/// The statement of [`claim_unordered`]: the version and each leased delivery's columns.
static CLAIM_UNORDERED: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = DELIVERY_COLUMNS
        .split(", ")
        .map(|c| format!("(delivery).{c}"))
        .collect();
    format!(
        "SELECT version, {} FROM eventbus_claim_unordered($1, $2, $3, $4, $5)",
        columns.join(", ")
    )
});

/// Claims due deliveries of unordered endpoints only (`order`, from [`claim_order`]) in one
/// statement, which commits by itself (`eventbus_claim_unordered(…)`, migration
/// `0014_webhook_generic_plans`, planned once per session): each endpoint's due rows in claim
/// order, locked with `SKIP LOCKED` (rows another claim holds are passed over, never waited
/// for), the first `claim.limit` of them in endpoint order leased; an endpoint disabled or made
/// ordered since `order` was read is passed over. Also returns the endpoints version as the
/// statement saw it (`None` when the schema has none). The transaction path ([`claim`]) does the
/// same in four statements and also serves ordered endpoints.
///
/// The claim commits without waiting for its WAL flush (`synchronous_commit = off` for its own
/// transaction): a lease a power cut takes back leaves its delivery pending, to be sent again
/// with the same `webhook-id` (at least once), which is what an expired lease does anyway. The
/// next durable commit (a publish, an attempt's record) flushes it.
async fn claim_unordered(
    db: &Db,
    claim: &Claim,
    order: &[&(String, bool)],
) -> Result<(Vec<Delivery>, Option<i64>), sqlx::Error> {
    let ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    let room: Vec<i64> = ids
        .iter()
        .map(|id| claim.room(id).min(claim.limit) as i64)
        .collect();
    let rows = sqlx::query(AssertSqlSafe(CLAIM_UNORDERED.as_str()))
        .bind(&ids)
        .bind(&room)
        .bind(claim.now.as_micros())
        .bind(claim.limit as i64)
        .bind(claim.lease_until.as_micros())
        .fetch_all(db)
        .await?;
    let version = rows.first().map(|r| r.try_get::<i64, _>(0)).transpose()?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        // Only the version's row when nothing was claimed.
        if r.try_get::<Option<i64>, _>(1)?.is_some() {
            out.push(row_to_delivery(r, 1)?);
        }
    }
    sort_in_claim_order(&mut out, order);
    Ok((out, version))
}

/// Claims due deliveries of the endpoints in `rotated` (from [`claim_order`]): see the module
/// docs. Runs inside one transaction; an ordered endpoint's row is locked and its state read
/// again there, so an endpoint list read before the transaction does.
pub(super) async fn claim(
    tx: &mut Tx,
    claim: &Claim,
    rotated: &[&(String, bool)],
) -> Result<Vec<Delivery>, sqlx::Error> {
    let now = claim.now.as_micros();
    let unordered: Vec<&str> = rotated
        .iter()
        .filter(|(_, o)| !o)
        .map(|(id, _)| id.as_str())
        .collect();
    let ordered: Vec<&str> = rotated
        .iter()
        .filter(|(_, o)| *o)
        .map(|(id, _)| id.as_str())
        .collect();

    let mut candidates: Vec<Delivery> = Vec::new();
    if !unordered.is_empty() {
        // Each endpoint's room; the index on (endpoint_id, next_attempt_at, event_seq) of pending
        // deliveries yields them in order, so the scan stops at the limit.
        let room: Vec<i64> = unordered
            .iter()
            .map(|id| claim.room(id).min(claim.limit) as i64)
            .collect();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT d.* FROM UNNEST($1::text[], $3::int8[]) AS u(eid, room) CROSS JOIN LATERAL \
             (SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
              WHERE endpoint_id = u.eid AND status = 'pending' AND next_attempt_at <= $2 \
                AND lease_until <= $2 \
              ORDER BY next_attempt_at, event_seq LIMIT u.room FOR UPDATE SKIP LOCKED) d"
        )))
        .bind(&unordered)
        .bind(now)
        .bind(&room)
        .fetch_all(&mut **tx)
        .await?;
        for r in &rows {
            candidates.push(row_to_delivery(r, 0)?);
        }
    }
    if !ordered.is_empty() {
        // Lock the ordered endpoints nobody else is claiming right now…
        let mine: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM webhook_endpoints WHERE id = ANY($1) AND ordered AND NOT disabled \
             ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(&ordered)
        .fetch_all(&mut **tx)
        .await?;
        if !mine.is_empty() {
            // …then, in a statement whose snapshot follows those locks, read each one's head
            // without skipping anything: it is claimable only when due and nothing of its
            // endpoint is leased.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT d.* FROM UNNEST($1::text[]) AS u(eid) CROSS JOIN LATERAL \
                 (SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                  WHERE endpoint_id = u.eid AND status = 'pending' \
                  ORDER BY event_seq, id LIMIT 1) d \
                 WHERE d.next_attempt_at <= $2 AND NOT EXISTS \
                   (SELECT 1 FROM webhook_deliveries l WHERE l.endpoint_id = u.eid \
                    AND l.status = 'pending' AND l.lease_until > $2)"
            )))
            .bind(&mine)
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
            for r in &rows {
                candidates.push(row_to_delivery(r, 0)?);
            }
        }
    }
    sort_in_claim_order(&mut candidates, rotated);
    candidates.truncate(claim.limit);
    if candidates.is_empty() {
        return Ok(candidates);
    }
    // Lease them. Rows already locked above are ours; an ordered head locked by another
    // transaction (a late recording of an expired lease) is skipped, never waited for.
    let ids: Vec<i64> = candidates.iter().map(|d| d.id as i64).collect();
    let leased: HashSet<i64> = sqlx::query_scalar::<_, i64>(
        "UPDATE webhook_deliveries SET lease_until = $2 \
         WHERE id IN (SELECT id FROM webhook_deliveries WHERE id = ANY($1) \
                      ORDER BY id FOR UPDATE SKIP LOCKED) \
           AND status = 'pending' AND lease_until <= $3 \
         RETURNING id",
    )
    .bind(&ids)
    .bind(claim.lease_until.as_micros())
    .bind(now)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    candidates.retain(|d| leased.contains(&(d.id as i64)));
    Ok(candidates)
}
