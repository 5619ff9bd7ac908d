//! The benchmark's events, in the shape DESIGN.md §6 fixes so that figures compare across
//! changes: type `project.updated`, spread over [`PROJECTS`] projects and [`TENANTS`] tenants, no
//! user and no metadata, and a JSON payload of a chosen size (about 400 B by default).
//!
//! Everything is built before the clock starts, so the load generator spends its CPU on sending
//! and the raw-store mode on inserting, not on formatting.

/// The event type every benchmark event has.
pub const EVENT_TYPE: &str = "project.updated";
/// Projects the events are spread over.
pub const PROJECTS: usize = 100;
/// Tenants the events are spread over.
pub const TENANTS: usize = 10;

/// The project of event number `i`.
pub fn project_id(i: usize) -> String {
    format!("p_{}", i % PROJECTS)
}

/// The tenant of event number `i`.
pub fn tenant_id(i: usize) -> String {
    format!("t_{}", i % TENANTS)
}

/// A JSON object of exactly `bytes` bytes (or of its fixed fields alone, ~90 B, when `bytes` is
/// smaller): a few typed fields and a text field padded with words.
pub fn payload(bytes: usize) -> String {
    let head = r#"{"name":"Situs demo project","status":"active","revision":42,"public":true,"description":""#;
    let tail = r#""}"#;
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    let pad = bytes.saturating_sub(head.len() + tail.len());
    let text: String = words.chars().cycle().take(pad).collect();
    let json = format!("{head}{text}{tail}");
    debug_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    json
}

/// Event number `i` as JSON, with `payload` (JSON text) and, when given, a `timestamp`
/// (RFC 3339); without one the bus stamps it.
pub fn event_json(i: usize, payload: &str, timestamp: Option<&str>) -> String {
    let timestamp = timestamp.map_or(String::new(), |ts| format!(r#""timestamp":"{ts}","#));
    format!(
        r#"{{"type":"{EVENT_TYPE}","projectId":"{}","tenantId":"{}",{timestamp}"payload":{payload}}}"#,
        project_id(i),
        tenant_id(i)
    )
}

/// Now, in microseconds since the Unix epoch: the send time a timed event carries, read back by
/// whoever receives it (the bench and the server share the clock).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// Event number `i` of project `p_{i % PROJECTS}` carrying its send time: payload
/// `{"sentAt": sent_at, "pad": padding}` (`sent_at` in microseconds since the epoch).
pub fn stamped_event(i: usize, sent_at: u64, padding: &str) -> serde_json::Value {
    serde_json::json!({"type": EVENT_TYPE, "projectId": project_id(i),
        "payload": {"sentAt": sent_at, "pad": padding}})
}

/// The HTTP body publishing events `first..first + batch`: one event object when `batch` is 1,
/// else an array (an atomic batch). Ids and timestamps are left to the bus, as most publishers do.
pub fn http_body(first: usize, batch: usize, payload: &str) -> String {
    let event = |i: usize| event_json(i, payload, None);
    if batch == 1 {
        return event(first);
    }
    let events: Vec<String> = (first..first + batch).map(event).collect();
    format!("[{}]", events.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_asked_size_and_is_json() {
        for size in [200, 400, 1000] {
            let p = payload(size);
            assert_eq!(p.len(), size);
            serde_json::from_str::<serde_json::Value>(&p).unwrap();
        }
    }

    #[test]
    fn bodies_are_an_object_or_an_array() {
        let p = payload(400);
        let one: serde_json::Value = serde_json::from_str(&http_body(7, 1, &p)).unwrap();
        assert_eq!(one["projectId"], "p_7");
        let many: serde_json::Value = serde_json::from_str(&http_body(0, 3, &p)).unwrap();
        assert_eq!(many.as_array().unwrap().len(), 3);
        assert_eq!(many[2]["tenantId"], "t_2");
        let dated: serde_json::Value =
            serde_json::from_str(&event_json(3, &p, Some("2026-01-02T03:04:05Z"))).unwrap();
        assert_eq!(dated["timestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(dated["projectId"], "p_3");
    }
}
