//! How an error becomes the text a record keeps: the error and every cause under it, joined by `: `.
//!
//! Probe outcomes, preflight details and template errors all end up in evidence or in front of an operator,
//! and the useful part of a failure is usually a cause several levels down (the rustls alert under hyper's
//! "connection closed"). One function writes that chain, so every record reads the same way.

/// `error: cause: cause …`, outermost first.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cause_is_written_outermost_first() {
        let inner = std::io::Error::other("alert: certificate required");
        let outer = std::io::Error::new(std::io::ErrorKind::ConnectionReset, inner);
        assert_eq!(super::error_chain(&outer), "alert: certificate required");
        #[derive(Debug, thiserror::Error)]
        #[error("connection closed")]
        struct Closed(#[source] std::io::Error);
        let closed = Closed(std::io::Error::other("alert: certificate required"));
        assert_eq!(super::error_chain(&closed), "connection closed: alert: certificate required");
    }
}
