//! The server certificate between two runs.

use std::collections::BTreeSet;

use super::{Change, ChangeClass, DiffOptions, change};
use crate::evidence::status::RunStatus;

/// The distinct leaf certificates a run saw: (sha256, subject, days_left).
fn leaves(s: &RunStatus) -> Vec<(String, String, i64)> {
    let mut out: Vec<(String, String, i64)> = Vec::new();
    for leaf in s.serverinfo.iter().chain(&s.probes).filter_map(|p| p.server_chain.first()) {
        if !out.iter().any(|(sha, _, _)| *sha == leaf.sha256) {
            out.push((leaf.sha256.clone(), leaf.subject.clone(), leaf.days_left));
        }
    }
    out
}

fn short_fingerprint(sha: &str) -> String {
    sha.chars().take(23).collect::<String>() + "…"
}

pub(super) fn compare_certificates(a: &RunStatus, b: &RunStatus, options: &DiffOptions, out: &mut Vec<Change>) {
    let (la, lb) = (leaves(a), leaves(b));
    let fingerprints = |l: &[(String, String, i64)]| l.iter().map(|(s, _, _)| s.clone()).collect::<BTreeSet<_>>();
    let describe = |l: &[(String, String, i64)]| {
        l.iter().map(|(sha, subject, _)| format!("{subject} {}", short_fingerprint(sha))).collect::<Vec<_>>().join(", ")
    };
    if !la.is_empty() && !lb.is_empty() && fingerprints(&la) != fingerprints(&lb) {
        out.push(Change {
            before: describe(&la),
            after: describe(&lb),
            note: "the server presents a different certificate".to_owned(),
            ..change(ChangeClass::Neutral, None, "certificate", "certificate.fingerprint")
        });
    }
    let min_days = |l: &[(String, String, i64)]| l.iter().map(|(_, _, d)| *d).min();
    if let Some(days) = min_days(&lb).filter(|d| *d < options.cert_min_days) {
        out.push(Change {
            before: min_days(&la).map_or_else(|| "-".to_owned(), |d| format!("{d} days left")),
            after: format!("{days} days left"),
            note: format!("server certificate expires in fewer than {} days", options.cert_min_days),
            ..change(ChangeClass::Regression, None, "certificate", "certificate.expiry")
        });
    }
}
