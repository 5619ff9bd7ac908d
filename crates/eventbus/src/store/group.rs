//! Consumer groups: durable, named, shared pull consumers of the event log (issue 15), the way
//! NATS JetStream pull consumers or SQS queues work, kept in the same database as the events.
//!
//! [`GroupStore`] is a contract of its own beside [`EventStore`](super::EventStore), implemented
//! by every backend (`store::sqlite::group`, `store::postgres::group`); the `contract` test
//! module holds the tests both run.
//!
//! # Tables
//! - `consumer_groups`: one row per group: its [`GroupSettings`], its **cursor** (every event up
//!   to it has been considered: turned into a message when it matched, passed over otherwise),
//!   the total of redeliveries, and an `id` that is never reused (so an ack id of a group that
//!   was deleted and created again under the same name is unknown to the new one).
//! - `group_messages`: one row per (group, event `seq`) taken from the log and not yet acked,
//!   the primary key, so no event becomes two messages of one group. A row is `ready` (0: to be
//!   handed out once `visible_at` has passed, which a nack with a delay moves into the future),
//!   `leased` (1: handed out until `visible_at`, the lease end) or `dead` (2: a dead letter). It
//!   keeps the event's `project_id` (for ordering), its `delivery_count`, the random `token` of
//!   its last delivery and its creation time. An acked message's row is deleted.
//! - Index `group_messages_ready (group_id, state, visible_at, seq)`: the fetch's ready rows, the
//!   lease counts, the dead letters in `seq` order (a dead row's `visible_at` is 0); acks find
//!   their row by the primary key, since the ack id carries the `seq`.
//!
//! # Ack ids
//! An ack id names one delivery of one message: `<group id>.<seq>.<delivery count>.<token>` (hex),
//! with a random token drawn per fetch. An ack or nack applies only while that very delivery's
//! lease runs: after the lease ran out, after a redelivery, a nack, a dead-lettering, or when the
//! message was acked already, the answer is [`AckOutcome::Expired`]; an ack id that is not one
//! of this group's (malformed, another group's, a `seq` past the cursor) is
//! [`AckOutcome::Unknown`]. Never a silent success.
//!
//! # The fetch
//! [`GroupStore::fetch`] is one write transaction, serialised per group (SQLite: the single
//! writer; PostgreSQL: `SELECT … FOR UPDATE` of the group row, so fetches of one group on any
//! number of processes take turns while acks and other groups go on beside them):
//! 1. leased messages whose lease ran out at their `max_deliver`-th delivery become dead letters
//!    (reason `expired`);
//! 2. the **candidates**: messages ready now (`ready` with `visible_at <= now`, or `leased` with
//!    the lease run out), oldest `seq` first, at most `max` (and [`MAX_FETCH`]) and no more than
//!    `max_ack_pending` minus the messages leased now. An **ordered** group takes per project (events without a
//!    project are one more project) only the oldest outstanding message, and only when no
//!    message of that project is leased, so a project has at most one unacked message at a time,
//!    delivered in `seq` order;
//! 3. the candidates are leased for `ack_wait` (`delivery_count + 1`, a new token). A message
//!    whose event was archived out of the hot table before it could be delivered becomes a dead
//!    letter instead (reason `archived`);
//! 4. the **top-up**, when the candidates fall short of that: the matching events after the
//!    cursor become messages, at most the shortfall and no more than fit the **window** (at most
//!    `max_ack_pending` messages outstanding, i.e. not acked and not dead). The read is gap-free:
//!    it reads the log's head first and only events up to it, all of them committed since
//!    appends commit in `seq` order (SQLite: the writer that runs the fetch commits every
//!    append; PostgreSQL: the committer's advisory lock), in `seq` order from the cursor, with
//!    no `type` index that would read and sort every later event of the types. The cursor moves
//!    to the last event taken, or to the head when the read reached it, in the same transaction
//!    as the inserts. New messages are leased at once, except in an ordered group those of a
//!    project that already has one outstanding (they wait their turn).
//!
//! The fetch returns what it leased, in `seq` order. When it returns nothing, only one of these
//! can make the next one return something: a new event (the commit log's head moves), a lease
//! end or a nack's delay ([`GroupStore::next_ready_at`]), an ack or nack (which frees room
//! under `max_ack_pending` or a project of an ordered group), a retried dead letter or a change
//! of the settings. A long-poll waits for those.
//!
//! # Guarantees
//! - **At least once**: a message leaves the table only by an ack of its current delivery; a
//!   lease that runs out (a crashed or slow fetcher) makes it ready again; after `max_deliver`
//!   deliveries it is kept as a dead letter until retried or the group is deleted. The cursor
//!   and the messages live in the database, so a crash of any process loses nothing.
//! - **One fetcher at a time per message**: a message is handed out only when it is not leased;
//!   fetches of a group are serialised, so two fetches never both take it.
//! - **Per-project order** in ordered groups (step 2), across every fetcher and process.
//! - **Settings change, positions do not**: [`GroupStore::put_group`] on an existing group
//!   replaces its settings (new filters apply to events the top-up reads from then on) and keeps
//!   its cursor and messages; `start_at` is resolved once, at creation.
//!
//! This file is long because the `contract` test module (about half of it) lives beside the
//! contract it checks, as the webhook store's does.
//!
//! The cost of a fetch is a few statements over at most `max` new rows and the group's ready
//! rows (an ordered group reads all of its outstanding rows, at most the window); an ack is one
//! primary-key delete per id. Everything a batch does is one transaction (SQLite: one commit on
//! the writer; PostgreSQL: multi-row statements with `UNNEST`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
pub use super::webhook::Page;
use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;

/// Most dead letters one page holds.
pub const MAX_DEAD_LETTER_PAGE: usize = 1000;
/// Most messages one fetch hands out (a larger `max` counts as this).
pub const MAX_FETCH: usize = 1000;
/// Longest group name.
pub const MAX_NAME_LEN: usize = 64;

/// A message row waiting to be handed out (once its `visible_at` has passed).
pub(crate) const READY: i64 = 0;
/// A message row handed out until its `visible_at`.
pub(crate) const LEASED: i64 = 1;
/// A dead letter.
pub(crate) const DEAD: i64 = 2;

/// Whether `name` is a valid group name: `[a-z0-9][a-z0-9_.-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b))
}

/// Where a new group starts in the log; resolved into its cursor once, at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// After the log's head when the group is created: only events published later.
    New,
    /// The beginning of the log (the hot table: archived events are not read).
    Earliest,
    /// The first event delivered is the first matching one with this `seq` or a larger one.
    Seq(u64),
}

impl StartAt {
    /// The cursor a group created with this start gets, given the log's `head`.
    pub fn cursor(self, head: u64) -> u64 {
        match self {
            StartAt::New => head,
            StartAt::Earliest => 0,
            StartAt::Seq(n) => n.saturating_sub(1),
        }
    }

    /// Parses the stored and wire form: `new`, `earliest` or a `seq`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "new" => Some(StartAt::New),
            "earliest" => Some(StartAt::Earliest),
            n => n.parse().ok().map(StartAt::Seq),
        }
    }
}

impl fmt::Display for StartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAt::New => f.write_str("new"),
            StartAt::Earliest => f.write_str("earliest"),
            StartAt::Seq(n) => write!(f, "{n}"),
        }
    }
}

/// What a group is: its name, owner, filters and delivery rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// Unique name, `[a-z0-9][a-z0-9_.-]{0,63}` ([`valid_name`]).
    pub name: String,
    /// The tenant the group belongs to, which is also a filter: only this tenant's events. `None`
    /// for a group of an unrestricted key, which sees every tenant's events.
    pub tenant_id: Option<String>,
    /// Type patterns; an event is taken when its type matches one (at least one pattern).
    pub types: Vec<Pattern>,
    /// Only events of this project.
    pub project_id: Option<String>,
    /// Only events of this user.
    pub user_id: Option<String>,
    /// Where a new group starts (ignored when the group exists).
    pub start_at: StartAt,
    /// How long a delivery is leased before the message is handed out again (at least 1 ms;
    /// stored in whole milliseconds).
    pub ack_wait: Duration,
    /// Deliveries before a message whose lease runs out (or that is nacked) becomes a dead
    /// letter (at least 1).
    pub max_deliver: u32,
    /// Most messages outstanding at once (handed out or waiting, not acked, not dead), hence
    /// also most leased (at least 1).
    pub max_ack_pending: u32,
    /// At most one unacked message per project at a time, in `seq` order per project.
    pub ordered: bool,
}

/// Why [`GroupSettings`] cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupSettingsError {
    /// The name breaks the grammar.
    #[error(
        "`{0}` is not a consumer name: use 1 to 64 of a-z, 0-9, `_`, `.`, `-`, starting with a letter or digit"
    )]
    Name(String),
    /// No type pattern.
    #[error("a consumer needs at least one type pattern")]
    NoTypes,
    /// `ack_wait` under a millisecond.
    #[error("the ack wait must be at least 1 ms")]
    AckWait,
    /// `max_deliver` of 0.
    #[error("maxDeliver must be at least 1")]
    MaxDeliver,
    /// `max_ack_pending` of 0.
    #[error("maxAckPending must be at least 1")]
    MaxAckPending,
}

impl GroupSettings {
    /// Settings with the defaults of the issue: start at new events, 30 s ack wait, 5
    /// deliveries, 1,000 messages pending, unordered.
    pub fn new(name: impl Into<String>, types: Vec<Pattern>) -> Self {
        GroupSettings {
            name: name.into(),
            tenant_id: None,
            types,
            project_id: None,
            user_id: None,
            start_at: StartAt::New,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1000,
            ordered: false,
        }
    }

    /// Checks what the store requires; [`GroupStore::put_group`] refuses settings that fail
    /// this (as [`StoreError::Internal`]), so callers check first.
    pub fn validate(&self) -> Result<(), GroupSettingsError> {
        if !valid_name(&self.name) {
            return Err(GroupSettingsError::Name(self.name.clone()));
        }
        if self.types.is_empty() {
            return Err(GroupSettingsError::NoTypes);
        }
        if self.ack_wait < Duration::from_millis(1) {
            return Err(GroupSettingsError::AckWait);
        }
        if self.max_deliver == 0 {
            return Err(GroupSettingsError::MaxDeliver);
        }
        if self.max_ack_pending == 0 {
            return Err(GroupSettingsError::MaxAckPending);
        }
        Ok(())
    }

    /// The events the group takes from the log.
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            types: self.types.clone(),
            project_id: self.project_id.clone(),
            tenant_id: self.tenant_id.clone(),
            user_id: self.user_id.clone(),
            ..EventFilter::default()
        }
    }

    /// `ack_wait` in whole milliseconds, as stored.
    pub fn ack_wait_ms(&self) -> i64 {
        i64::try_from(self.ack_wait.as_millis()).unwrap_or(i64::MAX)
    }

    /// [`GroupSettings::validate`] as a store error, for backends.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        self.validate()
            .map_err(|e| StoreError::Internal(format!("invalid consumer group settings: {e}")))
    }
}

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The store's id of the group, part of its ack ids; never reused, so it changes when a
    /// group is deleted and created again.
    pub id: u64,
    /// Its settings (`start_at` as given at creation).
    pub settings: GroupSettings,
    /// Every event up to this `seq` has been considered.
    pub cursor: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last settings change.
    pub updated_at: Timestamp,
}

/// One delivery of one message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMessage {
    /// Names this delivery: ack or nack it with this.
    pub ack_id: String,
    /// 1 on the first delivery.
    pub delivery_count: u32,
    /// The event.
    #[serde(serialize_with = "event_ref")]
    pub event: Arc<Event>,
}

/// What an ack or nack did with one ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckOutcome {
    /// Done: acked (the message is gone) or nacked (it will be redelivered or was
    /// dead-lettered).
    Acked,
    /// Not an ack id of this group (HTTP 404).
    Unknown,
    /// This delivery is over: its lease ran out, the message was redelivered, nacked,
    /// dead-lettered or acked already (HTTP 409).
    Expired,
}

/// Why a message became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadReason {
    /// Its lease ran out at its last allowed delivery.
    Expired,
    /// It was nacked at its last allowed delivery.
    Nacked,
    /// Its event was archived out of the hot table before it could be delivered.
    Archived,
}

impl DeadReason {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Expired => "expired",
            DeadReason::Nacked => "nacked",
            DeadReason::Archived => "archived",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "expired" => Some(DeadReason::Expired),
            "nacked" => Some(DeadReason::Nacked),
            "archived" => Some(DeadReason::Archived),
            _ => None,
        }
    }
}

/// A message the group gave up on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The ack id of its last delivery; [`GroupStore::retry_dead_letter`] takes it.
    pub ack_id: String,
    /// The event's `seq`.
    pub seq: u64,
    /// Deliveries made.
    pub delivery_count: u32,
    /// Why it is dead.
    pub reason: DeadReason,
    /// When it became a dead letter.
    pub dead_lettered_at: Timestamp,
    /// The event (`None` when it was archived).
    #[serde(serialize_with = "optional_event_ref")]
    pub event: Option<Arc<Event>>,
}

fn event_ref<S: serde::Serializer>(event: &Arc<Event>, s: S) -> Result<S::Ok, S::Error> {
    Serialize::serialize(&**event, s)
}

fn optional_event_ref<S: serde::Serializer>(
    event: &Option<Arc<Event>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    Serialize::serialize(&event.as_deref(), s)
}

/// Where a group stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// Every event up to this `seq` has been considered.
    pub cursor: u64,
    /// Matching events not delivered yet: those after the cursor and the messages never handed
    /// out.
    pub pending: u64,
    /// Messages handed out whose lease runs (not acked).
    pub ack_pending: u64,
    /// Deliveries after the first, in total since the group was created.
    pub redelivered: u64,
    /// Dead letters (including leases that ran out at the last delivery, which the next fetch
    /// turns into dead letters).
    pub dead_lettered: u64,
    /// How long the oldest outstanding message (not acked, not dead) has existed; `None` when
    /// there is none.
    pub oldest_unacked: Option<Duration>,
}

/// The parts of an ack id (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckId {
    /// [`Group::id`].
    pub group_id: u64,
    /// The event's `seq`.
    pub seq: u64,
    /// Which delivery.
    pub delivery_count: u32,
    /// The random token of that delivery.
    pub token: u64,
}

impl AckId {
    /// Parses an ack id; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let mut next = || u64::from_str_radix(parts.next()?, 16).ok();
        let id = AckId {
            group_id: next()?,
            seq: next()?,
            delivery_count: u32::try_from(next()?).ok()?,
            token: next()?,
        };
        parts.next().is_none().then_some(id)
    }
}

impl fmt::Display for AckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:x}.{:x}.{:x}.{:016x}",
            self.group_id, self.seq, self.delivery_count, self.token
        )
    }
}

impl GroupMessage {
    /// The delivery `delivery_count` of `event` in group `group_id`, with the fetch's `token`.
    pub(crate) fn new(group_id: u64, event: Arc<Event>, delivery_count: u32, token: u64) -> Self {
        let ack_id = AckId {
            group_id,
            seq: event.seq,
            delivery_count,
            token,
        };
        GroupMessage {
            ack_id: ack_id.to_string(),
            delivery_count,
            event,
        }
    }
}

/// The stored form of a group's type patterns: a JSON array of strings.
pub(crate) fn types_json(types: &[Pattern]) -> String {
    let types: Vec<&str> = types.iter().map(Pattern::as_str).collect();
    serde_json::to_string(&types).expect("strings serialise")
}

/// The stored form read back (`None` when it is not one).
pub(crate) fn parse_types(json: &str) -> Option<Vec<Pattern>> {
    let types: Vec<String> = serde_json::from_str(json).ok()?;
    types.iter().map(|t| Pattern::parse(t).ok()).collect()
}

/// The event columns of `events e` (both backends' `COLUMNS` order), for joins.
pub(crate) const JOINED_EVENT_COLUMNS: &str =
    "e.seq, e.id, e.type, e.ts, e.project_id, e.tenant_id, e.user_id, e.payload, e.metadata";

/// A fresh delivery token (one per fetch).
pub(crate) fn new_token() -> u64 {
    getrandom::u64().expect("the OS random source works")
}

/// Ack ids of `group` split into those that may name one of its messages (`seq <= cursor`),
/// with their index in the request, and the outcome of the others ([`AckOutcome::Unknown`]).
pub(crate) fn sort_ack_ids(
    group: &Group,
    ack_ids: &[String],
) -> (Vec<(usize, AckId)>, Vec<AckOutcome>) {
    let mut mine = Vec::with_capacity(ack_ids.len());
    let mut outcomes = vec![AckOutcome::Unknown; ack_ids.len()];
    for (i, raw) in ack_ids.iter().enumerate() {
        if let Some(id) = AckId::parse(raw)
            && id.group_id == group.id
            && id.seq <= group.cursor
            && id.seq > 0
        {
            outcomes[i] = AckOutcome::Expired;
            mine.push((i, id));
        }
    }
    (mine, outcomes)
}

/// One outstanding message (not acked, not dead) as an ordered group's fetch plans with it.
#[derive(Debug, Clone)]
pub(crate) struct Outstanding {
    /// The event's `seq`.
    pub seq: u64,
    /// The event's project.
    pub project_id: Option<String>,
    /// [`READY`] or [`LEASED`].
    pub state: i64,
    /// When it becomes ready (ready) or its lease ends (leased), µs.
    pub visible_at: i64,
}

/// What an ordered group's fetch may hand out of its outstanding messages.
#[derive(Debug, Default)]
pub(crate) struct OrderedPlan {
    /// Messages to lease now, by `seq`.
    pub candidates: Vec<u64>,
    /// Projects with an outstanding message: a new message of one waits its turn.
    pub blocked: HashSet<Option<String>>,
    /// Messages whose lease runs now.
    pub leased: usize,
}

/// Plans an ordered group's fetch over its outstanding messages (`rows` in `seq` order): the
/// oldest message of each project whose project has nothing leased, when it is ready at `now`;
/// at most `max`.
pub(crate) fn plan_ordered(rows: &[Outstanding], now: i64, max: usize) -> OrderedPlan {
    let busy: HashSet<&Option<String>> = rows
        .iter()
        .filter(|r| r.state == LEASED && r.visible_at > now)
        .map(|r| &r.project_id)
        .collect();
    let mut plan = OrderedPlan {
        leased: rows
            .iter()
            .filter(|r| r.state == LEASED && r.visible_at > now)
            .count(),
        ..OrderedPlan::default()
    };
    for r in rows {
        if !plan.blocked.insert(r.project_id.clone()) {
            continue; // not its project's oldest
        }
        if plan.candidates.len() < max && r.visible_at <= now && !busy.contains(&r.project_id) {
            plan.candidates.push(r.seq);
        }
    }
    plan
}

/// The earliest time after `now` one of an ordered group's outstanding messages (`rows` in
/// `seq` order) becomes ready by time alone: the lease end or delay of a project's oldest
/// message (the others wait for it).
pub(crate) fn ordered_next_ready(rows: &[Outstanding], now: i64) -> Option<i64> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|r| seen.insert(&r.project_id))
        .map(|r| r.visible_at)
        .filter(|at| *at > now)
        .min()
}

/// The durable state of consumer groups. See the module docs for what every implementation
/// keeps.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates the group (its cursor from [`GroupSettings::start_at`] and the log's head, read
    /// in the same transaction) or replaces the settings of the existing one of that name (its
    /// cursor, messages and counters stay). Returns the group and `true` when it was created.
    /// Settings must pass [`GroupSettings::validate`].
    async fn put_group(
        &self,
        settings: GroupSettings,
        now: Timestamp,
    ) -> Result<(Group, bool), StoreError>;

    /// The group of that name.
    async fn get_group(&self, name: &str) -> Result<Option<Group>, StoreError>;

    /// The groups of `tenant` (`Some`: those whose `tenant_id` is that tenant), or every group
    /// (`None`), by name.
    async fn list_groups(&self, tenant: Option<&str>) -> Result<Vec<Group>, StoreError>;

    /// Deletes the group with its messages and dead letters; `false` when there was none.
    async fn delete_group(&self, name: &str) -> Result<bool, StoreError>;

    /// Tops up (moves the cursor over matching events into messages, bounded by
    /// `max_ack_pending` and `max`) and leases up to `max` (at most [`MAX_FETCH`]) ready
    /// messages for `ack_wait`;
    /// returns them with their events, in `seq` order (see the module docs). Empty when nothing
    /// is ready, [`StoreError::Internal`] never for a missing group: `Ok(None)` then.
    async fn fetch(
        &self,
        name: &str,
        max: usize,
        now: Timestamp,
    ) -> Result<Option<Vec<GroupMessage>>, StoreError>;

    /// Acks deliveries: each message whose named delivery's lease still runs at `now` is done
    /// and removed. One outcome per ack id, in order; `None` when the group does not exist.
    async fn ack(
        &self,
        name: &str,
        ack_ids: &[String],
        now: Timestamp,
    ) -> Result<Option<Vec<AckOutcome>>, StoreError>;

    /// Gives deliveries back: each message whose named delivery's lease still runs is handed
    /// out again once `delay` has passed, or becomes a dead letter when that was its
    /// `max_deliver`-th delivery. Outcomes as for [`GroupStore::ack`].
    async fn nack(
        &self,
        name: &str,
        ack_ids: &[String],
        delay: Duration,
        now: Timestamp,
    ) -> Result<Option<Vec<AckOutcome>>, StoreError>;

    /// Where the group stands at `now`; `None` when it does not exist.
    async fn group_state(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<GroupState>, StoreError>;

    /// Dead letters of the group with `seq` above `after`, by `seq`, at most `limit` (at most
    /// [`MAX_DEAD_LETTER_PAGE`]); `None` when the group does not exist.
    async fn list_dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<Page<DeadLetter>>, StoreError>;

    /// Makes the dead letter named by `ack_id` (its [`DeadLetter::ack_id`], or any ack id of
    /// that message) a fresh message, ready at `now` with its delivery count reset; `false` when
    /// the group has no such dead letter.
    async fn retry_dead_letter(
        &self,
        name: &str,
        ack_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The earliest time after `now` at which a leased or delayed message of the group becomes
    /// ready by time alone (a lease end or a nack's delay; in an ordered group only each
    /// project's oldest message counts, the others wait for it), for a long-poll's timer.
    /// `None` when no message waits on time, or the group does not exist (new events wake a
    /// long-poll through the commit log instead, acks through the caller's own signal).
    async fn next_ready_at(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in [
            "billing",
            "a",
            "0x",
            "plugin-handler",
            "a.b_c",
            &"a".repeat(64),
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            ".a",
            "A",
            "a b",
            "a/b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn settings_are_validated() {
        let p = Pattern::parse("project.*").unwrap();
        let ok = GroupSettings::new("billing", vec![p.clone()]);
        assert_eq!(ok.validate(), Ok(()));
        let mut s = ok.clone();
        s.types.clear();
        assert_eq!(s.validate(), Err(GroupSettingsError::NoTypes));
        let mut s = ok.clone();
        s.max_deliver = 0;
        assert_eq!(s.validate(), Err(GroupSettingsError::MaxDeliver));
        let mut s = ok.clone();
        s.max_ack_pending = 0;
        assert_eq!(s.validate(), Err(GroupSettingsError::MaxAckPending));
        let mut s = ok.clone();
        s.ack_wait = Duration::from_micros(10);
        assert_eq!(s.validate(), Err(GroupSettingsError::AckWait));
        let mut s = ok;
        s.name = "Billing".into();
        assert!(matches!(s.validate(), Err(GroupSettingsError::Name(_))));
    }

    #[test]
    fn start_at_resolves_into_the_cursor() {
        assert_eq!(StartAt::New.cursor(42), 42);
        assert_eq!(StartAt::Earliest.cursor(42), 0);
        assert_eq!(StartAt::Seq(10).cursor(42), 9);
        assert_eq!(StartAt::Seq(0).cursor(42), 0);
        for s in [StartAt::New, StartAt::Earliest, StartAt::Seq(7)] {
            assert_eq!(StartAt::parse(&s.to_string()), Some(s));
        }
        assert_eq!(StartAt::parse("later"), None);
    }

    #[test]
    fn ack_ids_round_trip_and_reject_garbage() {
        let id = AckId {
            group_id: 3,
            seq: 1234,
            delivery_count: 2,
            token: u64::MAX - 5,
        };
        assert_eq!(AckId::parse(&id.to_string()), Some(id));
        for bad in ["", "1.2.3", "1.2.3.4.5", "x.2.3.4", "1.2.100000000.4"] {
            assert_eq!(AckId::parse(bad), None, "{bad}");
        }
    }

    fn row(seq: u64, project: Option<&str>, state: i64, visible_at: i64) -> Outstanding {
        Outstanding {
            seq,
            project_id: project.map(str::to_owned),
            state,
            visible_at,
        }
    }

    #[test]
    fn ordered_plans_take_each_free_projects_oldest_message() {
        let rows = [
            row(1, Some("a"), LEASED, 100), // a is busy until 100
            row(2, Some("a"), READY, 0),
            row(3, Some("b"), READY, 50), // b's head is delayed until 50
            row(4, Some("b"), READY, 0),
            row(5, None, READY, 0),
            row(6, None, READY, 0),
            row(7, Some("c"), LEASED, 10), // c's lease ran out at 10: redelivered
        ];
        let plan = plan_ordered(&rows, 20, 10);
        assert_eq!(plan.candidates, [5, 7]);
        assert_eq!(plan.leased, 1);
        assert_eq!(plan.blocked.len(), 4);
        assert_eq!(plan_ordered(&rows, 20, 1).candidates, [5]);
        assert_eq!(plan_ordered(&rows, 200, 10).candidates, [1, 3, 5, 7]);
        assert_eq!(
            ordered_next_ready(&rows, 20),
            Some(50),
            "a's lease ends at 100"
        );
        assert_eq!(ordered_next_ready(&rows, 50), Some(100));
        assert_eq!(ordered_next_ready(&rows, 100), None);
        assert_eq!(ordered_next_ready(&[], 0), None);
    }
}

/// The contract every [`GroupStore`] keeps, as test bodies each backend runs on a fresh store.
#[cfg(test)]
pub(crate) mod contract {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::core::event::NewEvent;
    use crate::store::EventStore;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    fn t(micros: i64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    fn event(ty: &str, project: Option<&str>, tenant: Option<&str>) -> Event {
        let mut e = NewEvent::new(ty, serde_json::json!({"n": 1}))
            .into_event(t(1))
            .unwrap();
        e.project_id = project.map(str::to_owned);
        e.tenant_id = tenant.map(str::to_owned);
        e
    }

    /// Appends `n` events of type `ty` without project or tenant; returns their seqs.
    async fn publish(s: &dyn EventStore, ty: &str, n: usize) -> Vec<u64> {
        let events = (0..n).map(|_| event(ty, None, None)).collect();
        s.append(events)
            .await
            .unwrap()
            .iter()
            .map(|a| a.event.seq)
            .collect()
    }

    fn settings(name: &str, types: &str) -> GroupSettings {
        let mut s = GroupSettings::new(name, vec![p(types)]);
        s.start_at = StartAt::Earliest;
        s.ack_wait = Duration::from_millis(1_000);
        s
    }

    fn seqs(ms: &[GroupMessage]) -> Vec<u64> {
        ms.iter().map(|m| m.event.seq).collect()
    }

    fn ids(ms: &[GroupMessage]) -> Vec<String> {
        ms.iter().map(|m| m.ack_id.clone()).collect()
    }

    /// Ack wait of the test groups, in µs.
    const WAIT: i64 = 1_000_000;

    /// Creation resolves `start_at` into the cursor once; an update replaces the settings only.
    pub(crate) async fn creation_update_and_start_at<S: EventStore + GroupStore>(s: &S) {
        publish(s, "a.x", 3).await;
        let mut new = settings("new", "a.*");
        new.start_at = StartAt::New;
        new.tenant_id = Some("t1".into());
        let (g, created) = s.put_group(new.clone(), t(10)).await.unwrap();
        let new_id = g.id;
        assert!(created);
        assert_eq!((g.cursor, g.created_at, g.updated_at), (3, t(10), t(10)));
        assert_eq!(g.settings, new);

        let (g, _) = s
            .put_group(settings("earliest", "a.*"), t(10))
            .await
            .unwrap();
        assert_eq!(g.cursor, 0);
        let mut at = settings("at", "a.*");
        at.start_at = StartAt::Seq(2);
        let (g, _) = s.put_group(at, t(10)).await.unwrap();
        assert_eq!(g.cursor, 1);
        let fetched = s.fetch("at", 10, t(20)).await.unwrap().unwrap();
        assert_eq!(seqs(&fetched), [2, 3], "Seq(2) delivers 2 first");

        // An update: new settings, same cursor, messages and id; start_at is not applied again.
        publish(s, "a.x", 2).await;
        let mut changed = new.clone();
        changed.types = vec![p("b.*"), p("a.>")];
        changed.max_deliver = 9;
        changed.start_at = StartAt::Earliest;
        let (g2, created) = s.put_group(changed.clone(), t(30)).await.unwrap();
        assert!(!created);
        assert_eq!((g2.id, g2.cursor), (new_id, 3));
        assert_eq!((g2.created_at, g2.updated_at), (t(10), t(30)));
        assert_eq!(g2.settings.types, changed.types);
        assert_eq!(g2.settings.max_deliver, 9);
        assert_eq!(s.get_group("new").await.unwrap().unwrap(), g2);
        let (g3, _) = s.put_group(settings("at", "a.*"), t(40)).await.unwrap();
        assert_eq!(g3.cursor, 3, "the update kept the moved cursor");
        let state = s.group_state("at", t(40)).await.unwrap().unwrap();
        assert_eq!(state.ack_pending, 2, "and the leased messages");

        let names = |gs: Vec<Group>| gs.into_iter().map(|g| g.settings.name).collect::<Vec<_>>();
        assert_eq!(
            names(s.list_groups(None).await.unwrap()),
            ["at", "earliest", "new"]
        );
        assert_eq!(names(s.list_groups(Some("t1")).await.unwrap()), ["new"]);
        assert!(s.list_groups(Some("t2")).await.unwrap().is_empty());
        assert!(s.get_group("none").await.unwrap().is_none());
        assert!(s.fetch("none", 1, t(0)).await.unwrap().is_none());
        assert!(s.ack("none", &[], t(0)).await.unwrap().is_none());
        assert!(s.group_state("none", t(0)).await.unwrap().is_none());

        let mut bad = settings("x", "a.*");
        bad.types.clear();
        assert!(s.put_group(bad, t(0)).await.is_err(), "invalid settings");
    }

    /// The top-up takes only the events the types and the project, tenant and user scope let
    /// through, and moves the cursor over the others.
    pub(crate) async fn top_up_respects_filters_and_scope<S: EventStore + GroupStore>(s: &S) {
        let mut scoped = settings("scoped", "project.*");
        scoped.tenant_id = Some("t1".into());
        scoped.project_id = Some("p1".into());
        s.put_group(scoped, t(0)).await.unwrap();
        s.put_group(settings("all", ">"), t(0)).await.unwrap();
        let mut by_user = settings("user", ">");
        by_user.user_id = Some("u1".into());
        s.put_group(by_user, t(0)).await.unwrap();
        let mut events = vec![
            event("project.created", Some("p1"), Some("t1")), // 1: scoped
            event("project.created", Some("p2"), Some("t1")), // 2: other project
            event("project.created", Some("p1"), Some("t2")), // 3: other tenant
            event("project.a.b", Some("p1"), Some("t1")),     // 4: `*` is one segment
            event("user.created", Some("p1"), Some("t1")),    // 5: other type
            event("project.deleted", Some("p1"), Some("t1")), // 6: scoped
        ];
        events[1].user_id = Some("u1".into());
        s.append(events).await.unwrap();
        let got = s.fetch("scoped", 10, t(1)).await.unwrap().unwrap();
        assert_eq!(seqs(&got), [1, 6]);
        assert_eq!(s.get_group("scoped").await.unwrap().unwrap().cursor, 6);
        let state = s.group_state("scoped", t(1)).await.unwrap().unwrap();
        assert_eq!((state.pending, state.ack_pending), (0, 2));
        let all = s.group_state("all", t(1)).await.unwrap().unwrap();
        assert_eq!(
            all.pending, 6,
            "nothing fetched yet: every event is pending"
        );
        assert_eq!(
            seqs(&s.fetch("user", 10, t(1)).await.unwrap().unwrap()),
            [2]
        );
        // The top-up stops at `max` and continues from there.
        assert_eq!(
            seqs(&s.fetch("all", 4, t(1)).await.unwrap().unwrap()),
            [1, 2, 3, 4]
        );
        assert_eq!(s.get_group("all").await.unwrap().unwrap().cursor, 4);
        assert_eq!(
            s.group_state("all", t(1)).await.unwrap().unwrap().pending,
            2
        );
        assert_eq!(
            seqs(&s.fetch("all", 4, t(1)).await.unwrap().unwrap()),
            [5, 6]
        );
        assert!(s.fetch("all", 4, t(1)).await.unwrap().unwrap().is_empty());
    }

    /// Two fetches never get the same message; acks remove them.
    pub(crate) async fn fetches_share_the_work<S: EventStore + GroupStore>(s: &S) {
        s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
        publish(s, "a.x", 10).await;
        let first = s.fetch("g", 4, t(1)).await.unwrap().unwrap();
        let second = s.fetch("g", 4, t(2)).await.unwrap().unwrap();
        let third = s.fetch("g", 4, t(3)).await.unwrap().unwrap();
        assert_eq!(seqs(&first), [1, 2, 3, 4]);
        assert_eq!(seqs(&second), [5, 6, 7, 8]);
        assert_eq!(seqs(&third), [9, 10]);
        assert!(first.iter().all(|m| m.delivery_count == 1));
        assert!(s.fetch("g", 4, t(4)).await.unwrap().unwrap().is_empty());
        let mut all = ids(&first);
        all.extend(ids(&second));
        all.extend(ids(&third));
        let outcomes = s.ack("g", &all, t(5)).await.unwrap().unwrap();
        assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
        let state = s.group_state("g", t(5)).await.unwrap().unwrap();
        assert_eq!(
            (state.pending, state.ack_pending, state.oldest_unacked),
            (0, 0, None)
        );
        // Long after: nothing comes back.
        assert!(
            s.fetch("g", 4, t(100 * WAIT))
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
    }

    /// Per project of an ordered group: whether one of its messages is out, and the last `seq`
    /// handed out.
    type Flight = std::sync::Mutex<HashMap<Option<String>, (bool, u64)>>;

    /// Four fetchers on tasks of their own per group, spread over `stores` (processes sharing
    /// one database, or one store), while 5,000 events are being published: each is handed out
    /// once and acked once, in an unordered group and in an ordered one, where a project never
    /// has two messages out and gets them in `seq` order. A top-up that skipped an event
    /// committing beside it would leave the fetchers waiting for it until the deadline.
    pub(crate) async fn concurrent_fetchers_ack_each_event_once<S: EventStore + GroupStore>(
        stores: Vec<Arc<S>>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};

        const EVENTS: usize = 5_000;
        let s = &stores[0];
        let mut plain = settings("plain", "a.*");
        plain.max_ack_pending = 400;
        s.put_group(plain.clone(), t(0)).await.unwrap();
        let mut ordered = plain;
        ordered.name = "ordered".into();
        ordered.ordered = true;
        s.put_group(ordered, t(0)).await.unwrap();
        let publisher = stores[stores.len() - 1].clone();
        let publishing = tokio::spawn(async move {
            for chunk in 0..EVENTS / 100 {
                // Seven projects and events without one.
                let events = (0..100)
                    .map(|i| {
                        let project = format!("p{}", (chunk * 100 + i) % 8);
                        event("a.x", (project != "p7").then_some(&project), None)
                    })
                    .collect();
                publisher.append(events).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let flight = Arc::new(Flight::default());
        let acked: Arc<[AtomicUsize; 2]> = Arc::default();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = stores[i % stores.len()].clone();
            let (group, g) = if i % 2 == 0 {
                ("plain", 0)
            } else {
                ("ordered", 1)
            };
            let (flight, acked) = (flight.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                // No lease runs out: the clock stays within the ack wait.
                while acked[g].load(Ordering::SeqCst) < EVENTS {
                    let got = s.fetch(group, 100, t(10)).await.unwrap().unwrap();
                    if got.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    if group == "ordered" {
                        let mut flight = flight.lock().unwrap();
                        for m in &got {
                            let (out, last) = flight.entry(m.event.project_id.clone()).or_default();
                            assert!(!*out, "one unacked message per project at a time");
                            assert!(*last < m.event.seq, "in seq order per project");
                            (*out, *last) = (true, m.event.seq);
                        }
                    }
                    // Marked done before the ack commits, so the next one may follow it.
                    if group == "ordered" {
                        let mut flight = flight.lock().unwrap();
                        for m in &got {
                            flight.get_mut(&m.event.project_id).unwrap().0 = false;
                        }
                    }
                    let outcomes = s.ack(group, &ids(&got), t(11)).await.unwrap().unwrap();
                    assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
                    acked[g].fetch_add(got.len(), Ordering::SeqCst);
                    mine.extend(seqs(&got));
                }
                (group, mine)
            }));
        }
        let all = async {
            publishing.await.unwrap();
            let mut seen: HashMap<&str, Vec<u64>> = HashMap::new();
            for task in tasks {
                let (group, got) = task.await.unwrap();
                seen.entry(group).or_default().extend(got);
            }
            seen
        };
        let mut seen = tokio::time::timeout(Duration::from_secs(120), all)
            .await
            .expect("every event acked within two minutes");
        for group in ["plain", "ordered"] {
            let mut got = seen.remove(group).unwrap_or_default();
            got.sort_unstable();
            let every: Vec<u64> = (1..=EVENTS as u64).collect();
            assert_eq!(got, every, "{group}: every event, once");
            let state = s.group_state(group, t(12)).await.unwrap().unwrap();
            assert_eq!((state.pending, state.ack_pending), (0, 0));
        }
    }

    /// A lease that runs out makes the message ready again, with a new ack id; the old one is
    /// expired.
    pub(crate) async fn unacked_messages_are_redelivered_after_the_ack_wait<
        S: EventStore + GroupStore,
    >(
        s: &S,
    ) {
        s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
        publish(s, "a.x", 2).await;
        let first = s.fetch("g", 10, t(0)).await.unwrap().unwrap();
        assert_eq!(seqs(&first), [1, 2]);
        assert!(
            s.fetch("g", 10, t(WAIT - 1))
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.next_ready_at("g", t(1)).await.unwrap(),
            Some(t(WAIT)),
            "the lease end"
        );
        assert_eq!(s.next_ready_at("g", t(WAIT)).await.unwrap(), None);
        let again = s.fetch("g", 10, t(WAIT)).await.unwrap().unwrap();
        assert_eq!(seqs(&again), [1, 2]);
        assert!(again.iter().all(|m| m.delivery_count == 2));
        assert_ne!(ids(&again), ids(&first));
        let outcomes = s
            .ack(
                "g",
                &[first[0].ack_id.clone(), again[1].ack_id.clone()],
                t(WAIT + 1),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcomes, [AckOutcome::Expired, AckOutcome::Acked]);
        let state = s.group_state("g", t(WAIT + 1)).await.unwrap().unwrap();
        assert_eq!((state.ack_pending, state.redelivered), (1, 2));
        assert_eq!(
            state.oldest_unacked,
            Some(Duration::from_micros(WAIT as u64 + 1))
        );
    }

    /// A nack hands the message out again once its delay has passed.
    pub(crate) async fn nacked_messages_come_back_after_their_delay<S: EventStore + GroupStore>(
        s: &S,
    ) {
        s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
        publish(s, "a.x", 2).await;
        let first = s.fetch("g", 10, t(0)).await.unwrap().unwrap();
        let outcomes = s
            .nack("g", &ids(&first[..1]), Duration::from_millis(5), t(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcomes, [AckOutcome::Acked]);
        assert_eq!(
            s.ack("g", &ids(&first[..1]), t(101))
                .await
                .unwrap()
                .unwrap(),
            [AckOutcome::Expired],
            "a nacked delivery is over"
        );
        assert_eq!(s.next_ready_at("g", t(100)).await.unwrap(), Some(t(5_100)));
        assert!(
            s.fetch("g", 10, t(5_099))
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let again = s.fetch("g", 10, t(5_100)).await.unwrap().unwrap();
        assert_eq!(seqs(&again), [1]);
        assert_eq!(again[0].delivery_count, 2);
        // A nack without delay: ready at once.
        s.nack("g", &ids(&again), Duration::ZERO, t(5_200))
            .await
            .unwrap();
        assert_eq!(
            seqs(&s.fetch("g", 10, t(5_200)).await.unwrap().unwrap()),
            [1]
        );
        let state = s.group_state("g", t(5_200)).await.unwrap().unwrap();
        assert_eq!(state.ack_pending, 2);
    }

    /// After `max_deliver` deliveries a message whose lease runs out, or that is nacked, is a
    /// dead letter; the group goes on; a retry makes it a fresh message.
    pub(crate) async fn dead_letters_after_max_deliver_and_retry<S: EventStore + GroupStore>(
        s: &S,
    ) {
        let mut g = settings("g", "a.*");
        g.max_deliver = 2;
        s.put_group(g, t(0)).await.unwrap();
        publish(s, "a.x", 3).await;
        assert_eq!(seqs(&s.fetch("g", 2, t(0)).await.unwrap().unwrap()), [1, 2]);
        let second = s.fetch("g", 2, t(WAIT)).await.unwrap().unwrap();
        assert_eq!(seqs(&second), [1, 2]);
        // Seq 2 is nacked at its last delivery: dead at once. Seq 1's lease runs out.
        assert_eq!(
            s.nack("g", &ids(&second[1..]), Duration::ZERO, t(WAIT + 1))
                .await
                .unwrap()
                .unwrap(),
            [AckOutcome::Acked]
        );
        let state = s.group_state("g", t(2 * WAIT)).await.unwrap().unwrap();
        assert_eq!((state.dead_lettered, state.ack_pending), (2, 0));
        // The group goes on with seq 3.
        let third = s.fetch("g", 2, t(2 * WAIT)).await.unwrap().unwrap();
        assert_eq!(seqs(&third), [3]);
        assert_eq!(
            s.ack("g", &ids(&second[..1]), t(2 * WAIT))
                .await
                .unwrap()
                .unwrap(),
            [AckOutcome::Expired]
        );

        let page = s.list_dead_letters("g", None, 10).await.unwrap().unwrap();
        let dead: Vec<(u64, u32, DeadReason)> = page
            .items
            .iter()
            .map(|d| (d.seq, d.delivery_count, d.reason))
            .collect();
        assert_eq!(
            dead,
            [(1, 2, DeadReason::Expired), (2, 2, DeadReason::Nacked)]
        );
        assert_eq!(page.next_after, None);
        assert_eq!(page.items[0].event.as_ref().unwrap().seq, 1);
        assert_eq!(page.items[1].ack_id, second[1].ack_id);
        let first_page = s.list_dead_letters("g", None, 1).await.unwrap().unwrap();
        assert_eq!(first_page.next_after, Some(1));
        let rest = s.list_dead_letters("g", Some(1), 1).await.unwrap().unwrap();
        assert_eq!(rest.items[0].seq, 2);

        // Before seq 3's lease runs out.
        let later = t(3 * WAIT - 10);
        assert!(
            s.retry_dead_letter("g", &page.items[1].ack_id, later)
                .await
                .unwrap()
        );
        assert!(
            !s.retry_dead_letter("g", &page.items[1].ack_id, later)
                .await
                .unwrap(),
            "no longer a dead letter"
        );
        assert!(!s.retry_dead_letter("g", "nonsense", later).await.unwrap());
        let retried = s.fetch("g", 2, later).await.unwrap().unwrap();
        assert_eq!(seqs(&retried), [2]);
        assert_eq!(retried[0].delivery_count, 1, "a fresh delivery budget");
        let state = s.group_state("g", later).await.unwrap().unwrap();
        assert_eq!(state.dead_lettered, 1);
    }

    /// An ordered group hands out at most one unacked message per project, in `seq` order.
    pub(crate) async fn ordered_groups_keep_one_message_per_project<S: EventStore + GroupStore>(
        s: &S,
    ) {
        let mut g = settings("g", "project.*");
        g.ordered = true;
        s.put_group(g, t(0)).await.unwrap();
        let events = [
            ("a", 1),
            ("a", 2),
            ("b", 3),
            ("-", 4),
            ("a", 5),
            ("b", 6),
            ("-", 7),
        ]
        .map(|(project, _)| event("project.updated", (project != "-").then_some(project), None));
        s.append(events.to_vec()).await.unwrap();
        let first = s.fetch("g", 10, t(0)).await.unwrap().unwrap();
        assert_eq!(seqs(&first), [1, 3, 4], "each project's oldest");
        assert!(s.fetch("g", 10, t(1)).await.unwrap().unwrap().is_empty());
        let state = s.group_state("g", t(1)).await.unwrap().unwrap();
        assert_eq!((state.pending, state.ack_pending), (4, 3));
        // Acking a's head frees a's next; b's head is nacked: b's next still waits for it.
        s.ack("g", &ids(&first[..1]), t(2)).await.unwrap();
        s.nack("g", &ids(&first[1..2]), Duration::from_millis(1), t(2))
            .await
            .unwrap();
        assert_eq!(seqs(&s.fetch("g", 10, t(3)).await.unwrap().unwrap()), [2]);
        assert_eq!(s.next_ready_at("g", t(3)).await.unwrap(), Some(t(1_002)));
        let b = s.fetch("g", 10, t(1_002)).await.unwrap().unwrap();
        assert_eq!(seqs(&b), [3]);
        assert_eq!(b[0].delivery_count, 2);
        // A lease that runs out redelivers the head, still before the rest of its project.
        let late = s.fetch("g", 10, t(WAIT + 10)).await.unwrap().unwrap();
        assert_eq!(seqs(&late), [2, 4]);
        s.ack("g", &ids(&late), t(WAIT + 11)).await.unwrap();
        s.ack("g", &ids(&b), t(WAIT + 11)).await.unwrap();
        assert_eq!(
            s.ack("g", &ids(&b), t(WAIT + 11)).await.unwrap().unwrap(),
            [AckOutcome::Expired],
            "acked already"
        );
    }

    /// `max_ack_pending` bounds the messages handed out and not acked.
    pub(crate) async fn max_ack_pending_bounds_leased_messages<S: EventStore + GroupStore>(s: &S) {
        let mut g = settings("g", "a.*");
        g.max_ack_pending = 3;
        s.put_group(g.clone(), t(0)).await.unwrap();
        publish(s, "a.x", 10).await;
        let first = s.fetch("g", 2, t(0)).await.unwrap().unwrap();
        assert_eq!(seqs(&first), [1, 2]);
        assert_eq!(seqs(&s.fetch("g", 10, t(0)).await.unwrap().unwrap()), [3]);
        assert!(s.fetch("g", 10, t(0)).await.unwrap().unwrap().is_empty());
        let state = s.group_state("g", t(0)).await.unwrap().unwrap();
        assert_eq!((state.ack_pending, state.pending), (3, 7));
        s.ack("g", &ids(&first), t(1)).await.unwrap();
        assert_eq!(
            seqs(&s.fetch("g", 10, t(1)).await.unwrap().unwrap()),
            [4, 5]
        );
        // A larger window applies to the next fetch.
        g.max_ack_pending = 10;
        s.put_group(g, t(2)).await.unwrap();
        assert_eq!(
            seqs(&s.fetch("g", 10, t(2)).await.unwrap().unwrap()),
            [6, 7, 8, 9, 10]
        );
    }

    /// Ack outcomes: acked, unknown (garbage, another group's, a deleted group's), expired.
    pub(crate) async fn ack_outcomes_name_what_happened<S: EventStore + GroupStore>(s: &S) {
        s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
        s.put_group(settings("h", "a.*"), t(0)).await.unwrap();
        publish(s, "a.x", 2).await;
        let g = s.fetch("g", 1, t(0)).await.unwrap().unwrap();
        let h = s.fetch("h", 1, t(0)).await.unwrap().unwrap();
        let mut forged = AckId::parse(&g[0].ack_id).unwrap();
        forged.token ^= 1;
        let beyond = AckId { seq: 99, ..forged };
        let outcomes = s
            .ack(
                "g",
                &[
                    "garbage".into(),
                    h[0].ack_id.clone(),
                    forged.to_string(),
                    beyond.to_string(),
                    g[0].ack_id.clone(),
                    g[0].ack_id.clone(),
                ],
                t(1),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcomes,
            [
                AckOutcome::Unknown,
                AckOutcome::Unknown,
                AckOutcome::Expired,
                AckOutcome::Unknown,
                AckOutcome::Acked,
                AckOutcome::Expired
            ]
        );
        // After the lease ran out, before anyone fetched again: expired, and nack too.
        assert_eq!(
            s.ack("h", &ids(&h), t(WAIT)).await.unwrap().unwrap(),
            [AckOutcome::Expired]
        );
        assert_eq!(
            s.nack("h", &ids(&h), Duration::ZERO, t(WAIT))
                .await
                .unwrap()
                .unwrap(),
            [AckOutcome::Expired]
        );
        // A group deleted and created again does not know the old ack ids.
        let again = s.fetch("h", 1, t(WAIT)).await.unwrap().unwrap();
        assert!(s.delete_group("h").await.unwrap());
        s.put_group(settings("h", "a.*"), t(WAIT)).await.unwrap();
        assert_eq!(
            s.ack("h", &ids(&again), t(WAIT)).await.unwrap().unwrap(),
            [AckOutcome::Unknown]
        );
    }

    /// A message whose event left the hot table (`archive` removes it, as the archiver does)
    /// before it was handed out again becomes a dead letter without an event; the rest go on.
    pub(crate) async fn messages_of_archived_events_become_dead_letters<
        S: EventStore + GroupStore,
    >(
        s: &S,
        archive: impl AsyncFnOnce(u64),
    ) {
        s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
        publish(s, "a.x", 3).await;
        assert_eq!(
            seqs(&s.fetch("g", 10, t(0)).await.unwrap().unwrap()),
            [1, 2, 3]
        );
        archive(2).await;
        let again = s.fetch("g", 10, t(WAIT)).await.unwrap().unwrap();
        assert_eq!(seqs(&again), [1, 3]);
        let dead = s.list_dead_letters("g", None, 10).await.unwrap().unwrap();
        assert_eq!(dead.items.len(), 1);
        let d = &dead.items[0];
        assert_eq!(
            (d.seq, d.reason, d.event.is_none(), d.dead_lettered_at),
            (2, DeadReason::Archived, true, t(WAIT))
        );
    }

    /// Deleting a group removes its messages; another group is untouched.
    pub(crate) async fn delete_removes_the_group_and_its_messages<S: EventStore + GroupStore>(
        s: &S,
    ) {
        s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
        s.put_group(settings("keep", "a.*"), t(0)).await.unwrap();
        publish(s, "a.x", 3).await;
        s.fetch("g", 10, t(0)).await.unwrap().unwrap();
        let kept = s.fetch("keep", 10, t(0)).await.unwrap().unwrap();
        assert!(s.delete_group("g").await.unwrap());
        assert!(!s.delete_group("g").await.unwrap());
        assert!(s.get_group("g").await.unwrap().is_none());
        assert!(s.list_dead_letters("g", None, 10).await.unwrap().is_none());
        // Created again from the start: every event is new to it.
        let (g, created) = s.put_group(settings("g", "a.*"), t(1)).await.unwrap();
        assert!(created && g.cursor == 0);
        assert_eq!(
            s.group_state("g", t(1)).await.unwrap().unwrap().ack_pending,
            0
        );
        assert_eq!(
            seqs(&s.fetch("g", 10, t(1)).await.unwrap().unwrap()),
            [1, 2, 3]
        );
        let outcomes = s.ack("keep", &ids(&kept), t(1)).await.unwrap().unwrap();
        assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
        let names: HashSet<String> = s
            .list_groups(None)
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.settings.name)
            .collect();
        assert_eq!(names, HashSet::from(["g".to_owned(), "keep".to_owned()]));
    }
}
