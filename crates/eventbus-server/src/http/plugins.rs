//! `/v1/plugins`: installed plugins with their status and counters, reload, install from a
//! bundle, uninstall, and each plugin's dead letters (see docs/plugins.md).

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use eventbus::core::event::FieldError;
use eventbus::plugin::{HostError, PluginHost};
use eventbus::store::plugin::MAX_DEAD_LETTER_PAGE;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use eventbus::core::principal::{Denied, Permission};

use super::AppState;
use super::auth::Caller;
use super::body::{decode, read_json};
use super::events::json;
use super::openapi::{
    DeadLetterPageSchema, InstallBundleSchema, InstalledSchema, PluginListSchema, PluginSchema,
    ProblemSchema, ReloadReportSchema, RetryOutcomeSchema,
};
use super::params::{DEFAULT_PAGE, reject_unknown};
use super::problem::ApiError;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/plugins", get(list_plugins).post(install_plugin))
        .route("/v1/plugins/reload", post(reload_plugins))
        .route(
            "/v1/plugins/{name}",
            get(get_plugin).delete(uninstall_plugin),
        )
        .route("/v1/plugins/{name}/dead-letters", get(list_dead_letters))
        .route(
            "/v1/plugins/{name}/dead-letters/{id}/retry",
            post(retry_dead_letter),
        )
}

/// The plugin host, for a caller allowed to manage plugins: plugins see every tenant's events,
/// so only an `admin` key bound to no tenant or project may list or change them.
fn host<'a>(state: &'a AppState, caller: &Caller) -> Result<&'a PluginHost, ApiError> {
    caller.require(Permission::Admin)?;
    if !caller.principal.is_unscoped() {
        return Err(caller.deny(Denied(
            "plugins see every tenant's events: only an admin key bound to no tenant or project \
             may manage them"
                .into(),
        )));
    }
    state
        .bus
        .plugins()
        .ok_or_else(|| ApiError::PluginsUnavailable("plugins are not enabled".into()))
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::NotFound(m) => ApiError::NotFound(m),
            HostError::Manifest(m) => ApiError::InvalidField(FieldError::new(
                format!("manifest/{}", m.field.replace('.', "/")),
                m.message,
            )),
            e @ HostError::Load(_) => ApiError::InvalidPlugin(e.to_string()),
            e @ HostError::Compiled(_) => ApiError::PluginConflict(e.to_string()),
            e @ HostError::NoDirectory => ApiError::PluginsUnavailable(e.to_string()),
            HostError::Store(s) => s.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ListBody {
    plugins: Vec<eventbus::plugin::PluginInfo>,
}

/// `GET /v1/plugins`.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "Every plugin, loaded or failed, by name", body = PluginListSchema),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_plugins(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let plugins = host(&state, &caller)?.list();
    Ok(json(StatusCode::OK, &ListBody { plugins }))
}

/// `GET /v1/plugins/{name}`.
#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The plugin", body = PluginSchema),
        (status = 404, description = "No such plugin", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let info = host(&state, &caller)?
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin is named `{name}`")))?;
    Ok(json(StatusCode::OK, &info))
}

/// `POST /v1/plugins/reload`.
#[utoipa::path(
    post,
    path = "/v1/plugins/reload",
    tag = "plugins",
    responses(
        (status = 200, description = "What changed", body = ReloadReportSchema),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn reload_plugins(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let report = host(&state, &caller)?.reload().await?;
    Ok(json(StatusCode::OK, &report))
}

/// A bundle: the manifest and the module's source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    manifest: Value,
    source: String,
}

/// `POST /v1/plugins`: installs or updates a plugin from a bundle.
#[utoipa::path(
    post,
    path = "/v1/plugins",
    tag = "plugins",
    request_body(content = InstallBundleSchema, description = "`plugin.json` and `index.js`"),
    responses(
        (status = 201, description = "Installed", body = InstalledSchema),
        (status = 200, description = "Updated", body = InstalledSchema),
        (status = 400, description = "Malformed JSON or an invalid manifest field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "A Rust plugin has this name", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "The code does not load", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn install_plugin(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let host = host(&state, &caller)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let bundle: Bundle = decode(&bytes)?;
    let (created, report) = host.install(bundle.manifest, bundle.source).await?;
    let name = report
        .installed
        .first()
        .or(report.updated.first())
        .cloned()
        .unwrap_or_default();
    let plugin = host.get(&name);
    Ok(json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &json!({ "plugin": plugin, "reload": report }),
    ))
}

/// `DELETE /v1/plugins/{name}`: removes its folder and uninstalls it.
#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "Uninstalled; what the reload changed", body = ReloadReportSchema),
        (status = 404, description = "No such plugin", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "A Rust plugin cannot be uninstalled", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn uninstall_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let report = host(&state, &caller)?.uninstall(&name).await?;
    Ok(json(StatusCode::OK, &report))
}

/// `GET /v1/plugins/{name}/dead-letters?after=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/plugins/{name}/dead-letters",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("after" = Option<u64>, Query, description = "The `nextAfter` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
    ),
    responses(
        (status = 200, description = "One page, oldest first", body = DeadLetterPageSchema),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    reject_unknown(&params, &["after", "limit"])?;
    let after = match params.get("after") {
        None => 0,
        Some(a) => a
            .parse::<u64>()
            .map_err(|_| ApiError::parameter("after", "must be a whole number"))?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_DEAD_LETTER_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::parameter(
                    "limit",
                    format!("use 1 to {MAX_DEAD_LETTER_PAGE}"),
                ));
            }
        },
    };
    let letters = host(&state, &caller)?
        .dead_letters(&name, after, limit)
        .await?;
    let next_after = (letters.len() == limit)
        .then(|| letters.last().map(|d| d.id))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &json!({ "deadLetters": letters, "nextAfter": next_after }),
    ))
}

/// `POST /v1/plugins/{name}/dead-letters/{id}/retry`: runs the event through the plugin once
/// more; on success the dead letter is removed.
#[utoipa::path(
    post,
    path = "/v1/plugins/{name}/dead-letters/{id}/retry",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("id" = u64, Path, description = "The dead letter's id"),
    ),
    responses(
        (status = 200, description = "`succeeded` true (removed) or false with the `error`", body = RetryOutcomeSchema),
        (status = 400, description = "The id is not a number", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin, dead letter or event", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Plugins are not enabled", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn retry_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = id
        .parse::<u64>()
        .map_err(|_| ApiError::parameter("id", "must be a whole number"))?;
    let error = host(&state, &caller)?.retry_dead_letter(&name, id).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "succeeded": error.is_none(), "error": error }),
    ))
}
