//! Plugin persistence: installed plugins, each plugin's key-value store, and its dead letters
//! (DESIGN.md §8), in the same database as the events.
//!
//! [`PluginStore`] is a contract of its own beside [`EventStore`](super::EventStore),
//! implemented by every backend. What each implementation keeps:
//! - a plugin's key-value writes of one call are applied in **one** transaction, in order;
//! - [`PluginStore::forget_plugin`] removes everything of a plugin (state, key-value rows, dead
//!   letters, and its consumer cursor `plugin:<name>`) in one transaction, so a plugin installed
//!   again under the same name starts clean;
//! - dead letters are listed by increasing `id`, per plugin.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use crate::core::time::Timestamp;

/// Most dead letters one page holds.
pub const MAX_DEAD_LETTER_PAGE: usize = 1000;

/// The name of a plugin's durable consumer (its cursor row).
pub fn consumer_name(plugin: &str) -> String {
    format!("plugin:{plugin}")
}

/// What the store remembers of an installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginState {
    /// The plugin's name.
    pub name: String,
    /// `js` or `rust`.
    pub kind: String,
    /// Its version.
    pub version: String,
    /// What identifies its code: sha256 of `plugin.json` and `index.js`, or a Rust plugin's
    /// version.
    pub hash: String,
    /// Suspended after repeated failures (until reloaded).
    pub suspended: bool,
    /// Last change.
    pub updated_at: Timestamp,
}

/// An event a plugin failed on after its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Unique id.
    pub id: u64,
    /// The plugin.
    pub plugin: String,
    /// The event's id.
    pub event_id: String,
    /// The event's `seq`.
    pub event_seq: u64,
    /// The event's type.
    pub event_type: String,
    /// The last error.
    pub error: String,
    /// Calls made.
    pub attempts: u32,
    /// When it was dead-lettered.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The plugin tables of a backend.
#[async_trait]
pub trait PluginStore: Send + Sync + 'static {
    /// Every installed plugin, by name.
    async fn plugin_states(&self) -> Result<Vec<PluginState>, StoreError>;

    /// Inserts or replaces the state of `state.name`.
    async fn save_plugin_state(&self, state: PluginState) -> Result<(), StoreError>;

    /// Removes everything of `plugin`: state, key-value rows, dead letters, consumer cursor.
    async fn forget_plugin(&self, plugin: &str) -> Result<(), StoreError>;

    /// The key-value store of `plugin`.
    async fn load_kv(&self, plugin: &str) -> Result<BTreeMap<String, String>, StoreError>;

    /// Applies writes (`None` deletes) in order, in one transaction.
    async fn write_kv(
        &self,
        plugin: &str,
        writes: Vec<(String, Option<String>)>,
    ) -> Result<(), StoreError>;

    /// Records a dead letter (its `id` and `created_at` are assigned); returns its id.
    async fn add_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError>;

    /// Dead letters of `plugin` with `id > after`, oldest first, at most `limit`.
    async fn dead_letters(
        &self,
        plugin: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Removes one dead letter; `false` when there was none.
    async fn delete_dead_letter(&self, plugin: &str, id: u64) -> Result<bool, StoreError>;
}

/// The contract every [`PluginStore`] keeps, as test bodies each backend runs on a fresh store.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::store::EventStore;

    fn letter(plugin: &str, seq: u64) -> DeadLetter {
        DeadLetter {
            id: 0,
            plugin: plugin.into(),
            event_id: format!("e{seq}"),
            event_seq: seq,
            event_type: "project.created".into(),
            error: "boom".into(),
            attempts: 4,
            created_at: Timestamp::from_micros(0),
        }
    }

    /// State, key-value rows, dead letters, and forgetting a plugin.
    pub async fn plugin_tables_round_trip_and_forget(s: &(impl PluginStore + EventStore)) {
        let state = PluginState {
            name: "audit".into(),
            kind: "js".into(),
            version: "1.0.0".into(),
            hash: "abc".into(),
            suspended: false,
            updated_at: Timestamp::from_micros(1_000),
        };
        s.save_plugin_state(state.clone()).await.unwrap();
        s.save_plugin_state(PluginState {
            suspended: true,
            version: "1.1.0".into(),
            ..state.clone()
        })
        .await
        .unwrap();
        s.save_plugin_state(PluginState {
            name: "other".into(),
            ..state.clone()
        })
        .await
        .unwrap();
        let states = s.plugin_states().await.unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].name, "audit");
        assert!(states[0].suspended);
        assert_eq!(states[0].version, "1.1.0");

        s.write_kv(
            "audit",
            vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("\"x\"".into())),
                ("a".into(), Some("2".into())),
                ("b".into(), None),
                ("c".into(), Some("{}".into())),
            ],
        )
        .await
        .unwrap();
        s.write_kv("other", vec![("a".into(), Some("9".into()))])
            .await
            .unwrap();
        let kv = s.load_kv("audit").await.unwrap();
        assert_eq!(
            kv,
            BTreeMap::from([("a".into(), "2".into()), ("c".into(), "{}".into())])
        );

        let first = s.add_dead_letter(letter("audit", 5)).await.unwrap();
        let second = s.add_dead_letter(letter("audit", 7)).await.unwrap();
        s.add_dead_letter(letter("other", 9)).await.unwrap();
        assert!(second > first);
        let page = s.dead_letters("audit", 0, 10).await.unwrap();
        assert_eq!(page.iter().map(|d| d.event_seq).collect::<Vec<_>>(), [5, 7]);
        assert_eq!(page[0].attempts, 4);
        assert_eq!(page[0].error, "boom");
        assert_eq!(s.dead_letters("audit", first, 10).await.unwrap().len(), 1);
        assert!(s.delete_dead_letter("audit", first).await.unwrap());
        assert!(!s.delete_dead_letter("audit", first).await.unwrap());
        assert!(!s.delete_dead_letter("other", second).await.unwrap());

        s.save_cursor(&consumer_name("audit"), 42).await.unwrap();
        s.forget_plugin("audit").await.unwrap();
        assert_eq!(s.load_cursor(&consumer_name("audit")).await.unwrap(), None);
        assert!(s.load_kv("audit").await.unwrap().is_empty());
        assert!(s.dead_letters("audit", 0, 10).await.unwrap().is_empty());
        let states = s.plugin_states().await.unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(s.load_kv("other").await.unwrap().len(), 1);
        assert_eq!(s.dead_letters("other", 0, 10).await.unwrap().len(), 1);
    }
}
