//! The operational listener: `/healthz`, `/readyz`, `/metrics` on plain HTTP, bound to loopback by default.
//!
//! Load balancers and the weekly preflight need to ask "is the process up" and "can it serve" without a client
//! certificate, and Prometheus scrapes without one too; none of these reveal PHR data. `/healthz` touches
//! nothing (the ops logs' lesson: a health check that needs the database takes the service down with it);
//! `/readyz` proves the database answers a read and that the schema is at the embedded version.
//! `/audit/checkpoint[?chain=<id>]` serves the newest signed checkpoint of a chain (`main` by default): it is
//! signed, so it needs no authentication to be trusted, and it reveals only a hash and a count.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/audit/checkpoint", get(checkpoint))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<AppState>) -> Response {
    match app.db.readiness().await {
        Ok(ready) if ready.schema_version == ready.expected_version => {
            (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready", "database": ready }))).into_response()
        }
        Ok(ready) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "migrations pending", "database": ready })),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "database unavailable" })))
                .into_response()
        }
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render()).into_response()
}

/// `?chain=` of `/audit/checkpoint`.
#[derive(Debug, serde::Deserialize)]
struct ChainQuery {
    /// The chain; `main` when absent.
    chain: Option<String>,
}

async fn checkpoint(State(app): State<AppState>, Query(query): Query<ChainQuery>) -> Response {
    let chain = query.chain.as_deref().unwrap_or(crate::audit::MAIN_CHAIN);
    match app.checkpoints.get(chain) {
        Some(signed) => axum::Json(signed).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": "no checkpoint signed yet for this chain (PHR_AUDIT_SIGNING_KEY unset, or no rows since start)",
                "chain": chain,
            })),
        )
            .into_response(),
    }
}
