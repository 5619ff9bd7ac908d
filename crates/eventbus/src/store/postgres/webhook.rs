//! [`WebhookStore`] on PostgreSQL (schema: `migrations/postgres/0003_webhooks.sql`), shared by
//! every bus process on the schema.
//!
//! - **Leases.** [`WebhookStore::claim_due`] locks candidate rows with `FOR UPDATE SKIP LOCKED`
//!   and sets `lease_until` before it commits, so two processes never claim the same delivery
//!   while its lease runs; a process that dies leaves leases that simply expire, hence
//!   [`WebhookStore::recover`] releases nothing. An **ordered** endpoint is claimed through its
//!   endpoint row (`FOR UPDATE SKIP LOCKED`): under that lock a fresh statement reads the
//!   endpoint's head delivery *without* skipping anything and leases it only when it is due and
//!   nothing of the endpoint is leased. (Skipping locked deliveries there would pass over a
//!   head another process is working on and send the next event first.)
//! - **Fan-out.** [`WebhookStore::fan_out`] locks the `endpoints_version` and `fanout_cursor`
//!   rows (`FOR UPDATE`), compares them with the step, inserts the deliveries and moves the
//!   cursor in one transaction: one statement, `eventbus_fan_out(…)` (migration 0013). Two
//!   processes fanning out the same range take turns on those rows: the second one waits for
//!   the first to commit, then sees the moved cursor and gets [`FanOutResult::Stale`] carrying
//!   it, so it continues from there instead of retrying.
//! - **`since_seq` (invariant 2).** Endpoint changes bump the version *first* (waiting for a
//!   fan-out step in progress to commit), and only then read `max(seq)` in a new statement. Every
//!   fan-out step already committed covers events that this snapshot sees, so the head is at
//!   least its cursor; every later step either carries the new version or is refused. And the
//!   appends commit in `seq` order under the committer's advisory lock ([`super::commit`]), so
//!   an event this snapshot does not see gets a larger `seq` than the head it read: no event with
//!   `seq <= since_seq` commits after the endpoint change.
//! - **Durability of the bookkeeping.** A fan-out step, and a claim while no enabled endpoint is
//!   ordered, commit without waiting for their WAL flush (`synchronous_commit = off` for their
//!   own transaction): a power cut can only take a step or a lease back, so the events are
//!   matched or sent again, with the same `webhook-id` (at least once). A lost step's delivery
//!   ids may be handed out again, so a record matches its delivery by id, endpoint and event.
//!   Appends (their acknowledgement), attempt records (the log of what was sent), endpoint
//!   changes and ordered claims wait for it, and flush the lazy commits before them with it (the
//!   WAL is one sequence: a power cut loses a suffix).
//! - **No deadlocks between processes.** Every transaction takes its row locks in one global
//!   order: the `endpoints_version` row, the `fanout_cursor` row, deliveries by id, endpoints by
//!   id. Claims never wait at all (`SKIP LOCKED`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::{Db, PgStore};
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

const ATTEMPT_COLUMNS: &str = "id, delivery_id, endpoint_id, event_id, attempt, started_at, \
     duration_ms, status_code, response_body, error, success";

type Tx = Transaction<'static, Postgres>;

fn decode_error(index: usize, e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: Box::new(e),
    }
}

/// Reads the endpoint in the columns `o..o + 20` (in [`ENDPOINT_COLUMNS`] order).
fn row_to_endpoint(r: &PgRow, o: usize) -> Result<Endpoint, sqlx::Error> {
    let types: String = r.try_get(o + 3)?;
    let types: Vec<String> = serde_json::from_str(&types).map_err(|e| decode_error(o + 3, e))?;
    let event_types = types
        .iter()
        .map(|t| Pattern::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| decode_error(o + 3, e))?;
    let headers: String = r.try_get(o + 6)?;
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&headers).map_err(|e| decode_error(o + 6, e))?;
    let micros = |i: usize| -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(o + i)?
            .map(Timestamp::from_micros))
    };
    Ok(Endpoint {
        id: r.try_get(o)?,
        url: r.try_get(o + 1)?,
        description: r.try_get(o + 2)?,
        event_types,
        project_id: r.try_get(o + 4)?,
        tenant_id: r.try_get(o + 5)?,
        headers,
        rate_limit: r.try_get::<Option<i64>, _>(o + 7)?.map(|v| v as u32),
        ordered: r.try_get(o + 8)?,
        disabled: r.try_get(o + 9)?,
        disabled_reason: r.try_get(o + 10)?,
        secret: r.try_get(o + 11)?,
        previous_secret: r.try_get(o + 12)?,
        previous_secret_expires_at: micros(13)?,
        since_seq: r.try_get::<i64, _>(o + 14)? as u64,
        created_at: Timestamp::from_micros(r.try_get(o + 15)?),
        updated_at: Timestamp::from_micros(r.try_get(o + 16)?),
        failing_since: micros(17)?,
        failure_count: r.try_get::<i64, _>(o + 18)? as u32,
        format: {
            let name: String = r.try_get(o + 19)?;
            WebhookFormat::parse(&name).ok_or_else(|| {
                decode_error(
                    o + 19,
                    std::io::Error::other(format!("unknown webhook format `{name}`")),
                )
            })?
        },
    })
}

/// Reads the delivery in the columns `o..o + 13` (in [`DELIVERY_COLUMNS`] order).
fn row_to_delivery(r: &PgRow, o: usize) -> Result<Delivery, sqlx::Error> {
    let status: String = r.try_get(o + 5)?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| {
        decode_error(
            o + 5,
            std::io::Error::other(format!("unknown status {status}")),
        )
    })?;
    let next: i64 = r.try_get(o + 8)?;
    Ok(Delivery {
        id: r.try_get::<i64, _>(o)? as u64,
        endpoint_id: r.try_get(o + 1)?,
        event_seq: r.try_get::<i64, _>(o + 2)? as u64,
        event_id: r.try_get(o + 3)?,
        event_type: r.try_get(o + 4)?,
        status,
        attempts: r.try_get::<i64, _>(o + 6)? as u32,
        cycle_attempts: r.try_get::<i64, _>(o + 7)? as u32,
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| Timestamp::from_micros(next)),
        created_at: Timestamp::from_micros(r.try_get(o + 9)?),
        updated_at: Timestamp::from_micros(r.try_get(o + 10)?),
        last_status_code: r.try_get::<Option<i32>, _>(o + 11)?.map(|c| c as u16),
        last_error: r.try_get(o + 12)?,
    })
}

fn row_to_attempt(r: &PgRow) -> Result<Attempt, sqlx::Error> {
    Ok(Attempt {
        id: r.try_get::<i64, _>(0)? as u64,
        delivery_id: r.try_get::<i64, _>(1)? as u64,
        endpoint_id: r.try_get(2)?,
        event_id: r.try_get(3)?,
        attempt: r.try_get::<i64, _>(4)? as u32,
        started_at: Timestamp::from_micros(r.try_get(5)?),
        duration_ms: r.try_get::<i64, _>(6)? as u64,
        status_code: r.try_get::<Option<i32>, _>(7)?.map(|c| c as u16),
        response_body: r.try_get(8)?,
        error: r.try_get(9)?,
        success: r.try_get(10)?,
    })
}

async fn select_endpoint(
    tx: &mut Tx,
    id: &str,
    lock: bool,
) -> Result<Option<Endpoint>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1{lock}"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| row_to_endpoint(&r, 0)).transpose()
}

/// Bumps the endpoints version. Endpoint changes call it first: it takes the version row's lock,
/// the first in the global lock order, and waits for a fan-out step in progress.
async fn bump_version(tx: &mut Tx) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_state SET value = value + 1 WHERE name = 'endpoints_version'")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The log's head, in a statement of its own (hence a snapshot taken now).
async fn read_head(tx: &mut Tx) -> Result<u64, sqlx::Error> {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
        .fetch_one(&mut **tx)
        .await?;
    Ok(head as u64)
}

async fn write_endpoint(tx: &mut Tx, ep: &Endpoint, insert: bool) -> Result<(), sqlx::Error> {
    let types: Vec<&str> = ep.event_types.iter().map(Pattern::as_str).collect();
    let types = serde_json::to_string(&types).expect("strings serialise");
    let headers = serde_json::to_string(&ep.headers).expect("a string map serialises");
    let sql = if insert {
        format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        )
    } else {
        "UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4, \
         project_id = $5, tenant_id = $6, headers = $7, rate_limit = $8, ordered = $9, \
         disabled = $10, disabled_reason = $11, secret = $12, previous_secret = $13, \
         previous_secret_expires_at = $14, since_seq = $15, created_at = $16, updated_at = $17, \
         failing_since = $18, failure_count = $19, format = $20 WHERE id = $1"
            .to_owned()
    };
    sqlx::query(AssertSqlSafe(sql))
        .bind(&ep.id)
        .bind(&ep.url)
        .bind(&ep.description)
        .bind(types)
        .bind(&ep.project_id)
        .bind(&ep.tenant_id)
        .bind(headers)
        .bind(ep.rate_limit.map(i64::from))
        .bind(ep.ordered)
        .bind(ep.disabled)
        .bind(&ep.disabled_reason)
        .bind(&ep.secret)
        .bind(&ep.previous_secret)
        .bind(ep.previous_secret_expires_at.map(Timestamp::as_micros))
        .bind(ep.since_seq as i64)
        .bind(ep.created_at.as_micros())
        .bind(ep.updated_at.as_micros())
        .bind(ep.failing_since.map(Timestamp::as_micros))
        .bind(i64::from(ep.failure_count))
        .bind(ep.format.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// New deliveries as one array per column (endpoint, event seq, event id, event type), for an
/// `UNNEST` of four parameters: the insert below and the fan-out function (migration 0013).
struct DeliveryColumns<'a> {
    endpoint: Vec<&'a str>,
    seq: Vec<i64>,
    id: Vec<&'a str>,
    ty: Vec<&'a str>,
}

impl<'a> DeliveryColumns<'a> {
    fn new(deliveries: &'a [NewDelivery]) -> Self {
        DeliveryColumns {
            endpoint: deliveries.iter().map(|d| d.endpoint_id.as_str()).collect(),
            seq: deliveries.iter().map(|d| d.event_seq as i64).collect(),
            id: deliveries.iter().map(|d| d.event_id.as_str()).collect(),
            ty: deliveries.iter().map(|d| d.event_type.as_str()).collect(),
        }
    }

    /// Binds the four columns, in order, as the next parameters of `query`.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.endpoint)
            .bind(&self.seq)
            .bind(&self.id)
            .bind(&self.ty)
    }
}

/// One multi-row insert of pending deliveries, due at `now`.
async fn insert_deliveries(
    tx: &mut Tx,
    deliveries: &[NewDelivery],
    now: Timestamp,
) -> Result<u64, sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    let done = DeliveryColumns::new(deliveries)
        .bind(sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_seq, event_id, event_type, status, \
             next_attempt_at, created_at, updated_at) \
             SELECT e, s, i, t, 'pending', $5, $5, $5 \
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[]) AS u(e, s, i, t)",
        ))
        .bind(now.as_micros())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

mod claim;
mod record;
mod stats;

pub(super) use self::claim::KnownEndpoints;
use self::record::complete;

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_endpoint(&self, mut endpoint: Endpoint) -> Result<Endpoint, StoreError> {
        self.write(async {
            let mut tx = self.db.begin().await?;
            bump_version(&mut tx).await?;
            endpoint.since_seq = read_head(&mut tx).await?;
            write_endpoint(&mut tx, &endpoint, true).await?;
            tx.commit().await?;
            Ok(endpoint)
        })
        .await
    }

    async fn get_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.read(|pool| async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(&pool)
            .await?;
            row.map(|r| row_to_endpoint(&r, 0)).transpose()
        })
        .await
    }

    async fn list_endpoints(&self) -> Result<(Vec<Endpoint>, u64), StoreError> {
        // One statement, one snapshot: the endpoints are exactly those of the version.
        self.read(|pool| async move {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT v.value, e.* FROM \
                 (SELECT value FROM webhook_state WHERE name = 'endpoints_version') v \
                 LEFT JOIN LATERAL (SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints) e ON true \
                 ORDER BY e.created_at, e.id"
            )))
            .fetch_all(&pool)
            .await?;
            let mut version = 0;
            let mut endpoints = Vec::with_capacity(rows.len());
            for r in &rows {
                version = r.try_get::<i64, _>(0)? as u64;
                if r.try_get::<Option<String>, _>(1)?.is_some() {
                    endpoints.push(row_to_endpoint(r, 1)?);
                }
            }
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
        self.write(async {
            let mut tx = self.db.begin().await?;
            bump_version(&mut tx).await?;
            let Some(mut ep) = select_endpoint(&mut tx, id, true).await? else {
                return Ok(None); // rolled back on drop
            };
            let head = read_head(&mut tx).await?;
            patch.apply(&mut ep, now, head);
            write_endpoint(&mut tx, &ep, false).await?;
            tx.commit().await?;
            Ok(Some(ep))
        })
        .await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        self.write(async {
            let mut tx = self.db.begin().await?;
            // After the version lock, so a fan-out step that inserted rows for this endpoint
            // has committed and they are deleted too; later steps are refused.
            bump_version(&mut tx).await?;
            sqlx::query(
                "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id FOR UPDATE",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM webhook_attempts WHERE endpoint_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n > 0)
        })
        .await
    }

    async fn fanout_cursor(&self) -> Result<u64, StoreError> {
        self.read(|pool| async move {
            let v: i64 =
                sqlx::query_scalar("SELECT value FROM webhook_state WHERE name = 'fanout_cursor'")
                    .fetch_one(&pool)
                    .await?;
            Ok(v as u64)
        })
        .await
    }

    async fn fan_out(&self, step: FanOut) -> Result<FanOutResult, StoreError> {
        // One statement (migration 0013): the locks, the comparison, the rows and the cursor.
        let columns = DeliveryColumns::new(&step.deliveries);
        self.write(async {
            let row = columns
                .bind(sqlx::query(
                    "SELECT cursor, endpoints_version, applied \
                     FROM eventbus_fan_out($5, $6, $7, $8, $1, $2, $3, $4)",
                ))
                .bind(step.from as i64)
                .bind(step.to as i64)
                .bind(step.endpoints_version as i64)
                .bind(step.now.as_micros())
                .fetch_one(&self.db)
                .await?;
            let (cursor, version, applied): (i64, i64, bool) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            Ok(if applied {
                FanOutResult::Applied
            } else {
                FanOutResult::Stale {
                    cursor: cursor as u64,
                    endpoints_version: version as u64,
                }
            })
        })
        .await
    }

    async fn enqueue(
        &self,
        deliveries: Vec<NewDelivery>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(async {
            let mut tx = self.db.begin().await?;
            let n = insert_deliveries(&mut tx, &deliveries, now).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    async fn recover(&self) -> Result<u64, StoreError> {
        // Other processes may hold live leases on a shared database: leases only expire.
        Ok(0)
    }

    async fn renew_leases(
        &self,
        held: &[(u64, Timestamp)],
        until: Timestamp,
    ) -> Result<Vec<u64>, StoreError> {
        let ids: Vec<i64> = held.iter().map(|(id, _)| *id as i64).collect();
        let ends: Vec<i64> = held.iter().map(|(_, end)| end.as_micros()).collect();
        self.write(async {
            let moved: Vec<i64> = sqlx::query_scalar(
                // Locked in id order first, as every transaction that waits for deliveries
                // does (the record's): the held leases come in any order.
                "UPDATE webhook_deliveries d SET lease_until = $3 \
                 FROM UNNEST($1::bigint[], $2::bigint[]) AS h(id, lease_until) \
                 WHERE d.id IN (SELECT id FROM webhook_deliveries WHERE id = ANY($1) \
                                ORDER BY id FOR UPDATE) \
                   AND d.id = h.id AND d.lease_until = h.lease_until AND d.status = 'pending' \
                 RETURNING d.id",
            )
            .bind(&ids)
            .bind(&ends)
            .bind(until.as_micros())
            .fetch_all(&self.db)
            .await?;
            Ok(moved.into_iter().map(|id| id as u64).collect())
        })
        .await
    }

    async fn claim_due(&self, c: Claim) -> Result<Vec<Delivery>, StoreError> {
        self.write(claim::claim_due(&self.db, &self.claim_endpoints, &c))
            .await
    }

    async fn complete(
        &self,
        records: Vec<AttemptRecord>,
        health: HealthPolicy,
    ) -> Result<Vec<Endpoint>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.write(async {
            let mut tx = self.db.begin().await?;
            let out = complete(&mut tx, &records, health).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn retry_delivery(
        &self,
        id: u64,
        now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        self.write(async {
            let row = sqlx::query(AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET status = 'pending', cycle_attempts = 0, \
                 next_attempt_at = $2, updated_at = $2 WHERE id = $1 RETURNING {DELIVERY_COLUMNS}"
            )))
            .bind(id as i64)
            .bind(now.as_micros())
            .fetch_optional(&self.db)
            .await?;
            row.map(|r| row_to_delivery(&r, 0)).transpose()
        })
        .await
    }

    async fn get_delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        self.read(|pool| async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
            )))
            .bind(id as i64)
            .fetch_optional(&pool)
            .await?;
            row.map(|r| row_to_delivery(&r, 0)).transpose()
        })
        .await
    }

    async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Page<Delivery>, StoreError> {
        let mut items = self
            .read(|pool| {
                let q = &q;
                async move {
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                         WHERE endpoint_id = $1 AND id > $2 \
                           AND ($3::text IS NULL OR status = $3) \
                           AND ($4::text IS NULL OR event_id = $4) \
                         ORDER BY id LIMIT $5"
                    )))
                    .bind(&q.endpoint_id)
                    .bind(q.after as i64)
                    .bind(q.status.map(DeliveryStatus::as_str))
                    .bind(q.event_id.as_deref())
                    .bind((q.limit + 1) as i64)
                    .fetch_all(&pool)
                    .await?;
                    rows.iter()
                        .map(|r| row_to_delivery(r, 0))
                        .collect::<Result<Vec<_>, _>>()
                }
            })
            .await?;
        let next_after = (items.len() > q.limit).then(|| {
            items.truncate(q.limit);
            items.last().map_or(q.after, |d| d.id)
        });
        Ok(Page { items, next_after })
    }

    async fn list_attempts(&self, q: AttemptQuery) -> Result<Page<Attempt>, StoreError> {
        let mut items = self
            .read(|pool| {
                let q = &q;
                async move {
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts \
                         WHERE endpoint_id = $1 AND id > $2 \
                           AND ($3::int8 IS NULL OR delivery_id = $3) \
                           AND ($4::bool IS NULL OR success = $4) \
                         ORDER BY id LIMIT $5"
                    )))
                    .bind(&q.endpoint_id)
                    .bind(q.after as i64)
                    .bind(q.delivery_id.map(|d| d as i64))
                    .bind(q.success)
                    .bind((q.limit + 1) as i64)
                    .fetch_all(&pool)
                    .await?;
                    rows.iter()
                        .map(row_to_attempt)
                        .collect::<Result<Vec<_>, _>>()
                }
            })
            .await?;
        let next_after = (items.len() > q.limit).then(|| {
            items.truncate(q.limit);
            items.last().map_or(q.after, |a| a.id)
        });
        Ok(Page { items, next_after })
    }

    async fn endpoint_stats(
        &self,
        endpoint_id: &str,
        since: Timestamp,
    ) -> Result<EndpointStats, StoreError> {
        self.read(|pool| async move { stats::endpoint_stats(&pool, endpoint_id, since).await })
            .await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.read(|pool| async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'",
            )
            .fetch_one(&pool)
            .await?;
            Ok(n as u64)
        })
        .await
    }

    async fn oldest_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|pool| async move {
            let t: Option<i64> = sqlx::query_scalar(
                "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
            )
            .fetch_one(&pool)
            .await?;
            Ok(t.map(Timestamp::from_micros))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventStore;
    use crate::store::postgres::testing::store;
    use crate::store::webhook::contract;

    #[tokio::test]
    async fn the_request_format_is_kept() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::the_request_format_is_kept(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn fan_out_applies_once_and_refuses_stale_steps() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::fan_out_applies_once_and_refuses_stale_steps(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn claims_take_the_oldest_due_within_each_endpoints_room() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::claims_take_the_oldest_due_within_each_endpoints_room(&s).await;
    }

    #[tokio::test]
    async fn claims_see_endpoint_changes_at_once() {
        let Some((schema, a)) = store().await else {
            return;
        };
        let b = crate::store::postgres::testing::open_on(&schema).await;
        contract::claims_see_endpoint_changes_at_once(&a, &b).await;
        a.close().await;
        b.close().await;
    }

    /// The claim keeps its plan for the session (migration 0014), and a session may make that
    /// plan while the queue is empty: the plan made then must still walk each endpoint's due
    /// deliveries in the `webhook_deliveries_due` index and stop at its limit, never read the
    /// whole queue. The function's own statement is planned here as a generic plan, on an
    /// empty schema.
    #[tokio::test]
    async fn the_claims_kept_plan_walks_the_due_index_even_when_made_on_an_empty_queue() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        let source: String = sqlx::query_scalar(
            "SELECT prosrc FROM pg_proc WHERE proname = 'eventbus_claim_unordered' \
             AND pronamespace = current_schema()::regnamespace",
        )
        .fetch_one(s.pool())
        .await
        .unwrap();
        let body = source
            .split_once("RETURN QUERY")
            .and_then(|(_, rest)| rest.rsplit_once(';'))
            .map(|(statement, _)| statement)
            .expect("the function returns one query");
        // The function's arguments become the prepared statement's parameters.
        let mut sql = String::new();
        let mut word = String::new();
        for ch in body.chars().chain(std::iter::once(' ')) {
            if ch.is_alphanumeric() || ch == '_' {
                word.push(ch);
                continue;
            }
            let arg = ["eids", "rooms", "due", "lim", "lease"]
                .iter()
                .position(|a| *a == word);
            match arg {
                Some(i) => sql.push_str(&format!("${}", i + 1)),
                None => sql.push_str(&word),
            }
            word.clear();
            sql.push(ch);
        }
        let mut tx = s.pool().begin().await.unwrap();
        sqlx::raw_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "PREPARE claim_plan(text[], int8[], int8, int8, int8) AS {sql}"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        let plan: Vec<String> =
            sqlx::query_scalar("EXPLAIN EXECUTE claim_plan('{}', '{}', 0, 0, 0)")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using webhook_deliveries_due on webhook_deliveries"),
            "{plan}"
        );
        assert!(!plan.contains("Seq Scan on webhook_deliveries"), "{plan}");
        // In the index's order: no sort of an endpoint's deliveries before the limit.
        assert!(!plan.contains("Sort Key: w."), "{plan}");
        tx.rollback().await.unwrap();
        s.close().await;
    }

    #[tokio::test]
    async fn leases_move_only_while_still_the_callers() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::leases_move_only_while_still_the_callers(&s).await;
    }

    /// A renewal takes its row locks in id order, whatever order the held leases come in, as
    /// the record does: a record holding the lower of two leased deliveries and wanting the
    /// higher gets it while a renewal of both waits, instead of the two waiting for each other
    /// until PostgreSQL cancels one as a deadlock.
    #[tokio::test]
    async fn a_renewal_locks_in_id_order_and_never_deadlocks_with_a_record() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        s.create_endpoint(contract::endpoint("p", false))
            .await
            .unwrap();
        s.enqueue(
            vec![contract::delivery("p", 1), contract::delivery("p", 2)],
            Timestamp::from_micros(0),
        )
        .await
        .unwrap();
        let claimed = s.claim_due(contract::claim(100, 1_000)).await.unwrap();
        let mut ids: Vec<i64> = claimed.iter().map(|d| d.id as i64).collect();
        ids.sort_unstable();
        let (low, high) = (ids[0], ids[1]);
        let until = Timestamp::from_micros(1_100); // the claim's: at 100 for 1,000
        // The lower one's live row after the higher one's in the table, so that no plan of the
        // renewal meets them in id order by chance.
        sqlx::query("UPDATE webhook_deliveries SET updated_at = updated_at WHERE id = $1")
            .bind(low)
            .execute(s.pool())
            .await
            .unwrap();
        // The record's first step: the lower one locked.
        let s = std::sync::Arc::new(s);
        let mut record = s.pool().begin().await.unwrap();
        let record_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *record)
            .await
            .unwrap();
        sqlx::query("SET LOCAL lock_timeout = '10s'")
            .execute(&mut *record)
            .await
            .unwrap();
        let lock = "SELECT id FROM webhook_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE";
        sqlx::query(lock)
            .bind(vec![low])
            .execute(&mut *record)
            .await
            .unwrap();
        // The renewal, the higher one first, waits.
        let renewing = {
            let s = s.clone();
            tokio::spawn(async move {
                let held = [(high as u64, until), (low as u64, until)];
                s.renew_leases(&held, Timestamp::from_micros(50_000)).await
            })
        };
        let mut waiting = false;
        for _ in 0..200 {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(record_pid)
            .fetch_one(s.pool())
            .await
            .unwrap();
            if n > 0 {
                waiting = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(waiting, "the renewal waits for the record's lock");
        // The record goes on to the higher one: free, since the renewal took nothing yet.
        sqlx::query(lock)
            .bind(vec![low, high])
            .execute(&mut *record)
            .await
            .expect("the record gets the delivery the renewal would have held");
        record.commit().await.unwrap();
        let mut moved = renewing.await.unwrap().expect("the renewal goes through");
        moved.sort_unstable();
        assert_eq!(moved, [low as u64, high as u64]);
        s.close().await;
    }

    #[tokio::test]
    async fn claims_are_leased_and_ordered_endpoints_yield_their_head_only() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::claims_are_leased_and_ordered_endpoints_yield_their_head_only(&s).await;
        // A shared database: leases of other processes may be alive, so none is released; they
        // expire instead.
        assert_eq!(s.recover().await.unwrap(), 0);
        let due = |at: i64| Claim {
            now: Timestamp::from_micros(at),
            lease_until: Timestamp::from_micros(at + 1_000),
            limit: 100,
            per_endpoint: 10,
            held: Default::default(),
        };
        assert!(s.claim_due(due(5_500)).await.unwrap().is_empty());
        // Past the leases: the unordered ones (1, 2, 3) and the ordered head (2) again.
        assert_eq!(s.claim_due(due(7_000)).await.unwrap().len(), 4);
        s.close().await;
    }

    #[tokio::test]
    async fn the_last_failure_dead_letters_and_failing_endpoints_are_disabled() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::the_last_failure_dead_letters_and_failing_endpoints_are_disabled(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn a_record_applies_only_to_its_own_endpoint_and_event() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::a_record_applies_only_to_its_own_endpoint_and_event(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn endpoint_stats_count_the_window_and_the_unfinished_deliveries() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::endpoint_stats_count_the_window_and_the_unfinished_deliveries(&s).await;
        s.close().await;
    }
}
