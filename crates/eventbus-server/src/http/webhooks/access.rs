//! The webhook service and what a caller may see of it: every webhook route reaches the service
//! through [`service`] and an endpoint through [`visible_endpoint`], so a caller bound to a tenant
//! or projects never learns of another scope's endpoints (they answer 404, like missing ones).

use eventbus::store::webhook::Endpoint;
use eventbus::transport::webhook::{WebhookError, WebhookService};

use crate::http::auth::Caller;
use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// The answer of every webhook route when the store backend has no webhook support (an
/// `application/problem+json` body, added where the document is assembled).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "described in the API document, never built")]
pub(super) enum WebhooksProblems {
    /// Webhooks are not available on this store
    #[response(status = 501)]
    Unavailable,
}

pub(super) fn service(state: &AppState) -> Result<&WebhookService, ApiError> {
    state.webhooks().ok_or_else(|| {
        ApiError::WebhooksUnavailable(format!(
            "webhooks are not available on the {} store yet",
            state.bus.store().backend()
        ))
    })
}

/// Whether `caller` may see `ep`: an unscoped caller sees every endpoint, a tenant-bound one
/// its tenant's, a project-bound one its projects'.
pub(super) fn visible(caller: &Caller, ep: &Endpoint) -> bool {
    let p = &caller.principal;
    p.tenant_id
        .as_ref()
        .is_none_or(|t| ep.tenant_id.as_ref() == Some(t))
        && p.project_ids
            .as_ref()
            .is_none_or(|ps| ep.project_id.as_ref().is_some_and(|x| ps.contains(x)))
}

/// The endpoint `id` if it exists and `caller` may see it; 404 otherwise, the same answer either
/// way.
pub(super) async fn visible_endpoint(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Endpoint, ApiError> {
    let missing = || ApiError::NotFound(format!("no webhook endpoint has id `{id}`"));
    match service(state)?.get_endpoint(id).await {
        Ok(ep) if visible(caller, &ep) => Ok(ep),
        Ok(_) | Err(WebhookError::NotFound(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(f) if f.field == "url" => ApiError::InvalidWebhookUrl(f),
            WebhookError::Invalid(f) => ApiError::InvalidField(f),
            WebhookError::NotFound(m) => ApiError::NotFound(m),
            WebhookError::Store(s) => s.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }
}
