//! Builds the HTTP request of a probe the way curl would send it.
//!
//! hyper's connection-level client adds nothing on its own, so the `Host`, `User-Agent`, `Accept`,
//! `Authorization: Basic` and `Content-Length` headers are set here, template headers winning over the
//! defaults. A body file is streamed in chunks, never read whole: PHR image uploads can be large.

use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::AsyncReadExt;

use super::{BasicCredentials, ProbeBody, ProbeSpec};
use crate::evidence::Outcome;

/// The body type every probe request uses.
pub type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Read size for streamed request bodies.
const FILE_CHUNK: usize = 64 * 1024;

/// Where a probe connects, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal without brackets, for DNS and SNI.
    pub host: String,
    /// Port, 443 when the URL has none.
    pub port: u16,
    /// The `Host` header value (authority as written, without user info).
    pub authority: String,
    /// Origin-form request target: path and query.
    pub target: String,
}

/// Parses an absolute `https://` URL.
pub fn endpoint(url: &str) -> Result<Endpoint, Outcome> {
    let bad = |why: &str| Outcome::LocalError { message: format!("URL {url:?}: {why}") };
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("probes are HTTPS only; the URL must start with https://"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let host_and_port = authority.as_str().rsplit('@').next().unwrap_or(authority.as_str()).to_owned();
    let target = uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let target = if target.is_empty() { "/".to_owned() } else { target };
    Ok(Endpoint { host, port: authority.port_u16().unwrap_or(443), authority: host_and_port, target })
}

/// Builds the request with its headers and body; returns it with the body length.
pub async fn build(
    spec: &ProbeSpec,
    endpoint: &Endpoint,
    basic: Option<&BasicCredentials>,
) -> Result<(Request<RequestBody>, u64), Outcome> {
    let mut builder = Request::builder().method(spec.method.clone()).uri(endpoint.target.as_str());
    let headers = builder.headers_mut().ok_or_else(|| Outcome::LocalError {
        message: format!("{} {}: invalid method or request target", spec.method, endpoint.target),
    })?;
    let mut defaults = vec![
        (HOST, endpoint.authority.clone()),
        (USER_AGENT, concat!("connrun/", env!("CARGO_PKG_VERSION")).to_owned()),
        (ACCEPT, "*/*".to_owned()),
    ];
    if let Some(basic) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", basic.user, basic.password));
        defaults.push((AUTHORIZATION, format!("Basic {token}")));
    }
    // curl's order: Host, User-Agent, Accept, Authorization, then the template's headers; a template header
    // with a default's name replaces the default in place.
    for (name, value) in defaults {
        headers.insert(name.clone(), header_value(&name, value)?);
    }
    let mut replaced = Vec::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|e| Outcome::LocalError { message: format!("header name {name:?}: {e}") })?;
        let value = header_value(&name, value.clone())?;
        if replaced.contains(&name) {
            headers.append(name, value);
        } else {
            headers.insert(name.clone(), value);
            replaced.push(name);
        }
    }
    let (body, length) = body(&spec.body, &spec.method).await?;
    if let Some(length) = length
        && !headers.contains_key(CONTENT_LENGTH)
    {
        headers.insert(CONTENT_LENGTH, header_value(&CONTENT_LENGTH, length.to_string())?);
    }
    let request = builder.body(body).map_err(|e| Outcome::LocalError { message: format!("request: {e}") })?;
    Ok((request, length.unwrap_or(0)))
}

fn header_value(name: &HeaderName, value: String) -> Result<HeaderValue, Outcome> {
    HeaderValue::try_from(value)
        .map_err(|e| Outcome::LocalError { message: format!("header {name}: invalid value: {e}") })
}

/// The body and its Content-Length (`None`: send no Content-Length, as curl does for a bare GET).
async fn body(body: &ProbeBody, method: &http::Method) -> Result<(RequestBody, Option<u64>), Outcome> {
    match body {
        ProbeBody::Empty => {
            let expects_body = matches!(*method, http::Method::POST | http::Method::PUT | http::Method::PATCH);
            Ok((Empty::new().map_err(|never| match never {}).boxed_unsync(), expects_body.then_some(0)))
        }
        ProbeBody::Inline(bytes) => {
            let length = bytes.len() as u64;
            Ok((Full::new(Bytes::from(bytes.clone())).map_err(|never| match never {}).boxed_unsync(), Some(length)))
        }
        ProbeBody::File(path) => file_body(path).await,
    }
}

async fn file_body(path: &Path) -> Result<(RequestBody, Option<u64>), Outcome> {
    let unreadable =
        |e: std::io::Error| Outcome::LocalError { message: format!("request body file {}: {e}", path.display()) };
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let length = file.metadata().await.map_err(unreadable)?.len();
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; FILE_CHUNK];
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.truncate(read);
        Ok(Some((Frame::data(Bytes::from(buffer)), file)))
    });
    Ok((StreamBody::new(chunks).boxed_unsync(), Some(length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_splits_host_port_and_target() {
        let e = endpoint("https://localhost:8443/20/adm/phr/identityToken?x=1").unwrap();

        assert_eq!(e.host, "localhost");
        assert_eq!(e.port, 8443);
        assert_eq!(e.authority, "localhost:8443");
        assert_eq!(e.target, "/20/adm/phr/identityToken?x=1");
    }

    #[test]
    fn endpoint_defaults_port_and_path_and_unbrackets_ipv6() {
        let e = endpoint("https://[::1]").unwrap();

        assert_eq!((e.host.as_str(), e.port, e.target.as_str()), ("::1", 443, "/"));
        assert_eq!(e.authority, "[::1]");
    }

    #[test]
    fn endpoint_refuses_plain_http() {
        assert!(matches!(endpoint("http://localhost/"), Err(Outcome::LocalError { .. })));
    }
}
