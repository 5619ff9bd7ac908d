//! The transport's settings ([`WebhookOptions`]) and the parsers of their duration forms
//! (`250ms`, `5s`, `5m`, `2h`, `1d`; retry schedules such as `5s,5m,30m,2h,5h,10h`), which the
//! server's configuration also uses.

use std::time::Duration;

use super::client::Cidr;

/// Settings of the transport.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retry_attempts: u32,
    /// Delays before each retry (the last repeats when there are more retries); jittered ±10 %.
    pub retry_schedule: Vec<Duration>,
    /// Networks reachable although internal.
    pub allowed_networks: Vec<Cidr>,
    /// Most attempts in flight in this process.
    pub max_in_flight: usize,
    /// Most attempts in flight to one endpoint.
    pub endpoint_concurrency: usize,
    /// How often due retries are looked for when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Most bytes of an answer read and logged.
    pub response_body_limit: usize,
    /// How long the old secret stays valid after a rotation.
    pub secret_grace: Duration,
    /// An endpoint failing for this long…
    pub disable_after: Duration,
    /// …and at least this many attempts in a row is disabled.
    pub disable_failures: u32,
    /// How long shutdown waits for attempts in flight.
    pub drain_timeout: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            timeout: Duration::from_millis(5000),
            retry_attempts: 3,
            retry_schedule: parse_schedule("5s,5m,30m,2h,5h,10h")
                .expect("the default schedule parses"),
            allowed_networks: Vec::new(),
            max_in_flight: 256,
            endpoint_concurrency: 8,
            poll_interval: Duration::from_millis(250),
            response_body_limit: 4096,
            secret_grace: Duration::from_secs(24 * 3600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            disable_failures: 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a duration or a retry schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// No number leads the text.
    #[error("`{0}` is not a duration such as 250ms, 5s, 5m, 2h or 1d")]
    NotADuration(String),
    /// The unit after the number is unknown.
    #[error("`{0}`: the unit must be ms, s, m, h or d")]
    Unit(String),
    /// A schedule without a delay.
    #[error("the schedule needs at least one delay")]
    EmptySchedule,
}

/// Parses a duration: `250ms`, `5s`, `5m`, `2h`, `5d` (a bare number is milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotADuration(s.to_owned()))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(DurationError::Unit(s.to_owned())),
    };
    Ok(Duration::from_millis(ms))
}

/// Parses a comma-separated retry schedule such as `5s,5m,30m,2h,5h,10h`.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, DurationError> {
    let schedule = s
        .split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    if schedule.is_empty() {
        return Err(DurationError::EmptySchedule);
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_schedules_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("100").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("5x").is_err() && parse_duration("m").is_err());
        // The messages are the ones the server's settings errors always carried.
        assert_eq!(
            parse_duration("soon").unwrap_err().to_string(),
            "`soon` is not a duration such as 250ms, 5s, 5m, 2h or 1d"
        );
        assert_eq!(
            parse_duration("5x").unwrap_err().to_string(),
            "`5x`: the unit must be ms, s, m, h or d"
        );
        let s = parse_schedule("5s,5m,30m,2h,5h,10h").unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[5], Duration::from_secs(36_000));
    }
}
