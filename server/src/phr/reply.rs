//! What a successful endpoint hands back to the pipeline: the response plus what its audit rows should say.
//!
//! Endpoints never write audit rows themselves (the pipeline does, so the rules cannot drift); a [`Reply`]
//! is how they say which patient the call touched, which details the row carries, which further rows the
//! call produced, and, for a call that changed data, the transaction holding the change (the pipeline
//! appends the rows into it and commits both together).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::audit::{Action, AuditTx};
use crate::error::ApiError;

/// A successful endpoint result: the response plus what its audit row should add.
pub struct Reply {
    /// What the client receives (the pipeline adds `X-Trace-Id`).
    pub response: Response,
    /// The patient the call concerned, for the row's `patient_id`.
    pub patient_id: Option<String>,
    /// Added to the row's payload.
    pub details: Map<String, Value>,
    /// Replaces the route's audit action (rarely needed).
    pub action: Option<Action>,
    /// Further audit rows the call produced (e.g. `PHR_SIGNED_URL_ISSUED`), written before the call's own row
    /// and under the same fail-closed rule.
    pub also_audit: Vec<(Action, Map<String, Value>)>,
    /// For streamed bodies: the action of a second, `failed` row written when the body breaks off before its
    /// `Content-Length` (storage error, client gone), since the success row is written before the first byte.
    pub audit_if_incomplete: Option<Action>,
    /// The call's data change, uncommitted: its rows are appended into it and it commits with them.
    pub transaction: Option<AuditTx>,
    /// Runs once the change and its rows are committed (e.g. waking the export workers).
    pub on_commit: Option<Box<dyn FnOnce() + Send>>,
}

impl Reply {
    pub fn new(response: impl IntoResponse) -> Self {
        Self {
            response: response.into_response(),
            patient_id: None,
            details: Map::new(),
            action: None,
            also_audit: Vec::new(),
            audit_if_incomplete: None,
            transaction: None,
            on_commit: None,
        }
    }

    /// Commits `transaction` (the call's data change) together with the call's audit rows.
    pub fn in_transaction(mut self, transaction: AuditTx) -> Self {
        self.transaction = Some(transaction);
        self
    }

    /// Runs `hook` after the change and its rows have committed.
    pub fn on_commit(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.on_commit = Some(Box::new(hook));
        self
    }

    /// Audits a body that does not arrive whole as a `failed` row with `action` (see [`super::delivery`]).
    pub fn audit_if_incomplete(mut self, action: Action) -> Self {
        self.audit_if_incomplete = Some(action);
        self
    }

    /// Adds a further audit row with its own action and details.
    pub fn also_audit(mut self, action: Action, details: Map<String, Value>) -> Self {
        self.also_audit.push((action, details));
        self
    }

    /// `text/plain; charset=UTF-8` with the given body.
    pub fn text(body: String) -> Self {
        Self::new(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"))], body))
    }

    /// `application/json` with the serialized value.
    pub fn json<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
        Ok(Self::new(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)))
    }

    pub fn patient(mut self, patient_id: impl Into<String>) -> Self {
        self.patient_id = Some(patient_id.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}
