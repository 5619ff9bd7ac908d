//! Claims on PostgreSQL: which endpoints a claim looks at and in which order, the one-statement
//! claim of unordered endpoints, and the transaction that claims an ordered endpoint's head under
//! its endpoint row's lock (see the parent module's "Leases").

use std::collections::{HashMap, HashSet};

use sqlx::AssertSqlSafe;

use super::*;

/// The enabled endpoints: `(id, ordered)`.
pub(super) const ENABLED_ENDPOINTS: &str =
    "SELECT id, ordered FROM webhook_endpoints WHERE NOT disabled ORDER BY updated_at, id";

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

/// Claims due deliveries of unordered endpoints only (`order`, from [`claim_order`]) in one
/// statement, which commits by itself: each endpoint's due rows in claim order, locked with
/// `SKIP LOCKED` (rows another claim holds are passed over, never waited for), the first
/// `claim.limit` of them in endpoint order leased. The transaction path ([`claim`]) does the
/// same in four statements and also serves ordered endpoints.
///
/// The claim commits without waiting for its WAL flush (`synchronous_commit = off` for its own
/// transaction): a lease a power cut takes back leaves its delivery pending, to be sent again
/// with the same `webhook-id` (at least once), which is what an expired lease does anyway. The
/// next durable commit (a publish, an attempt's record) flushes it.
pub(super) async fn claim_unordered(
    db: &Db,
    claim: &Claim,
    order: &[&(String, bool)],
) -> Result<Vec<Delivery>, sqlx::Error> {
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    let room: Vec<i64> = ids
        .iter()
        .map(|id| claim.room(id).min(claim.limit) as i64)
        .collect();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "WITH c AS (SELECT d.id AS claimed FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY \
                      AS u(eid, room, ord) CROSS JOIN LATERAL \
                    (SELECT id, next_attempt_at, event_seq FROM webhook_deliveries \
                     WHERE endpoint_id = u.eid AND status = 'pending' AND next_attempt_at <= $3 \
                       AND lease_until <= $3 \
                     ORDER BY next_attempt_at, event_seq LIMIT u.room FOR UPDATE SKIP LOCKED) d \
                    ORDER BY u.ord, d.next_attempt_at, d.event_seq LIMIT $4), \
              lazy AS (SELECT set_config('synchronous_commit', 'off', true)) \
         UPDATE webhook_deliveries SET lease_until = $5 FROM c, lazy WHERE id = c.claimed \
         RETURNING {DELIVERY_COLUMNS}"
    )))
    .bind(&ids)
    .bind(&room)
    .bind(claim.now.as_micros())
    .bind(claim.limit as i64)
    .bind(claim.lease_until.as_micros())
    .fetch_all(db)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| row_to_delivery(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    sort_in_claim_order(&mut out, order);
    Ok(out)
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
