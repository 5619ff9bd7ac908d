//! Timestamps: microseconds since the Unix epoch, written as RFC 3339 in UTC.
//!
//! Stores keep the integer; the wire carries `2026-11-27T05:00:00.123Z` (milliseconds, or
//! microseconds when the value has them), so a stored event serialises the same way every time.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time with microsecond precision, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// From microseconds since the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    fn from_datetime(t: OffsetDateTime) -> Self {
        Timestamp((t.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// Parses RFC 3339 (any offset; converted to UTC, truncated to microseconds).
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeParseError> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| TimeParseError::NotRfc3339 {
            input: s.to_owned(),
            reason: e.to_string(),
        })?;
        // An offset can carry a time at the edge of 0000 or 9999 out of the range RFC 3339 can
        // write in UTC; such a time could be stored but not shown again.
        if !t
            .checked_to_offset(time::UtcOffset::UTC)
            .is_some_and(|u| (0..=9999).contains(&u.year()))
        {
            return Err(TimeParseError::OutOfRange(s.to_owned()));
        }
        Ok(Self::from_datetime(t))
    }

    /// Shifts by `micros` (saturating).
    pub fn plus_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }
}

/// Why a text is not a time [`Timestamp::parse_rfc3339`] accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeParseError {
    /// Not RFC 3339.
    #[error("`{input}` is not an RFC 3339 time such as 2026-11-27T05:00:00.123Z ({reason})")]
    NotRfc3339 {
        /// The text.
        input: String,
        /// What the parser found.
        reason: String,
    },
    /// Outside what RFC 3339 can write in UTC.
    #[error("`{0}` is outside the years 0000 to 9999 once converted to UTC")]
    OutOfRange(String),
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000) else {
            return write!(f, "{}us", self.0);
        };
        let micros = self.0.rem_euclid(1_000_000);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        if micros % 1_000 == 0 {
            write!(f, "{:03}Z", micros / 1_000)
        } else {
            write!(f, "{micros:06}Z")
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds_or_microseconds() {
        let t = Timestamp::parse_rfc3339("2026-11-27T05:00:00.123Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-27T05:00:00.123Z");
        let t = Timestamp::parse_rfc3339("2026-11-27T07:00:00.123456+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-27T05:00:00.123456Z");
        let t = Timestamp::parse_rfc3339("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(t.as_micros(), -500_000);
        assert_eq!(t.to_string(), "1969-12-31T23:59:59.500Z");
    }

    #[test]
    fn rejects_non_rfc3339() {
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27T05:00:00",
            "tomorrow",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    // Regression: these were accepted, then served as `253402387139000000us` and `-001-12-31T…`.
    #[test]
    fn rejects_times_outside_rfc3339_years_in_utc() {
        for bad in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59"] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
        for (edge, shown) in [
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(Timestamp::parse_rfc3339(edge).unwrap().to_string(), shown);
        }
    }
}
