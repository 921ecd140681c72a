//! Client identity and trust for probes, as one rustls client configuration.
//!
//! Operators receive their client certificate as a password-protected PKCS#12 file (modern AES/PBES2 ones
//! from OpenSSL 3 and legacy 3DES ones from older tooling) or as PEM certificate + key, and trust either a
//! CA bundle or the system roots. The seed logs show days lost to "PKCS#12 error" with no detail, so every
//! error here names the file and says what is wrong with it: unreadable, wrong password, no private key,
//! key does not match the certificate, no certificates in the bundle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the client certificate and key come from.
#[derive(Clone)]
pub enum ClientIdentitySource {
    /// A password-protected `.p12` / `.pfx` file (key plus chain).
    Pkcs12 {
        /// The `.p12` file.
        path: PathBuf,
        /// Its password (a secret: never printed, see the Debug impl).
        password: String,
        /// Where the password was read from (e.g. `environment variable CONNRUN_P12_PASSWORD (targets…)`),
        /// so a password that does not open the file says which to check; `None` when there is no name.
        password_from: Option<String>,
    },
    /// A PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    Pem {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

impl std::fmt::Debug for ClientIdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pkcs12 { path, .. } => f.debug_struct("Pkcs12").field("path", path).finish_non_exhaustive(),
            Self::Pem { cert, key } => f.debug_struct("Pem").field("cert", cert).field("key", key).finish(),
        }
    }
}

/// Which certificate authorities the probe trusts for the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// A PEM file of CA certificates.
    CaBundle(PathBuf),
    /// The operating system's trust store.
    SystemRoots,
}

/// Why the TLS configuration could not be built; every variant names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file was read but its content is unusable.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, in an operator's words.
        problem: String,
    },
    /// The operating system's trust store yielded no usable certificate.
    #[error("system trust store: {0}")]
    SystemRoots(String),
    /// rustls refused the configuration itself (should not happen with the built-in provider).
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl IdentityError {
    fn invalid(path: &Path, problem: impl Into<String>) -> Self {
        Self::Invalid { path: path.to_owned(), problem: problem.into() }
    }
}

/// A decoded client identity: chain (leaf first) and private key.
#[derive(Debug)]
pub struct ClientIdentity {
    /// Leaf first, then any intermediates/CA the file carried; sent to the server as is.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key matching the leaf.
    pub key: PrivateKeyDer<'static>,
}

/// The crypto provider every harness TLS connection uses (aws-lc-rs, never ring).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the rustls client configuration (aws-lc-rs, TLS 1.2/1.3, ALPN http/1.1) for a target.
pub fn client_tls_config(
    trust: &TrustSource,
    identity: Option<&ClientIdentitySource>,
) -> Result<rustls::ClientConfig, IdentityError> {
    let roots = load_trust(trust)?;
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(source) => {
            let ClientIdentity { chain, key } = load_identity(source)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                let problem = match e {
                    rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                        "the private key does not match the certificate".to_owned()
                    }
                    other => format!("unusable client certificate or key: {other}"),
                };
                IdentityError::invalid(identity_path(source), problem)
            })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every probe is a full handshake, like each separate curl command of the ops log: the server verifies
    // the client certificate each time, and each probe records the chain it was really sent. A resumed
    // session would skip both after the first probe.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Decodes a client identity from PKCS#12 or PEM files.
pub fn load_identity(source: &ClientIdentitySource) -> Result<ClientIdentity, IdentityError> {
    match source {
        ClientIdentitySource::Pkcs12 { path, password, password_from } => {
            load_pkcs12(path, password, password_from.as_deref())
        }
        ClientIdentitySource::Pem { cert, key } => load_pem_identity(cert, key),
    }
}

/// The trust anchors for server certificates.
pub fn load_trust(trust: &TrustSource) -> Result<RootCertStore, IdentityError> {
    let mut roots = RootCertStore::empty();
    match trust {
        TrustSource::CaBundle(path) => {
            let certs = read_pem_certs(path)?;
            for (index, cert) in certs.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    IdentityError::invalid(path, format!("certificate #{} is not a usable CA: {e}", index + 1))
                })?;
            }
        }
        TrustSource::SystemRoots => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                return Err(IdentityError::SystemRoots(format!("no usable CA certificates found {why}")));
            }
        }
    }
    Ok(roots)
}

fn identity_path(source: &ClientIdentitySource) -> &Path {
    match source {
        ClientIdentitySource::Pkcs12 { path, .. } => path,
        ClientIdentitySource::Pem { cert, .. } => cert,
    }
}

fn load_pkcs12(path: &Path, password: &str, password_from: Option<&str>) -> Result<ClientIdentity, IdentityError> {
    let der = std::fs::read(path).map_err(|source| IdentityError::Unreadable { path: path.to_owned(), source })?;
    let store = KeyStore::from_pkcs12(&der, password, Pkcs12ImportPolicy::Relaxed).map_err(|e| {
        let mut problem = describe_pkcs12_error(&e);
        if let Some(from) = password_from.filter(|_| problem.contains("wrong password")) {
            problem.push_str(&format!("; the password was read from {from}: check that it holds this file's password"));
        }
        IdentityError::invalid(path, problem)
    })?;
    let Some((_alias, key_chain)) = store.private_key_chain() else {
        return Err(IdentityError::invalid(path, "no private key in the PKCS#12 file (certificates only?)"));
    };
    if key_chain.certs().is_empty() {
        return Err(IdentityError::invalid(path, "the PKCS#12 file has a private key but no certificate for it"));
    }
    let chain = key_chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    let key = PrivateKeyDer::try_from(key_chain.key().as_der().to_vec())
        .map_err(|e| IdentityError::invalid(path, format!("unsupported private key in the PKCS#12 file: {e}")))?;
    Ok(ClientIdentity { chain, key })
}

/// Turns p12-keystore's errors into what an operator can act on.
fn describe_pkcs12_error(error: &p12_keystore::error::Error) -> String {
    use p12_keystore::error::Error as E;
    match error {
        E::MacError(_) => "wrong password (the PKCS#12 integrity check failed)".to_owned(),
        E::UnpadError | E::Pkcs5Error(_) => "wrong password or corrupt PKCS#12 file (decryption failed)".to_owned(),
        E::DerError(_) | E::InvalidVersion | E::UnsupportedContentType => {
            format!("not a PKCS#12 file (a .p12/.pfx was expected; a PEM file needs cert + key instead): {error}")
        }
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm => {
            format!("PKCS#12 encryption not supported: {error}")
        }
        other => format!("cannot decode PKCS#12: {other}"),
    }
}

fn load_pem_identity(cert_path: &Path, key_path: &Path) -> Result<ClientIdentity, IdentityError> {
    let chain = read_pem_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::Io(source) => IdentityError::Unreadable { path: key_path.to_owned(), source },
        pem::Error::NoItemsFound if is_encrypted_pem_key(key_path) => IdentityError::invalid(
            key_path,
            "the private key is encrypted; give an unencrypted PEM key (openssl pkey -in key.pem -out plain.pem) \
             or a PKCS#12 file with its password",
        ),
        pem::Error::NoItemsFound => IdentityError::invalid(key_path, "no private key (PEM) in the file"),
        other => IdentityError::invalid(key_path, format!("malformed PEM private key: {other}")),
    })?;
    Ok(ClientIdentity { chain, key })
}

/// Whether the file holds a password-protected PEM key (PKCS#8 `ENCRYPTED PRIVATE KEY` or legacy
/// `Proc-Type: 4,ENCRYPTED`), which rustls cannot use and operators often get by mistake.
fn is_encrypted_pem_key(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        let text = String::from_utf8_lossy(&bytes);
        text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED")
    })
}

/// Every `CERTIFICATE` block of a PEM file; at least one.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem_error = |e: pem::Error| match e {
        pem::Error::Io(source) => IdentityError::Unreadable { path: path.to_owned(), source },
        other => IdentityError::invalid(path, format!("malformed PEM: {other}")),
    };
    let certs = CertificateDer::pem_file_iter(path).map_err(pem_error)?.collect::<Result<Vec<_>, _>>();
    let certs = certs.map_err(pem_error)?;
    if certs.is_empty() {
        return Err(IdentityError::invalid(path, "no certificates (PEM CERTIFICATE blocks) in the file"));
    }
    Ok(certs)
}
