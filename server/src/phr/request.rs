//! What a PHR call brings with it: the request facts every call carries ([`RequestMeta`]), the caller it is
//! authenticated as ([`Caller`], [`AuthMode`]), and bounded reading of request bodies.
//!
//! Handlers and the pipeline share these types; keeping them apart from the pipeline lets both import them
//! without importing each other.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::auth::parse_basic;
use crate::error::{ApiError, ErrorCode};
use crate::tls::{ClientCert, PeerInfo};

/// Largest JSON request body a PHR endpoint reads.
pub const MAX_JSON_BODY: usize = 64 * 1024;

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
    /// The request path, the audit row's `resource`.
    pub path: String,
    /// The request headers (trace id, facility, Basic, forwarded-for, …).
    pub headers: HeaderMap,
    /// The TLS peer: socket address and verified client certificate.
    pub peer: Option<PeerInfo>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            // The full path: a nested router sees its own part only, and the row must name the resource.
            path: parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.path(), |o| o.path()).to_owned(),
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

    /// A header that is present, valid text and not blank; anything else is `None`.
    pub(super) fn optional(&self, name: &str) -> Option<String> {
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

    /// `(facility, user)` that the Basic header claims, unverified: the actor of a row whose call failed
    /// before or during authentication. The user id is not a secret; the password is never looked at.
    pub fn claimed_user(&self) -> Option<(String, String)> {
        let credentials = parse_basic(self.headers.get(header::AUTHORIZATION)).ok()?;
        let facility = credentials.facility_id.clone().or_else(|| self.optional("x-facility-id")).unwrap_or_default();
        Some((facility, credentials.user_id.clone()))
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
    /// The Basic user-id, or `cert:<subject>` for certificate-only calls.
    pub user_id: String,
    /// The account's display name, for the audit row.
    pub display_name: Option<String>,
    /// The account's role; `None` for certificate-only calls.
    pub role: Option<String>,
    /// The call's `X-Trace-Id`.
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

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes; anything else is a 400/413 `invalidPayload`.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| invalid_json(&e))
}

/// The `invalidPayload` error for a body that does not parse. serde's own message can quote the offending
/// value (a secret key sent as a number, say), and the message reaches the audit row, so only the kind of
/// error and its position are told.
pub fn invalid_json(error: &serde_json::Error) -> ApiError {
    let kind = match error.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Eof => "is incomplete",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "does not have the expected fields and types",
    };
    ApiError::new(
        ErrorCode::InvalidPayload,
        format!("request body {kind} (line {}, column {})", error.line(), error.column()),
    )
}

/// Reads a body of at most `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(ErrorCode::InvalidPayload, format!("request body is larger than {limit} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })
}
