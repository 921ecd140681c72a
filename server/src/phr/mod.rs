//! The PHR endpoints (`/openDolphin/resources/20/adm/phr/*`) and the pipeline every one of them runs through.
//!
//! The spec's common rules (trace id, facility header, Basic auth, facility isolation, the JSON error body)
//! and its audit rule (one row per call, success or failure, fail closed) are the same for every endpoint,
//! so they live in one place: [`handle`]. An endpoint is a closure from an authenticated [`Caller`] to a
//! [`Reply`] or an [`ApiError`]; it never writes audit rows or error bodies itself.

pub mod container;
pub mod delivery;
pub mod export;
pub mod identity;
pub mod image;
pub mod keys;
pub mod text;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::audit::{Action, AuditEvent, Outcome};
use crate::error::{ApiError, ErrorCode};
use crate::tls::{ClientCert, PeerInfo};

/// Base path of the PHR API.
pub const PHR_BASE: &str = "/openDolphin/resources/20/adm/phr";

/// Largest JSON request body a PHR endpoint reads.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Routes of Phases A–E. Literal segments win over `/{param}` in the router, so `/image/…` is never read as a
/// container CSV.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/accessKey", put(keys::upsert))
        .route("/accessKey/{access_key}", get(keys::fetch))
        .route("/patient/{patient_id}", get(keys::fetch_by_patient))
        .route("/abnormal/{patient_id}", get(text::abnormal))
        .route("/allergy/{patient_id}", get(text::allergy))
        .route("/disease/{patient_id}", get(text::disease))
        .route("/labtest/{patient_id}", get(text::labtest))
        .route("/medication/{patient_id}", get(text::medication))
        .route("/identityToken", post(identity::issue))
        .route("/image/{patient_id}", get(image::stream))
        .route("/export", post(export::submit))
        .route("/status/{job_id}", get(export::status).merge(delete(export::cancel)))
        .route("/export/{job_id}/artifact", get(export::artifact))
        .route("/{csv}", get(container::fetch))
}

/// How a route authenticates its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Client certificate (always, at the TLS layer) plus HTTP Basic and `X-Facility-Id`.
    Basic,
    /// Client certificate only: PHR-06 `identityToken`, as in the original.
    CertificateOnly,
}

/// What every request carries that the pipeline and the audit row need. Extracting it never fails.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub path: String,
    pub headers: HeaderMap,
    /// The TLS peer: socket address and verified client certificate.
    pub peer: Option<PeerInfo>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            path: parts.uri.path().to_owned(),
            headers: parts.headers.clone(),
            peer: parts.extensions.get::<PeerInfo>().cloned(),
        })
    }
}

impl RequestMeta {
    /// A header as text; a value that is not visible ASCII/UTF-8 is a 400 naming the header.
    pub fn header(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(|v| Some(v.trim()))
                .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, format!("header {name} is not valid text"))),
        }
    }

    /// `X-Trace-Id`, or its alias `X-Touch-TraceId`.
    pub fn trace_id(&self) -> Result<String, ApiError> {
        let value = match self.header("x-trace-id")? {
            Some(v) => Some(v),
            None => self.header("x-touch-traceid")?,
        };
        match value {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            _ => Err(ApiError::new(ErrorCode::MissingTraceId, "X-Trace-Id header is required")),
        }
    }

    fn optional(&self, name: &str) -> Option<String> {
        self.header(name).ok().flatten().filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// The client IP: the first `X-Forwarded-For` entry when the peer is a trusted proxy, else the socket's.
    pub fn client_ip(&self, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
        let peer_ip = self.peer.as_ref()?.addr.ip();
        if !trusted_proxies.contains(&peer_ip) {
            return Some(peer_ip);
        }
        let forwarded = self.optional("x-forwarded-for");
        let first = forwarded.as_deref().and_then(|v| v.split(',').next()).and_then(|ip| ip.trim().parse().ok());
        Some(first.unwrap_or(peer_ip))
    }

    /// The verified client certificate, if the connection presented one.
    pub fn client_cert(&self) -> Option<&Arc<ClientCert>> {
        self.peer.as_ref().and_then(|p| p.client_cert.as_ref())
    }
}

/// The authenticated caller handed to an endpoint.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Empty for certificate-only calls without `X-Facility-Id`.
    pub facility_id: String,
    pub user_id: String,
    pub display_name: Option<String>,
    pub role: Option<String>,
    pub trace_id: String,
    /// The verified client certificate (its fingerprint keys the image burst budget).
    pub client_cert: Option<Arc<ClientCert>>,
}

impl Caller {
    /// `facilityId:userId`, the audit row's `actor_id`.
    pub fn actor_id(&self) -> String {
        format!("{}:{}", self.facility_id, self.user_id)
    }

    /// Refuses data of another facility (PHR_API.md §2).
    pub fn require_facility(&self, facility_id: &str) -> Result<(), ApiError> {
        if facility_id.trim().eq_ignore_ascii_case(&self.facility_id) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::ForbiddenFacility, "the requested data belongs to another facility"))
        }
    }
}

/// A successful endpoint result: the response plus what its audit row should add.
pub struct Reply {
    pub response: Response,
    pub patient_id: Option<String>,
    pub details: Map<String, Value>,
    /// Replaces the route's audit action (rarely needed).
    pub action: Option<Action>,
    /// Further audit rows the call produced (e.g. `PHR_SIGNED_URL_ISSUED`), written before the call's own row
    /// and under the same fail-closed rule.
    pub also_audit: Vec<(Action, Map<String, Value>)>,
    /// For streamed bodies: the action of a second, `failed` row written when the body breaks off before its
    /// `Content-Length` (storage error, client gone), since the success row is written before the first byte.
    pub audit_if_incomplete: Option<Action>,
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
        }
    }

    /// Audits a body that does not arrive whole as a `failed` row with `action` (see [`delivery`]).
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

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes; anything else is a 400/413 `invalidPayload`.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPayload, format!("request body is not valid JSON: {e}")))
}

/// Reads a body of at most `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(ErrorCode::InvalidPayload, format!("request body is larger than {limit} bytes"))
            .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
    })
}

/// Wraps a streamed success body so that, if it breaks off, `event` is appended as a `failed` row with the
/// reason and byte counts. The row is written from a spawned task (the body is dropped inside hyper, which
/// cannot wait); it is a transaction like every other append, so it is either whole or absent.
fn watch_body(app: &AppState, response: Response, mut event: AuditEvent) -> Response {
    let expected = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(expected) = expected else { return response };
    let app = app.clone();
    let on_incomplete: delivery::OnIncomplete = Box::new(move |incomplete| {
        event.outcome = Outcome::Failed;
        event.payload.insert("status".into(), Outcome::Failed.as_str().into());
        event.payload.insert("reason".into(), incomplete.reason.into());
        event.payload.insert("bytesSent".into(), incomplete.bytes_sent.into());
        event.payload.insert("bytesExpected".into(), incomplete.bytes_expected.into());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(action = event.action.as_str(), "body broke off outside the runtime; not audited");
            return;
        };
        runtime.spawn(async move {
            let action = event.action.as_str();
            match app.audit.append(event).await {
                Ok(_) => app.metrics.audit_write(Outcome::Failed),
                Err(error) => tracing::error!(action, %error, "could not audit a body that broke off"),
            }
        });
    });
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(delivery::WatchedBody::new(body, expected, on_incomplete)))
}

/// Runs one PHR call: common rules, authentication, the endpoint, then its audit row (fail closed).
///
/// `endpoint` is an async closure, so it can borrow the handler's state:
/// `phr::handle(&app, meta, action, AuthMode::Basic, async |caller| { … app.db … }).await`.
pub async fn handle<F>(app: &AppState, meta: RequestMeta, action: Action, mode: AuthMode, endpoint: F) -> Response
where
    F: AsyncFnOnce(Caller) -> Result<Reply, ApiError>,
{
    let trace_id = meta.trace_id().ok();
    let mut caller = None;
    let result = async {
        let trace_id = meta.trace_id()?;
        let authenticated = app.authenticate(&meta, mode, trace_id).await?;
        caller = Some(authenticated.clone());
        endpoint(authenticated).await
    }
    .await;

    let claimed_facility = meta.optional("x-facility-id");
    let mut payload = Map::new();
    let mut extra_events = Vec::new();
    let mut watch = None;
    let (response, outcome, action, patient_id) = match result {
        Ok(reply) => {
            payload.insert("status".into(), Outcome::Success.as_str().into());
            payload.extend(reply.details);
            extra_events = reply.also_audit;
            watch = reply.audit_if_incomplete;
            (reply.response, Outcome::Success, reply.action.unwrap_or(action), reply.patient_id)
        }
        Err(error) => {
            payload.insert("status".into(), Outcome::Failed.as_str().into());
            payload.insert("reason".into(), error.message.clone().into());
            payload.insert("httpStatus".into(), error.status.as_u16().into());
            payload.insert("error".into(), error.type_name().into());
            payload.extend(error.details.clone());
            let action = error.audit_action.unwrap_or(action);
            let patient_id = error.patient_id.clone();
            (error.into_response_with_trace(trace_id.as_deref()), Outcome::Failed, action, patient_id)
        }
    };
    let facility_id = caller.as_ref().map(|c| c.facility_id.clone()).or(claimed_facility);
    payload.insert("facilityId".into(), facility_id.into());
    payload.insert("userId".into(), caller.as_ref().map(|c| c.user_id.clone()).into());
    payload.insert("traceId".into(), trace_id.clone().into());
    if let Some(cert) = meta.client_cert() {
        payload
            .insert("clientCertificate".into(), serde_json::json!({ "subject": cert.subject, "sha256": cert.sha256 }));
    }
    if let Some(patient) = &patient_id {
        payload.entry("patientId").or_insert_with(|| patient.clone().into());
    }

    let common = |action: Action, payload: Map<String, Value>| AuditEvent {
        actor_id: caller.as_ref().map(Caller::actor_id),
        actor_display_name: caller.as_ref().and_then(|c| c.display_name.clone()),
        actor_role: caller.as_ref().and_then(|c| c.role.clone()),
        action,
        resource: Some(meta.path.clone()),
        patient_id: patient_id.clone(),
        request_id: meta.optional("x-request-id"),
        trace_id: trace_id.clone(),
        ip_address: meta.client_ip(&app.config.trusted_proxies).map(|ip| ip.to_string()),
        user_agent: meta.optional("user-agent"),
        payload,
        run_id: meta.optional("x-run-id"),
        outcome,
    };
    let mut events: Vec<AuditEvent> = extra_events
        .into_iter()
        .map(|(extra_action, details)| {
            let mut extra = payload.clone();
            extra.extend(details);
            common(extra_action, extra)
        })
        .collect();
    let incomplete_event = watch.map(|watch_action| common(watch_action, payload.clone()));
    events.push(common(action, payload));
    let mut response = response;
    let mut audited = true;
    for event in events {
        if let Err(error) = app.audit.append(event).await {
            // Fail closed: without its audit row the call did not happen, whatever the endpoint produced.
            response = ApiError::internal(error).into_response_with_trace(trace_id.as_deref());
            audited = false;
            break;
        }
        app.metrics.audit_write(outcome);
    }
    if let Some(event) = incomplete_event.filter(|_| audited) {
        response = watch_body(app, response, event);
    }
    if let Some(trace) = trace_id.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert("x-trace-id", trace);
    }
    response
}
