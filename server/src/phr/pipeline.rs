//! The pipeline every PHR call runs through: common rules, authentication, the endpoint, its audit rows.
//!
//! The spec's common rules (trace id, facility header, Basic auth, facility isolation, the JSON error body)
//! and its audit rule (one row per call, success or failure, fail closed) are the same for every endpoint,
//! so they live in one place: [`handle`]. Authentication has no other caller, so it lives here too. Each
//! step is a small function: `authenticate` the caller, run the endpoint, turn its result into a `Call`,
//! then `CallRows::record` writes the rows and decides the answer. An endpoint that changes data does so
//! through [`change`], inside the audit chain's transaction, and the rows commit in that same transaction:
//! a refused row rolls the change back.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Map, Value};

use super::delivery;
use super::mask::mask_access_key;
use super::reply::Reply;
use super::request::{AuthMode, Caller, RequestMeta};
use crate::audit::{Action, AuditError, AuditEvent, AuditTx, Outcome, column_text};
use crate::auth::parse_basic;
use crate::dbtx::DbTx;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Width of the `trace_id` column; the payload's copy is cut the same way.
const TRACE_ID_CHARS: usize = 256;

/// Marks a response whose audit rows the pipeline wrote, so the guard (`phr::guard`) leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// Runs one PHR call: common rules, authentication, the endpoint, then its audit row (fail closed).
///
/// `endpoint` is an async closure, so it can borrow the handler's state:
/// `pipeline::handle(&app, meta, action, AuthMode::Basic, async |caller| { … app.db … }).await`.
pub async fn handle<F>(app: &AppState, meta: RequestMeta, action: Action, mode: AuthMode, endpoint: F) -> Response
where
    F: AsyncFnOnce(Caller) -> Result<Reply, ApiError>,
{
    let (caller, result) = run(app, &meta, mode, endpoint).await;
    finish(app, &meta, caller.as_ref(), action, result).await
}

/// Audits a request that no endpoint answered (the router's 404 or 405, an extractor's rejection, a limit)
/// as a `failed` row of `action` with the error's reason, and answers the error as JSON. Nobody is
/// authenticated for it.
pub async fn reject(app: &AppState, meta: RequestMeta, action: Action, error: ApiError) -> Response {
    finish(app, &meta, None, action, Err(error)).await
}

/// Turns the call's result into its rows and its answer (with `X-Trace-Id`), marked [`Audited`].
async fn finish(
    app: &AppState,
    meta: &RequestMeta,
    caller: Option<&Caller>,
    action: Action,
    result: Result<Reply, ApiError>,
) -> Response {
    let trace_id = meta.trace_id().ok();
    let call = Call::of(result, action, trace_id.as_deref());
    let rows = CallRows {
        app,
        meta,
        caller,
        claimed: if caller.is_none() { meta.claimed_user() } else { None },
        trace_id: trace_id.as_deref(),
        patient_id: call.patient_id.clone(),
        outcome: call.outcome,
    };
    let mut response = rows.record(call).await;
    if let Some(trace) = trace_id.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert("x-trace-id", trace);
    }
    response.extensions_mut().insert(Audited);
    response
}

/// Authenticates, then runs the endpoint; the caller is returned too, for the audit rows.
async fn run<F>(
    app: &AppState,
    meta: &RequestMeta,
    mode: AuthMode,
    endpoint: F,
) -> (Option<Caller>, Result<Reply, ApiError>)
where
    F: AsyncFnOnce(Caller) -> Result<Reply, ApiError>,
{
    let caller = match authenticate(app, meta, mode).await {
        Ok(caller) => caller,
        Err(error) => return (None, Err(error)),
    };
    // Authenticated, but for another facility than the header names: the row still names who it was.
    if mode == AuthMode::Basic
        && let Some(Err(error)) = meta.header("x-facility-id").ok().flatten().map(|f| caller.require_facility(f))
    {
        return (Some(caller), Err(error));
    }
    let result = endpoint(caller.clone()).await;
    (Some(caller), result)
}

/// Applies the common request rules and authenticates the caller (PHR_API.md §1–§2).
async fn authenticate(app: &AppState, meta: &RequestMeta, mode: AuthMode) -> Result<Caller, ApiError> {
    let trace_id = meta.trace_id()?;
    let facility_header = meta.header("x-facility-id")?.filter(|f| !f.is_empty()).map(str::to_owned);
    if mode == AuthMode::CertificateOnly {
        return Ok(certificate_caller(meta, facility_header, trace_id));
    }
    let facility_header = facility_header
        .ok_or_else(|| ApiError::new(ErrorCode::MissingFacilityId, "X-Facility-Id header is required"))?;
    let credentials = parse_basic(meta.headers.get(header::AUTHORIZATION))?;
    let facility = credentials.facility_id.clone().unwrap_or_else(|| facility_header.clone());
    let client = meta.client_cert().map(|cert| cert.sha256.as_str());
    let account = app.auth.authenticate(&credentials, &facility, client).await?;
    let caller = Caller {
        facility_id: account.facility_id,
        user_id: account.user_id,
        display_name: account.display_name,
        role: Some(account.role),
        trace_id,
        client_cert: meta.client_cert().cloned(),
    };
    Ok(caller)
}

/// The caller of a certificate-only route: the certificate's subject, and the facility the header claims.
fn certificate_caller(meta: &RequestMeta, facility_header: Option<String>, trace_id: String) -> Caller {
    let client_cert = meta.client_cert().cloned();
    let subject = client_cert.as_ref().map(|c| c.subject.clone()).unwrap_or_default();
    Caller {
        facility_id: facility_header.unwrap_or_default(),
        user_id: format!("cert:{subject}"),
        display_name: None,
        role: None,
        trace_id,
        client_cert,
    }
}

/// One call's result before it is audited: the answer so far and what its rows will say.
struct Call {
    /// The endpoint's response, or the error body.
    response: Response,
    outcome: Outcome,
    /// The row's action: the route's, unless the reply or the error names another.
    action: Action,
    /// The patient the call concerned, for every row of the call.
    patient_id: Option<String>,
    /// `status` plus the endpoint's details, or the error's reason, status, type and details.
    payload: Map<String, Value>,
    /// Further rows, written before the call's own ([`Reply::also_audit`]).
    extra_rows: Vec<(Action, Map<String, Value>)>,
    /// The action of the `failed` row for a body that breaks off ([`Reply::audit_if_incomplete`]).
    watch: Option<Action>,
    /// The call's uncommitted data change; its rows join it ([`Reply::in_transaction`]).
    transaction: Option<AuditTx>,
    /// Runs after the commit ([`Reply::on_commit`]).
    on_commit: Option<Box<dyn FnOnce() + Send>>,
}

impl Call {
    fn of(result: Result<Reply, ApiError>, route_action: Action, trace_id: Option<&str>) -> Self {
        match result {
            Ok(reply) => Self::succeeded(reply, route_action),
            Err(error) => Self::failed(error, route_action, trace_id),
        }
    }

    fn succeeded(reply: Reply, route_action: Action) -> Self {
        let mut payload = Map::new();
        payload.insert("status".into(), Outcome::Success.as_str().into());
        payload.extend(reply.details);
        Self {
            response: reply.response,
            outcome: Outcome::Success,
            action: reply.action.unwrap_or(route_action),
            patient_id: reply.patient_id,
            payload,
            extra_rows: reply.also_audit,
            watch: reply.audit_if_incomplete,
            transaction: reply.transaction,
            on_commit: reply.on_commit,
        }
    }

    fn failed(error: ApiError, route_action: Action, trace_id: Option<&str>) -> Self {
        let mut payload = Map::new();
        payload.insert("status".into(), Outcome::Failed.as_str().into());
        payload.insert("reason".into(), error.message.clone().into());
        payload.insert("httpStatus".into(), error.status.as_u16().into());
        payload.insert("error".into(), error.type_name().into());
        payload.extend(error.details.clone());
        let action = error.audit_action.unwrap_or(route_action);
        let patient_id = error.patient_id.clone();
        Self {
            response: error.into_response_with_trace(trace_id),
            outcome: Outcome::Failed,
            action,
            patient_id,
            payload,
            extra_rows: Vec::new(),
            watch: None,
            transaction: None,
            on_commit: None,
        }
    }
}

/// What every audit row of one call shares, whichever row it is.
struct CallRows<'a> {
    app: &'a AppState,
    meta: &'a RequestMeta,
    /// `None` when the call failed before authentication succeeded.
    caller: Option<&'a Caller>,
    /// Without a caller: `(facility, user)` the Basic header claims, for the row's actor (not a secret).
    claimed: Option<(String, String)>,
    trace_id: Option<&'a str>,
    patient_id: Option<String>,
    outcome: Outcome,
}

impl CallRows<'_> {
    /// Writes the call's rows (further rows first, then its own) in one transaction with the call's data
    /// change, fail closed: when one cannot be written nothing commits and the answer becomes a 500. A body
    /// to watch is wrapped only once all are in.
    async fn record(&self, call: Call) -> Response {
        let mut payload = call.payload;
        self.add_call_facts(&mut payload);
        let mut events: Vec<AuditEvent> = call
            .extra_rows
            .into_iter()
            .map(|(extra_action, details)| {
                let mut extra = payload.clone();
                extra.extend(details);
                self.event(extra_action, extra)
            })
            .collect();
        let incomplete_event = call.watch.map(|watch_action| self.event(watch_action, payload.clone()));
        events.push(self.event(call.action, payload));
        if let Err(error) = self.commit_with(call.transaction, events).await {
            // Fail closed: without its audit row the call did not happen, whatever the endpoint produced.
            return ApiError::internal(error).into_response_with_trace(self.trace_id);
        }
        if let Some(hook) = call.on_commit {
            hook();
        }
        match incomplete_event {
            Some(event) => watch_body(self.app, call.response, event),
            None => call.response,
        }
    }

    /// Who called and how, in the payload of every row: facility, user, trace id, certificate, patient.
    fn add_call_facts(&self, payload: &mut Map<String, Value>) {
        let facility_id = self
            .caller
            .map(|c| c.facility_id.clone())
            .or_else(|| self.claimed.as_ref().map(|(facility, _)| facility.clone()))
            .or_else(|| self.meta.optional("x-facility-id"));
        payload.insert("facilityId".into(), facility_id.into());
        let claimed_user = self.claimed.as_ref().map(|(_, user)| user.clone());
        payload.insert("userId".into(), self.caller.map(|c| c.user_id.clone()).or(claimed_user).into());
        if self.claimed.is_some() {
            payload.insert("actorClaimed".into(), true.into());
        }
        // Cut like the column (a trace id may be as long as the header limit allows).
        payload.insert("traceId".into(), self.trace_id.map(|t| column_text(t, TRACE_ID_CHARS).into_owned()).into());
        if let Some(cert) = self.meta.client_cert() {
            payload.insert(
                "clientCertificate".into(),
                serde_json::json!({ "subject": cert.subject, "sha256": cert.sha256 }),
            );
        }
        if let Some(patient) = &self.patient_id {
            payload.entry("patientId").or_insert_with(|| patient.clone().into());
        }
    }

    /// One row of the call with its own action and payload.
    fn event(&self, action: Action, payload: Map<String, Value>) -> AuditEvent {
        AuditEvent {
            facility_id: self.caller.map(|c| c.facility_id.clone()),
            actor_id: self
                .caller
                .map(Caller::actor_id)
                .or_else(|| self.claimed.as_ref().map(|(facility, user)| format!("{facility}:{user}"))),
            actor_display_name: self.caller.and_then(|c| c.display_name.clone()),
            actor_role: self.caller.and_then(|c| c.role.clone()),
            action,
            resource: (!self.meta.path.is_empty()).then(|| mask_access_key(&self.meta.path).into_owned()),
            patient_id: self.patient_id.clone(),
            request_id: self.meta.optional("x-request-id"),
            trace_id: self.trace_id.map(str::to_owned),
            ip_address: self.meta.client_ip(&self.app.config.trusted_proxies).map(|ip| ip.to_string()),
            user_agent: self.meta.optional("user-agent"),
            payload,
            run_id: self.meta.optional("x-run-id"),
            outcome: self.outcome,
        }
    }

    /// Appends the rows in order into `transaction` and commits; at the first row that cannot be written the
    /// whole transaction, data change included, is rolled back. Without a data change the rows go to the
    /// group-commit writer (all of the call's rows or none).
    async fn commit_with(&self, transaction: Option<AuditTx>, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        let rows = events.len();
        let Some(mut tx) = transaction else {
            // No data change: the rows go through the group-commit writer with other calls' rows.
            self.app.audit.append_all(events).await?;
            for _ in 0..rows {
                self.app.metrics.audit_write(self.outcome);
            }
            return Ok(());
        };
        for event in events {
            if let Err(error) = tx.append(event).await {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(%rollback, "rollback after a refused audit row failed; the pool rolls the connection back or closes it");
                }
                return Err(error);
            }
        }
        tx.commit().await?;
        for _ in 0..rows {
            self.app.metrics.audit_write(self.outcome);
        }
        Ok(())
    }
}

/// Runs a call's data change in a new transaction on the chain of the caller's `facility` and hands the
/// transaction back for [`Reply::in_transaction`], so the change commits only with the call's rows. When `change` fails, the
/// transaction is rolled back before the error is returned (its failure row is then written on its own).
///
/// Only the transaction may be used inside `change`: on SQLite it holds the database's write lock.
pub async fn change<T, F>(app: &AppState, facility: &str, change: F) -> Result<(T, AuditTx), ApiError>
where
    F: AsyncFnOnce(&mut DbTx) -> Result<T, ApiError>,
{
    let mut tx = app.audit.begin(Some(facility)).await.map_err(ApiError::internal)?;
    match change(tx.db()).await {
        Ok(value) => Ok((value, tx)),
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(%rollback, "rollback of a failed change failed; the pool rolls the connection back or closes it");
            }
            Err(error)
        }
    }
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
