//! PHR-06 `POST /identityToken`: trades a nonce for a Layer ID token (a compact RS256 JWS).
//!
//! As in the original, the call is authenticated by the client certificate alone (no Basic). The body is
//! `{"nonce","user"}`, sent as `text/plain` or `application/json` by existing clients, so it is read as
//! JSON whatever the Content-Type says. The body is capped small (a nonce and a user id), so a 10 MB upload
//! is a 413 after 8 KiB rather than 10 MB in memory. The token itself never reaches the audit row: only the
//! user and the nonce's length do. Without a signing key (the explicit start-up opt-out) the call answers
//! `503 layerKeyMissing` and is audited as `PHR_LAYER_ID_CERT_MISSING`, the fail-fast record the ops log asks for.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::pipeline;
use super::reply::Reply;
use super::request::{AuthMode, RequestMeta, invalid_json, read_body};
use crate::audit::Action;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Largest identityToken body read; a nonce and a user id fit many times over.
pub const MAX_IDENTITY_BODY: usize = 8 * 1024;

/// The request body. Missing fields read as empty so they get the same 400 as empty ones.
#[derive(Debug, Deserialize)]
struct IdentityRequest {
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    user: String,
}

/// `POST /identityToken`.
pub async fn issue(State(app): State<AppState>, meta: RequestMeta, body: Body) -> Response {
    pipeline::handle(&app, meta, Action::LayerIdTokenIssue, AuthMode::CertificateOnly, async |_caller| {
        let Some(signer) = app.layer.as_ref() else {
            return Err(ApiError::new(ErrorCode::LayerKeyMissing, "the Layer ID signing key is not configured")
                .with_audit_action(Action::LayerIdCertMissing));
        };
        let bytes = read_body(body, MAX_IDENTITY_BODY).await?;
        let request: IdentityRequest = serde_json::from_slice(&bytes).map_err(|e| {
            let error = invalid_json(&e);
            let message = format!("{}; it must be {{\"nonce\",\"user\"}}", error.message);
            ApiError::new(ErrorCode::InvalidPayload, message)
        })?;
        // Blank counts as empty; otherwise both are signed exactly as sent, so the provider can match its nonce.
        let (nonce, user) = (request.nonce.as_str(), request.user.as_str());
        for (field, value) in [("nonce", nonce), ("user", user)] {
            if value.trim().is_empty() {
                return Err(ApiError::new(ErrorCode::InvalidPayload, format!("field {field} must not be empty"))
                    .with_detail("nonceLength", nonce.len()));
            }
        }
        let token = signer.issue(user, nonce, app.config.clock.now()).map_err(ApiError::internal)?;
        Ok(Reply::text(token)
            .detail("user", user)
            .detail("nonceLength", nonce.len())
            .detail("keyId", signer.key_id())
            .detail("keyFingerprint", signer.fingerprint()))
    })
    .await
}
