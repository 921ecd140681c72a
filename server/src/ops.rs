//! The operational listener: `/healthz`, `/readyz`, `/metrics` on plain HTTP, bound to loopback by default.
//!
//! Load balancers and the weekly preflight need to ask "is the process up" and "can it serve" without a client
//! certificate, and Prometheus scrapes without one too; none of these reveal PHR data. `/healthz` touches
//! nothing (the ops logs' lesson: a health check that needs the database takes the service down with it);
//! `/readyz` proves the database answers a read and that the schema is at the embedded version.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
