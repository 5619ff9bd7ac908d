//! Event filters: the conditions shared by queries, tailing readers, SSE streams and webhooks.

use super::event::Event;
use super::pattern::Pattern;
use super::time::Timestamp;

/// Conditions on events; every set condition must hold. Empty `types` means every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// The type must match one of these patterns (any type when empty).
    pub types: Vec<Pattern>,
    /// Exact project id.
    pub project_id: Option<String>,
    /// The project id must be one of these (any project when empty). Set by the security layer
    /// for keys limited to some projects; events without a project then do not pass.
    pub project_ids: Vec<String>,
    /// Exact tenant id.
    pub tenant_id: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Inclusive lower bound on the timestamp.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound on the timestamp.
    pub to: Option<Timestamp>,
}

impl EventFilter {
    /// A filter on types only.
    pub fn types(types: Vec<Pattern>) -> Self {
        EventFilter {
            types,
            ..Default::default()
        }
    }

    /// Whether the type-pattern part selects every type.
    pub fn all_types(&self) -> bool {
        self.types.is_empty() || self.types.iter().any(Pattern::is_all)
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        (self.all_types() || self.types.iter().any(|p| p.matches(&event.event_type)))
            && opt_eq(&self.project_id, &event.project_id)
            && (self.project_ids.is_empty()
                || event
                    .project_id
                    .as_ref()
                    .is_some_and(|p| self.project_ids.contains(p)))
            && opt_eq(&self.tenant_id, &event.tenant_id)
            && opt_eq(&self.user_id, &event.user_id)
            && self.from.is_none_or(|f| event.timestamp >= f)
            && self.to.is_none_or(|t| event.timestamp < t)
    }
}

fn opt_eq(want: &Option<String>, have: &Option<String>) -> bool {
    want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
}
