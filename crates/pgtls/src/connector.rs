//! tokio-postgres' TLS hooks (`MakeTlsConnect`, `TlsConnect`, `TlsStream`) over tokio-rustls.
//!
//! The maintained rustls connectors for tokio-postgres hash the certificate for channel binding with `ring`,
//! which this workspace keeps out of its dependency tree (everything uses the aws-lc-rs provider). This one
//! uses aws-lc-rs for both the handshake and the `tls-server-end-point` hash, so SCRAM-SHA-256-PLUS and
//! `channel_binding=require` work, and builds the rustls configuration from [`TlsSettings`] with the
//! certificate checks libpq's modes ask for.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::PgTlsError;
use crate::settings::{RootCerts, TlsSettings, Verification};

/// Makes one [`RustlsConnect`] per host tokio-postgres connects to; cheap to clone.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    /// The rustls configuration every connection of this connector uses.
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustlsConnect").finish_non_exhaustive()
    }
}

impl MakeRustlsConnect {
    /// A connector over a rustls configuration of your own.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// The connector `settings` describe: aws-lc-rs, the CA certificates they name (read now), and the
    /// checks their mode asks for.
    pub fn from_settings(settings: &TlsSettings) -> Result<Self, PgTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgTlsError::Tls(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match settings.verification {
            Verification::None => Arc::new(NoVerification { provider }),
            Verification::Chain | Verification::Full => {
                let roots = load_roots(&settings.roots)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| PgTlsError::Tls(e.to_string()))?;
                if settings.verification == Verification::Full { webpki } else { Arc::new(ChainOnly { webpki }) }
            }
        };
        let mut config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        // What libpq 17 sends; needed for sslnegotiation=direct, ignored by older servers.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        config.enable_sni = settings.sni;
        Ok(Self::new(Arc::new(config)))
    }
}

/// Reads the CA certificates `roots` names.
fn load_roots(roots: &RootCerts) -> Result<RootCertStore, PgTlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::None => {}
        RootCerts::File(path) => {
            let problem = |problem: String| PgTlsError::RootCert { path: path.clone(), problem };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| problem(format!("cannot read it: {e}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| problem(format!("not a PEM certificate file: {e}")))?;
            if certs.is_empty() {
                return Err(problem("contains no `BEGIN CERTIFICATE` block".to_owned()));
            }
            for cert in certs {
                store.add(cert).map_err(|e| problem(format!("not a usable CA certificate: {e}")))?;
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(PgTlsError::RootCert {
                    path: "system".into(),
                    problem: format!(
                        "the operating system's trust store has no usable CA certificate ({} errors while \
                         loading it); install ca-certificates or give sslrootcert a PEM file",
                        found.errors.len()
                    ),
                });
            }
        }
    }
    Ok(store)
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls_pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        let name = ServerName::try_from(domain)?.to_owned();
        Ok(RustlsConnect { config: self.config.clone(), name })
    }
}

/// The TLS handshake with one host.
pub struct RustlsConnect {
    /// Shared with the [`MakeRustlsConnect`] that made this.
    config: Arc<ClientConfig>,
    /// The host connected to, for SNI and for `verify-full`'s host name check.
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(TlsStream(stream))
        })
    }
}

/// A TLS connection to the server, with the channel binding data SCRAM-SHA-256-PLUS needs.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, connection) = self.0.get_ref();
        match connection.peer_certificates().and_then(|chain| chain.first()) {
            Some(leaf) => match tls_server_end_point(leaf) {
                Some(hash) => ChannelBinding::tls_server_end_point(hash),
                None => ChannelBinding::none(),
            },
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929 `tls-server-end-point`: the server certificate hashed with its signature's hash function, SHA-256
/// when that is MD5 or SHA-1. `None` for signatures without a hash of their own (Ed25519), as PostgreSQL
/// itself cannot bind those either.
fn tls_server_end_point(leaf: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use x509_parser::oid_registry as oid;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let algorithm = &cert.signature_algorithm.algorithm;
    let digest = if *algorithm == oid::OID_PKCS1_SHA384WITHRSA || *algorithm == oid::OID_SIG_ECDSA_WITH_SHA384 {
        &aws_lc_rs::digest::SHA384
    } else if *algorithm == oid::OID_PKCS1_SHA512WITHRSA || *algorithm == oid::OID_SIG_ECDSA_WITH_SHA512 {
        &aws_lc_rs::digest::SHA512
    } else if *algorithm == oid::OID_SIG_ED25519 || *algorithm == oid::OID_SIG_ED448 {
        return None;
    } else {
        &aws_lc_rs::digest::SHA256
    };
    Some(aws_lc_rs::digest::digest(digest, leaf.as_ref()).as_ref().to_vec())
}

/// `require` without root certificates: encryption only. Handshake signatures are still checked, so the
/// session is bound to the key of the certificate the server sent, whoever it is.
#[derive(Debug)]
struct NoVerification {
    /// Its signature algorithms check the handshake.
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check, except that a certificate for another host name is accepted.
#[derive(Debug)]
struct ChainOnly {
    /// Does the chain, validity and usage checks; its name check is the only verdict overridden.
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name last, after the chain, validity and key usage have passed.
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_root_certificate_file_is_named() {
        let dir = std::env::temp_dir().join(format!("pgtls-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = load_roots(&RootCerts::File(missing.clone())).unwrap_err();
        assert!(e.to_string().starts_with(&format!("sslrootcert={}: cannot read it", missing.display())), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = load_roots(&RootCerts::File(empty)).unwrap_err();
        assert!(e.to_string().contains("contains no `BEGIN CERTIFICATE` block"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
