//! [`WebhookStore`] on SQLite (schema: `migrations/sqlite/0002_webhooks.sql`).
//!
//! Every write runs on the store's single writer thread ([`SqliteStore::write`]), in order with
//! event appends, each in one transaction: so the fan-out step's rows and cursor commit
//! together, an endpoint's `since_seq` is exactly the head when it commits, and a claim's
//! lease cannot race another claim. One process owns the file, so a lease is a column and
//! [`WebhookStore::recover`] releases every lease left by a previous process.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::{SqliteStore, read_head};
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::webhook::{
    Attempt, AttemptQuery, AttemptRecord, AttemptTotals, Claim, Delivery, DeliveryCounts,
    DeliveryQuery, DeliveryStatus, Endpoint, EndpointPatch, EndpointStats, FanOut, FanOutResult,
    HealthPolicy, LastFailure, NewDelivery, Page, WebhookFormat, WebhookStore,
};

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, project_id, tenant_id, headers, \
     rate_limit, ordered, disabled, disabled_reason, secret, previous_secret, \
     previous_secret_expires_at, since_seq, created_at, updated_at, failing_since, failure_count, \
     format";

const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_seq, event_id, event_type, status, attempts, \
     cycle_attempts, next_attempt_at, created_at, updated_at, last_status_code, last_error";

fn conversion(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn row_to_endpoint(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let types: String = r.get(3)?;
    let types: Vec<String> = serde_json::from_str(&types).map_err(|e| conversion(3, e))?;
    let event_types = types
        .iter()
        .map(|t| Pattern::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| conversion(3, e))?;
    let headers: String = r.get(6)?;
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&headers).map_err(|e| conversion(6, e))?;
    Ok(Endpoint {
        id: r.get(0)?,
        url: r.get(1)?,
        description: r.get(2)?,
        event_types,
        project_id: r.get(4)?,
        tenant_id: r.get(5)?,
        headers,
        rate_limit: r.get(7)?,
        ordered: r.get(8)?,
        disabled: r.get(9)?,
        disabled_reason: r.get(10)?,
        secret: r.get(11)?,
        previous_secret: r.get(12)?,
        previous_secret_expires_at: r.get::<_, Option<i64>>(13)?.map(Timestamp::from_micros),
        since_seq: r.get::<_, i64>(14)? as u64,
        created_at: Timestamp::from_micros(r.get(15)?),
        updated_at: Timestamp::from_micros(r.get(16)?),
        failing_since: r.get::<_, Option<i64>>(17)?.map(Timestamp::from_micros),
        failure_count: r.get(18)?,
        format: {
            let name: String = r.get(19)?;
            WebhookFormat::parse(&name).ok_or_else(|| {
                conversion(
                    19,
                    std::io::Error::other(format!("unknown webhook format `{name}`")),
                )
            })?
        },
    })
}

fn row_to_delivery(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = r.get(5)?;
    let status = DeliveryStatus::parse(&status)
        .ok_or_else(|| conversion(5, std::io::Error::other(format!("unknown status {status}"))))?;
    Ok(Delivery {
        id: r.get::<_, i64>(0)? as u64,
        endpoint_id: r.get(1)?,
        event_seq: r.get::<_, i64>(2)? as u64,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        status,
        attempts: r.get(6)?,
        cycle_attempts: r.get(7)?,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| Timestamp::from_micros(r.get(8).unwrap_or(0))),
        created_at: Timestamp::from_micros(r.get(9)?),
        updated_at: Timestamp::from_micros(r.get(10)?),
        last_status_code: r.get(11)?,
        last_error: r.get(12)?,
    })
}

fn row_to_attempt(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: r.get::<_, i64>(0)? as u64,
        delivery_id: r.get::<_, i64>(1)? as u64,
        endpoint_id: r.get(2)?,
        event_id: r.get(3)?,
        attempt: r.get(4)?,
        started_at: Timestamp::from_micros(r.get(5)?),
        duration_ms: r.get::<_, i64>(6)? as u64,
        status_code: r.get(7)?,
        response_body: r.get(8)?,
        error: r.get(9)?,
        success: r.get(10)?,
    })
}

fn select_endpoint(c: &Connection, id: &str) -> rusqlite::Result<Option<Endpoint>> {
    c.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1"
    ))?
    .query_row([id], row_to_endpoint)
    .optional()
}

fn select_delivery(c: &Connection, id: u64) -> rusqlite::Result<Option<Delivery>> {
    c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"
    ))?
    .query_row([id as i64], row_to_delivery)
    .optional()
}

fn state(c: &Connection, name: &str) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT value FROM webhook_state WHERE name = ?1")?
        .query_row([name], |r| r.get::<_, i64>(0))
        .map(|v| v as u64)
}

fn bump_version(c: &Connection) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE webhook_state SET value = value + 1 WHERE name = 'endpoints_version'",
    )?
    .execute([])?;
    Ok(())
}

fn write_endpoint(c: &Connection, ep: &Endpoint, insert: bool) -> rusqlite::Result<()> {
    let types: Vec<&str> = ep.event_types.iter().map(Pattern::as_str).collect();
    let types = serde_json::to_string(&types).expect("strings serialise");
    let headers = serde_json::to_string(&ep.headers).expect("a string map serialises");
    let sql = if insert {
        format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        )
    } else {
        "UPDATE webhook_endpoints SET url = ?2, description = ?3, event_types = ?4, project_id = ?5, \
         tenant_id = ?6, headers = ?7, rate_limit = ?8, ordered = ?9, disabled = ?10, \
         disabled_reason = ?11, secret = ?12, previous_secret = ?13, previous_secret_expires_at = ?14, \
         since_seq = ?15, created_at = ?16, updated_at = ?17, failing_since = ?18, failure_count = ?19, \
         format = ?20 \
         WHERE id = ?1"
            .to_owned()
    };
    c.prepare_cached(&sql)?.execute(params![
        ep.id,
        ep.url,
        ep.description,
        types,
        ep.project_id,
        ep.tenant_id,
        headers,
        ep.rate_limit,
        ep.ordered,
        ep.disabled,
        ep.disabled_reason,
        ep.secret,
        ep.previous_secret,
        ep.previous_secret_expires_at.map(Timestamp::as_micros),
        ep.since_seq as i64,
        ep.created_at.as_micros(),
        ep.updated_at.as_micros(),
        ep.failing_since.map(Timestamp::as_micros),
        ep.failure_count,
        ep.format.as_str(),
    ])?;
    Ok(())
}

fn insert_deliveries(
    tx: &Transaction<'_>,
    deliveries: &[NewDelivery],
    now: Timestamp,
) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (endpoint_id, event_seq, event_id, event_type, status, \
         next_attempt_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?;
    for d in deliveries {
        stmt.execute(params![
            d.endpoint_id,
            d.event_seq as i64,
            d.event_id,
            d.event_type,
            now.as_micros()
        ])?;
    }
    Ok(deliveries.len() as u64)
}

/// Claims due deliveries of one endpoint into `out`.
fn claim_endpoint(
    tx: &Transaction<'_>,
    endpoint_id: &str,
    ordered: bool,
    claim: &Claim,
    room: usize,
    out: &mut Vec<Delivery>,
) -> rusqlite::Result<()> {
    let now = claim.now.as_micros();
    let candidates: Vec<Delivery> = if ordered {
        // Only the head of the queue, and only when it is due and not in flight.
        let head = tx
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS}, lease_until FROM webhook_deliveries \
                 WHERE endpoint_id = ?1 AND status = 'pending' ORDER BY event_seq, id LIMIT 1"
            ))?
            .query_row([endpoint_id], |r| {
                Ok((row_to_delivery(r)?, r.get::<_, i64>(13)?))
            })
            .optional()?;
        match head {
            Some((d, lease))
                if lease <= now && d.next_attempt_at.is_some_and(|t| t.as_micros() <= now) =>
            {
                vec![d]
            }
            _ => Vec::new(),
        }
    } else {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE endpoint_id = ?1 AND status = 'pending' AND next_attempt_at <= ?2 AND lease_until <= ?2 \
             ORDER BY next_attempt_at, event_seq LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![endpoint_id, now, room as i64], row_to_delivery)?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut lease =
        tx.prepare_cached("UPDATE webhook_deliveries SET lease_until = ?2 WHERE id = ?1")?;
    for d in candidates {
        lease.execute(params![d.id as i64, claim.lease_until.as_micros()])?;
        out.push(d);
    }
    Ok(())
}

fn complete_one(
    tx: &Transaction<'_>,
    r: &AttemptRecord,
    health: HealthPolicy,
    disabled: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let Some(d) = select_delivery(tx, r.delivery_id)? else {
        return Ok(()); // deleted with its endpoint meanwhile
    };
    if d.endpoint_id != r.endpoint_id || d.event_id != r.event_id {
        return Ok(()); // the id names another delivery (see the store contract)
    }
    let attempt = d.attempts + 1;
    let now = r.started_at.as_micros() + (r.duration_ms as i64) * 1000;
    tx.prepare_cached(
        "INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, attempt, started_at, \
         duration_ms, status_code, response_body, error, success) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.delivery_id as i64,
        r.endpoint_id,
        r.event_id,
        attempt,
        r.started_at.as_micros(),
        r.duration_ms as i64,
        r.status_code,
        r.response_body,
        r.error,
        r.success,
    ])?;
    let (status, next) = match (r.success, r.retry_at) {
        (true, _) => (DeliveryStatus::Succeeded, now),
        (false, Some(at)) => (DeliveryStatus::Pending, at.as_micros()),
        (false, None) => (DeliveryStatus::Failed, now),
    };
    tx.prepare_cached(
        "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1, \
         cycle_attempts = cycle_attempts + 1, next_attempt_at = ?3, lease_until = 0, updated_at = ?4, \
         last_status_code = ?5, last_error = ?6 WHERE id = ?1",
    )?
    .execute(params![r.delivery_id as i64, status.as_str(), next, now, r.status_code, r.error])?;
    if r.success {
        tx.prepare_cached(
            "UPDATE webhook_endpoints SET failing_since = NULL, failure_count = 0 \
             WHERE id = ?1 AND failure_count > 0 AND disabled = 0",
        )?
        .execute([&r.endpoint_id])?;
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, ?2), \
         failure_count = failure_count + 1 WHERE id = ?1 AND disabled = 0",
    )?
    .execute(params![r.endpoint_id, r.started_at.as_micros()])?;
    let changed = tx
        .prepare_cached(
            "UPDATE webhook_endpoints SET disabled = 1, disabled_reason = 'failing', updated_at = ?2 \
             WHERE id = ?1 AND disabled = 0 AND failure_count >= ?3 AND failing_since <= ?4",
        )?
        .execute(params![r.endpoint_id, now, health.failures, now - health.window_micros])?;
    if changed > 0 {
        disabled.push(r.endpoint_id.clone());
    }
    Ok(())
}

/// An endpoint's figures in one statement (one snapshot): the sums over its attempts since `?2`
/// and its newest failure among them, both ranges of `webhook_attempts_started`, and its
/// deliveries counted on three indexes (all, pending, failed; the rest succeeded), none of which
/// reads a delivery row.
const ENDPOINT_STATS: &str = "\
    WITH a AS (SELECT count(*) AS n, coalesce(sum(success), 0) AS ok, \
                      coalesce(sum(duration_ms), 0) AS total, max(duration_ms) AS longest, \
                      max(started_at) AS newest \
               FROM webhook_attempts WHERE endpoint_id = ?1 AND started_at >= ?2), \
         f AS (SELECT started_at, status_code, error, delivery_id FROM webhook_attempts \
               WHERE endpoint_id = ?1 AND started_at >= ?2 AND success = 0 \
               ORDER BY started_at DESC, id DESC LIMIT 1) \
    SELECT a.n, a.ok, a.total, a.longest, a.newest, \
           f.started_at, f.status_code, f.error, f.delivery_id, \
           (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?1 AND status = 'pending'), \
           (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?1 AND status = 'failed') \
    FROM a LEFT JOIN f ON 1";

fn row_to_stats(since: Timestamp, r: &Row<'_>) -> rusqlite::Result<EndpointStats> {
    let count = |i: usize| r.get::<_, i64>(i).map(|n| n as u64);
    let totals = AttemptTotals {
        attempts: count(0)?,
        succeeded: count(1)?,
        duration_ms: count(2)?,
        max_duration_ms: r.get::<_, Option<i64>>(3)?.map(|d| d as u64),
        last_attempt_at: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_micros),
    };
    let last_failure = match r.get::<_, Option<i64>>(5)? {
        Some(at) => Some(LastFailure {
            at: Timestamp::from_micros(at),
            status_code: r.get(6)?,
            error: r.get(7)?,
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

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_endpoint(&self, mut endpoint: Endpoint) -> Result<Endpoint, StoreError> {
        self.write(move |c| {
            let tx = c.transaction()?;
            endpoint.since_seq = read_head(&tx)?;
            write_endpoint(&tx, &endpoint, true)?;
            bump_version(&tx)?;
            tx.commit()?;
            Ok(endpoint)
        })
        .await
    }

    async fn get_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| select_endpoint(c, &id)).await
    }

    async fn list_endpoints(&self) -> Result<(Vec<Endpoint>, u64), StoreError> {
        self.read(|c| {
            let tx = c.transaction()?;
            let version = state(&tx, "endpoints_version")?;
            let endpoints = tx
                .prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
                ))?
                .query_map([], row_to_endpoint)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((endpoints, version))
        })
        .await
    }

    async fn update_endpoint(
        &self,
        id: &str,
        patch: EndpointPatch,
        now: Timestamp,
    ) -> Result<Option<Endpoint>, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            let Some(mut ep) = select_endpoint(&tx, &id)? else {
                return Ok(None);
            };
            let head = read_head(&tx)?;
            patch.apply(&mut ep, now, head);
            write_endpoint(&tx, &ep, false)?;
            bump_version(&tx)?;
            tx.commit()?;
            Ok(Some(ep))
        })
        .await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM webhook_endpoints WHERE id = ?1", [&id])?;
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE endpoint_id = ?1",
                [&id],
            )?;
            tx.execute("DELETE FROM webhook_attempts WHERE endpoint_id = ?1", [&id])?;
            bump_version(&tx)?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn fanout_cursor(&self) -> Result<u64, StoreError> {
        self.read(|c| state(c, "fanout_cursor")).await
    }

    async fn fan_out(&self, step: FanOut) -> Result<FanOutResult, StoreError> {
        self.write(move |c| {
            let tx = c.transaction()?;
            let cursor = state(&tx, "fanout_cursor")?;
            let version = state(&tx, "endpoints_version")?;
            if cursor != step.from || version != step.endpoints_version {
                return Ok(FanOutResult::Stale {
                    cursor,
                    endpoints_version: version,
                });
            }
            insert_deliveries(&tx, &step.deliveries, step.now)?;
            tx.execute(
                "UPDATE webhook_state SET value = ?1 WHERE name = 'fanout_cursor'",
                [step.to as i64],
            )?;
            tx.commit()?;
            Ok(FanOutResult::Applied)
        })
        .await
    }

    async fn enqueue(
        &self,
        deliveries: Vec<NewDelivery>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(move |c| {
            let tx = c.transaction()?;
            let n = insert_deliveries(&tx, &deliveries, now)?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn recover(&self) -> Result<u64, StoreError> {
        self.write(|c| {
            c.execute("UPDATE webhook_deliveries SET lease_until = 0 WHERE status = 'pending' AND lease_until > 0", [])
                .map(|n| n as u64)
        })
        .await
    }

    async fn renew_leases(
        &self,
        held: &[(u64, Timestamp)],
        until: Timestamp,
    ) -> Result<Vec<u64>, StoreError> {
        let held = held.to_vec();
        self.write(move |c| {
            let tx = c.transaction()?;
            let mut moved = Vec::new();
            {
                let mut renew = tx.prepare_cached(
                    "UPDATE webhook_deliveries SET lease_until = ?3 \
                     WHERE id = ?1 AND lease_until = ?2 AND status = 'pending'",
                )?;
                for (id, end) in &held {
                    if renew.execute(params![*id as i64, end.as_micros(), until.as_micros()])? == 1
                    {
                        moved.push(*id);
                    }
                }
            }
            tx.commit()?;
            Ok(moved)
        })
        .await
    }

    async fn claim_due(&self, claim: Claim) -> Result<Vec<Delivery>, StoreError> {
        // Most claims of an idle worker find nothing: ask a read connection first, so they
        // never queue behind (or show up in the depth of) the single writer. The check is a
        // superset of what the claim takes (an ordered endpoint's head is one of its due rows).
        let now = claim.now.as_micros();
        let any_due = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.disabled = 0 AND EXISTS \
                     (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id \
                      AND d.status = 'pending' AND d.next_attempt_at <= ?1 AND d.lease_until <= ?1))",
                )?
                .query_row([now], |r| r.get::<_, bool>(0))
            })
            .await?;
        if !any_due {
            return Ok(Vec::new());
        }
        self.write(move |c| {
            let tx = c.transaction()?;
            let endpoints: Vec<(String, bool)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, ordered FROM webhook_endpoints WHERE disabled = 0 ORDER BY updated_at, id",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::new();
            // Rotate the starting endpoint so a full claim does not always favour the same ones.
            let start = if endpoints.is_empty() { 0 } else { (claim.now.as_micros() as usize) % endpoints.len() };
            for (id, ordered) in endpoints.iter().cycle().skip(start).take(endpoints.len()) {
                if out.len() >= claim.limit {
                    break;
                }
                let room = claim.room(id).min(claim.limit - out.len());
                if room == 0 {
                    continue;
                }
                claim_endpoint(&tx, id, *ordered, &claim, room, &mut out)?;
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn complete(
        &self,
        records: Vec<AttemptRecord>,
        health: HealthPolicy,
    ) -> Result<Vec<Endpoint>, StoreError> {
        self.write(move |c| {
            let tx = c.transaction()?;
            let mut disabled = Vec::new();
            for r in &records {
                complete_one(&tx, r, health, &mut disabled)?;
            }
            if !disabled.is_empty() {
                bump_version(&tx)?;
            }
            let mut out = Vec::new();
            for id in disabled {
                out.extend(select_endpoint(&tx, &id)?);
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn retry_delivery(
        &self,
        id: u64,
        now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        self.write(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE webhook_deliveries SET status = 'pending', cycle_attempts = 0, next_attempt_at = ?2, \
                 updated_at = ?2 WHERE id = ?1",
                params![id as i64, now.as_micros()],
            )?;
            let d = if n > 0 { select_delivery(&tx, id)? } else { None };
            tx.commit()?;
            Ok(d)
        })
        .await
    }

    async fn get_delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        self.read(move |c| select_delivery(c, id)).await
    }

    async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Page<Delivery>, StoreError> {
        self.read(move |c| {
            let mut sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = ? AND id > ?"
            );
            let mut args: Vec<rusqlite::types::Value> =
                vec![q.endpoint_id.clone().into(), (q.after as i64).into()];
            if let Some(s) = q.status {
                sql.push_str(" AND status = ?");
                args.push(s.as_str().to_owned().into());
            }
            if let Some(e) = &q.event_id {
                sql.push_str(" AND event_id = ?");
                args.push(e.clone().into());
            }
            sql.push_str(" ORDER BY id LIMIT ?");
            args.push(((q.limit + 1) as i64).into());
            let mut items = c
                .prepare_cached(&sql)?
                .query_map(params_from_iter(args), row_to_delivery)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_after = (items.len() > q.limit).then(|| {
                items.truncate(q.limit);
                items.last().map_or(q.after, |d| d.id)
            });
            Ok(Page { items, next_after })
        })
        .await
    }

    async fn list_attempts(&self, q: AttemptQuery) -> Result<Page<Attempt>, StoreError> {
        self.read(move |c| {
            let mut sql =
                "SELECT id, delivery_id, endpoint_id, event_id, attempt, started_at, duration_ms, \
                           status_code, response_body, error, success FROM webhook_attempts \
                           WHERE endpoint_id = ? AND id > ?"
                    .to_owned();
            let mut args: Vec<rusqlite::types::Value> =
                vec![q.endpoint_id.clone().into(), (q.after as i64).into()];
            if let Some(d) = q.delivery_id {
                sql.push_str(" AND delivery_id = ?");
                args.push((d as i64).into());
            }
            if let Some(s) = q.success {
                sql.push_str(" AND success = ?");
                args.push(i64::from(s).into());
            }
            sql.push_str(" ORDER BY id LIMIT ?");
            args.push(((q.limit + 1) as i64).into());
            let mut items = c
                .prepare_cached(&sql)?
                .query_map(params_from_iter(args), row_to_attempt)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_after = (items.len() > q.limit).then(|| {
                items.truncate(q.limit);
                items.last().map_or(q.after, |d| d.id)
            });
            Ok(Page { items, next_after })
        })
        .await
    }

    async fn endpoint_stats(
        &self,
        endpoint_id: &str,
        since: Timestamp,
    ) -> Result<EndpointStats, StoreError> {
        let endpoint_id = endpoint_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(ENDPOINT_STATS)?
                .query_row(params![endpoint_id, since.as_micros()], |r| {
                    row_to_stats(since, r)
                })
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
        .await
    }

    async fn oldest_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|t| t.map(Timestamp::from_micros))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventStore;
    use crate::store::sqlite::testing::store;
    use crate::store::webhook::contract;

    #[tokio::test]
    async fn the_request_format_is_kept() {
        let (_dir, s) = store();
        contract::the_request_format_is_kept(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn fan_out_applies_once_and_refuses_stale_steps() {
        let (_dir, s) = store();
        contract::fan_out_applies_once_and_refuses_stale_steps(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn claims_take_the_oldest_due_within_each_endpoints_room() {
        let (_dir, s) = store();
        contract::claims_take_the_oldest_due_within_each_endpoints_room(&s).await;
    }

    #[tokio::test]
    async fn claims_see_endpoint_changes_at_once() {
        let (_dir, s) = store();
        contract::claims_see_endpoint_changes_at_once(&s, &s).await;
    }

    #[tokio::test]
    async fn leases_move_only_while_still_the_callers() {
        let (_dir, s) = store();
        contract::leases_move_only_while_still_the_callers(&s).await;
    }

    #[tokio::test]
    async fn claims_are_leased_and_ordered_endpoints_yield_their_head_only() {
        let (_dir, s) = store();
        contract::claims_are_leased_and_ordered_endpoints_yield_their_head_only(&s).await;
        // One process owns the file: every lease left by a previous one is released at start.
        assert_eq!(s.recover().await.unwrap(), 4);
        let due = Claim {
            now: Timestamp::from_micros(5_002),
            lease_until: Timestamp::from_micros(6_002),
            limit: 100,
            per_endpoint: 10,
            held: Default::default(),
        };
        assert_eq!(s.claim_due(due).await.unwrap().len(), 4);
        s.close().await;
    }

    #[tokio::test]
    async fn the_last_failure_dead_letters_and_failing_endpoints_are_disabled() {
        let (_dir, s) = store();
        contract::the_last_failure_dead_letters_and_failing_endpoints_are_disabled(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn a_record_applies_only_to_its_own_endpoint_and_event() {
        let (_dir, s) = store();
        contract::a_record_applies_only_to_its_own_endpoint_and_event(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn endpoint_stats_count_the_window_and_the_unfinished_deliveries() {
        let (_dir, s) = store();
        contract::endpoint_stats_count_the_window_and_the_unfinished_deliveries(&s).await;
        s.close().await;
    }
}
