//! Type patterns (`core::pattern`) and the pattern index (`core::router`). The input is text;
//! each of its first 16 lines is parsed as a pattern and as a comma-separated list, and tried as
//! an event type. The types matched against are the lines that are valid types and instances of
//! each pattern (its `*` and `>` filled in).
//!
//! Never panics, and what the code documents holds:
//! - a parsed pattern writes back to its text (Display, serde) and parses to itself;
//! - on valid types, `matches` follows the grammar (`*` one segment, `>` one or more trailing),
//!   an exact pattern matches its own name only, `>` matches every type, and a matching type
//!   starts with the pattern's `literal_prefix`;
//! - `a.is_within(b)`: every type `a` matches, `b` matches;
//! - `a.intersect(b)` matches exactly the types both match, is `None` when no type does, lies
//!   within both, parses back to itself, and does not depend on the order of `a` and `b`;
//! - the index returns, for each type, exactly the keys whose patterns match it, after inserts
//!   and after removals.
#![no_main]

use eventbus::core::event::validate_type;
use eventbus::core::pattern::{Pattern, Segment};
use eventbus::core::router::PatternIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').take(16).collect();
    let mut patterns = Vec::new();
    for line in &lines {
        if let Ok(list) = Pattern::parse_list(line) {
            for p in &list {
                round_trips(p);
            }
        }
        if let Ok(p) = Pattern::parse(line) {
            assert_eq!(p.as_str(), *line);
            round_trips(&p);
            patterns.push(p);
        }
    }
    // Any text as a type: no panic.
    for p in &patterns {
        for line in &lines {
            p.matches(line);
        }
    }
    let mut types: Vec<String> = lines
        .iter()
        .filter(|l| validate_type(l).is_ok())
        .map(|l| (*l).to_owned())
        .collect();
    for p in &patterns {
        types.extend(instances(p));
    }
    for a in &patterns {
        for b in &patterns {
            if let Some(i) = a.intersect(b) {
                types.extend(instances(&i));
            }
        }
    }
    types.sort();
    types.dedup();

    for p in &patterns {
        for t in &types {
            let parts: Vec<&str> = t.split('.').collect();
            let m = p.matches(t);
            assert_eq!(m, grammar(p.segments(), &parts), "{p} on {t}");
            if p.is_exact() {
                assert_eq!(m, p.as_str() == t, "{p} is exact, on {t}");
            }
            if p.is_all() {
                assert!(m, "`>` does not match {t}");
            }
            if m {
                assert!(
                    t.starts_with(&p.literal_prefix()),
                    "{t} matches {p} but does not start with `{}`",
                    p.literal_prefix()
                );
            }
        }
    }

    for a in &patterns {
        for b in &patterns {
            if a.is_within(b) {
                for t in &types {
                    assert!(!a.matches(t) || b.matches(t), "{a} within {b}, on {t}");
                }
            }
            let i = a.intersect(b);
            let reverse = b.intersect(a);
            assert_eq!(
                i.as_ref().map(Pattern::segments),
                reverse.as_ref().map(Pattern::segments),
                "{a} ∩ {b} is not {b} ∩ {a}"
            );
            for t in &types {
                assert_eq!(
                    i.as_ref().is_some_and(|i| i.matches(t)),
                    a.matches(t) && b.matches(t),
                    "{a} ∩ {b} = {i:?}, on {t}"
                );
            }
            if let Some(i) = &i {
                assert_eq!(
                    Pattern::parse(i.as_str()).as_ref(),
                    Ok(i),
                    "{a} ∩ {b} does not parse back"
                );
                assert!(
                    i.is_within(a) && i.is_within(b),
                    "{a} ∩ {b} = {i} is not within both"
                );
                assert!(
                    instances(i).iter().any(|t| a.matches(t) && b.matches(t)),
                    "{a} ∩ {b} = {i}, but no type matches both"
                );
            }
        }
    }

    // The index against the patterns themselves, keyed by position.
    let mut index = PatternIndex::new();
    for (k, p) in patterns.iter().enumerate() {
        index.insert(p, k);
    }
    assert_eq!(index.len(), patterns.len());
    let live = |k: usize, removed: bool| !removed || k % 2 == 1;
    for removed in [false, true] {
        if removed {
            for (k, p) in patterns.iter().enumerate().step_by(2) {
                assert!(index.remove(p, k), "{p} ({k}) was not in the index");
                assert!(!index.remove(p, k), "{p} ({k}) was removed twice");
            }
            assert_eq!(index.len(), patterns.len() / 2);
        }
        for t in &types {
            let want: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(k, p)| live(*k, removed) && p.matches(t))
                .map(|(k, _)| k)
                .collect();
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                assert_eq!(&*index.matches(t), want.as_slice(), "index on {t}");
            }
        }
    }
});

/// Display and serde give the pattern's text back, and it parses to the same pattern.
fn round_trips(p: &Pattern) {
    let text = p.to_string();
    assert_eq!(text, p.as_str());
    assert_eq!(Pattern::parse(&text).as_ref(), Ok(p));
    let json = serde_json::to_string(p).expect("a pattern serialises");
    assert_eq!(
        serde_json::from_str::<Pattern>(&json).ok().as_ref(),
        Some(p)
    );
}

/// The grammar of the module documentation, on the segments of a valid type.
fn grammar(pattern: &[Segment], parts: &[&str]) -> bool {
    match (pattern.split_first(), parts.split_first()) {
        (None, None) => true,
        (Some((Segment::Tail, _)), Some(_)) => true,
        (Some((Segment::Any, rest)), Some((_, more))) => grammar(rest, more),
        (Some((Segment::Literal(l), rest)), Some((part, more))) => l == part && grammar(rest, more),
        _ => false,
    }
}

/// Valid types the pattern matches: `*` as `x`, `>` as `x` and as `x.y`.
fn instances(p: &Pattern) -> Vec<String> {
    let mut out = Vec::new();
    for tail in ["x", "x.y"] {
        let t = p
            .segments()
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Any => "x",
                Segment::Tail => tail,
            })
            .collect::<Vec<_>>()
            .join(".");
        if validate_type(&t).is_ok() {
            out.push(t);
        }
    }
    out
}
