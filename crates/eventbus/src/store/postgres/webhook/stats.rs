//! An endpoint's figures on PostgreSQL ([`WebhookStore::endpoint_stats`]): one statement, hence
//! one snapshot, reading only index ranges for the deliveries (see
//! `migrations/postgres/0012_webhook_stats.sql`).

use super::*;

/// The sums over the endpoint's attempts since `$2` and its newest failure among them, both
/// ranges of `webhook_attempts_started`, and its deliveries counted on three indexes (all,
/// pending, failed; the rest succeeded).
const ENDPOINT_STATS: &str = "\
    WITH a AS (SELECT count(*) AS n, count(*) FILTER (WHERE success) AS ok, \
                      coalesce(sum(duration_ms), 0)::bigint AS total, max(duration_ms) AS longest, \
                      max(started_at) AS newest \
               FROM webhook_attempts WHERE endpoint_id = $1 AND started_at >= $2), \
         f AS (SELECT started_at, status_code, error, delivery_id FROM webhook_attempts \
               WHERE endpoint_id = $1 AND started_at >= $2 AND NOT success \
               ORDER BY started_at DESC, id DESC LIMIT 1) \
    SELECT a.n, a.ok, a.total, a.longest, a.newest, \
           f.started_at, f.status_code, f.error, f.delivery_id, \
           (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'), \
           (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'failed') \
    FROM a LEFT JOIN f ON true";

/// Reads the figures of `endpoint_id` since `since`.
pub(super) async fn endpoint_stats(
    db: &Db,
    endpoint_id: &str,
    since: Timestamp,
) -> Result<EndpointStats, sqlx::Error> {
    let r = sqlx::query(ENDPOINT_STATS)
        .bind(endpoint_id)
        .bind(since.as_micros())
        .fetch_one(db)
        .await?;
    let count = |i: usize| r.try_get::<i64, _>(i).map(|n| n as u64);
    let totals = AttemptTotals {
        attempts: count(0)?,
        succeeded: count(1)?,
        duration_ms: count(2)?,
        max_duration_ms: r.try_get::<Option<i64>, _>(3)?.map(|d| d as u64),
        last_attempt_at: r.try_get::<Option<i64>, _>(4)?.map(Timestamp::from_micros),
    };
    let last_failure = match r.try_get::<Option<i64>, _>(5)? {
        Some(at) => Some(LastFailure {
            at: Timestamp::from_micros(at),
            status_code: r.try_get::<Option<i32>, _>(6)?.map(|c| c as u16),
            error: r.try_get(7)?,
            delivery_id: count(8)?,
        }),
        None => None,
    };
    let deliveries = DeliveryCounts {
        pending: count(9)?,
        failed: count(10)?,
    };
    Ok(EndpointStats::new(since, totals, last_failure, deliveries))
}
