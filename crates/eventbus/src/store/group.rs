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
//! The `contract` test module lives in `group/contract.rs`, as the webhook store's does.
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
mod tests;

/// The contract every [`GroupStore`] keeps, as test bodies each backend runs on a fresh store.
#[cfg(test)]
pub(crate) mod contract;
