//! The figures of the last hour, rolled up for a console: a [`Sampler`] takes a [`Sample`] of
//! this process every interval ([`DEFAULT_INTERVAL`], 10 s) into a [`SampleRing`] of the last
//! [`RING_SAMPLES`] (one hour at 10 s).
//!
//! A sample covers one interval and ends at its `at`. Its counts are deltas of counters the bus
//! keeps anyway: the events this bus stored ([`EventBus::published_total`]), the webhook
//! attempts that succeeded and failed and their summed time ([`WebhookStats`]). Its gauges are
//! read at `at`: open SSE streams and the [`QueueDepths`] that `/metrics` reads too. Counters
//! are only read, never reset (the one exception is the webhook attempts' maximum, which each
//! sample takes), so nothing here disturbs `/metrics`, and nothing is read from the Prometheus
//! recorder. An attempt that ends while a sample is taken may have its time in one interval and
//! its count in the next; the latency figures are exact otherwise.
//!
//! The figures are this process's: several processes on one PostgreSQL each sample their own.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::bus::{EventBus, QueueDepths};
use crate::core::time::Timestamp;
use crate::transport::webhook::WebhookStats;

/// Samples the ring keeps: one hour at the default interval.
pub const RING_SAMPLES: usize = 360;

/// How often a sample is taken unless configured otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The figures of one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// The end of the interval (RFC 3339, UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The length of the interval, in seconds.
    pub seconds: f64,
    /// Events this process stored during the interval (a duplicate publish of a stored event
    /// does not count).
    pub events: u64,
    /// `events` over `seconds`.
    pub events_per_second: f64,
    /// Webhook attempts that succeeded during the interval.
    pub webhook_succeeded: u64,
    /// Webhook attempts that failed during the interval.
    pub webhook_failed: u64,
    /// `webhookSucceeded` over all attempts, 0 to 1; `null` when no attempt was made.
    pub webhook_success_rate: Option<f64>,
    /// The time of the webhook attempts during the interval; `null` when none was made.
    pub webhook_latency_ms: Option<Latency>,
    /// Open SSE streams at `at`.
    pub sse_connections: usize,
    /// What waited in each queue at `at`.
    pub queue_depths: QueueDepths,
}

/// The time of the webhook attempts of one interval, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WebhookLatency))]
pub struct Latency {
    /// The mean attempt time.
    pub mean: f64,
    /// The longest attempt.
    pub max: f64,
}

/// The counters a sample takes deltas of, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events the bus stored ([`EventBus::published_total`]).
    pub events: u64,
    /// Webhook attempts that succeeded.
    pub webhook_succeeded: u64,
    /// Webhook attempts that failed.
    pub webhook_failed: u64,
    /// The time of the webhook attempts, summed, in microseconds.
    pub webhook_micros: u64,
}

impl Counters {
    /// The counters of `bus` now.
    pub fn read(bus: &EventBus) -> Counters {
        let mut counters = Counters {
            events: bus.published_total(),
            ..Counters::default()
        };
        if let Some(webhooks) = bus.webhooks() {
            let s: &WebhookStats = webhooks.stats();
            // The counts first: every attempt they count has its time in the sum already.
            counters.webhook_succeeded = s.succeeded.load(Ordering::Acquire);
            counters.webhook_failed = s.failed_attempts.load(Ordering::Acquire);
            counters.webhook_micros = s.attempt_micros.load(Ordering::Relaxed);
        }
        counters
    }
}

/// The gauges a sample reads at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Open SSE streams.
    pub sse_connections: usize,
    /// What waits in each queue.
    pub queue_depths: QueueDepths,
}

impl Gauges {
    /// The gauges of `bus` now (the webhook queue depth is a store read).
    pub async fn read(bus: &EventBus) -> Gauges {
        Gauges {
            sse_connections: bus.sse().stats().connections.load(Ordering::Relaxed),
            queue_depths: bus.queue_depths().await,
        }
    }
}

impl Sample {
    /// The sample of an interval of `elapsed` ending at `at`: the deltas from `start` to `end`,
    /// the longest webhook attempt in it (`max_attempt_micros`) and the gauges at its end.
    pub fn between(
        at: Timestamp,
        elapsed: Duration,
        start: &Counters,
        end: &Counters,
        max_attempt_micros: u64,
        gauges: Gauges,
    ) -> Sample {
        let events = end.events.saturating_sub(start.events);
        let succeeded = end
            .webhook_succeeded
            .saturating_sub(start.webhook_succeeded);
        let failed = end.webhook_failed.saturating_sub(start.webhook_failed);
        let attempts = succeeded + failed;
        let seconds = elapsed.as_secs_f64();
        let latency = (attempts > 0).then(|| {
            let micros = end.webhook_micros.saturating_sub(start.webhook_micros);
            let mean = micros as f64 / attempts as f64 / 1000.0;
            Latency {
                mean: rounded(mean),
                // An attempt timed in the previous interval and counted in this one may have
                // had its maximum taken with the previous sample.
                max: rounded((max_attempt_micros as f64 / 1000.0).max(mean)),
            }
        });
        Sample {
            at,
            seconds: rounded(seconds),
            events,
            events_per_second: if seconds > 0.0 {
                rounded(events as f64 / seconds)
            } else {
                0.0
            },
            webhook_succeeded: succeeded,
            webhook_failed: failed,
            webhook_success_rate: (attempts > 0)
                .then(|| rounded(succeeded as f64 / attempts as f64)),
            webhook_latency_ms: latency,
            sse_connections: gauges.sse_connections,
            queue_depths: gauges.queue_depths,
        }
    }
}

/// `x` to three decimals: the figures are for charts, not for arithmetic.
fn rounded(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The last samples, oldest first, at most `capacity` of them: each new one past it pushes the
/// oldest out.
#[derive(Debug, Clone)]
pub struct SampleRing {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl SampleRing {
    /// An empty ring of `capacity` samples (at least one).
    pub fn new(capacity: usize) -> SampleRing {
        let capacity = capacity.max(1);
        SampleRing {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `sample` as the newest, dropping the oldest when the ring is full.
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The samples whose `at` is after `after` (all of them for `None`), oldest first.
    pub fn since(&self, after: Option<Timestamp>) -> Vec<Sample> {
        // Samples are pushed in time order, so the newer ones are a suffix.
        let start = match after {
            None => 0,
            Some(t) => self.samples.partition_point(|s| s.at <= t),
        };
        self.samples.range(start..).cloned().collect()
    }

    /// How many samples the ring holds.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the ring holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Takes a [`Sample`] of a bus every interval into a [`SampleRing`] of [`RING_SAMPLES`].
pub struct Sampler {
    bus: EventBus,
    interval: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The ring and where the interval in progress began.
struct State {
    ring: SampleRing,
    last: Counters,
    last_at: Instant,
}

impl Sampler {
    /// A sampler of `bus` every `interval` (at least a millisecond); the first interval begins
    /// now. It samples once [`Sampler::run`] runs.
    pub fn new(bus: EventBus, interval: Duration) -> Sampler {
        let last = Counters::read(&bus);
        Sampler {
            bus,
            interval: interval.max(Duration::from_millis(1)),
            state: Mutex::new(State {
                ring: SampleRing::new(RING_SAMPLES),
                last,
                last_at: Instant::now(),
            }),
        }
    }

    /// The interval between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Ends the interval in progress: its sample goes into the ring (and is returned), and the
    /// next interval begins.
    pub async fn sample(&self) -> Sample {
        let gauges = Gauges::read(&self.bus).await;
        let mut state = self.state.lock().expect("sampler lock");
        let end = Counters::read(&self.bus);
        let max = self
            .bus
            .webhooks()
            .map_or(0, |w| w.stats().take_max_attempt_micros());
        let now = Instant::now();
        let sample = Sample::between(
            Timestamp::now(),
            now - state.last_at,
            &state.last,
            &end,
            max,
            gauges,
        );
        state.last = end;
        state.last_at = now;
        state.ring.push(sample.clone());
        sample
    }

    /// The interval in progress so far, as a sample ending now; the ring is left as it is.
    pub async fn current(&self) -> Sample {
        let gauges = Gauges::read(&self.bus).await;
        let state = self.state.lock().expect("sampler lock");
        let end = Counters::read(&self.bus);
        let max = self
            .bus
            .webhooks()
            .map_or(0, |w| w.stats().max_attempt_micros.load(Ordering::Relaxed));
        Sample::between(
            Timestamp::now(),
            state.last_at.elapsed(),
            &state.last,
            &end,
            max,
            gauges,
        )
    }

    /// The samples in the ring taken after `after` (all for `None`), oldest first.
    pub fn since(&self, after: Option<Timestamp>) -> Vec<Sample> {
        self.state.lock().expect("sampler lock").ring.since(after)
    }

    /// Samples every interval until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticks = tokio::time::interval_at(start, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.sample() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000 + seconds * 1_000_000)
    }

    fn sample_at(seconds: i64) -> Sample {
        Sample::between(
            at(seconds),
            Duration::from_secs(10),
            &Counters::default(),
            &Counters::default(),
            0,
            Gauges::default(),
        )
    }

    fn ats(samples: &[Sample]) -> Vec<Timestamp> {
        samples.iter().map(|s| s.at).collect()
    }

    #[test]
    fn the_ring_keeps_the_last_360_samples_oldest_first() {
        let mut ring = SampleRing::new(RING_SAMPLES);
        assert!(ring.is_empty());
        for i in 0..400 {
            ring.push(sample_at(i));
        }
        assert_eq!(ring.len(), RING_SAMPLES);
        let all = ring.since(None);
        assert_eq!(all.len(), RING_SAMPLES);
        assert_eq!(
            all.first().unwrap().at,
            at(40),
            "the oldest 40 were pushed out"
        );
        assert_eq!(all.last().unwrap().at, at(399));
        assert!(all.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    }

    #[test]
    fn since_returns_the_samples_after_it() {
        let mut ring = SampleRing::new(RING_SAMPLES);
        for i in 0..10 {
            ring.push(sample_at(i * 10));
        }
        assert_eq!(
            ats(&ring.since(Some(at(50)))),
            vec![at(60), at(70), at(80), at(90)]
        );
        assert_eq!(
            ats(&ring.since(Some(at(55)))),
            vec![at(60), at(70), at(80), at(90)]
        );
        assert_eq!(ring.since(Some(at(-1))).len(), 10);
        assert!(ring.since(Some(at(90))).is_empty(), "`since` is exclusive");
        assert!(ring.since(Some(at(1000))).is_empty());
    }

    #[test]
    fn a_sample_holds_the_deltas_of_its_interval() {
        let start = Counters {
            events: 10,
            webhook_succeeded: 2,
            webhook_failed: 1,
            webhook_micros: 3_000,
        };
        let end = Counters {
            events: 35,
            webhook_succeeded: 5,
            webhook_failed: 2,
            webhook_micros: 9_000,
        };
        let gauges = Gauges {
            sse_connections: 4,
            queue_depths: QueueDepths {
                store_writer: 1,
                subscribers: 2,
                sse: 3,
                webhooks: Some(7),
            },
        };
        let s = Sample::between(at(0), Duration::from_secs(10), &start, &end, 4_000, gauges);
        assert_eq!((s.events, s.events_per_second, s.seconds), (25, 2.5, 10.0));
        assert_eq!((s.webhook_succeeded, s.webhook_failed), (3, 1));
        assert_eq!(s.webhook_success_rate, Some(0.75));
        // 6,000 µs over 4 attempts; the longest took 4 ms.
        assert_eq!(
            s.webhook_latency_ms,
            Some(Latency {
                mean: 1.5,
                max: 4.0
            })
        );
        assert_eq!(
            (s.sse_connections, s.queue_depths),
            (4, gauges.queue_depths)
        );

        let quiet = Sample::between(at(10), Duration::from_secs(10), &end, &end, 0, gauges);
        assert_eq!((quiet.events, quiet.events_per_second), (0, 0.0));
        assert_eq!(quiet.webhook_success_rate, None, "no attempt, no rate");
        assert_eq!(quiet.webhook_latency_ms, None);
        let json = serde_json::to_value(&quiet).unwrap();
        assert_eq!(json["webhookSuccessRate"], serde_json::Value::Null);
        assert_eq!(json["queueDepths"]["storeWriter"], 1);
        assert_eq!(json["at"], "2027-01-15T08:00:10.000Z");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sampler_counts_the_events_its_bus_stored() {
        let (_dir, store) = crate::store::sqlite::testing::store();
        let bus = EventBus::builder(Arc::new(store)).build().await.unwrap();
        let sampler = Sampler::new(bus.clone(), Duration::from_secs(10));
        for _ in 0..3 {
            bus.publish(crate::NewEvent::new(
                "project.created",
                serde_json::json!({}),
            ))
            .await
            .unwrap();
        }
        let first = sampler.sample().await;
        assert_eq!(first.events, 3);
        assert_eq!(first.queue_depths.webhooks, None, "no webhook transport");
        assert_eq!(sampler.current().await.events, 0, "a new interval began");
        let id = bus
            .publish(crate::NewEvent::new(
                "project.created",
                serde_json::json!({}),
            ))
            .await
            .unwrap()
            .event
            .id
            .clone();
        // A publish answered with the stored event stores nothing.
        let again = crate::NewEvent::new("project.created", serde_json::json!({})).with_id(id);
        assert!(!bus.publish(again).await.unwrap().created);
        assert_eq!(sampler.current().await.events, 1);
        let second = sampler.sample().await;
        assert_eq!(second.events, 1);
        assert_eq!(ats(&sampler.since(None)), vec![first.at, second.at]);
        assert_eq!(ats(&sampler.since(Some(first.at))), vec![second.at]);
        bus.shutdown().await;
    }
}
