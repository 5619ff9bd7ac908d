//! The query strings of `GET /v1/stream` and `GET /v1/events` and the `Last-Event-ID` header.
//! The input's first line is the query string (after `?`), the rest, if any, the value of
//! `Last-Event-ID`. A query the URI parser or axum's `Query` refuses never reaches the handlers
//! (hyper and axum answer 400 first), so it ends the run; the rest goes through the parsers the
//! handlers use: `stream_request` (the stream's filter and resume cursor), `event_query` and
//! `include_archived` (the event list), then `Principal::narrow` with a key bound to a tenant,
//! two projects and two patterns.
//!
//! Never panics, and:
//! - the stream resumes after `Last-Event-ID` when the header is there (it wins), after
//!   `lastEventId` otherwise, each an integer with blanks around it allowed;
//! - the scope parameters are taken as sent;
//! - a page size is 1 to `MAX_PAGE`;
//! - narrowing never widens: the narrowed filter is bound to the key's tenant and projects, and
//!   each of its patterns lies within one of the key's and one asked for.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Uri};
use eventbus::Pattern;
use eventbus::core::filter::EventFilter;
use eventbus::core::principal::{Permission, Principal};
use eventbus::store::MAX_PAGE;
use eventbus_server::fuzzing::{event_query, include_archived, stream_request};
use libfuzzer_sys::fuzz_target;

static KEY: LazyLock<Principal> = LazyLock::new(|| Principal {
    key_id: "0123456789abcdef".into(),
    tenant_id: Some("t_a".into()),
    project_ids: Some(vec!["p1".into(), "p2".into()]),
    grants: BTreeMap::from([
        (
            Permission::Subscribe,
            vec![
                Pattern::parse("project.>").unwrap(),
                Pattern::parse("*.created").unwrap(),
            ],
        ),
        (Permission::Read, vec![Pattern::parse("order.*").unwrap()]),
    ]),
});

fuzz_target!(|data: &[u8]| {
    let (query, header) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut target = b"/v1/stream?".to_vec();
    target.extend_from_slice(query);
    let Ok(uri) = Uri::try_from(target.as_slice()) else {
        return;
    };
    let Ok(Query(params)) = Query::<HashMap<String, String>>::try_from_uri(&uri) else {
        return;
    };
    let mut headers = HeaderMap::new();
    let header = header.and_then(|h| HeaderValue::from_bytes(h).ok());
    if let Some(value) = &header {
        headers.insert("last-event-id", value.clone());
    }

    if let Ok((filter, resume)) = stream_request(&params, &headers) {
        let cursor = |v: &str| v.trim().parse::<u64>().ok();
        let want = match &header {
            Some(h) => h.to_str().ok().and_then(cursor),
            None => params.get("lastEventId").and_then(|v| cursor(v)),
        };
        assert_eq!(
            resume, want,
            "the resume cursor of {params:?} and {header:?}"
        );
        assert_eq!(filter.project_id.as_ref(), params.get("projectId"));
        assert_eq!(filter.tenant_id.as_ref(), params.get("tenantId"));
        assert_eq!(filter.user_id.as_ref(), params.get("userId"));
        narrows(Permission::Subscribe, &filter);
    }

    for project in [None, Some("p1")] {
        if let Ok(query) = event_query(&params, project) {
            assert!((1..=MAX_PAGE).contains(&query.limit), "{}", query.limit);
            if let Some(p) = project {
                assert_eq!(query.filter.project_id.as_deref(), Some(p));
            }
            narrows(Permission::Read, &query.filter);
        }
    }
    let _ = include_archived(&params);
});

/// What the key gets for `asked` is within the key and within what was asked.
fn narrows(permission: Permission, asked: &EventFilter) {
    let key = &*KEY;
    let Ok(got) = key.narrow(permission, asked) else {
        return;
    };
    assert_eq!(
        got.tenant_id, key.tenant_id,
        "{asked:?} narrowed to {got:?}"
    );
    let projects = key.project_ids.as_ref().unwrap();
    match &got.project_id {
        Some(p) => assert!(projects.contains(p), "{asked:?} narrowed to {got:?}"),
        None => assert!(
            !got.project_ids.is_empty() && got.project_ids.iter().all(|p| projects.contains(p)),
            "{asked:?} narrowed to {got:?}"
        ),
    }
    assert!(!got.types.is_empty(), "{asked:?} narrowed to {got:?}");
    for t in &got.types {
        assert!(
            key.covers(permission, t),
            "{t} is wider than the key: {asked:?} narrowed to {got:?}"
        );
        assert!(
            asked.types.is_empty() || asked.types.iter().any(|a| t.is_within(a)),
            "{t} was not asked for: {asked:?} narrowed to {got:?}"
        );
    }
}
