//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, assembled here.
//!
//! The description lives with the code it describes: each handler carries a `#[utoipa::path]`
//! annotation, each resource module gathers its routes in an `XxxApi` (`events::EventsApi`, …),
//! and the bodies are described by the types the handlers write and read (the library's wire
//! types derive `ToSchema` behind its `openapi` feature). [`document`] merges those parts into
//! [`ApiDoc`] (title, licence, tags) and adds what every route shares: the `bearer` scheme with
//! its 401 and 403 answers ([`Secured`]), and the RFC 9457 problem body of every error answer
//! ([`ProblemBodies`]). Resource modules never import this one.
//!
//! The integration test `tests/it/openapi.rs` checks that every route the router serves is
//! described here; the unit tests in `openapi/tests.rs` check the schemas against real answers.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::body::json;
use super::problem::problem_content;
use super::state::AppState;
use super::{
    consumers, event_types, events, health, keys, metrics, outboxes, plugins, problem, stats,
    stream, tokens, webhooks,
};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(get_openapi))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Value))
)]
async fn get_openapi() -> Response {
    json(StatusCode::OK, &document())
}

/// The whole API description: [`ApiDoc`] with every resource's part merged in, then the
/// authentication and problem bodies all routes share.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        events::EventsApi::openapi(),
        event_types::EventTypesApi::openapi(),
        stream::StreamApi::openapi(),
        webhooks::WebhooksApi::openapi(),
        consumers::ConsumersApi::openapi(),
        keys::KeysApi::openapi(),
        tokens::TokensApi::openapi(),
        plugins::PluginsApi::openapi(),
        outboxes::OutboxesApi::openapi(),
        health::HealthApi::openapi(),
        metrics::MetricsApi::openapi(),
        stats::StatsApi::openapi(),
        problem::ProblemApi::openapi(),
    ] {
        doc.merge(part);
    }
    Secured.modify(&mut doc);
    ProblemBodies.modify(&mut doc);
    doc
}

/// The document's frame: its title, licence and tags, and this route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Situs Event Bus",
        description = "Publish, query and stream events; deliver them to webhooks and consumer groups. Errors are RFC 9457 \
                       `application/problem+json`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(get_openapi),
    tags(
        (name = "events", description = "Publish and query events"),
        (name = "event-types", description = "The event type catalogue"),
        (name = "stream", description = "Server-Sent Events"),
        (name = "webhooks", description = "Webhook endpoints, deliveries and attempts"),
        (name = "consumers", description = "Consumer groups: shared pull consumers with fetch, ack, nack and dead letters"),
        (name = "keys", description = "API keys (admin)"),
        (name = "tokens", description = "Browser tokens for streams"),
        (name = "plugins", description = "Rust and JavaScript plugins: status, reload, install, dead letters"),
        (name = "outboxes", description = "Transactional outboxes the bus relays: state and dead letters"),
        (name = "operations", description = "Health, metrics and the figures of the last hour"),
        (name = "meta", description = "This description"),
    )
)]
pub struct ApiDoc;

/// The operations of `doc`, with their paths.
fn operations(
    doc: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&str, &mut utoipa::openapi::path::Operation)> {
    doc.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        .map(move |op| (path.as_str(), op))
    })
}

/// A problem answer described by `what`; [`ProblemBodies`] gives it its body.
fn problem_answer(what: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(ResponseBuilder::new().description(what).build())
}

/// Adds the authentication every `/v1` route requires: the `bearer` scheme (an API key), and
/// the 401 and 403 answers; `/v1/stream` also takes a browser token as `?token=`. `/health/ready`
/// and `/metrics` answer 401/403 only when `HEALTH_METRICS_PUBLIC=false`.
struct Secured;

impl Modify for Secured {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`ebk_…`) or the EVENT_BUS_ADMIN_KEY"))
                    .build(),
            ),
        );
        for (path, op) in operations(doc) {
            let guarded = path.starts_with("/v1/") || path == "/health/ready" || path == "/metrics";
            if !guarded {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| problem_answer("No valid API key (or stream token)"));
            if path.starts_with("/v1/") {
                responses
                    .entry("403".into())
                    .or_insert_with(|| problem_answer("The key does not allow this"));
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
        }
        if let Some(post) = doc
            .paths
            .paths
            .get_mut("/v1/events")
            .and_then(|i| i.post.as_mut())
        {
            post.responses
                .responses
                .entry("429".into())
                .or_insert_with(|| {
                    problem_answer("The key is over its publish rate; see Retry-After")
                });
        }
    }
}

/// Gives every 4xx and 5xx answer that names no body of its own the `application/problem+json`
/// `Problem` body (see `problem::problem_content`): the routes list their problems by status and
/// description only.
struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (_, op) in operations(doc) {
            for (status, response) in op.responses.responses.iter_mut() {
                let is_error = matches!(status.as_bytes().first(), Some(b'4' | b'5'));
                if let (true, RefOr::T(response)) = (is_error, response)
                    && response.content.is_empty()
                {
                    let (media_type, content) = problem_content();
                    response.content.insert(media_type.to_owned(), content);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
