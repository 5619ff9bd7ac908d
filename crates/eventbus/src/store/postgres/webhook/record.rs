//! Recording attempts on PostgreSQL: each attempt and its delivery's next state in one `UNNEST`
//! statement per round, and the failure streaks that disable failing endpoints.

use std::collections::{BTreeMap, HashSet};

use super::*;

/// The failure streak of one endpoint after a batch of its attempts, in the batch's order.
#[derive(Default)]
struct Streak {
    /// A success in the batch ended the stored streak.
    reset: bool,
    /// Failures after the last success (or all of them).
    failures: i64,
    /// Start of the first of those failures.
    first_failure: Option<i64>,
    /// When the last failure ended.
    last_failure_end: i64,
}

impl Streak {
    fn add(&mut self, r: &AttemptRecord) {
        if r.success {
            *self = Streak {
                reset: true,
                ..Streak::default()
            };
        } else {
            self.failures += 1;
            self.first_failure.get_or_insert(r.started_at.as_micros());
            self.last_failure_end = end_of(r);
        }
    }
}

fn end_of(r: &AttemptRecord) -> i64 {
    r.started_at.as_micros() + (r.duration_ms as i64) * 1000
}

/// Logs one round of records (distinct delivery ids) and moves their deliveries on; returns the
/// ids of the deliveries that still existed. A delivery is matched by its id *and* its endpoint
/// and event: a fan-out step commits without waiting for its flush, so when PostgreSQL loses the
/// end of its WAL (a crash of its host, a failover) while this process runs on, the step is
/// redone and its delivery ids may be handed out again, to other (endpoint, event) pairs. A
/// record of the lost delivery then matches nothing, and its event's new delivery is sent again
/// (at least once) instead of being marked with another delivery's outcome.
async fn record_round(tx: &mut Tx, round: &[&AttemptRecord]) -> Result<HashSet<i64>, sqlx::Error> {
    let mut ids: Vec<i64> = round.iter().map(|r| r.delivery_id as i64).collect();
    // Deliveries are locked in id order, as everywhere.
    ids.sort_unstable();
    sqlx::query("SELECT id FROM webhook_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    let n = round.len();
    let mut id = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut next = Vec::with_capacity(n);
    let mut now = Vec::with_capacity(n);
    let mut code = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut endpoint = Vec::with_capacity(n);
    let mut event = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut duration = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    let mut success = Vec::with_capacity(n);
    for r in round {
        let end = end_of(r);
        let (s, at) = match (r.success, r.retry_at) {
            (true, _) => (DeliveryStatus::Succeeded, end),
            (false, Some(at)) => (DeliveryStatus::Pending, at.as_micros()),
            (false, None) => (DeliveryStatus::Failed, end),
        };
        id.push(r.delivery_id as i64);
        status.push(s.as_str());
        next.push(at);
        now.push(end);
        code.push(r.status_code.map(i32::from));
        error.push(r.error.as_deref());
        endpoint.push(r.endpoint_id.as_str());
        event.push(r.event_id.as_str());
        started.push(r.started_at.as_micros());
        duration.push(r.duration_ms as i64);
        body.push(r.response_body.as_deref());
        success.push(r.success);
    }
    let existing: Vec<i64> = sqlx::query_scalar(
        "WITH r AS (SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::int8[], \
                                        $5::int4[], $6::text[], $7::text[], $8::text[]) \
                    AS r(id, status, next, now, code, error, endpoint, event)), \
              u AS (UPDATE webhook_deliveries d SET status = r.status, attempts = d.attempts + 1, \
                    cycle_attempts = d.cycle_attempts + 1, next_attempt_at = r.next, \
                    lease_until = 0, updated_at = r.now, last_status_code = r.code, \
                    last_error = r.error \
                    FROM r WHERE d.id = r.id AND d.endpoint_id = r.endpoint \
                      AND d.event_id = r.event RETURNING d.id, d.attempts) \
         INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, attempt, started_at, \
                                       duration_ms, status_code, response_body, error, success) \
         SELECT a.id, a.endpoint, a.event, u.attempts, a.started, a.duration, a.code, a.body, \
                a.error, a.success \
         FROM UNNEST($1::int8[], $7::text[], $8::text[], $9::int8[], $10::int8[], $5::int4[], \
                     $11::text[], $6::text[], $12::bool[]) \
              AS a(id, endpoint, event, started, duration, code, body, error, success) \
         JOIN u ON u.id = a.id \
         RETURNING delivery_id",
    )
    .bind(&id)
    .bind(&status)
    .bind(&next)
    .bind(&now)
    .bind(&code)
    .bind(&error)
    .bind(&endpoint)
    .bind(&event)
    .bind(&started)
    .bind(&duration)
    .bind(&body)
    .bind(&success)
    .fetch_all(&mut **tx)
    .await?;
    Ok(existing.into_iter().collect())
}

/// Applies one endpoint's streak; returns whether it disabled the endpoint.
async fn apply_streak(
    tx: &mut Tx,
    endpoint_id: &str,
    streak: &Streak,
    health: HealthPolicy,
) -> Result<bool, sqlx::Error> {
    if streak.failures == 0 {
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = NULL, failure_count = 0 \
             WHERE id = $1 AND failure_count > 0 AND NOT disabled",
        )
        .bind(endpoint_id)
        .execute(&mut **tx)
        .await?;
        return Ok(false);
    }
    let sql = if streak.reset {
        "UPDATE webhook_endpoints SET failing_since = $2, failure_count = $3 \
         WHERE id = $1 AND NOT disabled"
    } else {
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2), \
         failure_count = failure_count + $3 WHERE id = $1 AND NOT disabled"
    };
    sqlx::query(sql)
        .bind(endpoint_id)
        .bind(streak.first_failure)
        .bind(streak.failures)
        .execute(&mut **tx)
        .await?;
    let now = streak.last_failure_end;
    let disabled = sqlx::query(
        "UPDATE webhook_endpoints SET disabled = true, disabled_reason = 'failing', updated_at = $2 \
         WHERE id = $1 AND NOT disabled AND failure_count >= $3 AND failing_since <= $4",
    )
    .bind(endpoint_id)
    .bind(now)
    .bind(i64::from(health.failures))
    .bind(now - health.window_micros)
    .execute(&mut **tx)
    .await?;
    Ok(disabled.rows_affected() > 0)
}

pub(super) async fn complete(
    tx: &mut Tx,
    records: &[AttemptRecord],
    health: HealthPolicy,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    let failures = records.iter().any(|r| !r.success);
    if failures {
        // A failure may disable an endpoint, which bumps the version: take its lock first.
        sqlx::query("SELECT value FROM webhook_state WHERE name = 'endpoints_version' FOR UPDATE")
            .execute(&mut **tx)
            .await?;
    }
    // Rounds of distinct deliveries (a delivery recorded twice goes in two rounds, in order).
    let mut rounds: Vec<Vec<&AttemptRecord>> = Vec::new();
    for r in records {
        match rounds
            .iter_mut()
            .find(|round| round.iter().all(|o| o.delivery_id != r.delivery_id))
        {
            Some(round) => round.push(r),
            None => rounds.push(vec![r]),
        }
    }
    let mut existing = HashSet::new();
    for round in &rounds {
        existing.extend(record_round(tx, round).await?);
    }
    // Failure streaks, endpoint by endpoint in id order (the lock order).
    let mut streaks: BTreeMap<&str, Streak> = BTreeMap::new();
    for r in records {
        if existing.contains(&(r.delivery_id as i64)) {
            streaks.entry(r.endpoint_id.as_str()).or_default().add(r);
        }
    }
    let mut disabled = Vec::new();
    for (endpoint_id, streak) in &streaks {
        if apply_streak(tx, endpoint_id, streak, health).await? {
            disabled.push(*endpoint_id);
        }
    }
    let mut out = Vec::new();
    if !disabled.is_empty() {
        bump_version(tx).await?;
        for id in disabled {
            out.extend(select_endpoint(tx, id, false).await?);
        }
    }
    Ok(out)
}
