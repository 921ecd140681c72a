//! Facts about X.509 certificates: subject, issuer, serial, validity, SHA-256 fingerprint, days left.
//!
//! The seed logs track certificate expiry and fingerprints by hand (`PHR_LAYER_ID_CERT_SHA256=...`); the
//! harness records them for every server chain it sees and for the client identity in preflight, in the
//! same notation `openssl x509 -fingerprint -sha256` prints, so operators can compare them directly.

use chrono::{DateTime, Utc};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::evidence::CertFacts;
use crate::evidence::record::KeyFacts;

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct CertInfoError(pub String);

/// Reads the facts of one DER certificate, with days left counted from now.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, CertInfoError> {
    cert_facts_at(der, Utc::now())
}

/// Reads the facts of one DER certificate, with days left counted from `now`.
pub fn cert_facts_at(der: &[u8], now: DateTime<Utc>) -> Result<CertFacts, CertInfoError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertInfoError(e.to_string()))?;
    let validity = cert.validity();
    let not_before = to_utc(validity.not_before.timestamp())?;
    let not_after = to_utc(validity.not_after.timestamp())?;
    Ok(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before,
        not_after,
        sha256: sha256_fingerprint(der),
        days_left: (not_after - now).num_days(),
        key: key_facts(&cert),
        signature_algorithm: Some(signature_name(&cert)),
    })
}

/// The public key's type and size, when x509-parser can read it.
fn key_facts(cert: &X509Certificate<'_>) -> Option<KeyFacts> {
    use x509_parser::public_key::PublicKey;
    let key = cert.public_key().parsed().ok()?;
    let kind = match &key {
        PublicKey::RSA(_) => "RSA",
        PublicKey::EC(_) => "EC",
        PublicKey::DSA(_) => "DSA",
        _ => "other",
    };
    let bits = u32::try_from(key.key_size()).ok().filter(|bits| *bits > 0)?;
    Some(KeyFacts { kind: kind.to_owned(), bits })
}

/// The signature algorithm's short name, or its dotted OID.
fn signature_name(cert: &X509Certificate<'_>) -> String {
    let oid = &cert.signature_algorithm.algorithm;
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map_or_else(|_| oid.to_id_string(), str::to_owned)
}

/// SHA-256 of `der` as colon-separated upper-case hex (`AB:CD:...`), like OpenSSL prints fingerprints.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn to_utc(unix_seconds: i64) -> Result<DateTime<Utc>, CertInfoError> {
    DateTime::from_timestamp(unix_seconds, 0)
        .ok_or_else(|| CertInfoError(format!("validity time {unix_seconds} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use devpki::{Authority, LeafSpec};

    #[test]
    fn reads_subject_issuer_validity_and_fingerprint_of_a_leaf() {
        let ca = Authority::new("certinfo").unwrap();
        let leaf = ca.issue(&LeafSpec::client("ops-client")).unwrap();

        let facts = cert_facts(leaf.leaf()).unwrap();

        assert!(facts.subject.contains("CN=ops-client"), "{}", facts.subject);
        assert!(facts.issuer.contains("CN=certinfo Test CA"), "{}", facts.issuer);
        assert!((88..=90).contains(&facts.days_left), "{}", facts.days_left);
        assert!(facts.not_before < facts.not_after);
        assert_eq!(facts.sha256.len(), 32 * 3 - 1);
        assert_eq!(facts.sha256, sha256_fingerprint(leaf.leaf()));
        assert!(!facts.serial.is_empty() && facts.serial.chars().all(|c| c.is_ascii_hexdigit()));
        let key = facts.key.expect("the key is recorded");
        assert!(key.bits >= 256 && ["EC", "RSA"].contains(&key.kind.as_str()), "{key}");
        let signature = facts.signature_algorithm.expect("the signature algorithm is recorded");
        assert!(signature.to_ascii_lowercase().contains("sha256"), "{signature}");
    }

    #[test]
    fn expired_certificate_has_negative_days_left() {
        let ca = Authority::new("certinfo").unwrap();
        let leaf = ca.issue(&LeafSpec::loopback_server().expired()).unwrap();

        let facts = cert_facts(leaf.leaf()).unwrap();

        assert!(facts.days_left < 0, "{}", facts.days_left);
    }

    #[test]
    fn fingerprint_matches_a_known_digest() {
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(cert_facts(b"not a certificate").is_err());
    }
}
