//! The event-type catalogue: built-in types, registered types and their payload schemas.
//!
//! The store keeps the definitions; [`TypeRegistry`] is the in-memory copy the validation
//! middleware reads on every publish, with each schema compiled once. It is replaced entry by
//! entry when a type is registered, so readers never see a half-updated catalogue.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{TypeNameError, validate_type};
use super::time::Timestamp;

/// The types every bus knows, with their descriptions (DESIGN.md §2).
pub const BUILTIN_TYPES: &[(&str, &str)] = &[
    ("project.created", "A project was created"),
    ("project.updated", "A project was updated"),
    ("project.deleted", "A project was deleted"),
    ("project.status_changed", "A project's status changed"),
    ("integration.created", "An integration was created"),
    ("integration.updated", "An integration was updated"),
    ("integration.deleted", "An integration was deleted"),
    (
        "integration.status_changed",
        "An integration's status changed",
    ),
    ("user.created", "A user was created"),
    ("user.updated", "A user was updated"),
    ("user.deleted", "A user was deleted"),
    ("menu.type_created", "A menu type was created"),
    ("menu.item_updated", "A menu item was updated"),
    ("menu.item_deleted", "A menu item was deleted"),
    ("plugin.installed", "A plugin was installed"),
    ("plugin.updated", "A plugin was updated"),
    ("plugin.uninstalled", "A plugin was uninstalled"),
];

/// One catalogue entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = EventType))]
#[serde(rename_all = "camelCase")]
pub struct EventTypeDef {
    /// The type name.
    #[serde(rename = "type")]
    pub name: String,
    /// What the event means.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema for the payload, if any.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Whether the type is part of the built-in catalogue.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub builtin: bool,
    /// When the definition last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

impl EventTypeDef {
    /// The built-in definitions, stamped with `now`.
    pub fn builtins(now: Timestamp) -> Vec<EventTypeDef> {
        BUILTIN_TYPES
            .iter()
            .map(|(name, description)| EventTypeDef {
                name: (*name).to_owned(),
                description: Some((*description).to_owned()),
                schema: None,
                builtin: true,
                updated_at: now,
            })
            .collect()
    }
}

/// Why a definition was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DefinitionError {
    /// The type name breaks the grammar.
    #[error(transparent)]
    InvalidName(#[from] TypeNameError),
    /// The schema is not a valid JSON Schema.
    #[error("the schema is not a valid JSON Schema: {0}")]
    InvalidSchema(String),
}

/// A definition with its compiled schema.
#[derive(Debug)]
pub struct TypeEntry {
    /// The definition.
    pub def: EventTypeDef,
    /// The compiled payload schema.
    pub validator: Option<jsonschema::Validator>,
    /// The type name as a `'static` metric label (catalogue types are few and long-lived).
    label: &'static str,
}

/// Interned type names, so that re-registering a type does not leak another copy.
static LABELS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

fn intern(name: &str) -> &'static str {
    let mut labels = LABELS.lock().expect("labels lock");
    if let Some(l) = labels.iter().find(|l| **l == name) {
        return l;
    }
    let l: &'static str = Box::leak(name.to_owned().into_boxed_str());
    labels.push(l);
    l
}

impl TypeEntry {
    /// Checks and compiles `def`.
    pub fn compile(def: EventTypeDef) -> Result<Self, DefinitionError> {
        validate_type(&def.name)?;
        let validator = match &def.schema {
            None => None,
            Some(schema) => {
                jsonschema::meta::validate(schema)
                    .map_err(|e| DefinitionError::InvalidSchema(e.to_string()))?;
                Some(
                    jsonschema::validator_for(schema)
                        .map_err(|e| DefinitionError::InvalidSchema(e.to_string()))?,
                )
            }
        };
        let label = intern(&def.name);
        Ok(TypeEntry {
            def,
            validator,
            label,
        })
    }
}

impl TypeEntry {
    /// The type name as a metric label.
    pub fn label(&self) -> &'static str {
        self.label
    }
}

/// The in-memory catalogue with compiled schemas.
#[derive(Debug, Default)]
pub struct TypeRegistry {
    entries: RwLock<HashMap<String, Arc<TypeEntry>>>,
}

impl TypeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks a type up.
    pub fn get(&self, name: &str) -> Option<Arc<TypeEntry>> {
        self.entries
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Adds or replaces an entry.
    pub fn insert(&self, entry: TypeEntry) {
        self.entries
            .write()
            .expect("registry lock")
            .insert(entry.def.name.clone(), Arc::new(entry));
    }

    /// Every definition, sorted by name.
    pub fn list(&self) -> Vec<EventTypeDef> {
        let mut defs: Vec<_> = self
            .entries
            .read()
            .expect("registry lock")
            .values()
            .map(|e| e.def.clone())
            .collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        defs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_valid_schemas_and_refuses_broken_ones() {
        let def = |schema| EventTypeDef {
            name: "order.placed".into(),
            description: None,
            schema: Some(schema),
            builtin: false,
            updated_at: Timestamp::from_micros(0),
        };
        let ok = TypeEntry::compile(def(serde_json::json!({"type":"object","required":["id"]})))
            .unwrap();
        let v = ok.validator.unwrap();
        assert!(v.is_valid(&serde_json::json!({"id": 1})));
        assert!(!v.is_valid(&serde_json::json!({})));
        assert!(matches!(
            TypeEntry::compile(def(serde_json::json!({"type": "no-such-type"}))),
            Err(DefinitionError::InvalidSchema(_))
        ));
        let mut bad = def(serde_json::json!(true));
        bad.name = "Order".into();
        assert!(matches!(
            TypeEntry::compile(bad),
            Err(DefinitionError::InvalidName(_))
        ));
    }

    #[test]
    fn builtins_are_valid_types() {
        for def in EventTypeDef::builtins(Timestamp::from_micros(0)) {
            TypeEntry::compile(def).unwrap();
        }
    }
}
