//! The archive file format: JSON Lines compressed with zstd, self-describing.
//!
//! The first line is a [`Header`] (`"format": "situs-eventbus-archive"`, version, seq and time
//! range, count); each following line is one event in the wire format of DESIGN.md §2, `seq`
//! included, in `seq` order. A reader needs nothing but the file. The manifest row keeps the
//! sha256 of the compressed bytes, checked on every read, so a damaged or foreign file is refused
//! instead of answering wrong events.

use std::io::{BufRead, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ArchiveError;
use crate::core::event::Event;

/// The `format` value of every archive file.
pub const FORMAT: &str = "situs-eventbus-archive";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
const ZSTD_LEVEL: i32 = 3;

/// The first line of an archive file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version.
    pub version: u32,
    /// `seq` of the first event.
    pub first_seq: u64,
    /// `seq` of the last event.
    pub last_seq: u64,
    /// Smallest event timestamp (µs since the epoch).
    pub from_ts: i64,
    /// Largest event timestamp (µs since the epoch).
    pub to_ts: i64,
    /// Number of events.
    pub count: u64,
}

impl Header {
    /// The header describing `events` (non-empty, in `seq` order).
    pub fn describe(events: &[Event]) -> Header {
        let ts = events.iter().map(|e| e.timestamp.as_micros());
        Header {
            format: FORMAT.into(),
            version: VERSION,
            first_seq: events.first().map_or(0, |e| e.seq),
            last_seq: events.last().map_or(0, |e| e.seq),
            from_ts: ts.clone().min().unwrap_or(0),
            to_ts: ts.max().unwrap_or(0),
            count: events.len() as u64,
        }
    }
}

/// The compressed file of `events` and its header.
pub fn encode(events: &[Event]) -> Result<(Header, Vec<u8>), ArchiveError> {
    let header = Header::describe(events);
    let mut encoder = zstd::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(ArchiveError::format)?;
    serde_json::to_writer(&mut encoder, &header).map_err(ArchiveError::format)?;
    encoder.write_all(b"\n").map_err(ArchiveError::format)?;
    for event in events {
        serde_json::to_writer(&mut encoder, event).map_err(ArchiveError::format)?;
        encoder.write_all(b"\n").map_err(ArchiveError::format)?;
    }
    let bytes = encoder.finish().map_err(ArchiveError::format)?;
    Ok((header, bytes))
}

/// The hex sha256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a file written by [`encode`], checking its checksum when one is given and that the
/// events agree with the header.
pub fn decode(
    bytes: &[u8],
    expected_checksum: Option<&str>,
) -> Result<(Header, Vec<Arc<Event>>), ArchiveError> {
    if let Some(expected) = expected_checksum {
        let actual = checksum(bytes);
        if actual != expected {
            return Err(ArchiveError::Format(format!(
                "checksum mismatch: expected {expected}, found {actual}"
            )));
        }
    }
    let decoder = zstd::Decoder::new(bytes).map_err(ArchiveError::format)?;
    let mut lines = std::io::BufReader::new(decoder).lines();
    let first = lines
        .next()
        .ok_or_else(|| ArchiveError::Format("empty archive file".into()))?;
    let header: Header = serde_json::from_str(&first.map_err(ArchiveError::format)?)
        .map_err(ArchiveError::format)?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(ArchiveError::Format(format!(
            "not an archive file this version reads (format `{}`, version {})",
            header.format, header.version
        )));
    }
    let mut events = Vec::with_capacity(header.count as usize);
    for line in lines {
        let event: Event = serde_json::from_str(&line.map_err(ArchiveError::format)?)
            .map_err(ArchiveError::format)?;
        events.push(Arc::new(event));
    }
    let consistent = events.len() as u64 == header.count
        && events.first().is_none_or(|e| e.seq == header.first_seq)
        && events.last().is_none_or(|e| e.seq == header.last_seq)
        && events.windows(2).all(|w| w[0].seq < w[1].seq);
    if !consistent {
        return Err(ArchiveError::Format(
            "the events do not agree with the file's header".into(),
        ));
    }
    Ok((header, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Timestamp;

    fn event(seq: u64, ts: i64) -> Event {
        let mut e = crate::core::event::NewEvent::new("a.b", serde_json::json!({"n": seq}))
            .into_event(Timestamp::from_micros(ts))
            .unwrap();
        e.seq = seq;
        e
    }

    #[test]
    fn round_trips_and_checks() {
        let events = vec![event(3, 20), event(5, 10)];
        let (header, bytes) = encode(&events).unwrap();
        assert_eq!(
            (
                header.first_seq,
                header.last_seq,
                header.from_ts,
                header.to_ts,
                header.count
            ),
            (3, 5, 10, 20, 2)
        );
        let sum = checksum(&bytes);
        let (read, back) = decode(&bytes, Some(&sum)).unwrap();
        assert_eq!(read, header);
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].to_json(), events[1].to_json());
        assert!(decode(&bytes, Some("00")).is_err());
    }
}
