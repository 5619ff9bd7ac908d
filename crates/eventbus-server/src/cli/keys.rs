//! `eventbus keys create|list|revoke`, as the operator (every key may be made).
//!
//! The command opens the configured store. A SQLite store serves one process, so while a server
//! runs on it the store cannot be opened; the command then goes through that server's API at
//! `HOST`:`PORT` with `EVENT_BUS_ADMIN_KEY` (the same settings the server reads), and prints
//! the same lines. On PostgreSQL the store is shared, so the command works beside servers.

use anyhow::Context;
use eventbus::core::principal::Principal;
use eventbus::core::time::Timestamp;
use eventbus::security::{KeySpec, Keys};
use eventbus::store::StoreError;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::local_api;
use crate::ServerError;
use crate::config::{Config, KeysAction};

/// One keys action, as both ways of carrying it out take it.
enum Op {
    Create(KeySpec),
    List,
    Revoke(String),
}

impl From<KeysAction> for Op {
    fn from(action: KeysAction) -> Self {
        match action {
            KeysAction::Create {
                name,
                permissions,
                tenant,
                projects,
                types,
                rate_limit,
                max_connections,
                expires_at,
            } => Op::Create(KeySpec {
                name,
                tenant_id: tenant,
                project_ids: projects,
                permissions,
                types,
                rate_limit,
                max_connections,
                expires_at,
                ..KeySpec::default()
            }),
            KeysAction::List => Op::List,
            KeysAction::Revoke { id } => Op::Revoke(id),
        }
    }
}

/// Runs one keys action, on the store or through the running server.
pub async fn run(config: &Config, action: KeysAction) -> anyhow::Result<()> {
    let action = Op::from(action);
    match crate::build_bus_for_maintenance(config).await {
        Ok(bus) => {
            let result = in_store(&bus, config, action).await;
            bus.shutdown().await;
            result
        }
        Err(ServerError::Store(StoreError::InUse(why))) => {
            let key = config.admin_key().with_context(|| {
                format!(
                    "{why}. To manage keys through that server, set EVENT_BUS_ADMIN_KEY to its \
                     admin key (and HOST/PORT to where it listens), or stop it first"
                )
            })?;
            eprintln!(
                "the store is in use by a running server; going through its API at http://{}",
                local_api::address(config)
            );
            through_api(config, key, action).await
        }
        Err(e) => Err(e.into()),
    }
}

/// One line of `keys list`.
struct Row {
    id: String,
    name: String,
    tenant: Option<String>,
    permissions: Vec<String>,
    created: String,
    status: &'static str,
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<16}  {:<24}  {:<12}  {:<28}  {:<24}  status",
        "id", "name", "tenant", "permissions", "created"
    );
    for r in rows {
        println!(
            "{:<16}  {:<24}  {:<12}  {:<28}  {:<24}  {}",
            r.id,
            r.name,
            r.tenant.as_deref().unwrap_or("-"),
            r.permissions.join(","),
            r.created,
            r.status
        );
    }
}

fn print_created(id: &str, secret: &str) {
    println!("id:  {id}");
    println!("key: {secret}");
    eprintln!("the key is shown only now; store it where its user can read it");
}

fn key_status(revoked: bool, expires_at: Option<Timestamp>) -> &'static str {
    if revoked {
        "revoked"
    } else if expires_at.is_some_and(|e| e <= Timestamp::now()) {
        "expired"
    } else {
        "active"
    }
}

async fn in_store(bus: &crate::Bus, config: &Config, action: Op) -> anyhow::Result<()> {
    let keys = Keys::open(bus.store().clone(), None, config.token_secret()).await?;
    let operator = Principal::root("cli");
    match action {
        Op::Create(spec) => {
            let (key, secret) = keys.create(&operator, spec).await?;
            print_created(&key.id, &secret);
        }
        Op::List => {
            let rows: Vec<Row> = keys
                .list(&operator)
                .await?
                .into_iter()
                .map(|k| Row {
                    status: key_status(k.revoked_at.is_some(), k.expires_at),
                    permissions: k.grants.keys().map(|p| p.as_str().to_owned()).collect(),
                    created: k.created_at.to_string(),
                    id: k.id,
                    name: k.name,
                    tenant: k.tenant_id,
                })
                .collect();
            print_rows(&rows);
        }
        Op::Revoke(id) => {
            anyhow::ensure!(keys.revoke(&operator, &id).await?, "no key has id `{id}`");
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// Fails with the server's problem detail unless it answered `expected`.
fn expect(status: StatusCode, body: &Value, expected: StatusCode) -> anyhow::Result<()> {
    anyhow::ensure!(
        status == expected,
        "the server answered {status}: {}",
        local_api::problem_detail(body)
    );
    Ok(())
}

async fn through_api(config: &Config, admin: &str, action: Op) -> anyhow::Result<()> {
    match action {
        Op::Create(spec) => {
            let body = json!({
                "name": spec.name,
                "permissions": spec.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "tenantId": spec.tenant_id,
                "projectIds": spec.project_ids,
                "types": spec.types.map(|t| t.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>()),
                "rateLimit": spec.rate_limit,
                "maxConnections": spec.max_connections,
                "expiresAt": spec.expires_at.map(|t| t.to_string()),
            });
            let (status, reply) =
                local_api::request(config, admin, Method::POST, "/v1/keys", Some(body)).await?;
            expect(status, &reply, StatusCode::CREATED)?;
            let field = |name: &str| reply[name].as_str().unwrap_or_default().to_owned();
            print_created(&field("id"), &field("key"));
        }
        Op::List => {
            let (status, reply) =
                local_api::request(config, admin, Method::GET, "/v1/keys", None).await?;
            expect(status, &reply, StatusCode::OK)?;
            let text = |k: &Value, name: &str| k[name].as_str().map(str::to_owned);
            let rows: Vec<Row> = reply["keys"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|k| Row {
                    id: text(k, "id").unwrap_or_default(),
                    name: text(k, "name").unwrap_or_default(),
                    tenant: text(k, "tenantId"),
                    permissions: k["permissions"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect(),
                    created: text(k, "createdAt").unwrap_or_default(),
                    status: key_status(
                        !k["revokedAt"].is_null(),
                        text(k, "expiresAt").and_then(|t| Timestamp::parse_rfc3339(&t).ok()),
                    ),
                })
                .collect();
            print_rows(&rows);
        }
        Op::Revoke(id) => {
            // Key ids are hex digits; anything else cannot name a key (nor go into a path).
            anyhow::ensure!(
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                "no key has id `{id}`"
            );
            let path = format!("/v1/keys/{id}");
            let (status, reply) =
                local_api::request(config, admin, Method::DELETE, &path, None).await?;
            expect(status, &reply, StatusCode::NO_CONTENT)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
