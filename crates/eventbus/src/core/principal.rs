//! Who is calling: the identity behind an API key or a browser token, and what it may do.
//!
//! A [`Principal`] holds, per granted [`Permission`], the type patterns it may use, plus an
//! optional tenant binding and project list. Every path narrows what a caller asks for with
//! [`Principal::narrow`] (reads, streams, webhook endpoints) or checks an event with
//! [`Principal::may_publish`] (the security middleware), so tenant A's key never reaches tenant
//! B's events (DESIGN.md §5, invariant 5). The core only decides; the store keeps keys and the
//! HTTP layer resolves them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::event::Event;
use super::filter::EventFilter;
use super::pattern::Pattern;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Publish events (`POST /v1/events`).
    Publish,
    /// Receive events live: SSE streams and browser tokens.
    Subscribe,
    /// Query stored events, the catalogue and the webhook logs.
    Read,
    /// Manage keys, webhook endpoints, event types and plugins.
    Admin,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 4] = [
        Permission::Publish,
        Permission::Subscribe,
        Permission::Read,
        Permission::Admin,
    ];

    /// The permission's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Publish => "publish",
            Permission::Subscribe => "subscribe",
            Permission::Read => "read",
            Permission::Admin => "admin",
        }
    }
}

/// A name that is not a [`Permission`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a permission: publish, subscribe, read or admin")]
pub struct UnknownPermission(pub String);

impl std::str::FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, UnknownPermission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (never its secret), for logs and audit. A token carries its key's id.
    pub key_id: String,
    /// The tenant the caller is bound to; `None`: every tenant.
    pub tenant_id: Option<String>,
    /// The projects the caller is limited to; `None`: every project.
    pub project_ids: Option<Vec<String>>,
    /// The granted permissions, each with the type patterns it covers.
    pub grants: BTreeMap<Permission, Vec<Pattern>>,
}

/// Why a caller may not do what it asked; the message says what its key allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Principal {
    /// A caller with every permission on every type, tenant and project (the bootstrap admin).
    pub fn root(key_id: impl Into<String>) -> Self {
        Principal {
            key_id: key_id.into(),
            tenant_id: None,
            project_ids: None,
            grants: Permission::ALL
                .into_iter()
                .map(|p| (p, vec![Pattern::all()]))
                .collect(),
        }
    }

    /// Whether the caller holds `permission` (for some types).
    pub fn has(&self, permission: Permission) -> bool {
        self.grants.get(&permission).is_some_and(|t| !t.is_empty())
    }

    /// Refuses unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), Denied> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(Denied(format!(
                "this key does not have the `{permission}` permission"
            )))
        }
    }

    /// Whether the caller is bound to no tenant and no project list: it sees the whole bus.
    pub fn is_unscoped(&self) -> bool {
        self.tenant_id.is_none() && self.project_ids.is_none()
    }

    /// The patterns `permission` covers (empty when not granted).
    pub fn patterns(&self, permission: Permission) -> &[Pattern] {
        self.grants.get(&permission).map_or(&[], Vec::as_slice)
    }

    /// Whether `permission` covers the type `event_type`.
    pub fn allows_type(&self, permission: Permission, event_type: &str) -> bool {
        self.patterns(permission)
            .iter()
            .any(|p| p.matches(event_type))
    }

    /// Whether every type `pattern` matches is covered by `permission`.
    pub fn covers(&self, permission: Permission, pattern: &Pattern) -> bool {
        self.patterns(permission)
            .iter()
            .any(|p| pattern.is_within(p))
    }

    /// Whether the caller may see `event` under `permission`: its type, tenant and project.
    pub fn sees(&self, permission: Permission, event: &Event) -> bool {
        self.allows_type(permission, &event.event_type)
            && self
                .tenant_id
                .as_ref()
                .is_none_or(|t| event.tenant_id.as_ref() == Some(t))
            && self.project_ids.as_ref().is_none_or(|ps| {
                event
                    .project_id
                    .as_ref()
                    .is_some_and(|p| ps.iter().any(|x| x == p))
            })
    }

    /// Checks an event about to be published, and binds it to the caller's tenant: a
    /// tenant-bound caller's event gets its tenant when it names none, and is refused when it
    /// names another. A caller limited to projects must name one of them.
    pub fn may_publish(&self, event: &mut Event) -> Result<(), Denied> {
        self.require(Permission::Publish)?;
        if !self.allows_type(Permission::Publish, &event.event_type) {
            return Err(Denied(format!(
                "this key may not publish `{}`; it may publish {}",
                event.event_type,
                list(self.patterns(Permission::Publish))
            )));
        }
        if let Some(tenant) = &self.tenant_id {
            match &event.tenant_id {
                None => event.tenant_id = Some(tenant.clone()),
                Some(t) if t == tenant => {}
                Some(_) => {
                    return Err(Denied(format!(
                        "this key publishes for tenant `{tenant}` only; omit `tenantId` or set \
                         it to `{tenant}`"
                    )));
                }
            }
        }
        if let Some(projects) = &self.project_ids {
            let ok = event
                .project_id
                .as_ref()
                .is_some_and(|p| projects.iter().any(|x| x == p));
            if !ok {
                return Err(Denied(format!(
                    "this key publishes for projects {} only; set `projectId` to one of them",
                    quoted(projects)
                )));
            }
        }
        Ok(())
    }

    /// Narrows `filter` to what the caller may see under `permission`: its tenant, its
    /// projects, and the intersection of the asked type patterns with its own. Asking for
    /// another tenant or project, or only for types outside the caller's patterns, is refused
    /// (the refusal depends on the key alone, so it reveals nothing about stored data).
    pub fn narrow(
        &self,
        permission: Permission,
        filter: &EventFilter,
    ) -> Result<EventFilter, Denied> {
        self.require(permission)?;
        let mut out = filter.clone();
        if let Some(tenant) = &self.tenant_id {
            match &filter.tenant_id {
                Some(t) if t != tenant => {
                    return Err(Denied(format!(
                        "this key reads tenant `{tenant}` only; omit `tenantId` or set it to \
                         `{tenant}`"
                    )));
                }
                _ => out.tenant_id = Some(tenant.clone()),
            }
        }
        if let Some(projects) = &self.project_ids {
            match &filter.project_id {
                Some(p) if !projects.contains(p) => {
                    return Err(Denied(format!(
                        "this key reads projects {} only",
                        quoted(projects)
                    )));
                }
                Some(_) => {}
                None => {
                    out.project_ids = if filter.project_ids.is_empty() {
                        projects.clone()
                    } else {
                        filter
                            .project_ids
                            .iter()
                            .filter(|p| projects.contains(p))
                            .cloned()
                            .collect()
                    };
                    if out.project_ids.is_empty() {
                        return Err(Denied(format!(
                            "this key reads projects {} only",
                            quoted(projects)
                        )));
                    }
                }
            }
        }
        let own = self.patterns(permission);
        let asked = if filter.types.is_empty() {
            vec![Pattern::all()]
        } else {
            filter.types.clone()
        };
        let mut types: Vec<Pattern> = Vec::new();
        for a in &asked {
            for o in own {
                if let Some(i) = a.intersect(o)
                    && !types.iter().any(|t| i.is_within(t))
                {
                    types.retain(|t| !t.is_within(&i));
                    types.push(i);
                }
            }
        }
        if types.is_empty() {
            return Err(Denied(format!(
                "this key may {permission} only {}",
                list(own)
            )));
        }
        out.types = types;
        Ok(out)
    }

    /// Whether `other` asks for nothing `self` does not hold: no permission, type, tenant or
    /// project beyond `self`'s. Keys and tokens are never wider than the caller that makes them.
    pub fn contains(&self, other: &Principal) -> bool {
        let tenant_ok = match (&self.tenant_id, &other.tenant_id) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        let projects_ok = match (&self.project_ids, &other.project_ids) {
            (None, _) => true,
            (Some(a), Some(b)) => b.iter().all(|p| a.contains(p)),
            (Some(_), None) => false,
        };
        tenant_ok
            && projects_ok
            && other
                .grants
                .iter()
                .all(|(perm, patterns)| patterns.iter().all(|p| self.covers(*perm, p)))
    }
}

fn list(patterns: &[Pattern]) -> String {
    if patterns.is_empty() {
        return "no types".to_owned();
    }
    patterns
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    fn tenant_key(tenant: &str, grants: &[(Permission, &[&str])]) -> Principal {
        Principal {
            key_id: "k".into(),
            tenant_id: Some(tenant.into()),
            project_ids: None,
            grants: grants
                .iter()
                .map(|(perm, pats)| (*perm, pats.iter().map(|s| p(s)).collect()))
                .collect(),
        }
    }

    fn event(ty: &str, tenant: Option<&str>, project: Option<&str>) -> Event {
        let mut e = crate::core::event::NewEvent::new(ty, serde_json::json!({}))
            .into_event(crate::core::time::Timestamp::from_micros(0))
            .unwrap();
        e.tenant_id = tenant.map(str::to_owned);
        e.project_id = project.map(str::to_owned);
        e
    }

    #[test]
    fn publishing_binds_the_tenant_and_checks_types() {
        let key = tenant_key("a", &[(Permission::Publish, &["project.*"])]);
        let mut e = event("project.created", None, None);
        key.may_publish(&mut e).unwrap();
        assert_eq!(e.tenant_id.as_deref(), Some("a"), "the tenant is filled in");
        let mut other = event("project.created", Some("b"), None);
        assert!(key.may_publish(&mut other).is_err(), "another tenant");
        let mut wrong_type = event("user.created", Some("a"), None);
        assert!(
            key.may_publish(&mut wrong_type).is_err(),
            "a type outside the key"
        );
        let reader = tenant_key("a", &[(Permission::Read, &[">"])]);
        assert!(
            reader
                .may_publish(&mut event("project.created", None, None))
                .is_err()
        );
    }

    #[test]
    fn project_lists_bind_publishes_and_reads() {
        let mut key = tenant_key(
            "a",
            &[(Permission::Publish, &[">"]), (Permission::Read, &[">"])],
        );
        key.project_ids = Some(vec!["p1".into(), "p2".into()]);
        assert!(
            key.may_publish(&mut event("project.created", None, None))
                .is_err()
        );
        assert!(
            key.may_publish(&mut event("project.created", None, Some("p3")))
                .is_err()
        );
        key.may_publish(&mut event("project.created", None, Some("p2")))
            .unwrap();
        let all = key
            .narrow(Permission::Read, &EventFilter::default())
            .unwrap();
        assert_eq!(all.project_ids, vec!["p1".to_owned(), "p2".to_owned()]);
        let one = EventFilter {
            project_id: Some("p3".into()),
            ..Default::default()
        };
        assert!(key.narrow(Permission::Read, &one).is_err());
        assert!(key.sees(Permission::Read, &event("x.y", Some("a"), Some("p1"))));
        assert!(!key.sees(Permission::Read, &event("x.y", Some("a"), None)));
    }

    #[test]
    fn narrowing_forces_the_tenant_and_intersects_types() {
        let key = tenant_key("a", &[(Permission::Read, &["project.>", "user.created"])]);
        let f = key
            .narrow(Permission::Read, &EventFilter::default())
            .unwrap();
        assert_eq!(f.tenant_id.as_deref(), Some("a"));
        assert_eq!(f.types, vec![p("project.>"), p("user.created")]);
        let asked = EventFilter::types(vec![p("*.created")]);
        let f = key.narrow(Permission::Read, &asked).unwrap();
        assert_eq!(f.types, vec![p("project.created"), p("user.created")]);
        let b = EventFilter {
            tenant_id: Some("b".into()),
            ..Default::default()
        };
        assert!(key.narrow(Permission::Read, &b).is_err(), "another tenant");
        let outside = EventFilter::types(vec![p("menu.*")]);
        assert!(
            key.narrow(Permission::Read, &outside).is_err(),
            "types outside the key"
        );
        assert!(
            key.narrow(Permission::Subscribe, &EventFilter::default())
                .is_err()
        );
        for t in ["project.created", "project.a.b", "user.created"] {
            assert!(
                key.narrow(Permission::Read, &asked).unwrap().matches(&{
                    let mut e = event(t, Some("a"), None);
                    e.event_type = t.into();
                    e
                }) == t.ends_with(".created")
            );
        }
    }

    #[test]
    fn a_key_contains_only_narrower_keys() {
        let root = Principal::root("admin");
        let a = tenant_key("a", &[(Permission::Subscribe, &["project.*"])]);
        assert!(root.contains(&a));
        assert!(!a.contains(&root));
        let narrower = tenant_key("a", &[(Permission::Subscribe, &["project.created"])]);
        assert!(a.contains(&narrower));
        let other_tenant = tenant_key("b", &[(Permission::Subscribe, &["project.created"])]);
        assert!(!a.contains(&other_tenant));
        let other_perm = tenant_key("a", &[(Permission::Publish, &["project.created"])]);
        assert!(!a.contains(&other_perm));
    }
}
