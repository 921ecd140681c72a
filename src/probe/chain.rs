//! Records the chain a server presents when its certificate was refused.
//!
//! A refused certificate ends the handshake before rustls hands out the peer chain, yet that chain is what
//! the operator needs ("expired on which date?", "issued by which CA?"). After such a failure the probe
//! opens one more connection whose verifier only records the chain and then aborts the handshake: no
//! request is sent and nothing is trusted on that connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;

use crate::evidence::CertFacts;
use crate::probe::certinfo;

/// A verifier that keeps the presented chain and refuses it, so the handshake always stops there.
#[derive(Debug)]
struct ChainRecorder {
    /// The chain as presented, leaf first.
    captured: Mutex<Vec<CertificateDer<'static>>>,
    /// Signature schemes to offer, from the provider (never used: the handshake stops before).
    algorithms: WebPkiSupportedAlgorithms,
}

/// What the recorder answers once it has the chain; never shown to the operator.
const RECORDED: &str = "server chain recorded for the evidence";

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        *self.captured.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = chain;
        Err(rustls::Error::General(RECORDED.to_owned()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(RECORDED.to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(RECORDED.to_owned()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Connects to `addr` once more and returns the chain the server presents for `host` (empty when even
/// that fails, e.g. the server is gone or does not speak TLS).
pub async fn presented_chain(host: &str, addr: SocketAddr, deadline: tokio::time::Instant) -> Vec<CertFacts> {
    let provider = crate::probe::identity::crypto_provider();
    let recorder = Arc::new(ChainRecorder {
        captured: Mutex::new(Vec::new()),
        algorithms: provider.signature_verification_algorithms,
    });
    let Ok(builder) = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
    else {
        return Vec::new();
    };
    let config = builder.dangerous().with_custom_certificate_verifier(recorder.clone()).with_no_client_auth();
    let Ok(server_name) = ServerName::try_from(host.to_owned()) else {
        return Vec::new();
    };
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await
    };
    // The handshake is expected to fail: the recorder refuses every chain once it has seen it.
    let _ = timeout_at(deadline, attempt).await;
    let captured = recorder.captured.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    captured.iter().filter_map(|der| certinfo::cert_facts(der).ok()).collect()
}
