//! The worker: claims due deliveries, sends them, records every attempt.
//!
//! Structure: one claiming loop, one task per attempt, one recorder.
//! - The loop claims (leases) due deliveries when there is room: at most `max_in_flight` in this
//!   process, and per endpoint its lane's running attempts (`endpoint_concurrency`) plus as many
//!   waiting for a free slot, so the next ones are at hand when an attempt ends and a claim's
//!   round trip is not on every delivery's path. Endpoints whose lane is full get nothing, so a
//!   hanging endpoint holds its own slots and nobody else's. Ordered endpoints yield only their
//!   queue's head, so one attempt at a time, in `seq` order.
//! - A wake-up starts the next claim at once: new deliveries (fan-out, a manual retry), an
//!   ordered endpoint's attempt recorded (its next delivery becomes the head), or an attempt's
//!   end while room was short (a lane or the process was full, or a lane got all it could
//!   take), so an idle bus makes no claim per attempt. Otherwise due retries are found by a
//!   claim every `poll_interval`.
//! - Each attempt waits for its endpoint's lane (concurrency permit, then the rate limit), sends
//!   the signed request and hands an [`AttemptRecord`] to the recorder. The lease outlives the
//!   attempt, so nothing else claims the delivery meanwhile.
//! - The recorder writes records in batches ([`WebhookStore::complete`]): the attempt log, the
//!   next state (succeeded, retry at a jittered schedule time or `Retry-After`, or dead letter),
//!   the endpoint's failure streak. Endpoints disabled by it are announced with an
//!   `integration.status_changed` event, published through the [`StatusSink`] by the
//!   [`announce`] task once the disabling committed.
//!
//! Leases are short and renewed while held ([`leases`]). On shutdown the loop stops claiming;
//! attempts not yet sent are dropped and their leases released, for another process (or the
//! next start) to send them at once; attempts in flight finish and are recorded until the drain
//! deadline.
//!
//! [`WebhookStore::complete`]: crate::store::webhook::WebhookStore::complete
//! [`StatusSink`]: super::StatusSink

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::announce;
use super::leases;
use super::request::{self, BodyError};
use super::shared::Shared;
use crate::core::time::Timestamp;
use crate::store::webhook::{AttemptRecord, Claim, Delivery, Endpoint, HealthPolicy};
use crate::transport::{RETRY_DELAY, sleep_or_cancel};

/// Most deliveries claimed at once.
const CLAIM_BATCH: usize = 512;
/// Most records written in one transaction.
const RECORD_BATCH: usize = 1024;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One endpoint's lane in this process.
struct Lane {
    permits: Semaphore,
    /// Claimed and not yet ended: running and waiting attempts.
    in_flight: AtomicUsize,
    /// When the rate limit lets the next request go.
    next_slot: Mutex<Instant>,
}

impl Lane {
    fn new(concurrency: usize) -> Self {
        Lane {
            permits: Semaphore::new(concurrency),
            in_flight: AtomicUsize::new(0),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Reserves the next slot of a `rate` per second limit; returns when it is.
    fn reserve(&self, rate: u32) -> Instant {
        let mut next = self.next_slot.lock().expect("lane lock");
        let at = (*next).max(Instant::now());
        *next = at + Duration::from_secs(1) / rate.max(1);
        at
    }
}

struct Lanes {
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    total: AtomicUsize,
    concurrency: usize,
    /// Notified when an attempt ends.
    freed: Notify,
}

impl Lanes {
    fn get(&self, endpoint_id: &str) -> Arc<Lane> {
        self.lanes
            .lock()
            .expect("lanes lock")
            .entry(endpoint_id.to_owned())
            .or_insert_with(|| Arc::new(Lane::new(self.concurrency)))
            .clone()
    }

    /// Deliveries held per endpoint: claimed and not yet ended.
    fn held(&self) -> HashMap<String, usize> {
        self.lanes
            .lock()
            .expect("lanes lock")
            .iter()
            .map(|(id, l)| (id.clone(), l.in_flight.load(Ordering::Acquire)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Runs until `cancel` fires and the attempts in flight are recorded (or `abort` fires).
pub(super) async fn run(
    shared: Arc<Shared>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    abort: CancellationToken,
) {
    loop {
        match shared.store.recover().await {
            Ok(0) => break,
            Ok(n) => {
                tracing::info!(released = n, "released webhook leases of a previous run");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook worker cannot reach the store; retrying");
                if sleep_or_cancel(&cancel, RETRY_DELAY).await {
                    return;
                }
            }
        }
    }
    let announcer = announce::start(
        shared.store.clone(),
        shared.status.clone(),
        &tasks,
        cancel.clone(),
        abort.clone(),
    );
    let options = &shared.options;
    let lanes = Arc::new(Lanes {
        lanes: Mutex::new(HashMap::new()),
        total: AtomicUsize::new(0),
        concurrency: options.endpoint_concurrency.max(1),
        freed: Notify::new(),
    });
    let (records, inbox) = mpsc::channel(options.max_in_flight.max(1) * 2);
    tasks.spawn(recorder(shared.clone(), inbox, announcer, abort.clone()));
    while !cancel.is_cancelled() {
        let room = options
            .max_in_flight
            .saturating_sub(lanes.total.load(Ordering::Acquire))
            .min(CLAIM_BATCH);
        let mut claimed = 0;
        // Whether a lack of room held deliveries back: then an attempt's end is worth a claim.
        let mut saturated = room == 0;
        if room > 0 {
            let now = Timestamp::now();
            let claim = Claim {
                now,
                // Renewed while held (see `leases`), however long the wait and the attempt.
                lease_until: leases::lease_end(now),
                limit: room,
                // The running attempts and as many waiting for a slot.
                per_endpoint: lanes.concurrency * 2,
                held: lanes.held(),
            };
            match shared.store.claim_due(claim.clone()).await {
                Ok(batch) => {
                    claimed = batch.len();
                    let mut got: HashMap<&str, usize> = HashMap::new();
                    for d in &batch {
                        *got.entry(d.endpoint_id.as_str()).or_default() += 1;
                    }
                    saturated = claim.held.keys().any(|id| claim.room(id) == 0)
                        || got.iter().any(|(id, &n)| n >= claim.room(id));
                    for d in &batch {
                        shared.leases.hold(d.id, claim.lease_until);
                    }
                    for d in batch {
                        start(&shared, &tasks, &lanes, &records, &cancel, &abort, d).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook worker cannot claim deliveries; retrying");
                    if sleep_or_cancel(&cancel, RETRY_DELAY).await {
                        break;
                    }
                    continue;
                }
            }
        }
        if claimed > 0 && claimed == room {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = shared.wake.notified() => {}
            // An attempt's end frees room; without a backlog it makes nothing claimable, and
            // claiming on every end would cost a transaction per attempt for nothing.
            _ = lanes.freed.notified(), if saturated => {}
            _ = tokio::time::sleep(options.poll_interval) => {}
        }
    }
}

/// Spawns one attempt of `d`.
async fn start(
    shared: &Arc<Shared>,
    tasks: &TaskTracker,
    lanes: &Arc<Lanes>,
    records: &mpsc::Sender<Recorded>,
    cancel: &CancellationToken,
    abort: &CancellationToken,
    d: Delivery,
) {
    let endpoint = match shared.endpoints.current(&*shared.store).await {
        Ok(snap) => match snap.by_id.get(&d.endpoint_id) {
            Some(ep) => Some(ep.clone()),
            None => shared
                .endpoints
                .reload(&*shared.store)
                .await
                .ok()
                .and_then(|s| s.by_id.get(&d.endpoint_id).cloned()),
        },
        Err(_) => None,
    };
    // Deleted meanwhile (its deliveries went with it), or the store is unreachable: the lease
    // runs out and the delivery is claimed again later.
    let Some(endpoint) = endpoint else {
        shared.leases.forget(d.id);
        return;
    };
    let lane = lanes.get(&d.endpoint_id);
    lane.in_flight.fetch_add(1, Ordering::AcqRel);
    lanes.total.fetch_add(1, Ordering::AcqRel);
    let (shared, lanes, records, cancel, abort) = (
        shared.clone(),
        lanes.clone(),
        records.clone(),
        cancel.clone(),
        abort.clone(),
    );
    tasks.spawn(async move {
        let record = tokio::select! {
            r = attempt(&shared, &lane, &endpoint, &d, &cancel) => r,
            _ = abort.cancelled() => None,
        };
        match record {
            Some(record) => {
                shared.leases.forget(d.id);
                let ordered = endpoint.ordered;
                let _ = records.send(Recorded { record, ordered }).await;
            }
            // Not sent because of shutdown: held, to be released when the worker has stopped.
            None if cancel.is_cancelled() => {}
            // The event could not be read: the lease runs out and the delivery is claimed again.
            None => shared.leases.forget(d.id),
        }
        lane.in_flight.fetch_sub(1, Ordering::AcqRel);
        lanes.total.fetch_sub(1, Ordering::AcqRel);
        lanes.freed.notify_one();
    });
}

/// One attempt; `None` when shutdown came before it was sent.
async fn attempt(
    shared: &Shared,
    lane: &Lane,
    ep: &Endpoint,
    d: &Delivery,
    cancel: &CancellationToken,
) -> Option<AttemptRecord> {
    let _permit = tokio::select! {
        p = lane.permits.acquire() => p.ok()?,
        _ = cancel.cancelled() => return None,
    };
    if let Some(rate) = ep.rate_limit {
        let at = lane.reserve(rate);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = cancel.cancelled() => return None,
        }
    }
    let started_at = Timestamp::now();
    let request = match request::for_delivery(shared, d, ep).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Some(record(
                d,
                started_at,
                None,
                None,
                Some("the event is no longer stored".into()),
                false,
                None,
            ));
        }
        Err(BodyError::Shaper(shaper_error)) => {
            // The shaping plugin failed: the attempt fails without a request and is retried.
            let retry = next_delay(
                &shared.options.retry_schedule,
                shared.options.retry_attempts,
                d.cycle_attempts,
                None,
                None,
            );
            let retry_at =
                retry.map(|delay| Timestamp::now().plus_micros(delay.as_micros() as i64));
            return Some(record(
                d,
                started_at,
                None,
                None,
                Some(shaper_error.to_string()),
                false,
                retry_at,
            ));
        }
        Err(BodyError::Store(e)) => {
            tracing::warn!(error = %e, event.id = %d.event_id, event.seq = d.event_seq, "cannot read the event of a webhook delivery");
            return None;
        }
    };
    let body_copy = request.body.clone();
    // The attempt continues the event's trace and sends its own span onwards; without
    // OpenTelemetry the event's traceparent goes on as it is.
    let span = tracing::info_span!(
        "webhook.attempt",
        endpoint.id = %ep.id,
        event.id = %d.event_id,
        event.seq = d.event_seq,
        attempt = d.attempts + 1,
    );
    crate::telemetry::continue_trace(&span, request.traceparent.as_deref());
    let mut headers = request.headers;
    if let Some(tp) = crate::telemetry::traceparent_of(&span).or(request.traceparent)
        && let Ok(v) = http::HeaderValue::from_str(&tp)
    {
        headers.insert("traceparent", v);
    }
    let r = shared
        .client
        .post(&ep.url, headers, request.body)
        .instrument(span)
        .await;
    let success = r.success();
    let stats = &shared.stats;
    stats.record_attempt_time(r.duration);
    stats.attempts.fetch_add(1, Ordering::Relaxed);
    let retry_at = if success {
        stats.succeeded.fetch_add(1, Ordering::Release);
        None
    } else {
        stats.failed_attempts.fetch_add(1, Ordering::Release);
        let retry = next_delay(
            &shared.options.retry_schedule,
            shared.options.retry_attempts,
            d.cycle_attempts,
            r.status,
            r.retry_after,
        );
        if retry.is_none() {
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        retry.map(|delay| Timestamp::now().plus_micros(delay.as_micros() as i64))
    };
    if success {
        tracing::debug!(delivery = d.id, endpoint = %ep.id, event.id = %d.event_id, traceparent = traceparent_of(&body_copy), status = ?r.status, "webhook attempt succeeded");
    } else {
        tracing::info!(delivery = d.id, endpoint = %ep.id, event.id = %d.event_id, traceparent = traceparent_of(&body_copy), status = ?r.status, error = ?r.error, retry = retry_at.is_some(), "webhook attempt failed");
    }
    metrics::histogram!(crate::metric::WEBHOOK_ATTEMPT_DURATION).record(r.duration.as_secs_f64());
    let mut rec = record(d, started_at, r.status, r.body, r.error, success, retry_at);
    rec.duration_ms = r.duration.as_millis() as u64;
    Some(rec)
}

/// The `traceparent` in an event's JSON body (its metadata), for log lines about the event. The
/// value is validated on publish, so it holds no quote.
fn traceparent_of(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"traceparent\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

fn record(
    d: &Delivery,
    started_at: Timestamp,
    status_code: Option<u16>,
    response_body: Option<String>,
    error: Option<String>,
    success: bool,
    retry_at: Option<Timestamp>,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id,
        endpoint_id: d.endpoint_id.clone(),
        event_id: d.event_id.clone(),
        started_at,
        duration_ms: 0,
        status_code,
        response_body,
        error,
        success,
        retry_at,
    }
}

/// The delay before the next retry after failed attempt number `done + 1` of this cycle, or
/// `None` when the retries are used up (dead letter). The schedule's delay is jittered ±10 %;
/// a `Retry-After` on 429 or 503 is honoured when longer.
pub(crate) fn next_delay(
    schedule: &[Duration],
    retries: u32,
    done: u32,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    if done >= retries {
        return None;
    }
    let base = schedule
        .get(done as usize)
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(5));
    let jitter = getrandom::u64().unwrap_or(0) % 2001; // 0..=2000 → -10 % ..= +10 %
    let delay = base.mul_f64(0.9 + jitter as f64 / 10_000.0);
    match (status, retry_after) {
        (Some(429 | 503), Some(after)) => Some(delay.max(after.min(MAX_RETRY_AFTER))),
        _ => Some(delay),
    }
}

/// An attempt's record on its way to the recorder.
struct Recorded {
    record: AttemptRecord,
    /// Whether its endpoint is ordered: recording it makes the next delivery claimable.
    ordered: bool,
}

/// The recorder: writes attempt records in batches until every sender is gone.
async fn recorder(
    shared: Arc<Shared>,
    mut inbox: mpsc::Receiver<Recorded>,
    announcer: mpsc::UnboundedSender<Endpoint>,
    abort: CancellationToken,
) {
    let health = HealthPolicy {
        window_micros: shared.options.disable_after.as_micros() as i64,
        failures: shared.options.disable_failures,
    };
    let mut received = Vec::with_capacity(RECORD_BATCH);
    while inbox.recv_many(&mut received, RECORD_BATCH).await > 0 {
        let now = Timestamp::now();
        // Whether the batch makes a delivery claimable now: an ordered endpoint's next one, or
        // a retry due at once.
        let unblocks = received
            .iter()
            .any(|r| r.ordered || r.record.retry_at.is_some_and(|at| at <= now));
        let batch: Vec<AttemptRecord> = received.drain(..).map(|r| r.record).collect();
        let disabled = loop {
            match shared.store.complete(batch.clone(), health).await {
                Ok(d) => break d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record webhook attempts; retrying");
                    if sleep_or_cancel(&abort, RETRY_DELAY).await {
                        return;
                    }
                }
            }
        };
        if !disabled.is_empty() {
            shared.endpoints.invalidate();
        }
        for ep in disabled {
            shared.stats.auto_disabled.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(endpoint = %ep.id, url = %ep.url, failures = ep.failure_count, "webhook endpoint disabled: failing continuously");
            // Announced after the disabling committed; if this process stops first, the next
            // start announces it.
            if let Err(mpsc::error::SendError(ep)) = announcer.send(ep) {
                tracing::warn!(endpoint = %ep.id, "the announcer has stopped; the next start announces the endpoint");
            }
        }
        if unblocks {
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_retries_then_dead_letters() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        let d = next_delay(&s, 3, 0, Some(500), None).unwrap();
        assert!(
            d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500),
            "{d:?}"
        );
        let d = next_delay(&s, 3, 2, None, None).unwrap();
        assert!(
            d >= Duration::from_secs(270),
            "the last delay repeats: {d:?}"
        );
        assert_eq!(next_delay(&s, 3, 3, Some(500), None), None);
        assert_eq!(next_delay(&s, 0, 0, Some(500), None), None);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let s = [Duration::from_millis(100)];
        let long = Some(Duration::from_secs(7));
        assert_eq!(next_delay(&s, 3, 0, Some(429), long), long);
        assert_eq!(next_delay(&s, 3, 0, Some(503), long), long);
        assert!(next_delay(&s, 3, 0, Some(500), long).unwrap() < Duration::from_secs(1));
    }
}
