//! `/v1/plugins`: installed plugins with their status and counters, reload, install from a
//! bundle, uninstall, and each plugin's dead letters (see docs/plugins.md). [`PluginsApi`] is
//! their part of the API description.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use eventbus::core::event::FieldError;
use eventbus::plugin::{HostError, PluginHost, PluginInfo, ReloadReport};
use eventbus::store::plugin::{DeadLetter, MAX_DEAD_LETTER_PAGE};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use eventbus::core::principal::{Denied, Permission};

use super::auth::Caller;
use super::body::{BodyProblems, decode, json, read_json};
use super::params::{DEFAULT_PAGE, reject_unknown};
use super::problem::ApiError;
use super::state::AppState;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_plugins,
    get_plugin,
    reload_plugins,
    install_plugin,
    uninstall_plugin,
    list_dead_letters,
    retry_dead_letter,
))]
pub(super) struct PluginsApi;

/// The answer of every plugin route when the server runs no plugin host (an
/// `application/problem+json` body, added where the document is assembled).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "described in the API document, never built")]
enum PluginsProblems {
    /// Plugins are not enabled
    #[response(status = 501)]
    Disabled,
}

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
        .plugins
        .as_ref()
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

/// `GET /v1/plugins` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PluginList)]
struct ListBody {
    /// Every plugin, by name.
    plugins: Vec<PluginInfo>,
}

/// `GET /v1/plugins`.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "Every plugin, loaded or failed, by name", body = ListBody),
        PluginsProblems,
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
        (status = 200, description = "The plugin", body = PluginInfo),
        (status = 404, description = "No such plugin"),
        PluginsProblems,
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
        (status = 200, description = "What changed", body = ReloadReport),
        PluginsProblems,
        (status = 503, description = "Store unavailable"),
    )
)]
pub(super) async fn reload_plugins(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let report = host(&state, &caller)?.reload().await?;
    Ok(json(StatusCode::OK, &report))
}

/// `POST /v1/plugins` body: a plugin bundle.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = InstallBundle)]
#[serde(deny_unknown_fields)]
struct Bundle {
    /// The `plugin.json` object.
    manifest: Value,
    /// The `index.js` ES module.
    source: String,
}

/// `POST /v1/plugins` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Installed)]
struct Installed {
    /// The plugin as installed.
    #[schema(value_type = PluginInfo)]
    plugin: Option<PluginInfo>,
    /// What the reload changed.
    reload: ReloadReport,
}

/// `POST /v1/plugins`: installs or updates a plugin from a bundle.
#[utoipa::path(
    post,
    path = "/v1/plugins",
    tag = "plugins",
    request_body(content = Bundle, description = "`plugin.json` and `index.js`"),
    responses(
        (status = 201, description = "Installed", body = Installed),
        (status = 200, description = "Updated", body = Installed),
        (status = 400, description = "Malformed JSON or an invalid manifest field"),
        (status = 409, description = "A Rust plugin has this name"),
        BodyProblems,
        (status = 422, description = "The code does not load"),
        PluginsProblems,
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
        &Installed {
            plugin,
            reload: report,
        },
    ))
}

/// `DELETE /v1/plugins/{name}`: removes its folder and uninstalls it.
#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "Uninstalled; what the reload changed", body = ReloadReport),
        (status = 404, description = "No such plugin"),
        (status = 409, description = "A Rust plugin cannot be uninstalled"),
        PluginsProblems,
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

/// One page of dead letters.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeadLetterPage {
    /// The dead letters, oldest first.
    dead_letters: Vec<DeadLetter>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
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
        (status = 200, description = "One page, oldest first", body = DeadLetterPage),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 404, description = "No such plugin"),
        PluginsProblems,
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
        &DeadLetterPage {
            dead_letters: letters,
            next_after,
        },
    ))
}

/// The outcome of retrying a dead letter.
// Fields in the order the answer has always had them (it was a sorted `json!` map).
#[derive(Serialize, utoipa::ToSchema)]
struct RetryOutcome {
    /// The plugin's error otherwise.
    error: Option<String>,
    /// Whether the plugin handled the event (the dead letter is removed).
    succeeded: bool,
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
        (status = 200, description = "`succeeded` true (removed) or false with the `error`", body = RetryOutcome),
        (status = 400, description = "The id is not a number"),
        (status = 404, description = "No such plugin, dead letter or event"),
        PluginsProblems,
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
        &RetryOutcome {
            succeeded: error.is_none(),
            error,
        },
    ))
}
