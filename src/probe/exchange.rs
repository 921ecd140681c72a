//! One probe's network exchange: DNS, TCP, TLS, HTTP/1.1 request, streamed response body.
//!
//! Fills the [`ProbeRecord`] as each phase completes, so a failure in a later phase still leaves the
//! earlier facts (timings, TLS parameters, server chain, status) in the evidence. Every failure comes back
//! as an [`Outcome`]; nothing here returns an error or panics on network input.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use http::header::CONTENT_TYPE;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use super::body::BodySink;
use super::chain;
use super::checks::BodyChecks;
use super::connect::{self, elapsed_ms};
use super::proxy::ProxyRoute;
use super::request::{self, RequestBody};
use super::wire::{SharedWireLog, TeeIo};
use super::{BasicCredentials, ProbeSpec, classify, retry};
use crate::evidence::{Outcome, ProbeRecord};
use crate::redact::Redactor;

/// Everything one exchange needs, borrowed from the client.
pub struct Exchange<'a> {
    /// The probe.
    pub spec: &'a ProbeSpec,
    /// Trust and client identity.
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Basic credentials for the Authorization header.
    pub basic: Option<&'a BasicCredentials>,
    /// Masks secrets in recorded headers and stored bodies.
    pub redactor: &'a Redactor,
    /// Keep the response body (bounded) so the caller can read JSON values from it (captures, polls).
    pub keep_json: bool,
    /// The proxy to tunnel through, or `None` to connect directly.
    pub proxy: Option<&'a ProxyRoute>,
}

/// How an exchange ended: its outcome, the kept JSON, and whether another attempt may help.
pub struct Ended {
    /// The outcome ([`Outcome::Http`] for a complete response).
    pub outcome: Outcome,
    /// The body as JSON, when asked for.
    pub json: KeptJson,
    /// A connection-level failure (see [`super::retry`]) another attempt may cure.
    pub transient: bool,
}

/// The response body as JSON when the exchange was asked to keep it; the error says why there is none.
pub type KeptJson = Result<serde_json::Value, String>;

/// A response whose head has arrived and whose body is still on the wire.
pub(crate) struct PendingResponse {
    /// Status and headers.
    pub head: http::response::Parts,
    /// The body stream.
    pub body: hyper::body::Incoming,
    /// Keeps the connection task alive until the body is read, and tells why the body broke off.
    pub connection: Connection,
}

/// The spawned hyper connection task of one exchange: aborted when the exchange is done, whatever way it
/// ends, and joined when a request or body fails, because only the task holds the real cause.
///
/// With TLS 1.3 the server judges the client certificate after the client considers the handshake done.
/// Its alert then races the request: when the task reads it first, the task ends with the rustls error
/// and `send_request` only learns "operation was canceled: connection was not ready" (or "connection
/// closed"). Classifying the task's error instead makes the outcome the same whichever side wins.
pub(crate) struct Connection(JoinHandle<Result<(), hyper::Error>>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Connection {
    /// The outcome of a request or body that failed with `error`: a TLS verdict found in it or in the
    /// connection task's own error wins over the generic "canceled" or "closed" message.
    async fn explain(&mut self, error: &hyper::Error, deadline: tokio::time::Instant) -> Outcome {
        let reported = classify::http_error(error);
        if !matches!(reported, Outcome::ProtocolError { .. }) {
            return reported;
        }
        // The request failed, so the task is ending (hyper closes a connection after any failure); the
        // deadline only guards against a task that does not.
        match timeout_at(deadline, &mut self.0).await {
            Ok(Ok(Err(cause))) => match classify::http_error(&cause) {
                verdict @ (Outcome::TlsFailure { .. } | Outcome::ClientCertRejected { .. }) => verdict,
                _ if error.is_canceled() => classify::http_error(&cause),
                _ => reported,
            },
            Ok(Ok(Ok(()))) if error.is_canceled() => Outcome::ProtocolError {
                message: "the server closed the connection before the request was sent".to_owned(),
            },
            _ => reported,
        }
    }
}

/// Sends `request` on a fresh HTTP/1.1 connection over `stream` and waits for the response head. Every
/// failure comes back as an [`Outcome`], classified from the connection's real cause (see [`Connection`]).
pub(crate) async fn send_over(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: http::Request<RequestBody>,
    log: &SharedWireLog,
    deadline: tokio::time::Instant,
) -> Result<PendingResponse, Outcome> {
    let io = TokioIo::new(TeeIo::new(stream, log.clone()));
    let handshake = hyper::client::conn::http1::Builder::new().title_case_headers(true).handshake(io);
    let (mut sender, connection) = match timeout_at(deadline, handshake).await {
        Err(_) => return Err(Outcome::Timeout { during: "response".to_owned() }),
        Ok(Err(e)) => return Err(classify::http_error(&e)),
        Ok(Ok(pair)) => pair,
    };
    let mut connection = Connection(tokio::spawn(connection));
    let response = match timeout_at(deadline, sender.send_request(request)).await {
        Err(_) => return Err(Outcome::Timeout { during: "response".to_owned() }),
        Ok(Err(e)) => return Err(connection.explain(&e, deadline).await),
        Ok(Ok(response)) => response,
    };
    let (head, body) = response.into_parts();
    Ok(PendingResponse { head, body, connection })
}

impl Exchange<'_> {
    /// Runs the exchange; the outcome is [`Outcome::Http`] when a full response was received. The JSON is
    /// the unredacted body (only with `keep_json`): it must never be written anywhere as is.
    pub async fn run(&self, record: &mut ProbeRecord, dump_dir: &Path, log: &SharedWireLog, started: Instant) -> Ended {
        let mut tls_io = false;
        match self.try_run(record, dump_dir, log, started, &mut tls_io).await {
            Ok(json) => Ended { outcome: Outcome::Http, json, transient: false },
            Err(outcome) => {
                let why = format!("no complete response ({})", outcome.describe());
                let sent = log.lock().sent_total > 0;
                let transient = retry::is_transient(&outcome, tls_io, sent, &self.spec.method);
                Ended { outcome, json: Err(why), transient }
            }
        }
    }

    async fn try_run(
        &self,
        record: &mut ProbeRecord,
        dump_dir: &Path,
        log: &SharedWireLog,
        started: Instant,
        tls_io: &mut bool,
    ) -> Result<KeptJson, Outcome> {
        let spec = self.spec;
        let deadline = connect::deadline(started, spec.timeout);
        let endpoint = request::endpoint(&spec.url)?;
        let (request, body_length) = request::build(spec, &endpoint, self.basic).await?;
        record.request_body_bytes = body_length;
        record.request_headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes());
                (title_case(name.as_str()), self.redactor.header(name.as_str(), &value))
            })
            .collect();

        let host_port = (endpoint.host.as_str(), endpoint.port);
        let tcp = connect::open(host_port, self.proxy, deadline, log, &mut record.timings, &mut record.proxy).await?;
        let peer = tcp.peer_addr().ok().filter(|_| self.proxy.is_none());
        let phase = Instant::now();
        let handshake = connect::tls_handshake_io(Arc::clone(self.tls), &endpoint.host, tcp, deadline).await;
        record.timings.tls_ms = elapsed_ms(phase);
        let handshake = match (handshake, peer) {
            (Ok(handshake), _) => handshake,
            // The chain is fetched again only directly: through a proxy the peer is the proxy.
            (Err((outcome @ (Outcome::TlsFailure { .. } | Outcome::ClientCertRejected { .. }), false)), Some(peer)) => {
                return Err(self.record_refused_chain(outcome, &endpoint.host, peer, deadline, record, log).await);
            }
            (Err((outcome, io)), _) => {
                *tls_io = io;
                return Err(outcome);
            }
        };
        let facts = &handshake.facts;
        log.info(format!(
            "TLS connection using {} / {}, ALPN: {}",
            facts.version,
            facts.cipher_suite,
            facts.alpn.as_deref().unwrap_or("none")
        ));
        for (depth, cert) in handshake.chain.iter().enumerate() {
            log.info(format!(
                "Server certificate [{depth}]: subject: {}; issuer: {}; expire date: {}; sha256: {}",
                cert.subject, cert.issuer, cert.not_after, cert.sha256
            ));
        }
        record.tls = Some(handshake.facts);
        record.server_chain = handshake.chain;

        let response = self.send(request, handshake.stream, log, deadline, record).await?;
        self.receive(response, record, dump_dir, deadline).await
    }

    /// After a failed handshake, records the chain the server presents (one more handshake that stops at
    /// the certificate) and names the issuer in an unknown-CA reason.
    async fn record_refused_chain(
        &self,
        outcome: Outcome,
        host: &str,
        peer: std::net::SocketAddr,
        deadline: tokio::time::Instant,
        record: &mut ProbeRecord,
        log: &SharedWireLog,
    ) -> Outcome {
        let presented = chain::presented_chain(host, peer, deadline).await;
        for (depth, cert) in presented.iter().enumerate() {
            log.info(format!(
                "Server presented [{depth}]: subject: {}; issuer: {}; valid {} to {}; sha256: {}",
                cert.subject, cert.issuer, cert.not_before, cert.not_after, cert.sha256
            ));
        }
        let outcome = match (outcome, presented.last()) {
            (Outcome::TlsFailure { reason }, Some(top)) if reason.starts_with("unknown CA") => {
                Outcome::TlsFailure { reason: format!("{reason} (chain ends at issuer {})", top.issuer) }
            }
            (outcome, _) => outcome,
        };
        record.server_chain = presented;
        outcome
    }

    /// Sends the request on a fresh HTTP/1.1 connection, waits for the response head and records it.
    async fn send(
        &self,
        request: http::Request<RequestBody>,
        stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        log: &SharedWireLog,
        deadline: tokio::time::Instant,
        record: &mut ProbeRecord,
    ) -> Result<PendingResponse, Outcome> {
        let response = send_over(stream, request, log, deadline).await?;
        {
            let log = log.lock();
            if let (Some(sent), Some(received)) = (log.first_sent, log.first_received) {
                record.timings.ttfb_ms = received.saturating_duration_since(sent).as_secs_f64() * 1000.0;
            }
        }
        record.http_status = Some(response.head.status.as_u16());
        // Names as received (HTTP/1.1 names are case-insensitive; hyper hands them over in lower case).
        record.response_headers = response
            .head
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes());
                (name.as_str().to_owned(), self.redactor.header(name.as_str(), &value))
            })
            .collect();
        Ok(response)
    }

    /// Streams the body to disk and through the body checks.
    async fn receive(
        &self,
        response: PendingResponse,
        record: &mut ProbeRecord,
        dump_dir: &Path,
        deadline: tokio::time::Instant,
    ) -> Result<KeptJson, Outcome> {
        let PendingResponse { head, mut body, mut connection } = response;
        let content_type = head.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let mut sink = BodySink::new(dump_dir, content_type, self.redactor);
        let mut checks = BodyChecks::new(&self.spec.body_checks);
        if self.keep_json {
            checks = checks.keeping_json();
        }
        let streamed = loop {
            let frame = match timeout_at(deadline, body.frame()).await {
                Err(_) => break Err(Outcome::Timeout { during: "body".to_owned() }),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(connection.explain(&e, deadline).await),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                checks.update(&data);
                if let Err(e) = sink.write(&data).await {
                    break Err(Outcome::LocalError { message: format!("cannot store the response body: {e}") });
                }
            }
        };
        let stored = sink
            .finish()
            .await
            .map_err(|e| Outcome::LocalError { message: format!("cannot store the response body: {e}") })?;
        record.response_body_bytes = stored.bytes;
        record.response_body_sha256 = Some(stored.sha256);
        record.response_body_file = stored.file.file_name().map(|name| name.to_string_lossy().into_owned());
        streamed?;
        record.check_failures.extend(checks.failures());
        Ok(if self.keep_json { checks.json() } else { Err("the body was not kept".to_owned()) })
    }
}

/// `x-trace-id` -> `X-Trace-Id`: request header names as hyper writes them with `title_case_headers`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
