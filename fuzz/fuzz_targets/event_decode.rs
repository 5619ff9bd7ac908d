//! Bytes as the body of `POST /v1/events`: decoded as the handler decodes them (one event or an
//! array of them, told apart by the first character), each event validated
//! (`NewEvent::into_event`) and put through the bus's built-in middleware (validation with
//! `payload::check` and a JSON Schema, enrichment), then checked against a tenant-bound key
//! (`Principal::may_publish`).
//!
//! Never panics, and an event the chain accepts:
//! - has a payload every JSON reader can read (`core::payload`'s promise): serde_json parses it
//!   (no number out of range, no lone surrogate, nesting under its recursion limit) and no string
//!   or key in it holds `\u0000`;
//! - can be sent back as is (`NewEvent::seq`'s promise): its JSON form decodes as a publish body
//!   and validates to the same event;
//! - once `may_publish` lets a key publish it, is one that key sees.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use eventbus::bus::DEFAULT_MAX_PAYLOAD_BYTES;
use eventbus::core::catalogue::{EventTypeDef, TypeEntry, TypeRegistry};
use eventbus::core::middleware::{
    EnrichmentMiddleware, MiddlewareChain, PublishContext, ValidationMiddleware,
};
use eventbus::core::pattern::Pattern;
use eventbus::core::principal::{Permission, Principal};
use eventbus::core::time::Timestamp;
use eventbus::{Event, NewEvent};
use eventbus_server::fuzzing::decode;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);

struct Harness {
    runtime: tokio::runtime::Runtime,
    chain: MiddlewareChain,
    ctx: PublishContext,
    key: Principal,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let registry = TypeRegistry::new();
    registry.insert(
        TypeEntry::compile(EventTypeDef {
            name: "order.placed".into(),
            description: None,
            schema: Some(serde_json::json!({
                "type": "object",
                "required": ["total"],
                "properties": {
                    "total": {"type": "number", "minimum": 0},
                    "items": {"type": "array", "items": {"type": "string", "maxLength": 8}},
                    "note": {"type": "string", "pattern": "^[a-z]*$"}
                }
            })),
            builtin: false,
            updated_at: NOW,
        })
        .expect("the schema compiles"),
    );
    let chain = MiddlewareChain::new(vec![
        Arc::new(ValidationMiddleware::new(
            Arc::new(registry),
            DEFAULT_MAX_PAYLOAD_BYTES,
            false,
        )),
        Arc::new(EnrichmentMiddleware),
    ]);
    let key = Principal {
        key_id: "0123456789abcdef".into(),
        tenant_id: Some("t_a".into()),
        project_ids: Some(vec!["p1".into(), "p2".into()]),
        grants: BTreeMap::from([(
            Permission::Publish,
            vec![
                Pattern::parse("order.>").unwrap(),
                Pattern::parse("*.created").unwrap(),
            ],
        )]),
    };
    Harness {
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime"),
        chain,
        ctx: PublishContext {
            principal: None,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        },
        key,
    }
});

fuzz_target!(|data: &[u8]| {
    let h = &*HARNESS;
    let events: Vec<NewEvent> = match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => match decode(data) {
            Ok(events) => events,
            Err(_) => return,
        },
        Some(b'{') => match decode(data) {
            Ok(event) => vec![event],
            Err(_) => return,
        },
        _ => return,
    };
    for new in events {
        let Ok(mut event) = new.into_event(NOW) else {
            continue;
        };
        if h.runtime.block_on(h.chain.run(&mut event, &h.ctx)).is_err() {
            continue;
        }
        check_payload(&event);
        check_sent_back(&event);
        let mut bound = event.clone();
        if h.key.may_publish(&mut bound).is_ok() {
            assert!(
                h.key.sees(Permission::Publish, &bound),
                "a key may publish an event it does not see: {bound:?}"
            );
        }
    }
});

/// The payload of an accepted event is JSON every reader can read.
fn check_payload(event: &Event) {
    let text = event.payload.get();
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("an accepted payload does not parse ({e}): {text}"));
    assert!(
        !holds_nul(&value),
        "an accepted payload holds \\u0000: {text}"
    );
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// A stored event, sent back as a publish body, is the same event.
fn check_sent_back(event: &Event) {
    let json = event.to_json();
    let back: NewEvent = decode(json.as_bytes())
        .unwrap_or_else(|e| panic!("an accepted event does not decode again ({e:?}): {json}"));
    let again = back
        .into_event(Timestamp::from_micros(0))
        .unwrap_or_else(|e| panic!("an accepted event does not validate again ({e}): {json}"));
    assert!(again.same_content(event), "{json} came back as {again:?}");
    assert_eq!(again.timestamp, event.timestamp, "{json}");
    assert_eq!(again.metadata, event.metadata, "{json}");
    let stored: Event = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("an event's JSON does not read as an event ({e}): {json}"));
    assert!(stored.same_content(event), "{json}");
}
