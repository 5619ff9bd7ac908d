//! A minimal Server-Sent Events client over reqwest, for the stream tests.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

use super::ApiClient;

/// One message of the stream.
#[derive(Debug, Clone)]
pub enum Message {
    /// `retry: <ms>`.
    Retry(u64),
    /// A comment line (heartbeat).
    Comment(String),
    /// An event with an `id:`.
    Event(EventMessage),
    /// A named event without `id:` (`lagged`, `error`, …).
    Control {
        /// The `event:` name.
        event: String,
        /// The parsed `data:`.
        data: Value,
    },
}

/// An event message.
#[derive(Debug, Clone)]
pub struct EventMessage {
    /// The `id:` (the event's seq).
    pub seq: u64,
    /// The `event:` (the event's type).
    pub event: String,
    /// The parsed `data:` (the event).
    pub data: Value,
}

/// An open stream.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    messages: VecDeque<Message>,
    ended: bool,
}

impl SseClient {
    /// Opens `/v1/stream?<query>`, with `Last-Event-ID` when `last` is given; asserts 200.
    pub async fn connect(server: &ApiClient, query: &str, last: Option<u64>) -> SseClient {
        Self::connect_with(server.client(), server, query, last).await
    }

    /// [`SseClient::connect`] with another client (another key, or none with `?token=`).
    pub async fn connect_with(
        client: &reqwest::Client,
        server: &ApiClient,
        query: &str,
        last: Option<u64>,
    ) -> SseClient {
        Self::try_connect(client, &server.url("/v1/stream"), query, last)
            .await
            .unwrap_or_else(|e| panic!("stream {query}: {e}"))
    }

    /// Opens `<url>?<query>` (a `/v1/stream` URL), with `Last-Event-ID` when `last` is given;
    /// an error names what went wrong (no connection, or another answer than a stream).
    pub async fn try_connect(
        client: &reqwest::Client,
        url: &str,
        query: &str,
        last: Option<u64>,
    ) -> Result<SseClient, String> {
        let mut req = client.get(format!("{url}?{query}"));
        if let Some(last) = last {
            req = req.header("last-event-id", last.to_string());
        }
        let response = req.send().await.map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("answered {}", response.status()));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type != "text/event-stream" {
            return Err(format!("answered {content_type:?}"));
        }
        Ok(SseClient {
            response,
            buffer: String::new(),
            messages: VecDeque::new(),
            ended: false,
        })
    }

    /// Whether the stream ended (the server closed it, or the connection broke).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next message, `None` when the stream ended or nothing came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.messages.pop_front() {
                return Some(m);
            }
            if self.ended {
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            match chunk {
                Ok(Some(bytes)) => {
                    self.buffer
                        .push_str(std::str::from_utf8(&bytes).expect("utf-8 stream"));
                    self.parse();
                }
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }

    /// The next event with an id, skipping heartbeats; `None` at the end or on a control event.
    pub async fn next_event(&mut self, wait: Duration) -> Option<EventMessage> {
        loop {
            match self.next(wait).await? {
                Message::Event(e) => return Some(e),
                Message::Control { .. } => return None,
                _ => {}
            }
        }
    }

    /// Events until one with `seq >= last` arrived, or nothing came within `idle`.
    pub async fn events_until_seq(&mut self, last: u64, idle: Duration) -> Vec<EventMessage> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(idle).await {
            let seq = e.seq;
            out.push(e);
            if seq >= last {
                break;
            }
        }
        out
    }

    fn parse(&mut self) {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data, mut retry, mut comment) =
                (None, None, None, None, None);
            for line in block.lines() {
                if let Some(c) = line.strip_prefix(':') {
                    comment = Some(c.trim().to_owned());
                } else if let Some((field, value)) = line.split_once(": ") {
                    match field {
                        "id" => id = Some(value.parse::<u64>().expect("numeric id")),
                        "event" => event = Some(value.to_owned()),
                        "data" => {
                            data = Some(serde_json::from_str::<Value>(value).expect("JSON data"))
                        }
                        "retry" => retry = Some(value.parse::<u64>().expect("numeric retry")),
                        other => panic!("unexpected field {other}"),
                    }
                }
            }
            let message = match (id, event, data, retry, comment) {
                (Some(seq), Some(event), Some(data), _, _) => {
                    Message::Event(EventMessage { seq, event, data })
                }
                (None, Some(event), Some(data), _, _) => Message::Control { event, data },
                (_, _, _, Some(ms), _) => Message::Retry(ms),
                (_, _, _, _, Some(c)) => Message::Comment(c),
                _ => panic!("unparseable block {block:?}"),
            };
            self.messages.push_back(message);
        }
    }
}
