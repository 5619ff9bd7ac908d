//! [`GroupStore`] on SQLite (schema: `migrations/sqlite/0009_consumer_groups.sql`; the design is
//! in [`crate::store::group`]).
//!
//! Every write (put, delete, fetch, ack, nack, retry) runs on the store's single writer thread
//! ([`SqliteStore::write`]), in order with event appends, each in one transaction. So a fetch's
//! top-up sees every event committed before it and none can commit while it reads (the tail
//! read is gap-free), its messages and the moved cursor commit together, and no two fetches run
//! at once, so no message is leased twice. Reads (get, list, state, dead letters, the next
//! ready time) run on the read connections.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::{COLUMNS, SqliteStore, read_head, row_to_event};
use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::group::{
    AckId, AckOutcome, DEAD, DeadLetter, DeadReason, Group, GroupMessage, GroupSettings,
    GroupState, GroupStore, JOINED_EVENT_COLUMNS, LEASED, MAX_DEAD_LETTER_PAGE, MAX_FETCH,
    Outstanding, Page, READY, StartAt, new_token, ordered_next_ready, parse_types, plan_ordered,
    sort_ack_ids, types_json,
};

const GROUP_COLUMNS: &str = "id, name, tenant_id, types, project_id, user_id, start_at, \
     ack_wait_ms, max_deliver, max_ack_pending, ordered, cursor, created_at, updated_at";

fn conversion(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn row_to_group(r: &Row<'_>) -> rusqlite::Result<Group> {
    let types: String = r.get(3)?;
    let types = parse_types(&types).ok_or_else(|| {
        conversion(
            3,
            std::io::Error::other(format!("invalid type patterns {types}")),
        )
    })?;
    let start_at: String = r.get(6)?;
    let start_at = StartAt::parse(&start_at).ok_or_else(|| {
        conversion(
            6,
            std::io::Error::other(format!("unknown start {start_at}")),
        )
    })?;
    Ok(Group {
        id: r.get::<_, i64>(0)? as u64,
        settings: GroupSettings {
            name: r.get(1)?,
            tenant_id: r.get(2)?,
            types,
            project_id: r.get(4)?,
            user_id: r.get(5)?,
            start_at,
            ack_wait: Duration::from_millis(r.get::<_, i64>(7)? as u64),
            max_deliver: r.get(8)?,
            max_ack_pending: r.get(9)?,
            ordered: r.get(10)?,
        },
        cursor: r.get::<_, i64>(11)? as u64,
        created_at: Timestamp::from_micros(r.get(12)?),
        updated_at: Timestamp::from_micros(r.get(13)?),
    })
}

fn select_group(c: &Connection, name: &str) -> rusqlite::Result<Option<Group>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM consumer_groups WHERE name = ?1"
    ))?
    .query_row([name], row_to_group)
    .optional()
}

fn select_event(c: &Connection, seq: u64) -> rusqlite::Result<Option<Event>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE seq = ?1"))?
        .query_row([seq as i64], row_to_event)
        .optional()
}

/// The outstanding messages of a group (not acked, not dead), by `seq`.
fn outstanding(c: &Connection, group_id: i64) -> rusqlite::Result<Vec<Outstanding>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, project_id, state, visible_at FROM group_messages \
         WHERE group_id = ?1 AND state IN (0, 1) ORDER BY seq",
    )?;
    let rows = stmt.query_map([group_id], |r| {
        Ok(Outstanding {
            seq: r.get::<_, i64>(0)? as u64,
            project_id: r.get(1)?,
            state: r.get(2)?,
            visible_at: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// `WHERE` terms for the group filter `f` on `events`, with their arguments. Never a range or
/// an `OR` on `type` that SQLite could serve from the `(type, seq)` index: the top-up reads the
/// first matching events in `seq` order after the cursor, which the primary key (or an index
/// on `(<one type or scope column>, seq)`) yields in order, stopping at the `LIMIT`; a type
/// range made SQLite read every later event of the matching types and sort them, per fetch.
/// So one exact type is `type = ?`, anything else goes through `eb_match`.
fn filter_terms(f: &EventFilter, sql: &mut String, args: &mut Vec<SqlValue>) {
    match f.types.as_slice() {
        _ if f.all_types() => {}
        [only] if only.is_exact() => {
            sql.push_str(" AND type = ?");
            args.push(SqlValue::Text(only.as_str().to_owned()));
        }
        types => {
            let terms = vec!["eb_match(?, type)"; types.len()];
            sql.push_str(&format!(" AND ({})", terms.join(" OR ")));
            args.extend(types.iter().map(|p| SqlValue::Text(p.as_str().to_owned())));
        }
    }
    for (column, value) in [
        ("project_id", &f.project_id),
        ("tenant_id", &f.tenant_id),
        ("user_id", &f.user_id),
    ] {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(SqlValue::Text(v.clone()));
        }
    }
}

/// The first `limit` events matching `f` with `after < seq <= upto`, in `seq` order.
fn select_window(
    c: &Connection,
    f: &EventFilter,
    after: u64,
    upto: u64,
    limit: usize,
) -> rusqlite::Result<Vec<Arc<Event>>> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ? AND seq <= ?");
    let mut args = vec![
        SqlValue::Integer(after as i64),
        SqlValue::Integer(upto.min(i64::MAX as u64) as i64),
    ];
    filter_terms(f, &mut sql, &mut args);
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(SqlValue::Integer(limit as i64));
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| row_to_event(r).map(Arc::new))?;
    rows.collect()
}

/// Matching events after `after`: the group's pending events beyond its cursor (a scan of the
/// log after the cursor, for state queries).
fn count_after(c: &Connection, f: &EventFilter, after: u64) -> rusqlite::Result<u64> {
    let mut sql = "SELECT count(*) FROM events WHERE seq > ?".to_owned();
    let mut args = vec![SqlValue::Integer(after as i64)];
    filter_terms(f, &mut sql, &mut args);
    c.prepare_cached(&sql)?
        .query_row(params_from_iter(args), |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// One fetch, inside the writer's transaction (see [`crate::store::group`], "The fetch").
fn fetch_in(
    tx: &Transaction<'_>,
    g: &Group,
    max: usize,
    now: i64,
    token: u64,
) -> rusqlite::Result<Vec<GroupMessage>> {
    let max = max.min(MAX_FETCH);
    let gid = g.id as i64;
    let s = &g.settings;
    let lease_end = now.saturating_add(s.ack_wait_ms().saturating_mul(1000));
    let window = s.max_ack_pending as usize;
    // 1. Leases that ran out at the last delivery: dead letters.
    tx.prepare_cached(
        "UPDATE group_messages SET state = 2, visible_at = 0, dead_at = ?3, \
         dead_reason = 'expired' \
         WHERE group_id = ?1 AND state = 1 AND visible_at <= ?3 AND delivery_count >= ?2",
    )?
    .execute(params![gid, s.max_deliver, now])?;

    // 2. The candidates: at most `want`, what `max` and the leases `max_ack_pending` leave.
    let (candidates, want, outstanding_count, mut blocked) = if s.ordered {
        let rows = outstanding(tx, gid)?;
        let mut plan = plan_ordered(&rows, now, max);
        let want = max.min(window.saturating_sub(plan.leased));
        plan.candidates.truncate(want);
        (plan.candidates, want, rows.len(), Some(plan.blocked))
    } else {
        let (count, leased): (i64, i64) = tx
            .prepare_cached(
                "SELECT count(*), coalesce(sum(state = 1 AND visible_at > ?2), 0) \
                 FROM group_messages WHERE group_id = ?1 AND state IN (0, 1)",
            )?
            .query_row(params![gid, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let want = max.min(window.saturating_sub(leased as usize));
        let seqs = tx
            .prepare_cached(
                "SELECT seq FROM group_messages \
                 WHERE group_id = ?1 AND state IN (0, 1) AND visible_at <= ?2 \
                 ORDER BY seq LIMIT ?3",
            )?
            .query_map(params![gid, now, want as i64], |r| {
                r.get::<_, i64>(0).map(|s| s as u64)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        (seqs, want, count as usize, None)
    };
    let mut out: Vec<GroupMessage> = Vec::with_capacity(want);

    // 3. Lease the candidates; one whose event was archived meanwhile is a dead letter.
    let mut redelivered = 0;
    {
        let mut lease = tx.prepare_cached(
            "UPDATE group_messages SET state = 1, visible_at = ?3, \
             delivery_count = delivery_count + 1, token = ?4 \
             WHERE group_id = ?1 AND seq = ?2 RETURNING delivery_count",
        )?;
        let mut archived = tx.prepare_cached(
            "UPDATE group_messages SET state = 2, visible_at = 0, dead_at = ?3, \
             dead_reason = 'archived' WHERE group_id = ?1 AND seq = ?2",
        )?;
        for seq in &candidates {
            let Some(event) = select_event(tx, *seq)? else {
                archived.execute(params![gid, *seq as i64, now])?;
                continue;
            };
            let count: u32 = lease
                .query_row(params![gid, *seq as i64, lease_end, token as i64], |r| {
                    r.get(0)
                })?;
            if count > 1 {
                redelivered += 1;
            }
            out.push(GroupMessage::new(g.id, Arc::new(event), count, token));
        }
    }

    // 4. The top-up: the shortfall, within the window, from the cursor on.
    let take = want
        .saturating_sub(candidates.len())
        .min(window.saturating_sub(outstanding_count));
    if take > 0 {
        // The writer commits every append: nothing up to the head can commit later.
        let upto = read_head(tx)?;
        let events = select_window(tx, &s.filter(), g.cursor, upto, take)?;
        let cursor = if events.len() < take {
            upto.max(g.cursor)
        } else {
            events.last().map_or(g.cursor, |e| e.seq)
        };
        let mut insert = tx.prepare_cached(
            "INSERT INTO group_messages (group_id, seq, project_id, state, visible_at, \
             delivery_count, token, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for event in events {
            // In an ordered group, a project with a message outstanding waits its turn.
            let lease = blocked
                .as_mut()
                .is_none_or(|b| b.insert(event.project_id.clone()));
            let (state, visible_at, count, row_token) = if lease {
                (LEASED, lease_end, 1, token as i64)
            } else {
                (READY, now, 0, 0)
            };
            insert.execute(params![
                gid,
                event.seq as i64,
                event.project_id,
                state,
                visible_at,
                count,
                row_token,
                now
            ])?;
            if lease {
                out.push(GroupMessage::new(g.id, event, 1, token));
            }
        }
        if cursor != g.cursor {
            tx.prepare_cached("UPDATE consumer_groups SET cursor = ?2 WHERE id = ?1")?
                .execute(params![gid, cursor as i64])?;
        }
    }
    if redelivered > 0 {
        tx.prepare_cached(
            "UPDATE consumer_groups SET redelivered = redelivered + ?2 WHERE id = ?1",
        )?
        .execute(params![gid, redelivered])?;
    }
    out.sort_by_key(|m| m.event.seq);
    Ok(out)
}

/// The ack ids of `ack_ids` that name a delivery of `g` whose lease runs at `now`, each handed
/// to `apply` (which returns whether it changed the row); the outcome of every id, in order.
fn settle(
    g: &Group,
    ack_ids: &[String],
    mut apply: impl FnMut(&AckId) -> rusqlite::Result<bool>,
) -> rusqlite::Result<Vec<AckOutcome>> {
    let (mine, mut outcomes) = sort_ack_ids(g, ack_ids);
    for (i, id) in mine {
        if apply(&id)? {
            outcomes[i] = AckOutcome::Acked;
        }
    }
    Ok(outcomes)
}

/// The condition that an ack id's delivery is the message's current one and its lease runs:
/// parameters `?1` group, `?2` seq, `?3` delivery count, `?4` token, `?5` now.
const CURRENT_DELIVERY: &str = "group_id = ?1 AND seq = ?2 AND state = 1 AND delivery_count = ?3 \
     AND token = ?4 AND visible_at > ?5";

fn row_to_dead_letter(group_id: u64, r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let event = match r.get::<_, Option<i64>>(0)? {
        Some(_) => Some(Arc::new(row_to_event(r)?)),
        None => None,
    };
    let seq = r.get::<_, i64>(9)? as u64;
    let delivery_count: u32 = r.get(10)?;
    let reason: String = r.get(13)?;
    Ok(DeadLetter {
        ack_id: AckId {
            group_id,
            seq,
            delivery_count,
            token: r.get::<_, i64>(11)? as u64,
        }
        .to_string(),
        seq,
        delivery_count,
        reason: DeadReason::parse(&reason).ok_or_else(|| {
            conversion(
                13,
                std::io::Error::other(format!("unknown reason {reason}")),
            )
        })?,
        dead_lettered_at: Timestamp::from_micros(r.get(12)?),
        event,
    })
}

#[async_trait]
impl GroupStore for SqliteStore {
    async fn put_group(
        &self,
        settings: GroupSettings,
        now: Timestamp,
    ) -> Result<(Group, bool), StoreError> {
        settings.check()?;
        self.write(move |c| {
            let tx = c.transaction()?;
            let s = &settings;
            let created = match select_group(&tx, &s.name)? {
                None => {
                    let cursor = s.start_at.cursor(read_head(&tx)?);
                    tx.prepare_cached(&format!(
                        "INSERT INTO consumer_groups ({GROUP_COLUMNS}) VALUES \
                         (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)"
                    ))?
                    .execute(params![
                        s.name,
                        s.tenant_id,
                        types_json(&s.types),
                        s.project_id,
                        s.user_id,
                        s.start_at.to_string(),
                        s.ack_wait_ms(),
                        s.max_deliver,
                        s.max_ack_pending,
                        s.ordered,
                        cursor as i64,
                        now.as_micros(),
                    ])?;
                    true
                }
                Some(g) => {
                    tx.prepare_cached(
                        "UPDATE consumer_groups SET tenant_id = ?2, types = ?3, project_id = ?4, \
                         user_id = ?5, ack_wait_ms = ?6, max_deliver = ?7, max_ack_pending = ?8, \
                         ordered = ?9, updated_at = ?10 WHERE id = ?1",
                    )?
                    .execute(params![
                        g.id as i64,
                        s.tenant_id,
                        types_json(&s.types),
                        s.project_id,
                        s.user_id,
                        s.ack_wait_ms(),
                        s.max_deliver,
                        s.max_ack_pending,
                        s.ordered,
                        now.as_micros(),
                    ])?;
                    false
                }
            };
            let group = select_group(&tx, &s.name)?.expect("the group was just written");
            tx.commit()?;
            Ok((group, created))
        })
        .await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| select_group(c, &name)).await
    }

    async fn list_groups(&self, tenant: Option<&str>) -> Result<Vec<Group>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {GROUP_COLUMNS} FROM consumer_groups \
                 WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY name"
            ))?
            .query_map([tenant], row_to_group)?
            .collect()
        })
        .await
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(false);
            };
            tx.execute(
                "DELETE FROM group_messages WHERE group_id = ?1",
                [g.id as i64],
            )?;
            tx.execute("DELETE FROM consumer_groups WHERE id = ?1", [g.id as i64])?;
            tx.commit()?;
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
        let name = name.to_owned();
        let token = new_token();
        self.write(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(None);
            };
            let out = fetch_in(&tx, &g, max, now.as_micros(), token)?;
            tx.commit()?;
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
        let name = name.to_owned();
        let ack_ids = ack_ids.to_vec();
        self.write(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(None);
            };
            let outcomes = {
                let mut delete = tx.prepare_cached(&format!(
                    "DELETE FROM group_messages WHERE {CURRENT_DELIVERY}"
                ))?;
                settle(&g, &ack_ids, |id| {
                    let n = delete.execute(params![
                        g.id as i64,
                        id.seq as i64,
                        id.delivery_count,
                        id.token as i64,
                        now.as_micros()
                    ])?;
                    Ok(n == 1)
                })?
            };
            tx.commit()?;
            Ok(Some(outcomes))
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
        let name = name.to_owned();
        let ack_ids = ack_ids.to_vec();
        let delay = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(None);
            };
            let outcomes = {
                // At the last delivery: a dead letter; otherwise ready after the delay.
                let mut give_back = tx.prepare_cached(&format!(
                    "UPDATE group_messages SET \
                     state = CASE WHEN delivery_count >= ?6 THEN 2 ELSE 0 END, \
                     visible_at = CASE WHEN delivery_count >= ?6 THEN 0 ELSE ?7 END, \
                     dead_at = CASE WHEN delivery_count >= ?6 THEN ?5 END, \
                     dead_reason = CASE WHEN delivery_count >= ?6 THEN 'nacked' END \
                     WHERE {CURRENT_DELIVERY}"
                ))?;
                let now = now.as_micros();
                settle(&g, &ack_ids, |id| {
                    let n = give_back.execute(params![
                        g.id as i64,
                        id.seq as i64,
                        id.delivery_count,
                        id.token as i64,
                        now,
                        g.settings.max_deliver,
                        now.saturating_add(delay),
                    ])?;
                    Ok(n == 1)
                })?
            };
            tx.commit()?;
            Ok(Some(outcomes))
        })
        .await
    }

    async fn group_state(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<GroupState>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| {
            // One snapshot for the group, its messages and the log.
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(None);
            };
            let now = now.as_micros();
            let (ack_pending, never_delivered, dead, oldest): (i64, i64, i64, Option<i64>) = tx
                .prepare_cached(
                    "SELECT coalesce(sum(state = 1 AND visible_at > ?2), 0), \
                     coalesce(sum(state = 0 AND delivery_count = 0), 0), \
                     coalesce(sum(state = 2 OR (state = 1 AND visible_at <= ?2 \
                                                AND delivery_count >= ?3)), 0), \
                     min(CASE WHEN state < 2 THEN created_at END) \
                     FROM group_messages WHERE group_id = ?1",
                )?
                .query_row(params![g.id as i64, now, g.settings.max_deliver], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
            let redelivered: i64 = tx
                .prepare_cached("SELECT redelivered FROM consumer_groups WHERE id = ?1")?
                .query_row([g.id as i64], |r| r.get(0))?;
            let after = count_after(&tx, &g.settings.filter(), g.cursor)?;
            Ok(Some(GroupState {
                cursor: g.cursor,
                pending: after + never_delivered as u64,
                ack_pending: ack_pending as u64,
                redelivered: redelivered as u64,
                dead_lettered: dead as u64,
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
        let name = name.to_owned();
        let after = after.unwrap_or(0);
        let limit = limit.min(MAX_DEAD_LETTER_PAGE);
        self.read(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(None);
            };
            let mut items = tx
                .prepare_cached(&format!(
                    "SELECT {JOINED_EVENT_COLUMNS}, m.seq, m.delivery_count, m.token, m.dead_at, \
                     m.dead_reason FROM group_messages m LEFT JOIN events e ON e.seq = m.seq \
                     WHERE m.group_id = ?1 AND m.state = {DEAD} AND m.visible_at = 0 \
                       AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
                ))?
                .query_map(
                    params![g.id as i64, after as i64, (limit + 1) as i64],
                    |r| row_to_dead_letter(g.id, r),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_after = (items.len() > limit).then(|| {
                items.truncate(limit);
                items.last().map_or(after, |d| d.seq)
            });
            Ok(Some(Page { items, next_after }))
        })
        .await
    }

    async fn retry_dead_letter(
        &self,
        name: &str,
        ack_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        let Some(id) = AckId::parse(ack_id) else {
            return Ok(false);
        };
        self.write(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(false);
            };
            if g.id != id.group_id {
                return Ok(false);
            }
            let n = tx
                .prepare_cached(
                    "UPDATE group_messages SET state = 0, visible_at = ?3, delivery_count = 0, \
                     token = 0, dead_at = NULL, dead_reason = NULL \
                     WHERE group_id = ?1 AND seq = ?2 AND state = 2",
                )?
                .execute(params![g.id as i64, id.seq as i64, now.as_micros()])?;
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    async fn next_ready_at(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let name = name.to_owned();
        let now = now.as_micros();
        self.read(move |c| {
            let tx = c.transaction()?;
            let Some(g) = select_group(&tx, &name)? else {
                return Ok(None);
            };
            let at = if g.settings.ordered {
                ordered_next_ready(&outstanding(&tx, g.id as i64)?, now)
            } else {
                tx.prepare_cached(
                    "SELECT min(visible_at) FROM group_messages \
                     WHERE group_id = ?1 AND state IN (0, 1) AND visible_at > ?2",
                )?
                .query_row(params![g.id as i64, now], |r| r.get(0))?
            };
            Ok(at.map(Timestamp::from_micros))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
