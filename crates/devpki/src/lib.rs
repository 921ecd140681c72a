//! Generated PKI for `connrun demo` and for tests.
//!
//! The product is about mutual TLS, so every end-to-end test and the one-command demo need a real
//! certificate authority, real server and client certificates, and the misbehaving ones that operators meet
//! in the field (expired, issued by an unknown CA, issued for another host). Generating them at run time keeps
//! private keys out of git and lets each test own its PKI. Everything here is real X.509 made by rcgen with
//! the aws-lc-rs backend; PKCS#12 files are written with p12-keystore, in both the modern (AES-256/PBES2, as
//! OpenSSL 3 writes) and the legacy (3DES) encodings. A CA also signs CRLs, current or past their
//! `nextUpdate`, revoking any of the certificates it issued.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// Why generating a certificate or a PKCS#12 file failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("PKCS#12 encoding failed: {0}")]
    Pkcs12(String),
    #[error("{0}")]
    Rsa(&'static str),
    #[error("cannot read the serial number of a certificate to revoke: {0}")]
    Serial(String),
}

/// When a CRL was issued and when the next one is due.
#[derive(Debug, Clone, Copy)]
pub struct CrlSpec {
    /// CRL number (monotonic per issuer).
    pub number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
}

impl CrlSpec {
    /// CRL number `number`, issued an hour ago, next one due in 7 days.
    pub fn current(number: u64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            number,
            this_update: now - Duration::from_secs(3600),
            next_update: now + Duration::from_secs(7 * 86_400),
        }
    }

    /// The same CRL, but its `nextUpdate` passed yesterday (issued 8 days ago).
    pub fn stale(mut self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.this_update = now - Duration::from_secs(8 * 86_400);
        self.next_update = now - Duration::from_secs(86_400);
        self
    }
}

/// A certificate authority that can issue leaf certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Kept so callers can tell CAs apart in logs and certificate subjects.
    name: String,
}

/// What a leaf certificate is for; decides its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// Everything that varies between the leaf certificates tests need.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// DNS names and IP addresses for the subjectAltName extension.
    pub subject_alt_names: Vec<String>,
    pub usage: Usage,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A server certificate for loopback (`localhost`, `127.0.0.1`, `::1`), valid from yesterday for 90 days.
    pub fn loopback_server() -> Self {
        Self::valid_now("localhost", Usage::Server, &["localhost", "127.0.0.1", "::1"])
    }

    /// A client certificate with the given common name, valid from yesterday for 90 days.
    pub fn client(common_name: &str) -> Self {
        Self::valid_now(common_name, Usage::Client, &[])
    }

    fn valid_now(common_name: &str, usage: Usage, sans: &[&str]) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_owned(),
            subject_alt_names: sans.iter().map(|s| (*s).to_owned()).collect(),
            usage,
            not_before: now - Duration::from_secs(86_400),
            not_after: now + Duration::from_secs(90 * 86_400),
        }
    }

    /// A server certificate for the given DNS names and IP addresses (the first is the common name), valid
    /// from yesterday for `days` days.
    pub fn server(names: &[&str], days: u32) -> Self {
        let mut spec = Self::valid_now(names.first().copied().unwrap_or("localhost"), Usage::Server, names);
        spec.not_after = spec.not_before + Duration::from_secs((u64::from(days) + 1) * 86_400);
        spec
    }

    /// The same certificate, valid from yesterday for `days` days.
    pub fn valid_for_days(mut self, days: u32) -> Self {
        self.not_after = self.not_before + Duration::from_secs((u64::from(days) + 1) * 86_400);
        self
    }

    /// The same certificate, but its validity ended yesterday.
    pub fn expired(mut self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now - Duration::from_secs(30 * 86_400);
        self.not_after = now - Duration::from_secs(86_400);
        self
    }
}

/// A leaf certificate with its private key and the chain up to (and including) its CA.
#[derive(Clone)]
pub struct Identity {
    /// Leaf first, then the issuing CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("chain_len", &self.chain.len()).finish_non_exhaustive()
    }
}

/// Which PKCS#12 encryption to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkcs12Flavor {
    /// PBES2 with AES-256-CBC and HMAC-SHA256, what OpenSSL 3 writes by default.
    Modern,
    /// PBE-SHA1-3DES with an HMAC-SHA1 MAC, what OpenSSL 1.x and old Java keystores write.
    Legacy3Des,
}

impl Authority {
    /// A fresh self-signed CA named `<name> Test CA`.
    pub fn new(name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = distinguished_name(&format!("{name} Test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(2 * 86_400);
        params.not_after = now + Duration::from_secs(3650 * 86_400);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer, name: name.to_owned() })
    }

    /// The CA's name as given to [`Authority::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA certificate as PEM, ready to be written as a CA bundle.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a leaf certificate described by `spec`.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(spec.subject_alt_names.clone())?;
        params.distinguished_name = distinguished_name(&spec.common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![match spec.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity { chain: vec![cert.der().clone(), self.cert_der()], key_pkcs8: key.serialize_der() })
    }
}

impl Authority {
    /// A CRL signed by this CA revoking the leaf certificates of `revoked` (key compromise, an hour ago).
    pub fn revocation_list(
        &self,
        revoked: &[&Identity],
        spec: CrlSpec,
    ) -> Result<CertificateRevocationListDer<'static>, PkiError> {
        let revoked_certs = revoked
            .iter()
            .map(|identity| {
                Ok(RevokedCertParams {
                    serial_number: serial_of(identity.leaf())?,
                    revocation_time: spec.this_update,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: spec.this_update,
            next_update: spec.next_update,
            crl_number: SerialNumber::from(spec.number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().clone())
    }
}

/// A CRL as a PEM `X509 CRL` block.
pub fn crl_pem(der: &CertificateRevocationListDer<'_>) -> String {
    pem_block("X509 CRL", der)
}

fn serial_of(der: &CertificateDer<'_>) -> Result<SerialNumber, PkiError> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| PkiError::Serial(e.to_string()))?;
    Ok(SerialNumber::from_slice(cert.raw_serial()))
}

impl Identity {
    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The private key in the form rustls takes.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// The certificate chain as concatenated PEM (leaf first).
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|der| pem_block("CERTIFICATE", der)).collect()
    }

    /// The private key as a PKCS#8 PEM block.
    pub fn key_pem(&self) -> String {
        pem_block("PRIVATE KEY", &self.key_pkcs8)
    }

    /// The identity as a password-protected PKCS#12 file (key plus full chain).
    pub fn to_pkcs12(&self, password: &str, flavor: Pkcs12Flavor) -> Result<Vec<u8>, PkiError> {
        let p12 = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
        let key = p12_keystore::PrivateKey::from_der(&self.key_pkcs8).map_err(p12)?;
        let certs = self
            .chain
            .iter()
            .map(|der| p12_keystore::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(p12)?;
        let mut store = p12_keystore::KeyStore::new();
        let chain = p12_keystore::PrivateKeyChain::new(b"devpki-1".to_vec(), key, certs);
        store.add_entry("client", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
        let writer = store.writer(password);
        let writer = match flavor {
            Pkcs12Flavor::Modern => writer,
            Pkcs12Flavor::Legacy3Des => writer
                .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
                .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1),
        };
        writer.write().map_err(p12)
    }
}

/// A fresh RSA-2048 private key as PKCS#8 DER, the kind of key the Layer ID token (PHR-06) is signed with.
pub fn rsa_signing_key_pkcs8() -> Result<Vec<u8>, PkiError> {
    use aws_lc_rs::encoding::AsDer as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| PkiError::Rsa("RSA-2048 key generation failed"))?;
    let der = key.as_der().map_err(|_| PkiError::Rsa("PKCS#8 encoding of the RSA key failed"))?;
    Ok(der.as_ref().to_vec())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "OpenDolphin connectivity test");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs12_round_trips_in_both_flavors() {
        let ca = Authority::new("unit").unwrap();
        let client = ca.issue(&LeafSpec::client("ops-client")).unwrap();
        for flavor in [Pkcs12Flavor::Modern, Pkcs12Flavor::Legacy3Des] {
            let der = client.to_pkcs12("s3cret", flavor).unwrap();
            let store =
                p12_keystore::KeyStore::from_pkcs12(&der, "s3cret", p12_keystore::Pkcs12ImportPolicy::Relaxed).unwrap();
            let (_, chain) = store.private_key_chain().expect("key chain present");
            assert_eq!(chain.key().as_der(), client.key_pkcs8.as_slice(), "{flavor:?}");
            assert_eq!(chain.certs().len(), 2, "{flavor:?}");
            assert!(
                p12_keystore::KeyStore::from_pkcs12(&der, "wrong", p12_keystore::Pkcs12ImportPolicy::Relaxed).is_err()
            );
        }
    }

    #[test]
    fn pem_output_is_parseable() {
        use rustls_pki_types::pem::PemObject;
        let ca = Authority::new("unit").unwrap();
        let server = ca.issue(&LeafSpec::loopback_server()).unwrap();
        let certs: Vec<_> =
            CertificateDer::pem_slice_iter(server.chain_pem().as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(certs, server.chain);
        let key = PrivateKeyDer::from_pem_slice(server.key_pem().as_bytes()).unwrap();
        assert_eq!(key.secret_der(), server.key_pkcs8.as_slice());
    }
}
