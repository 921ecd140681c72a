//! The guard around every route: each answer on an audited path (the PHR API and server info) is the
//! spec's JSON error and has its `failed` row, whoever produced it (PHR_API.md §5).
//!
//! Endpoints answer through the pipeline, which writes their rows and marks the response
//! [`Audited`]. Other answers come from the router (404 for an unknown sub-path, 405 for a method a route
//! does not serve), from an extractor (a path parameter that is not valid percent-encoded UTF-8; `Path` is
//! the only extractor our handlers use that can refuse), or from a limit. The guard answers the limits
//! itself (request headers over [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`]: 431) and turns every unmarked
//! response into a `PHR_REQUEST_REJECTED` row with the reason plus the JSON body, keeping its status and
//! `Allow` header. HEAD is refused before any route runs (see [`head_refused`]). It runs inside the metrics
//! layer, so those answers are counted too.
//!
//! Requests that hyper refuses before any service runs never reach it; `tls.rs` therefore sets hyper's
//! header limits above these, so only heads beyond hyper's limits, and heads that are not HTTP at all,
//! are answered without a row (see `tls.rs`).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::pipeline::{self, Audited};
use super::request::RequestMeta;
use crate::audit::Action;
use crate::error::{ApiError, ErrorCode};
use crate::paths;
use crate::state::AppState;
use crate::tls::PeerInfo;

/// Request-header bytes (names, values and 4 bytes of framing each) answered with 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Request-header fields answered with 431 (hyper's own HTTP/1.1 limit, applied to HTTP/2 as well).
pub const MAX_HEADERS: usize = 100;

/// The middleware: limits first, then the route; an answer the pipeline did not audit is audited here.
pub async fn enforce(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let audited_path = is_audited_path(request.uri().path());
    if let Some(error) = header_limit(request.headers()) {
        if !audited_path {
            return error.into_response_with_trace(None);
        }
        return pipeline::reject(&app, meta_of(&request), Action::RequestRejected, error).await;
    }
    if !audited_path {
        return next.run(request).await;
    }
    let meta = meta_of(&request);
    if request.method() == Method::HEAD {
        // The guard wraps each route's handlers, after the method was dispatched (HEAD to the GET handler):
        // it must not run at all.
        let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
        return pipeline::reject(&app, meta, Action::RequestRejected, head_refused(route.as_deref())).await;
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.extensions().get::<Audited>().is_some() {
        return response;
    }
    pipeline::reject(&app, meta, Action::RequestRejected, unanswered(&method, &response)).await
}

/// Audits an HTTP/1.1 request head hyper refused before any route (see `tls::OnRefusedHead`): hyper has
/// answered already, so only the row is written, from a task of its own. The path and headers were never
/// parsed, so the row has neither; it names the peer and hyper's reason.
pub fn audit_refused_head(app: &AppState, peer: PeerInfo, too_large: bool, reason: String) {
    let status = if too_large { StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE } else { StatusCode::BAD_REQUEST };
    let error = ApiError::new(
        ErrorCode::InvalidParameter,
        format!("the HTTP layer refused the request head before any route ({reason}); it answered without a body"),
    )
    .with_status(status)
    .with_detail("rejectedBy", "http");
    let meta = RequestMeta { path: String::new(), headers: HeaderMap::new(), peer: Some(peer) };
    let app = app.clone();
    tokio::spawn(async move {
        let _ = pipeline::reject(&app, meta, Action::RequestRejected, error).await;
    });
}

/// The PHR API and server info: the paths whose every answer is audited.
fn is_audited_path(path: &str) -> bool {
    [paths::PHR_BASE, paths::SERVER_INFO_BASE]
        .iter()
        .any(|base| path.strip_prefix(base).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// What the pipeline needs of a request it did not route (the same facts the handlers extract).
fn meta_of(request: &Request) -> RequestMeta {
    RequestMeta {
        path: request.uri().path().to_owned(),
        headers: request.headers().clone(),
        peer: request.extensions().get::<PeerInfo>().cloned(),
    }
}

/// A 431 when the request's headers exceed [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`].
fn header_limit(headers: &HeaderMap) -> Option<ApiError> {
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    let count = headers.len();
    (bytes > MAX_HEADER_BYTES || count > MAX_HEADERS).then(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("request headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"),
        )
        .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        .with_detail("rejectedBy", "limits")
        .with_detail("headerBytes", bytes)
        .with_detail("headerCount", count)
    })
}

/// HEAD is not served on audited paths. axum would run the GET handler and drop the body, so a HEAD would
/// spend a signed URL, charge the image burst budget, mint a download URL nobody sees, and leave a success
/// row for data that never left. No PHR client needs it: on a route (HEAD reaches only routes serving GET)
/// it is a 405 naming what the route serves, elsewhere the router's 404.
fn head_refused(route: Option<&str>) -> ApiError {
    let Some(route) = route else {
        return ApiError::new(ErrorCode::InvalidParameter, "no PHR resource at this path")
            .with_status(StatusCode::NOT_FOUND)
            .with_detail("rejectedBy", "router")
            .with_detail("method", "HEAD");
    };
    let allow = if route.ends_with(paths::EXPORT_STATUS) { "GET, DELETE" } else { "GET" };
    ApiError::new(ErrorCode::InvalidParameter, "HEAD is not served on the PHR API; use GET")
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
        .with_detail("rejectedBy", "router")
        .with_detail("method", "HEAD")
}

/// The JSON error for an answer no endpoint gave, with the same status (and `Allow`, for a 405).
fn unanswered(method: &Method, response: &Response) -> ApiError {
    let status = response.status();
    let (code, message, rejected_by) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::InvalidParameter, "no PHR resource at this path".to_owned(), "router"),
        StatusCode::METHOD_NOT_ALLOWED => {
            (ErrorCode::InvalidParameter, format!("method {method} is not allowed on this resource"), "router")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            (ErrorCode::InvalidPayload, "the request body is too large".to_owned(), "limits")
        }
        StatusCode::BAD_REQUEST => (
            ErrorCode::InvalidParameter,
            "a path parameter could not be decoded: it must be valid percent-encoded UTF-8".to_owned(),
            "extractor",
        ),
        other if other.is_client_error() => (
            ErrorCode::InvalidParameter,
            format!("the request was refused: {}", other.canonical_reason().unwrap_or("client error")),
            "extractor",
        ),
        _ => (ErrorCode::Internal, "internal server error".to_owned(), "server"),
    };
    let mut error = ApiError::new(code, message)
        .with_status(status)
        .with_detail("rejectedBy", rejected_by)
        .with_detail("method", method.as_str());
    if let Some(allow) = response.headers().get(header::ALLOW) {
        error = error.with_header(header::ALLOW, allow.clone());
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_paths_are_the_phr_api_and_server_info_only() {
        assert!(is_audited_path("/openDolphin/resources/20/adm/phr/allergy/P1"));
        assert!(is_audited_path("/openDolphin/resources/20/adm/phr"));
        assert!(is_audited_path("/openDolphin/resources/serverinfo/jamri"));
        assert!(!is_audited_path("/openDolphin/resources/20/adm/phrX/allergy"));
        assert!(!is_audited_path("/"));
        assert!(!is_audited_path("/healthz"));
    }

    #[test]
    fn header_limits_count_bytes_and_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("x-trace-id", "t".repeat(MAX_HEADER_BYTES).parse().unwrap());
        assert_eq!(header_limit(&headers).unwrap().status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let mut headers = HeaderMap::new();
        for i in 0..=MAX_HEADERS {
            headers.insert(axum::http::HeaderName::try_from(format!("x-h{i}")).unwrap(), "v".parse().unwrap());
        }
        assert!(header_limit(&headers).is_some());
        headers.remove("x-h0");
        assert!(header_limit(&headers).is_none());
    }
}
