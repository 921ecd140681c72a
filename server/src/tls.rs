//! The PHR listener's TLS: rustls with a required client certificate, and what a connection's peer is.
//!
//! axum's `serve` hides the TLS session, but handlers and the audit trail need the verified client
//! certificate (its subject for the record, its fingerprint to key the image burst budget). So the accept
//! loop (`listener`) does the TLS handshake with tokio-rustls using [`server_config`], and each request of the
//! connection gets a [`PeerInfo`] extension before the router sees it. A client without a certificate, with
//! one from another CA, or with an expired one fails the handshake itself and never reaches HTTP.
//!
//! Revocation (`PHR_TLS_CLIENT_CRL`): the CRLs are read by [`crl`] and kept current by [`live`]. The verifier
//! checks the client's own certificate (end entity) against the CRL of its issuer, and a certificate whose
//! issuer has no CRL in the list fails (unknown status is never "not revoked"): a clinic's client CAs issue
//! the client certificates directly, and a CA without a CRL is a configuration mistake that must show, not a
//! silent hole. A CRL past its `nextUpdate` is still enforced rather than refused: refusing would lock every
//! clinic user out the day an operator is late re-signing the CRL, while what a stale CRL misses is only
//! what was revoked after it was issued; the lapse is logged and `phr_tls_crl_next_update_timestamp_seconds`
//! lets monitoring alert before it happens.

pub mod crl;
pub mod live;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateRevocationListDer;

use crate::config::TlsMaterial;
pub use live::{LiveTls, Reloaded};

/// The verified client certificate of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 subject, e.g. `CN=ops-client, O=…`.
    pub subject: String,
    /// Lower-case hex SHA-256 of the certificate DER.
    pub sha256: String,
}

/// Who is on the other end of a connection; inserted into every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub client_cert: Option<Arc<ClientCert>>,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("PHR_TLS_CLIENT_CA: {0}")]
    ClientCa(String),
    #[error("PHR_TLS_CERT / PHR_TLS_KEY: {0}")]
    ServerIdentity(String),
    #[error("PHR_TLS_CLIENT_CRL: {0}")]
    ClientCrl(crl::CrlError),
}

/// The rustls server configuration: aws-lc-rs, TLS 1.2 and 1.3, client certificate required, ALPN h2/http1.1,
/// and with `crls` the revocation policy described above.
pub fn build_server_config(
    material: &TlsMaterial,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in &material.client_ca {
        roots.add(ca.clone()).map_err(|e| TlsSetupError::ClientCa(e.to_string()))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !crls.is_empty() {
        // Unknown status stays refused and expired CRLs stay enforced: rustls' defaults, chosen on purpose.
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = builder.build().map_err(|e| TlsSetupError::ClientCa(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::ServerIdentity(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.cert_chain.clone(), material.key.clone_key())
        .map_err(|e| TlsSetupError::ServerIdentity(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Called when hyper refused an HTTP/1.1 request head itself (a malformed header, an oversize head): hyper
/// has already answered 400 or 431 without a body and without calling the router, so this is the only
/// place the refusal can still be audited. Gets the peer, whether the head was too large, and hyper's reason.
pub type OnRefusedHead = Arc<dyn Fn(PeerInfo, bool, String) + Send + Sync>;

/// Facts about a DER certificate for [`ClientCert`].
pub fn describe_certificate(der: &[u8]) -> ClientCert {
    let sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der));
    let subject = x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_else(|_| "<unparseable subject>".to_owned());
    ClientCert { subject, sha256 }
}
