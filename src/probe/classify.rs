//! Turns low-level failures (io, rustls, hyper) into the [`Outcome`] an operator understands.
//!
//! The seed logs are full of "curl: (35)" style dead ends; here each failure gets a named kind and a human
//! reason: which certificate check failed, which alert the server sent, which phase timed out. With TLS 1.3
//! the server judges the client certificate after the client considers the handshake done, so a rejection
//! shows up on the first read of the response: errors from hyper are searched for a rustls alert too. That
//! alert races the request, so the classification must not depend on who wins: when hyper only says the
//! connection went away, the connection task's own error is classified (`exchange.rs`), and a write that
//! fails on the closed connection first reads the alert waiting behind it (`wire.rs`).

use std::error::Error as StdError;
use std::io;

use rustls::{AlertDescription, CertificateError};

use crate::evidence::Outcome;

/// A TCP connect error.
pub fn connect_error(error: &io::Error, addr: &str) -> Outcome {
    let message = format!("{addr}: {error}");
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::ConnectionRefused { message },
        _ => Outcome::ConnectFailed { message },
    }
}

/// An error from the TLS handshake (tokio-rustls reports rustls errors inside io errors).
pub fn handshake_error(error: &io::Error) -> Outcome {
    if let Some(tls) = find_rustls_error(error) {
        return tls_error(tls);
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            Outcome::TlsFailure { reason: format!("the server closed the connection during the handshake ({error})") }
        }
        _ => Outcome::TlsFailure { reason: error.to_string() },
    }
}

/// Whether a handshake error is the connection's own (reset, early close, broken pipe: worth another
/// attempt) and not a TLS verdict carried inside the io error (a rejected certificate, an alert).
pub fn is_connection_io(error: &io::Error) -> bool {
    find_rustls_error(error).is_none()
}

/// An error from hyper while sending the request or reading the response.
pub fn http_error(error: &hyper::Error) -> Outcome {
    if let Some(tls) = find_rustls_error(error) {
        return tls_error(tls);
    }
    Outcome::ProtocolError { message: crate::evidence::text::error_chain(error) }
}

/// A rustls error: our verdict on the server, or the server's alert about us.
pub fn tls_error(error: &rustls::Error) -> Outcome {
    match error {
        rustls::Error::InvalidCertificate(cert_error) => Outcome::TlsFailure { reason: certificate_reason(cert_error) },
        rustls::Error::AlertReceived(alert) if is_client_certificate_alert(*alert) => {
            Outcome::ClientCertRejected { reason: format!("the server sent the TLS alert {}", alert_name(*alert)) }
        }
        rustls::Error::AlertReceived(alert) => {
            Outcome::TlsFailure { reason: format!("the server sent the TLS alert {}", alert_name(*alert)) }
        }
        rustls::Error::NoCertificatesPresented => {
            Outcome::TlsFailure { reason: "the server presented no certificate".to_owned() }
        }
        rustls::Error::PeerIncompatible(why) => {
            Outcome::TlsFailure { reason: format!("no common TLS version or algorithm with the server ({why:?})") }
        }
        other => Outcome::TlsFailure { reason: other.to_string() },
    }
}

/// Why the server certificate was not accepted, in the words operators search for.
pub fn certificate_reason(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            "unknown CA: the server certificate is not issued by a CA in the trust store".to_owned()
        }
        CertificateError::Expired => "certificate expired".to_owned(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "certificate expired: valid until {}, now {}",
            unix_to_rfc3339(not_after.as_secs()),
            unix_to_rfc3339(time.as_secs())
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate not yet valid".to_owned()
        }
        CertificateError::NotValidForName => "name mismatch: the certificate is not valid for this host".to_owned(),
        CertificateError::NotValidForNameContext { expected, presented } => format!(
            "name mismatch: the certificate is for {} but the probe asked for {}",
            if presented.is_empty() {
                "no names".to_owned()
            } else {
                presented.iter().map(|name| plain_name(name)).collect::<Vec<_>>().join(", ")
            },
            expected.to_str()
        ),
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::BadSignature => "bad certificate signature".to_owned(),
        CertificateError::BadEncoding => "malformed certificate".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the certificate is not valid for TLS server authentication (extended key usage)".to_owned()
        }
        CertificateError::UnhandledCriticalExtension => "certificate has an unhandled critical extension".to_owned(),
        other => format!("invalid certificate: {other:?}"),
    }
}

/// Alerts a server sends about the client's certificate (in TLS 1.2 during the handshake, in TLS 1.3 after).
fn is_client_certificate_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
    )
}

/// The RFC 8446 name of an alert, e.g. `bad_certificate`.
fn alert_name(alert: AlertDescription) -> String {
    let name = match alert {
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::AccessDenied => "access_denied",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::InsufficientSecurity => "insufficient_security",
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::InternalError => "internal_error",
        AlertDescription::UnrecognisedName => "unrecognized_name",
        AlertDescription::NoApplicationProtocol => "no_application_protocol",
        other => return format!("{other:?}"),
    };
    name.to_owned()
}

/// Walks an error's source chain for a rustls error carried inside an io error.
fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io_error) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io_error.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls);
        }
        current = err.source();
    }
    None
}

/// rustls lists presented names in Debug form (`DnsName("a.example")`); operators want `a.example`.
fn plain_name(presented: &str) -> &str {
    presented.strip_prefix("DnsName(\"").and_then(|rest| rest.strip_suffix("\")")).unwrap_or(presented)
}

fn unix_to_rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connect_is_its_own_kind() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);

        assert!(matches!(connect_error(&refused, "127.0.0.1:1"), Outcome::ConnectionRefused { .. }));
        assert!(matches!(
            connect_error(&io::Error::from(io::ErrorKind::HostUnreachable), "x"),
            Outcome::ConnectFailed { .. }
        ));
    }

    #[test]
    fn rustls_errors_inside_io_errors_are_found() {
        let io_error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );

        let outcome = handshake_error(&io_error);

        assert!(
            matches!(outcome, Outcome::TlsFailure { ref reason } if reason.starts_with("unknown CA")),
            "{outcome:?}"
        );
    }

    #[test]
    fn certificate_alerts_mean_the_client_certificate_was_rejected() {
        let outcome = tls_error(&rustls::Error::AlertReceived(AlertDescription::CertificateRequired));

        assert_eq!(
            outcome,
            Outcome::ClientCertRejected { reason: "the server sent the TLS alert certificate_required".to_owned() }
        );
        assert!(matches!(
            tls_error(&rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)),
            Outcome::TlsFailure { .. }
        ));
    }
}
