//! The pattern index: which subscribers want an event of a given type.
//!
//! A trie over type segments with `*` and `>` branches, so matching costs the depth of the type,
//! not the number of subscribers; results are cached per type (types are few, subscribers many)
//! and the cache is dropped on every change. Keys are deduplicated: a subscriber registered
//! under several overlapping patterns is returned once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::pattern::{Pattern, Segment};

#[derive(Debug)]
struct Node<K> {
    literal: HashMap<String, Node<K>>,
    any: Option<Box<Node<K>>>,
    /// Keys whose pattern ends exactly here.
    here: Vec<K>,
    /// Keys whose pattern ends with `>` here.
    tail: Vec<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            any: None,
            here: Vec::new(),
            tail: Vec::new(),
        }
    }
}

impl<K> Node<K> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.any.is_none()
            && self.here.is_empty()
            && self.tail.is_empty()
    }
}

/// Maps patterns to keys and answers "which keys match this type".
#[derive(Debug)]
pub struct PatternIndex<K> {
    root: Node<K>,
    cache: HashMap<String, Arc<[K]>>,
    len: usize,
}

impl<K> Default for PatternIndex<K> {
    fn default() -> Self {
        PatternIndex {
            root: Node::default(),
            cache: HashMap::new(),
            len: 0,
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> PatternIndex<K> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (pattern, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Registers `key` under `pattern`.
    pub fn insert(&mut self, pattern: &Pattern, key: K) {
        let mut node = &mut self.root;
        for seg in pattern.segments() {
            match seg {
                Segment::Literal(l) => node = node.literal.entry(l.clone()).or_default(),
                Segment::Any => node = node.any.get_or_insert_with(Box::default),
                Segment::Tail => {
                    node.tail.push(key);
                    self.changed(1);
                    return;
                }
            }
        }
        node.here.push(key);
        self.changed(1);
    }

    /// Removes one registration of `key` under `pattern`; returns whether it was there.
    pub fn remove(&mut self, pattern: &Pattern, key: K) -> bool {
        let removed = remove_in(&mut self.root, pattern.segments(), key);
        if removed {
            self.changed(-1);
        }
        removed
    }

    fn changed(&mut self, delta: isize) {
        self.len = self
            .len
            .checked_add_signed(delta)
            .expect("index length stays non-negative");
        self.cache.clear();
    }

    /// The keys whose patterns match `event_type`, each once, in key order.
    pub fn matches(&mut self, event_type: &str) -> Arc<[K]> {
        if let Some(hit) = self.cache.get(event_type) {
            return hit.clone();
        }
        let parts: Vec<&str> = event_type.split('.').collect();
        let mut out = Vec::new();
        collect(&self.root, &parts, &mut out);
        out.sort_unstable();
        out.dedup();
        let out: Arc<[K]> = out.into();
        // Bound the cache: unknown types are unbounded in non-strict mode.
        if self.cache.len() >= 4096 {
            self.cache.clear();
        }
        self.cache.insert(event_type.to_owned(), out.clone());
        out
    }
}

fn collect<K: Copy>(node: &Node<K>, parts: &[&str], out: &mut Vec<K>) {
    let Some((first, rest)) = parts.split_first() else {
        out.extend_from_slice(&node.here);
        return;
    };
    out.extend_from_slice(&node.tail);
    if let Some(child) = node.literal.get(*first) {
        collect(child, rest, out);
    }
    if let Some(child) = &node.any {
        collect(child, rest, out);
    }
}

fn remove_in<K: Eq>(node: &mut Node<K>, segments: &[Segment], key: K) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return remove_one(&mut node.here, key);
    };
    match first {
        Segment::Tail => remove_one(&mut node.tail, key),
        Segment::Literal(l) => {
            let Some(child) = node.literal.get_mut(l) else {
                return false;
            };
            let removed = remove_in(child, rest, key);
            if child.is_empty() {
                node.literal.remove(l);
            }
            removed
        }
        Segment::Any => {
            let Some(child) = node.any.as_mut() else {
                return false;
            };
            let removed = remove_in(child, rest, key);
            if child.is_empty() {
                node.any = None;
            }
            removed
        }
    }
}

fn remove_one<K: Eq>(keys: &mut Vec<K>, key: K) -> bool {
    match keys.iter().position(|k| *k == key) {
        Some(i) => {
            keys.swap_remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn matches_agree_with_pattern_matches() {
        let patterns = [
            "project.created",
            "project.*",
            "project.>",
            ">",
            "*.created",
            "user.*",
            "a.*.c",
            "a.b.>",
        ];
        let types = [
            "project.created",
            "project.updated",
            "project.a.b",
            "user.created",
            "a.b.c",
            "a.x.c",
            "a.b.c.d",
            "menu.item_updated",
        ];
        let mut index = PatternIndex::new();
        for (i, pat) in patterns.iter().enumerate() {
            index.insert(&p(pat), i);
        }
        for t in types {
            let expected: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, pat)| p(pat).matches(t))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(&*index.matches(t), expected.as_slice(), "{t}");
        }
    }

    #[test]
    fn dedups_and_removes() {
        let mut index = PatternIndex::new();
        index.insert(&p("project.*"), 1);
        index.insert(&p("project.>"), 1);
        index.insert(&p("project.created"), 2);
        assert_eq!(&*index.matches("project.created"), &[1, 2]);
        assert!(index.remove(&p("project.*"), 1));
        assert!(!index.remove(&p("project.*"), 1));
        assert_eq!(&*index.matches("project.created"), &[1, 2]);
        assert!(index.remove(&p("project.>"), 1));
        assert_eq!(&*index.matches("project.created"), &[2]);
        assert!(index.remove(&p("project.created"), 2));
        assert!(index.is_empty());
        assert!(index.root.is_empty(), "empty branches are pruned");
    }
}
