//! Patterns select event types; one parser serves subscriptions, SSE filters, webhook
//! endpoints, API keys and plugin manifests (DESIGN.md §2).
//!
//! Grammar: dot-separated segments, each a type segment (`[a-z][a-z0-9_]*`), `*` (exactly one
//! segment) or, last only, `>` (one or more segments). `>` alone matches every type. A pattern
//! must be able to match a valid type, so it has at least two segments unless it ends in `>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::event::is_segment;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches this exact segment.
    Literal(String),
    /// `*`: matches exactly one segment.
    Any,
    /// `>`: matches one or more trailing segments.
    Tail,
}

/// A parsed type pattern such as `project.created`, `project.*`, `project.>` or `>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    raw: String,
    segments: Vec<Segment>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a valid pattern: {reason}")]
pub struct PatternError {
    /// The text that was refused.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Pattern {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let err = |reason| PatternError {
            pattern: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty; use `>` for every type"));
        }
        if s.len() > super::event::MAX_TYPE_LEN {
            return Err(err("it is longer than 255 bytes"));
        }
        let parts: Vec<&str> = s.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "*" => Segment::Any,
                ">" if i + 1 == parts.len() => Segment::Tail,
                ">" => return Err(err("`>` may only be the last segment")),
                p if is_segment(p) => Segment::Literal(p.to_owned()),
                "" => return Err(err("it has an empty segment")),
                _ => {
                    return Err(err(
                        "each segment is `*`, `>` (last only) or lowercase a-z, 0-9, _ starting \
                         with a letter",
                    ));
                }
            };
            segments.push(seg);
        }
        if segments.len() < 2 && segments[0] != Segment::Tail {
            return Err(err(
                "event types have at least two segments, e.g. `project.*` or `project.>`",
            ));
        }
        Ok(Pattern {
            raw: s.to_owned(),
            segments,
        })
    }

    /// The pattern matching every type (`>`).
    pub fn all() -> Self {
        Pattern {
            raw: ">".to_owned(),
            segments: vec![Segment::Tail],
        }
    }

    /// Parses a comma-separated list (`project.*,user.>`); blank items are refused.
    pub fn parse_list(s: &str) -> Result<Vec<Pattern>, PatternError> {
        s.split(',').map(|p| Pattern::parse(p.trim())).collect()
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the pattern is a plain type name (no wildcard).
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether the pattern matches every type.
    pub fn is_all(&self) -> bool {
        self.segments == [Segment::Tail]
    }

    /// The literal segments before the first wildcard, joined with dots and followed by a dot
    /// when a wildcard follows (`project.` for `project.*`; the whole name when exact; empty for
    /// `>` or `*.x`). Every matching type starts with it, so stores use it for index ranges.
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    prefix.push_str(l);
                }
                _ => {
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    return prefix;
                }
            }
        }
        prefix
    }

    /// Whether `event_type` matches.
    pub fn matches(&self, event_type: &str) -> bool {
        let mut parts = event_type.split('.');
        for seg in &self.segments {
            match seg {
                Segment::Tail => return parts.next().is_some_and(|p| !p.is_empty()),
                Segment::Any => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Whether every type this pattern matches is also matched by `outer` (used to check that a
    /// token or key is never wider than the one that made it).
    pub fn is_within(&self, outer: &Pattern) -> bool {
        let (a, b) = (&self.segments, &outer.segments);
        let mut i = 0;
        loop {
            match (a.get(i), b.get(i)) {
                (_, Some(Segment::Tail)) => return a.len() > i,
                (Some(Segment::Tail), _) => return false,
                (None, None) => return true,
                (None, _) | (_, None) => return false,
                (Some(_), Some(Segment::Any)) => {}
                (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x == y => {}
                _ => return false,
            }
            i += 1;
        }
    }
}

impl Pattern {
    /// The pattern matching exactly the types both `self` and `other` match, if any type does:
    /// `project.>` ∩ `*.created` is `project.created`; `project.*` ∩ `user.*` is `None`. Read
    /// paths use it to narrow a caller's filter to what its key may see.
    pub fn intersect(&self, other: &Pattern) -> Option<Pattern> {
        let segments = intersect_segments(&self.segments, &other.segments)?;
        let raw = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Any => "*",
                Segment::Tail => ">",
            })
            .collect::<Vec<_>>()
            .join(".");
        // The shortest type it matches is as long as its text (a wildcard matches one byte or
        // more): past the longest type, no type matches both (`a….>` ∩ `*.b…`).
        if raw.len() > super::event::MAX_TYPE_LEN {
            return None;
        }
        Some(Pattern { raw, segments })
    }
}

/// The segments matching what both `a` and `b` match. Every segment consumes at least one type
/// segment, so a `>` (one or more segments) meets a non-empty rest exactly in that rest.
fn intersect_segments(a: &[Segment], b: &[Segment]) -> Option<Vec<Segment>> {
    match (a.first(), b.first()) {
        (None, None) => Some(Vec::new()),
        (None, _) | (_, None) => None,
        (Some(Segment::Tail), _) => Some(b.to_vec()),
        (_, Some(Segment::Tail)) => Some(a.to_vec()),
        (Some(x), Some(y)) => {
            let head = match (x, y) {
                (Segment::Literal(l), Segment::Literal(m)) if l == m => x.clone(),
                (Segment::Literal(_), Segment::Literal(_)) => return None,
                (Segment::Literal(_), _) => x.clone(),
                _ => y.clone(),
            };
            let mut rest = intersect_segments(&a[1..], &b[1..])?;
            rest.insert(0, head);
            Some(rest)
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn intersection_is_the_set_of_types_both_match() {
        let cases = [
            ("project.>", "*.created", Some("project.created")),
            ("project.*", "user.*", None),
            (">", "project.*", Some("project.*")),
            ("project.*", ">", Some("project.*")),
            ("project.>", "project.*", Some("project.*")),
            ("project.*", "project.created", Some("project.created")),
            ("project.created", "project.updated", None),
            ("project.*", "project.a.b", None),
            ("*.*", "a.>", Some("a.*")),
            ("a.>", "*.b.>", Some("a.b.>")),
        ];
        for (a, b, want) in cases {
            let got = p(a).intersect(&p(b));
            assert_eq!(got.as_ref().map(Pattern::as_str), want, "{a} ∩ {b}");
            assert_eq!(
                p(b).intersect(&p(a)).map(|x| x.segments),
                got.as_ref().map(|x| x.segments.clone()),
                "{a} ∩ {b} is symmetric"
            );
            if let Some(i) = got {
                // The result parses back to itself and lies within both operands.
                assert_eq!(p(i.as_str()), i);
                assert!(
                    i.is_within(&p(a)) && i.is_within(&p(b)),
                    "{i} within {a} and {b}"
                );
            }
        }
        let types = [
            "project.created",
            "project.a.b",
            "user.created",
            "a.b",
            "a.b.c",
        ];
        for (a, b) in [("project.>", "*.created"), ("*.*", "a.>"), ("a.>", "*.b.>")] {
            let i = p(a).intersect(&p(b)).unwrap();
            for t in types {
                assert_eq!(
                    i.matches(t),
                    p(a).matches(t) && p(b).matches(t),
                    "{t} in {a} ∩ {b}"
                );
            }
        }
    }

    /// Two patterns whose meeting was longer than any type (a 258-byte `prmv.xct.…` from
    /// `prmv.>` and a 255-byte `*.xct.…`, as the pattern fuzz target found) gave a pattern that
    /// matches no type and does not parse back, where no type matches both.
    #[test]
    fn an_intersection_longer_than_any_type_was_a_pattern_that_did_not_parse_back() {
        let long = |c: &str, n: usize| vec![c; n].join(".");
        let a = p(&format!("{}.>", long("a", 100)));
        let b = p(&format!("*.{}", long("b", 100)));
        assert!(a.as_str().len() <= 255 && b.as_str().len() <= 255);
        assert_eq!(a.intersect(&b), None);
        assert_eq!(b.intersect(&a), None);
        // At the limit, the meeting is kept: a type of exactly 255 bytes matches it.
        let a = p(&format!("{}.>", "a".repeat(127)));
        let b = p(&format!("*.{}", "b".repeat(127)));
        let i = a.intersect(&b).expect("a 255-byte type matches both");
        assert_eq!(i.as_str().len(), 255);
        assert_eq!(p(i.as_str()), i);
        assert!(a.matches(i.as_str()) && b.matches(i.as_str()));
    }

    #[test]
    fn exact() {
        assert!(p("project.created").matches("project.created"));
        assert!(!p("project.created").matches("project.created.x"));
        assert!(!p("project.created").matches("project.updated"));
        assert!(p("project.created").is_exact());
    }

    #[test]
    fn star_is_one_segment() {
        let s = p("project.*");
        assert!(s.matches("project.created"));
        assert!(!s.matches("project.a.b"));
        assert!(!s.matches("projects.created"));
        assert!(p("*.created").matches("user.created"));
        assert!(p("a.*.c").matches("a.b.c"));
        assert!(!p("a.*.c").matches("a.b.d"));
    }

    #[test]
    fn tail_is_one_or_more() {
        let t = p("project.>");
        assert!(t.matches("project.created"));
        assert!(t.matches("project.a.b"));
        assert!(!t.matches("project"));
        assert!(!t.matches("projects.x"));
        assert!(p(">").matches("anything.at.all"));
        assert!(p(">").is_all());
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "project",
            "Project.*",
            "project.",
            ".x",
            "a..b",
            ">.a",
            "a.>.b",
            "a.b*",
            "a.b-c",
            "*",
            "a, b",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn literal_prefix() {
        assert_eq!(p("project.created").literal_prefix(), "project.created");
        assert_eq!(p("project.*").literal_prefix(), "project.");
        assert_eq!(p("a.b.>").literal_prefix(), "a.b.");
        assert_eq!(p(">").literal_prefix(), "");
        assert_eq!(p("*.x").literal_prefix(), "");
    }

    #[test]
    fn within() {
        assert!(p("project.created").is_within(&p("project.*")));
        assert!(p("project.*").is_within(&p("project.>")));
        assert!(p("project.a.b").is_within(&p("project.>")));
        assert!(!p("project.>").is_within(&p("project.*")));
        assert!(!p(">").is_within(&p("project.>")));
        assert!(p("project.>").is_within(&p(">")));
        assert!(!p("user.*").is_within(&p("project.*")));
    }

    #[test]
    fn list() {
        let l = Pattern::parse_list("project.*, user.>").unwrap();
        assert_eq!(l.len(), 2);
        assert!(Pattern::parse_list("project.*,,x").is_err());
    }
}
