//! Reading the CRL files of `PHR_TLS_CLIENT_CRL`, the same way at start-up and on every reload.
//!
//! A file is PEM (one or more `X509 CRL` blocks, as `openssl ca -gencrl` writes) or one DER CRL (as a CA's
//! distribution point serves it); which one is decided by the first bytes. Each CRL is checked once here,
//! before it can replace the CRLs in force: it must parse, be issued by one of the `PHR_TLS_CLIENT_CA`
//! certificates (same name, and a signature that verifies with that CA's key), and be accepted by rustls'
//! verifier. Whatever is wrong is reported with the file, so an operator who rotated a CRL knows which one to
//! fix. A CRL whose `nextUpdate` has passed is still used (see `tls` for why) but reported as stale.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Largest CRL file read: a clinic's CRL is kilobytes; even a large CA's stays well under this.
pub const MAX_CRL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A CRL file that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct CrlError {
    /// The file as listed in `PHR_TLS_CLIENT_CRL`.
    pub file: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// The CRLs of every listed file, checked and ready for the verifier.
#[derive(Debug, Clone, Default)]
pub struct LoadedCrls {
    /// Every CRL of every file, in file order.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Revoked certificates listed, over all CRLs.
    pub revoked: usize,
    /// The earliest `nextUpdate` (Unix seconds) of any CRL that has one: when the first of them goes stale.
    pub next_update: Option<i64>,
    /// `(file, nextUpdate)` of the CRLs already past their `nextUpdate` when read.
    pub stale: Vec<(PathBuf, i64)>,
}

/// Reads and checks every file; the first problem names its file.
pub fn load(files: &[PathBuf], client_ca: &[CertificateDer<'static>], now_unix: i64) -> Result<LoadedCrls, CrlError> {
    let cas = client_ca
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect::<Vec<_>>();
    let mut loaded = LoadedCrls::default();
    for file in files {
        let fail = |problem: String| CrlError { file: file.clone(), problem };
        for crl in read_file(file).map_err(fail)? {
            let facts = check(&crl, &cas, client_ca).map_err(fail)?;
            loaded.revoked += facts.revoked;
            if let Some(next) = facts.next_update {
                loaded.next_update = Some(loaded.next_update.map_or(next, |earliest| earliest.min(next)));
                if next < now_unix {
                    loaded.stale.push((file.clone(), next));
                }
            }
            loaded.crls.push(crl);
        }
    }
    Ok(loaded)
}

/// The CRLs of one file, PEM or DER, bounded in size.
fn read_file(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_CRL_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_CRL_FILE_BYTES {
        return Err(format!("larger than {MAX_CRL_FILE_BYTES} bytes; is this a CRL?"));
    }
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a valid PEM CRL file: {e}"))?;
        if crls.is_empty() {
            return Err("no \"-----BEGIN X509 CRL-----\" block in this PEM file".to_owned());
        }
        return Ok(crls);
    }
    if bytes.is_empty() {
        return Err("the file is empty".to_owned());
    }
    Ok(vec![CertificateRevocationListDer::from(bytes)])
}

/// What [`check`] learned about one CRL.
struct Facts {
    /// Entries in its revoked list.
    revoked: usize,
    /// Its `nextUpdate`, Unix seconds.
    next_update: Option<i64>,
}

/// Parses one CRL, finds its issuer among the client CAs, verifies its signature, and lets rustls parse it.
fn check(
    crl: &CertificateRevocationListDer<'static>,
    cas: &[X509Certificate<'_>],
    client_ca: &[CertificateDer<'static>],
) -> Result<Facts, String> {
    let (_, parsed) = CertificateRevocationList::from_der(crl).map_err(|e| format!("not a DER or PEM CRL: {e}"))?;
    let issuer = parsed.issuer();
    let ca = cas
        .iter()
        .find(|ca| ca.subject().as_raw() == issuer.as_raw())
        .ok_or_else(|| format!("issued by \"{issuer}\", which is not a CA of PHR_TLS_CLIENT_CA"))?;
    parsed
        .verify_signature(ca.public_key())
        .map_err(|e| format!("its signature does not verify with the key of \"{issuer}\" in PHR_TLS_CLIENT_CA: {e}"))?;
    verifier_accepts(crl, client_ca)?;
    Ok(Facts {
        revoked: parsed.iter_revoked_certificates().count(),
        next_update: parsed.next_update().map(|t| t.timestamp()),
    })
}

/// rustls (webpki) parses CRLs again when the verifier is built; ask it about this one CRL alone, so that
/// its refusal names the file.
fn verifier_accepts(
    crl: &CertificateRevocationListDer<'static>,
    client_ca: &[CertificateDer<'static>],
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(client_ca.iter().cloned());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls([crl.clone()])
        .build()
        .map(|_| ())
        .map_err(|e| format!("refused by the TLS verifier: {e}"))
}
