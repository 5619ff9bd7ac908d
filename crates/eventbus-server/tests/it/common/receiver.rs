//! `WebhookReceiver`: a real HTTP server on `127.0.0.1:0` (or another loopback address) that
//! records every request it gets and answers as told: 200, fail the next N requests (with a
//! status and an optional `Retry-After`), fail the first attempt of each `webhook-id`, redirect,
//! hold each answer for a while, or hang. It also counts the requests in flight at once, in all
//! and per path and `webhook-id` (one delivery: an event's `webhook-id` is the same for every
//! endpoint).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The request's path.
    pub path: String,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// Every header, lowercase name → value.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
    /// The status it was answered with (`None`: it hung).
    pub answered: Option<u16>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }

    /// The event's `seq`.
    pub fn seq(&self) -> u64 {
        self.json()["seq"].as_u64().expect("the event has a seq")
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it was answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Default)]
struct Behaviour {
    /// Fail this many more requests…
    fail_next: usize,
    /// …with this status…
    fail_status: u16,
    /// …and this `Retry-After` (seconds).
    retry_after: Option<u64>,
    /// Fail the first request of each `webhook-id` with 500.
    fail_first_of_each: bool,
    seen: HashSet<String>,
    /// Never answer.
    hang: bool,
    /// Answer `307 Temporary Redirect` with this `Location`.
    redirect: Option<String>,
    /// Wait this long before answering.
    hold: Duration,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Received>>,
    behaviour: Mutex<Behaviour>,
    /// Requests being answered now, and the most at once so far.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The same per path and `webhook-id`: two at once means two senders hold one delivery.
    in_flight_by_id: Mutex<HashMap<String, usize>>,
    max_in_flight_per_id: AtomicUsize,
}

/// Counts one request in flight until dropped (also when the client gives up first).
struct InFlight(Arc<Shared>, String);

impl InFlight {
    fn enter(shared: &Arc<Shared>, id: &str) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut by_id = shared.in_flight_by_id.lock().unwrap();
        let n = by_id.entry(id.to_owned()).or_default();
        *n += 1;
        shared.max_in_flight_per_id.fetch_max(*n, Ordering::SeqCst);
        InFlight(shared.clone(), id.to_owned())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut by_id = self.0.in_flight_by_id.lock().unwrap();
        if let Some(n) = by_id.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                by_id.remove(&self.1);
            }
        }
    }
}

/// The receiver; stops when dropped.
pub struct WebhookReceiver {
    ip: IpAddr,
    port: u16,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl WebhookReceiver {
    /// Starts a receiver on `127.0.0.1` answering 200.
    pub async fn start() -> WebhookReceiver {
        WebhookReceiver::start_on("127.0.0.1").await
    }

    /// Starts a receiver answering 200 on `ip`, which must be a loopback address (e.g.
    /// `127.0.0.2` or `::1`).
    pub async fn start_on(ip: &str) -> WebhookReceiver {
        let ip: IpAddr = ip.parse().expect("an IP address");
        assert!(
            ip.is_loopback(),
            "receivers listen on loopback only, not {ip}"
        );
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("binding the receiver on {ip}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        WebhookReceiver {
            ip,
            port,
            shared,
            stop,
        }
    }

    /// The URL of `path` on this receiver, by IP literal.
    pub fn url(&self, path: &str) -> String {
        match self.ip {
            IpAddr::V4(ip) => format!("http://{ip}:{}{path}", self.port),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}{path}", self.port),
        }
    }

    /// The same, by the host name `localhost`.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    /// Answers the next `n` requests with `status` (and `Retry-After: retry_after` seconds).
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut b = self.shared.behaviour.lock().unwrap();
        b.fail_next = n;
        b.fail_status = status;
        b.retry_after = retry_after;
    }

    /// Answers the first request of each `webhook-id` with 500, later ones with 200.
    pub fn fail_first_attempt_of_each(&self) {
        self.shared.behaviour.lock().unwrap().fail_first_of_each = true;
    }

    /// Never answers (while `on`).
    pub fn hang(&self, on: bool) {
        self.shared.behaviour.lock().unwrap().hang = on;
    }

    /// Answers `307 Temporary Redirect` to `location` (while `Some`).
    pub fn redirect(&self, location: Option<String>) {
        self.shared.behaviour.lock().unwrap().redirect = location;
    }

    /// Holds each answer for `hold` before sending it.
    pub fn hold(&self, hold: Duration) {
        self.shared.behaviour.lock().unwrap().hold = hold;
    }

    /// The most requests that were being answered at the same time so far.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The most requests of one path and `webhook-id` (one delivery, when each endpoint has its
    /// own path) that were being answered at the same time so far.
    pub fn max_in_flight_per_id(&self) -> usize {
        self.shared.max_in_flight_per_id.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Waits (polling, up to `timeout`) until `done(requests)` holds; panics with `what` if not.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if Instant::now() > deadline {
                panic!(
                    "the receiver did not get {what} within {timeout:?}; it got {} requests",
                    requests.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until at least `n` requests arrived (polling the count only).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() > deadline {
                panic!(
                    "the receiver did not get {n} requests within {timeout:?}; it got {}",
                    self.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.requests()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = h("webhook-id");
    let _in_flight = InFlight::enter(&shared, &format!("{} {id}", uri.path()));
    let (status, retry_after, hang, redirect, hold) = {
        let mut b = shared.behaviour.lock().unwrap();
        let first = b.seen.insert(id.clone());
        let (redirect, hold) = (b.redirect.clone(), b.hold);
        let (status, retry_after, hang) = if b.hang {
            (None, None, true)
        } else if redirect.is_some() {
            (Some(307), None, false)
        } else if b.fail_next > 0 {
            b.fail_next -= 1;
            (Some(b.fail_status), b.retry_after, false)
        } else if b.fail_first_of_each && first {
            (Some(500), None, false)
        } else {
            (Some(200), None, false)
        };
        (status, retry_after, hang, redirect, hold)
    };
    let received = Received {
        at: Instant::now(),
        path: uri.path().to_owned(),
        id,
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body,
        answered: status,
    };
    shared.requests.lock().unwrap().push(received);
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let status = StatusCode::from_u16(status.unwrap_or(200)).unwrap();
    let mut response = (status, format!("answered {}", status.as_u16())).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert("retry-after", secs.into());
    }
    if let Some(location) = redirect {
        response.headers_mut().insert(
            "location",
            location.parse().expect("a valid Location header"),
        );
    }
    response
}
