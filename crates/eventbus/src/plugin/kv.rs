//! A plugin's key-value store as its JavaScript runtime sees it: an in-memory copy of the rows
//! kept in the event store (see [`crate::store::plugin::PluginStore`]), with limits and undo.
//!
//! Values are JSON text. A call's writes are collected between [`KvMap::begin`] and
//! [`KvMap::commit`] (which hands them to the host to persist) or [`KvMap::rollback`] (which
//! restores the values the call overwrote), so a failed call leaves no trace.

use std::collections::BTreeMap;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest value, in bytes of JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one plugin may keep.
pub const MAX_KEYS: usize = 10_000;

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key is empty or too long.
    #[error("ctx.kv: keys hold 1 to {MAX_KEY_BYTES} bytes")]
    Key,
    /// The value is too large.
    #[error("ctx.kv: a value holds at most {MAX_VALUE_BYTES} bytes of JSON")]
    Value,
    /// The plugin keeps too many keys.
    #[error("ctx.kv: a plugin keeps at most {MAX_KEYS} keys")]
    Full,
}

/// The in-memory copy with the current call's undo log.
#[derive(Debug, Default)]
pub struct KvMap {
    values: BTreeMap<String, String>,
    /// Writes of the current call: key and new value.
    writes: Vec<(String, Option<String>)>,
    /// Values before the current call's first write of each key.
    undo: Vec<(String, Option<String>)>,
}

impl KvMap {
    /// A copy holding `values`.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        KvMap {
            values,
            ..KvMap::default()
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned()
    }

    /// Keys starting with `prefix`, in order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.values
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Starts a call.
    pub fn begin(&mut self) {
        self.writes.clear();
        self.undo.clear();
    }

    /// Sets (`Some`) or deletes (`None`) `key`.
    pub fn set(&mut self, key: String, value: Option<String>) -> Result<(), KvError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(KvError::Key);
        }
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(KvError::Value);
        }
        if value.is_some() && !self.values.contains_key(&key) && self.values.len() >= MAX_KEYS {
            return Err(KvError::Full);
        }
        let old = match &value {
            Some(v) => self.values.insert(key.clone(), v.clone()),
            None => self.values.remove(&key),
        };
        self.undo.push((key.clone(), old));
        self.writes.push((key, value));
        Ok(())
    }

    /// Ends a successful call: its writes, to persist in order.
    pub fn commit(&mut self) -> Vec<(String, Option<String>)> {
        self.undo.clear();
        std::mem::take(&mut self.writes)
    }

    /// Ends a failed call: its writes are undone.
    pub fn rollback(&mut self) {
        self.writes.clear();
        while let Some((key, old)) = self.undo.pop() {
            match old {
                Some(v) => self.values.insert(key, v),
                None => self.values.remove(&key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_and_commit_reports_writes() {
        let mut kv = KvMap::new(BTreeMap::from([("a".into(), "1".into())]));
        kv.begin();
        kv.set("a".into(), Some("2".into())).unwrap();
        kv.set("b".into(), Some("3".into())).unwrap();
        kv.set("a".into(), None).unwrap();
        kv.rollback();
        assert_eq!(kv.get("a").as_deref(), Some("1"));
        assert_eq!(kv.get("b"), None);
        kv.begin();
        kv.set("ab".into(), Some("4".into())).unwrap();
        assert_eq!(kv.commit(), [("ab".to_owned(), Some("4".to_owned()))]);
        assert_eq!(kv.keys("a"), ["a", "ab"]);
        assert_eq!(kv.set(String::new(), None), Err(KvError::Key));
        assert_eq!(
            kv.set("big".into(), Some("x".repeat(MAX_VALUE_BYTES + 1))),
            Err(KvError::Value)
        );
    }
}
