//! The PHR error contract: one JSON shape, one closed list of codes.
//!
//! Real clients (curl scripts, the legacy Java server's users) branch on `type`, so the codes here are the
//! spec's (PHR_API.md §2) and nothing else. An [`ApiError`] also carries what the audit row of the failed call
//! should say, because every failure is audited with `outcome=failed` and its reason. Internal causes are
//! logged by whoever creates an `internal` error and are never sent to the client.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::audit::Action;

/// The closed list of `error.phr.<code>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    AccessKeyNotFound,
    InvalidPayload,
    InvalidParameter,
    PatientNotFound,
    JobNotFound,
    InvalidJobId,
    InvalidState,
    InvalidSignature,
    ForbiddenFacility,
    Unauthenticated,
    MissingTraceId,
    MissingFacilityId,
    ImageTooLarge,
    Throttled,
    LayerKeyMissing,
    SignedUrlExpired,
    SignedUrlUsed,
    InsecureScheme,
    Environment,
    Internal,
}

impl ErrorCode {
    /// The code as it appears after `error.phr.`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessKeyNotFound => "accessKeyNotFound",
            Self::InvalidPayload => "invalidPayload",
            Self::InvalidParameter => "invalidParameter",
            Self::PatientNotFound => "patientNotFound",
            Self::JobNotFound => "jobNotFound",
            Self::InvalidJobId => "invalidJobId",
            Self::InvalidState => "invalidState",
            Self::InvalidSignature => "invalidSignature",
            Self::ForbiddenFacility => "forbiddenFacility",
            Self::Unauthenticated => "unauthenticated",
            Self::MissingTraceId => "missingTraceId",
            Self::MissingFacilityId => "missingFacilityId",
            Self::ImageTooLarge => "imageTooLarge",
            Self::Throttled => "throttled",
            Self::LayerKeyMissing => "layerKeyMissing",
            Self::SignedUrlExpired => "signedUrlExpired",
            Self::SignedUrlUsed => "signedUrlUsed",
            Self::InsecureScheme => "insecureScheme",
            Self::Environment => "environment",
            Self::Internal => "internal",
        }
    }

    /// The status a code answers with unless the caller says otherwise.
    pub fn default_status(self) -> StatusCode {
        match self {
            Self::AccessKeyNotFound | Self::PatientNotFound | Self::JobNotFound => StatusCode::NOT_FOUND,
            Self::InvalidPayload
            | Self::InvalidParameter
            | Self::InvalidJobId
            | Self::MissingTraceId
            | Self::MissingFacilityId
            | Self::InsecureScheme => StatusCode::BAD_REQUEST,
            Self::InvalidState => StatusCode::CONFLICT,
            Self::InvalidSignature | Self::ForbiddenFacility => StatusCode::FORBIDDEN,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::LayerKeyMissing => StatusCode::SERVICE_UNAVAILABLE,
            Self::SignedUrlExpired | Self::SignedUrlUsed => StatusCode::GONE,
            Self::Environment | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failed PHR call: what the client is told, and what the audit row records.
///
/// Boxed so `Result<_, ApiError>` stays one pointer wide on the success path; fields are read and written
/// through `Deref`.
#[derive(Debug)]
pub struct ApiError(Box<ApiErrorParts>);

/// The contents of an [`ApiError`].
#[derive(Debug)]
pub struct ApiErrorParts {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// Human text for the client; never an internal cause.
    pub message: String,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`, policy headers).
    pub headers: HeaderMap,
    /// PHR-07 answers a missing image with an empty 404, as the original did.
    pub empty_body: bool,
    /// Replaces the route's audit action (e.g. `PHR_IMAGE_STREAM_THROTTLED`).
    pub audit_action: Option<Action>,
    /// The patient the failed call was about, for the audit row's `patient_id`.
    pub patient_id: Option<String>,
    /// Endpoint-specific audit details merged into the payload.
    pub details: Map<String, Value>,
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorParts;
    fn deref(&self) -> &ApiErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorParts {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(Box::new(ApiErrorParts {
            status: code.default_status(),
            code,
            message: message.into(),
            headers: HeaderMap::new(),
            empty_body: false,
            audit_action: None,
            patient_id: None,
            details: Map::new(),
        }))
    }

    /// An internal failure: the cause is logged here, the client sees a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "internal server error")
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn with_empty_body(mut self) -> Self {
        self.empty_body = true;
        self
    }

    pub fn with_audit_action(mut self, action: Action) -> Self {
        self.audit_action = Some(action);
        self
    }

    pub fn with_patient(mut self, patient_id: impl Into<String>) -> Self {
        self.patient_id = Some(patient_id.into());
        self
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// `error.phr.<code>`.
    pub fn type_name(&self) -> String {
        format!("error.phr.{}", self.code.as_str())
    }

    /// The response, with `traceId` filled in when the request had one.
    pub fn into_response_with_trace(self, trace_id: Option<&str>) -> Response {
        let type_name = self.type_name();
        let this = *self.0;
        let body = if this.empty_body {
            Body::empty()
        } else {
            let mut json = Map::new();
            json.insert("type".into(), type_name.into());
            json.insert("message".into(), this.message.into());
            if let Some(trace) = trace_id {
                json.insert("traceId".into(), trace.into());
            }
            json.insert("status".into(), this.status.as_u16().into());
            Body::from(Value::Object(json).to_string())
        };
        let mut response = Response::new(body);
        *response.status_mut() = this.status;
        if !this.empty_body {
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response.headers_mut().extend(this.headers);
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal(format_args!("database: {err}"))
    }
}
