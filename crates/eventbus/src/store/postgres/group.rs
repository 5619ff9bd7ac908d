//! [`GroupStore`] on PostgreSQL (schema: `migrations/postgres/0010_consumer_groups.sql`; the
//! design is in [`crate::store::group`]), shared by every bus process on the schema.
//!
//! - **Fetches of a group take turns** on its row: [`GroupStore::fetch`] starts with `SELECT …
//!   FOR UPDATE` of the group, so the cursor it reads is the latest committed one and no other
//!   fetch of the group, on any process, reads or leases its messages until it commits. The
//!   top-up reads the head (`max(seq)`) first, then events up to it: appends commit in `seq`
//!   order under the committer's advisory lock ([`super::commit`]), so every event up to the
//!   head has committed and the later statements of the transaction (READ COMMITTED: a newer
//!   snapshot each) see them all, and the cursor never passes an event it did not see. The
//!   inserted messages (one `UNNEST` insert) and the moved cursor commit together. Fetches of
//!   other groups, acks and nacks do not wait for that lock.
//! - **Acks and nacks** change only rows whose named delivery is the current one and whose lease
//!   runs (one statement over `UNNEST`ed ack ids); a fetch that re-leases a message whose lease
//!   ran out changes its token and count first or waits for the ack's row lock and then finds
//!   the row gone, so a message is never both acked and handed out again by one delivery.
//! - **A crashed process** leaves leases that simply run out: its messages are handed out again
//!   after `ack_wait`, by any process.
//! - **No deadlocks**: a fetch locks its group row, then message rows of that group; acks, nacks
//!   and retries lock message rows only, each statement in `seq` order.
//!
//! A little over 700 lines, as one file per contract is the rule of the backend's tables: the
//! fetch's steps (each its own statement, kept in the order the fetch runs them), one statement
//! per other operation, and the ack-id bookkeeping; the tests are in `group/tests.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::query::{Arg, bind_all, pattern_regex, row_to_event, select_after_sql};
use super::{COLUMNS, PgStore};
use crate::core::filter::EventFilter;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::group::{
    AckId, AckOutcome, DEAD, DeadLetter, DeadReason, Group, GroupMessage, GroupSettings,
    GroupState, GroupStore, JOINED_EVENT_COLUMNS, LEASED, MAX_DEAD_LETTER_PAGE, MAX_FETCH,
    Outstanding, Page, READY, StartAt, new_token, ordered_next_ready, parse_types, plan_ordered,
    sort_ack_ids, types_json,
};

type Tx = Transaction<'static, Postgres>;

const GROUP_COLUMNS: &str = "id, name, tenant_id, types, project_id, user_id, start_at, \
     ack_wait_ms, max_deliver, max_ack_pending, ordered, cursor, created_at, updated_at";

fn decode_error(index: usize, e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: Box::new(e),
    }
}

fn row_to_group(r: &PgRow) -> Result<Group, sqlx::Error> {
    let types: String = r.try_get(3)?;
    let types = parse_types(&types).ok_or_else(|| {
        decode_error(
            3,
            std::io::Error::other(format!("invalid type patterns {types}")),
        )
    })?;
    let start_at: String = r.try_get(6)?;
    let start_at = StartAt::parse(&start_at).ok_or_else(|| {
        decode_error(
            6,
            std::io::Error::other(format!("unknown start {start_at}")),
        )
    })?;
    Ok(Group {
        id: r.try_get::<i64, _>(0)? as u64,
        settings: GroupSettings {
            name: r.try_get(1)?,
            tenant_id: r.try_get(2)?,
            types,
            project_id: r.try_get(4)?,
            user_id: r.try_get(5)?,
            start_at,
            ack_wait: Duration::from_millis(r.try_get::<i64, _>(7)? as u64),
            max_deliver: r.try_get::<i64, _>(8)? as u32,
            max_ack_pending: r.try_get::<i64, _>(9)? as u32,
            ordered: r.try_get(10)?,
        },
        cursor: r.try_get::<i64, _>(11)? as u64,
        created_at: Timestamp::from_micros(r.try_get(12)?),
        updated_at: Timestamp::from_micros(r.try_get(13)?),
    })
}

/// The group of that name, its row locked when `lock`.
async fn select_group(tx: &mut Tx, name: &str, lock: bool) -> Result<Option<Group>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM consumer_groups WHERE name = $1{lock}"
    )))
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| row_to_group(&r)).transpose()
}

/// The outstanding messages of a group (not acked, not dead), by `seq`.
async fn outstanding<'e>(
    db: impl sqlx::Executor<'e, Database = Postgres>,
    group_id: i64,
) -> Result<Vec<Outstanding>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, project_id, state, visible_at FROM group_messages \
         WHERE group_id = $1 AND state IN (0, 1) ORDER BY seq",
    )
    .bind(group_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Outstanding {
                seq: r.try_get::<i64, _>(0)? as u64,
                project_id: r.try_get(1)?,
                state: i64::from(r.try_get::<i16, _>(2)?),
                visible_at: r.try_get(3)?,
            })
        })
        .collect()
}

/// Most `seq`s one statement of the top-up looks at (it reads window after window).
const TOP_UP_WINDOW: u64 = 4096;

/// The first `limit` events matching the group filter `f` with `after < seq <= upto`, in `seq`
/// order, read along the primary key. Unlike [`select_after_sql`], no index on `type` may serve
/// it: the planner derives a `type` range even from a regular expression's prefix, and on a
/// table it had not analysed yet it read every later event of the matching types (through the
/// `(type, seq)` index, or the whole table) and sorted them, per fetch: 13 ms for 25,000 rows,
/// measured. So the type terms test `type || ''`, and the bounded `seq` range keeps the primary
/// key's range scan the plan of choice without statistics too; every event is looked at once
/// per group as the cursor passes it.
fn top_up_sql(f: &EventFilter, after: u64, upto: u64, limit: usize) -> (String, Vec<Arg>) {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > $1 AND seq <= $2");
    let mut args = vec![Arg::Int(after as i64), Arg::Int(upto as i64)];
    let param = |args: &mut Vec<Arg>, arg: Arg| {
        args.push(arg);
        format!("${}", args.len())
    };
    if !f.all_types() {
        let terms: Vec<String> = f
            .types
            .iter()
            .map(|t| {
                if t.is_exact() {
                    let p = param(&mut args, Arg::Text(t.as_str().to_owned()));
                    format!("type || '' = {p}")
                } else {
                    let p = param(&mut args, Arg::Text(pattern_regex(t)));
                    format!("type || '' ~ {p}")
                }
            })
            .collect();
        sql.push_str(&format!(" AND ({})", terms.join(" OR ")));
    }
    for (column, value) in [
        ("project_id", &f.project_id),
        ("tenant_id", &f.tenant_id),
        ("user_id", &f.user_id),
    ] {
        if let Some(v) = value {
            let p = param(&mut args, Arg::Text(v.clone()));
            sql.push_str(&format!(" AND {column} = {p}"));
        }
    }
    let p = param(&mut args, Arg::Int(limit as i64));
    sql.push_str(&format!(" ORDER BY seq LIMIT {p}"));
    (sql, args)
}

/// One fetch, inside a transaction holding the group's row lock (see [`crate::store::group`],
/// "The fetch").
async fn fetch_in(
    tx: &mut Tx,
    g: &Group,
    max: usize,
    now: i64,
    token: u64,
) -> Result<Vec<GroupMessage>, sqlx::Error> {
    let max = max.min(MAX_FETCH);
    let gid = g.id as i64;
    let s = &g.settings;
    let lease_end = now.saturating_add(s.ack_wait_ms().saturating_mul(1000));
    let window = s.max_ack_pending as usize;
    // 1. Leases that ran out at the last delivery: dead letters.
    sqlx::query(
        "UPDATE group_messages SET state = 2, visible_at = 0, dead_at = $3, \
         dead_reason = 'expired' \
         WHERE group_id = $1 AND state = 1 AND visible_at <= $3 AND delivery_count >= $2",
    )
    .bind(gid)
    .bind(s.max_deliver as i32)
    .bind(now)
    .execute(&mut **tx)
    .await?;

    // 2. The candidates: at most `want`, what `max` and the leases `max_ack_pending` leave.
    let (candidates, want, outstanding_count, mut blocked) = if s.ordered {
        let rows = outstanding(&mut **tx, gid).await?;
        let mut plan = plan_ordered(&rows, now, max);
        let want = max.min(window.saturating_sub(plan.leased));
        plan.candidates.truncate(want);
        (plan.candidates, want, rows.len(), Some(plan.blocked))
    } else {
        let (count, leased): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE state = 1 AND visible_at > $2) \
             FROM group_messages WHERE group_id = $1 AND state IN (0, 1)",
        )
        .bind(gid)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        let want = max.min(window.saturating_sub(leased as usize));
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM group_messages \
             WHERE group_id = $1 AND state IN (0, 1) AND visible_at <= $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(gid)
        .bind(now)
        .bind(want as i64)
        .fetch_all(&mut **tx)
        .await?;
        let seqs = seqs.into_iter().map(|s| s as u64).collect();
        (seqs, want, count as usize, None)
    };
    let mut out: Vec<GroupMessage> = Vec::with_capacity(want);

    // 3. Lease the candidates whose events are there; the others were archived: dead letters.
    let mut redelivered = 0i64;
    if !candidates.is_empty() {
        let seqs: Vec<i64> = candidates.iter().map(|s| *s as i64).collect();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH l AS (UPDATE group_messages m SET state = 1, visible_at = $3, \
                        delivery_count = m.delivery_count + 1, token = $4 \
                        WHERE m.group_id = $1 AND m.seq = ANY($2) \
                          AND EXISTS (SELECT 1 FROM events e WHERE e.seq = m.seq) \
                        RETURNING m.seq, m.delivery_count) \
             SELECT l.delivery_count, {JOINED_EVENT_COLUMNS} FROM l JOIN events e ON e.seq = l.seq"
        )))
        .bind(gid)
        .bind(&seqs)
        .bind(lease_end)
        .bind(token as i64)
        .fetch_all(&mut **tx)
        .await?;
        for r in &rows {
            let count = r.try_get::<i32, _>(0)? as u32;
            if count > 1 {
                redelivered += 1;
            }
            out.push(GroupMessage::new(
                g.id,
                Arc::new(row_to_event(r, 1)?),
                count,
                token,
            ));
        }
        if rows.len() < seqs.len() {
            let leased: HashSet<u64> = out.iter().map(|m| m.event.seq).collect();
            let gone: Vec<i64> = candidates
                .iter()
                .filter(|s| !leased.contains(s))
                .map(|s| *s as i64)
                .collect();
            sqlx::query(
                "UPDATE group_messages SET state = 2, visible_at = 0, dead_at = $3, \
                 dead_reason = 'archived' WHERE group_id = $1 AND seq = ANY($2)",
            )
            .bind(gid)
            .bind(&gone)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }

    // 4. The top-up: the shortfall, within the window, from the cursor on.
    let take = want
        .saturating_sub(candidates.len())
        .min(window.saturating_sub(outstanding_count));
    let mut cursor = g.cursor;
    if take > 0 {
        // The head first: appends commit in `seq` order, so every event up to it has
        // committed, and the statements below (each with a newer snapshot) see them all.
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(&mut **tx)
            .await?;
        let head = head as u64;
        let filter = s.filter();
        let mut events = Vec::with_capacity(take);
        while events.len() < take && cursor < head {
            let upto = head.min(cursor.saturating_add(TOP_UP_WINDOW));
            let need = take - events.len();
            let (sql, args) = top_up_sql(&filter, cursor, upto, need);
            let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                .fetch_all(&mut **tx)
                .await?;
            for r in &rows {
                events.push(Arc::new(row_to_event(r, 0)?));
            }
            cursor = match events.last() {
                Some(last) if rows.len() == need => last.seq,
                _ => upto,
            };
        }
        let n = events.len();
        let (mut seq, mut project, mut state, mut visible, mut count, mut tokens) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for event in events {
            // In an ordered group, a project with a message outstanding waits its turn.
            let lease = blocked
                .as_mut()
                .is_none_or(|b| b.insert(event.project_id.clone()));
            seq.push(event.seq as i64);
            project.push(event.project_id.clone());
            if lease {
                state.push(LEASED as i16);
                visible.push(lease_end);
                count.push(1i32);
                tokens.push(token as i64);
                out.push(GroupMessage::new(g.id, event, 1, token));
            } else {
                state.push(READY as i16);
                visible.push(now);
                count.push(0);
                tokens.push(0);
            }
        }
        if !seq.is_empty() {
            sqlx::query(
                "INSERT INTO group_messages (group_id, seq, project_id, state, visible_at, \
                 delivery_count, token, created_at) \
                 SELECT $1, u.seq, u.project, u.state, u.visible, u.count, u.token, $2 \
                 FROM UNNEST($3::int8[], $4::text[], $5::int2[], $6::int8[], $7::int4[], \
                             $8::int8[]) AS u(seq, project, state, visible, count, token)",
            )
            .bind(gid)
            .bind(now)
            .bind(&seq)
            .bind(&project)
            .bind(&state)
            .bind(&visible)
            .bind(&count)
            .bind(&tokens)
            .execute(&mut **tx)
            .await?;
        }
    }
    if cursor != g.cursor || redelivered > 0 {
        sqlx::query(
            "UPDATE consumer_groups SET cursor = $2, redelivered = redelivered + $3 WHERE id = $1",
        )
        .bind(gid)
        .bind(cursor as i64)
        .bind(redelivered)
        .execute(&mut **tx)
        .await?;
    }
    out.sort_by_key(|m| m.event.seq);
    Ok(out)
}

/// The group of that name, read outside a transaction.
async fn group_of(db: &super::Db, name: &str) -> Result<Option<Group>, sqlx::Error> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM consumer_groups WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(db)
    .await?;
    row.map(|r| row_to_group(&r)).transpose()
}

/// The ack ids of `g` among `ack_ids` as `UNNEST` arrays (seq, delivery count, token, in `seq`
/// order), with their positions in the request and the outcome of every id so far.
struct Settling {
    mine: Vec<(usize, AckId)>,
    outcomes: Vec<AckOutcome>,
    seq: Vec<i64>,
    count: Vec<i32>,
    token: Vec<i64>,
}

impl Settling {
    fn new(g: &Group, ack_ids: &[String]) -> Self {
        let (mut mine, outcomes) = sort_ack_ids(g, ack_ids);
        mine.sort_by_key(|(_, id)| id.seq);
        Settling {
            seq: mine.iter().map(|(_, id)| id.seq as i64).collect(),
            count: mine
                .iter()
                .map(|(_, id)| id.delivery_count as i32)
                .collect(),
            token: mine.iter().map(|(_, id)| id.token as i64).collect(),
            mine,
            outcomes,
        }
    }

    /// The outcomes, given the deliveries (seq, count, token) the statement changed: each
    /// changed one acknowledges the first id naming it; a repeated id is expired.
    fn finish(mut self, changed: Vec<(i64, i32, i64)>) -> Vec<AckOutcome> {
        let mut changed: HashSet<(i64, i32, i64)> = changed.into_iter().collect();
        let mut mine = self.mine;
        mine.sort_by_key(|(i, _)| *i);
        for (i, id) in mine {
            let key = (id.seq as i64, id.delivery_count as i32, id.token as i64);
            if changed.remove(&key) {
                self.outcomes[i] = AckOutcome::Acked;
            }
        }
        self.outcomes
    }
}

fn row_to_dead_letter(group_id: u64, r: &PgRow) -> Result<DeadLetter, sqlx::Error> {
    let event = match r.try_get::<Option<i64>, _>(0)? {
        Some(_) => Some(Arc::new(row_to_event(r, 0)?)),
        None => None,
    };
    let seq = r.try_get::<i64, _>(9)? as u64;
    let delivery_count = r.try_get::<i32, _>(10)? as u32;
    let reason: String = r.try_get(13)?;
    Ok(DeadLetter {
        ack_id: AckId {
            group_id,
            seq,
            delivery_count,
            token: r.try_get::<i64, _>(11)? as u64,
        }
        .to_string(),
        seq,
        delivery_count,
        reason: DeadReason::parse(&reason).ok_or_else(|| {
            decode_error(
                13,
                std::io::Error::other(format!("unknown reason {reason}")),
            )
        })?,
        dead_lettered_at: Timestamp::from_micros(r.try_get(12)?),
        event,
    })
}

#[async_trait]
impl GroupStore for PgStore {
    async fn put_group(
        &self,
        settings: GroupSettings,
        now: Timestamp,
    ) -> Result<(Group, bool), StoreError> {
        settings.check()?;
        let s = &settings;
        self.write(async {
            let mut tx = self.db.begin().await?;
            // The head in a statement of its own, before the insert: a later event has a
            // larger seq (appends commit in seq order).
            let head: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
                .fetch_one(&mut *tx)
                .await?;
            let cursor = s.start_at.cursor(head as u64);
            // `xmax = 0` only on a freshly inserted row; an update keeps cursor, start and
            // creation time.
            let row = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO consumer_groups (name, tenant_id, types, project_id, user_id, \
                 start_at, ack_wait_ms, max_deliver, max_ack_pending, ordered, cursor, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
                 ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id, \
                 types = excluded.types, project_id = excluded.project_id, \
                 user_id = excluded.user_id, ack_wait_ms = excluded.ack_wait_ms, \
                 max_deliver = excluded.max_deliver, max_ack_pending = excluded.max_ack_pending, \
                 ordered = excluded.ordered, updated_at = excluded.updated_at \
                 RETURNING {GROUP_COLUMNS}, (xmax = 0)"
            )))
            .bind(&s.name)
            .bind(&s.tenant_id)
            .bind(types_json(&s.types))
            .bind(&s.project_id)
            .bind(&s.user_id)
            .bind(s.start_at.to_string())
            .bind(s.ack_wait_ms())
            .bind(i64::from(s.max_deliver))
            .bind(i64::from(s.max_ack_pending))
            .bind(s.ordered)
            .bind(cursor as i64)
            .bind(now.as_micros())
            .fetch_one(&mut *tx)
            .await?;
            let group = row_to_group(&row)?;
            let created: bool = row.try_get(14)?;
            tx.commit().await?;
            Ok((group, created))
        })
        .await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        self.read(|pool| async move { group_of(&pool, name).await })
            .await
    }

    async fn list_groups(&self, tenant: Option<&str>) -> Result<Vec<Group>, StoreError> {
        self.read(|pool| async move {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {GROUP_COLUMNS} FROM consumer_groups \
                 WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY name"
            )))
            .bind(tenant)
            .fetch_all(&pool)
            .await?;
            rows.iter().map(row_to_group).collect()
        })
        .await
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        self.write(async {
            let mut tx = self.db.begin().await?;
            // The group's lock first: a fetch in progress commits before its rows go.
            let Some(g) = select_group(&mut tx, name, true).await? else {
                return Ok(false);
            };
            sqlx::query("DELETE FROM group_messages WHERE group_id = $1")
                .bind(g.id as i64)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM consumer_groups WHERE id = $1")
                .bind(g.id as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn fetch(
        &self,
        name: &str,
        max: usize,
        now: Timestamp,
    ) -> Result<Option<Vec<GroupMessage>>, StoreError> {
        let token = new_token();
        self.write(async {
            let mut tx = self.db.begin().await?;
            let Some(g) = select_group(&mut tx, name, true).await? else {
                return Ok(None);
            };
            let out = fetch_in(&mut tx, &g, max, now.as_micros(), token).await?;
            tx.commit().await?;
            Ok(Some(out))
        })
        .await
    }

    async fn ack(
        &self,
        name: &str,
        ack_ids: &[String],
        now: Timestamp,
    ) -> Result<Option<Vec<AckOutcome>>, StoreError> {
        self.write(async {
            let Some(g) = group_of(&self.db, name).await? else {
                return Ok(None);
            };
            let settling = Settling::new(&g, ack_ids);
            if settling.seq.is_empty() {
                return Ok(Some(settling.outcomes));
            }
            let changed: Vec<(i64, i32, i64)> = sqlx::query_as(
                "DELETE FROM group_messages m \
                 USING UNNEST($2::int8[], $3::int4[], $4::int8[]) AS u(seq, count, token) \
                 WHERE m.group_id = $1 AND m.seq = u.seq AND m.state = 1 \
                   AND m.delivery_count = u.count AND m.token = u.token AND m.visible_at > $5 \
                 RETURNING m.seq, m.delivery_count, m.token",
            )
            .bind(g.id as i64)
            .bind(&settling.seq)
            .bind(&settling.count)
            .bind(&settling.token)
            .bind(now.as_micros())
            .fetch_all(&self.db)
            .await?;
            Ok(Some(settling.finish(changed)))
        })
        .await
    }

    async fn nack(
        &self,
        name: &str,
        ack_ids: &[String],
        delay: Duration,
        now: Timestamp,
    ) -> Result<Option<Vec<AckOutcome>>, StoreError> {
        let delay = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
        self.write(async {
            let Some(g) = group_of(&self.db, name).await? else {
                return Ok(None);
            };
            let settling = Settling::new(&g, ack_ids);
            if settling.seq.is_empty() {
                return Ok(Some(settling.outcomes));
            }
            // At the last delivery: a dead letter; otherwise ready after the delay.
            let changed: Vec<(i64, i32, i64)> = sqlx::query_as(
                "UPDATE group_messages m SET \
                 state = CASE WHEN m.delivery_count >= $6 THEN 2 ELSE 0 END, \
                 visible_at = CASE WHEN m.delivery_count >= $6 THEN 0 ELSE $7 END, \
                 dead_at = CASE WHEN m.delivery_count >= $6 THEN $5 END, \
                 dead_reason = CASE WHEN m.delivery_count >= $6 THEN 'nacked' END \
                 FROM UNNEST($2::int8[], $3::int4[], $4::int8[]) AS u(seq, count, token) \
                 WHERE m.group_id = $1 AND m.seq = u.seq AND m.state = 1 \
                   AND m.delivery_count = u.count AND m.token = u.token AND m.visible_at > $5 \
                 RETURNING m.seq, m.delivery_count, m.token",
            )
            .bind(g.id as i64)
            .bind(&settling.seq)
            .bind(&settling.count)
            .bind(&settling.token)
            .bind(now.as_micros())
            .bind(g.settings.max_deliver as i32)
            .bind(now.as_micros().saturating_add(delay))
            .fetch_all(&self.db)
            .await?;
            Ok(Some(settling.finish(changed)))
        })
        .await
    }

    async fn group_state(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<GroupState>, StoreError> {
        let now = now.as_micros();
        self.read(|pool| async move {
            let Some(g) = group_of(&pool, name).await? else {
                return Ok(None);
            };
            let no_limit = i64::MAX as usize;
            let (inner, args) = select_after_sql(&g.settings.filter(), g.cursor, no_limit);
            let n = args.len();
            let sql = format!(
                "SELECT (SELECT count(*) FROM ({inner}) a), \
                        count(*) FILTER (WHERE state = 1 AND visible_at > ${now_p}), \
                        count(*) FILTER (WHERE state = 0 AND delivery_count = 0), \
                        count(*) FILTER (WHERE state = 2 OR (state = 1 AND visible_at <= ${now_p} \
                                         AND delivery_count >= ${max_p})), \
                        min(created_at) FILTER (WHERE state < 2), \
                        (SELECT redelivered FROM consumer_groups WHERE id = ${gid_p}) \
                 FROM group_messages WHERE group_id = ${gid_p}",
                now_p = n + 1,
                max_p = n + 2,
                gid_p = n + 3,
            );
            let row = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                .bind(now)
                .bind(g.settings.max_deliver as i32)
                .bind(g.id as i64)
                .fetch_one(&pool)
                .await?;
            let after: i64 = row.try_get(0)?;
            let never_delivered: i64 = row.try_get(2)?;
            let oldest: Option<i64> = row.try_get(4)?;
            Ok(Some(GroupState {
                cursor: g.cursor,
                pending: (after + never_delivered) as u64,
                ack_pending: row.try_get::<i64, _>(1)? as u64,
                redelivered: row.try_get::<Option<i64>, _>(5)?.unwrap_or(0) as u64,
                dead_lettered: row.try_get::<i64, _>(3)? as u64,
                oldest_unacked: oldest
                    .map(|t| Duration::from_micros(now.saturating_sub(t).max(0) as u64)),
            }))
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<Page<DeadLetter>>, StoreError> {
        let after = after.unwrap_or(0);
        let limit = limit.min(MAX_DEAD_LETTER_PAGE);
        let found = self
            .read(|pool| async move {
                let Some(g) = group_of(&pool, name).await? else {
                    return Ok(None);
                };
                let rows = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {JOINED_EVENT_COLUMNS}, m.seq, m.delivery_count, m.token, m.dead_at, \
                     m.dead_reason FROM group_messages m LEFT JOIN events e ON e.seq = m.seq \
                     WHERE m.group_id = $1 AND m.state = {DEAD} AND m.visible_at = 0 \
                       AND m.seq > $2 ORDER BY m.seq LIMIT $3"
                )))
                .bind(g.id as i64)
                .bind(after as i64)
                .bind((limit + 1) as i64)
                .fetch_all(&pool)
                .await?;
                rows.iter()
                    .map(|r| row_to_dead_letter(g.id, r))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            })
            .await?;
        Ok(found.map(|mut items| {
            let next_after = (items.len() > limit).then(|| {
                items.truncate(limit);
                items.last().map_or(after, |d| d.seq)
            });
            Page { items, next_after }
        }))
    }

    async fn retry_dead_letter(
        &self,
        name: &str,
        ack_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(id) = AckId::parse(ack_id) else {
            return Ok(false);
        };
        self.write(async {
            let n = sqlx::query(
                "UPDATE group_messages m SET state = 0, visible_at = $4, delivery_count = 0, \
                 token = 0, dead_at = NULL, dead_reason = NULL \
                 FROM consumer_groups g \
                 WHERE g.name = $1 AND g.id = $2 AND m.group_id = g.id AND m.seq = $3 \
                   AND m.state = 2",
            )
            .bind(name)
            .bind(id.group_id as i64)
            .bind(id.seq as i64)
            .bind(now.as_micros())
            .execute(&self.db)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
        .await
    }

    async fn next_ready_at(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let now = now.as_micros();
        self.read(|pool| async move {
            let Some(g) = group_of(&pool, name).await? else {
                return Ok(None);
            };
            let at = if g.settings.ordered {
                ordered_next_ready(&outstanding(&pool, g.id as i64).await?, now)
            } else {
                sqlx::query_scalar(
                    "SELECT min(visible_at) FROM group_messages \
                     WHERE group_id = $1 AND state IN (0, 1) AND visible_at > $2",
                )
                .bind(g.id as i64)
                .bind(now)
                .fetch_one(&pool)
                .await?
            };
            Ok(at.map(Timestamp::from_micros))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
