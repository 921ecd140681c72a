//! The server certificate between two runs, judged by what changed rather than by where it stands.
//!
//! A certificate close to its end is a finding of the run itself (and of preflight); `diff` says what moved
//! since the earlier run. So the same certificate with fewer days left is no change, crossing
//! `--cert-min-days` is a regression (crossing back after a renewal an improvement), and a new fingerprint is
//! always reported: neutral, unless the replacement is weaker (a smaller key of the same type, or a SHA-1 or
//! MD5 signature where the old one had neither) or ends before the certificate it replaced did (a
//! shorter-lived one): then it is a regression. Runs written before key and signature were recorded compare
//! on the end of validity alone.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Change, ChangeClass, DiffOptions, change};
use crate::evidence::status::RunStatus;

/// One distinct leaf certificate a run saw.
#[derive(Debug, Clone, Copy)]
struct Leaf<'a> {
    /// Its fingerprint: what identifies it across runs.
    sha256: &'a str,
    /// Its subject, so the reader knows which certificate it is.
    subject: &'a str,
    /// End of validity: a replacement that ends earlier is shorter-lived.
    not_after: DateTime<Utc>,
    /// Whole days left when the run saw it: what the threshold is applied to.
    days_left: i64,
    /// Key type and size, when recorded.
    key: Option<&'a crate::evidence::record::KeyFacts>,
    /// Signature algorithm, when recorded.
    signature: Option<&'a str>,
}

/// Why `new` is weaker than `old`, if it is: a smaller key of the same type, or a broken signature hash.
fn weaker(old: &Leaf<'_>, new: &Leaf<'_>) -> Option<String> {
    if let (Some(o), Some(n)) = (old.key, new.key)
        && o.kind == n.kind
        && n.bits < o.bits
    {
        return Some(format!("鍵長が短い（{o} → {n}）"));
    }
    let broken = |s: Option<&str>| {
        s.is_some_and(|s| s.to_ascii_lowercase().contains("sha1") || s.to_ascii_lowercase().contains("md5"))
    };
    (broken(new.signature) && !broken(old.signature) && old.signature.is_some()).then(|| {
        format!("署名アルゴリズムが弱い（{} → {}）", old.signature.unwrap_or("-"), new.signature.unwrap_or("-"))
    })
}

/// The distinct leaf certificates a run saw, in the order first seen.
fn leaves(s: &RunStatus) -> Vec<Leaf<'_>> {
    let mut out: Vec<Leaf<'_>> = Vec::new();
    for leaf in s.serverinfo.iter().chain(&s.probes).filter_map(|p| p.server_chain.first()) {
        if !out.iter().any(|l| l.sha256 == leaf.sha256) {
            out.push(Leaf {
                sha256: &leaf.sha256,
                subject: &leaf.subject,
                not_after: leaf.not_after,
                days_left: leaf.days_left,
                key: leaf.key.as_ref(),
                signature: leaf.signature_algorithm.as_deref(),
            });
        }
    }
    out
}

fn short_fingerprint(sha: &str) -> String {
    sha.chars().take(23).collect::<String>() + "…"
}

fn describe(leaves: &[Leaf<'_>]) -> String {
    let one = |l: &Leaf<'_>| {
        format!("{} {}（{} まで）", l.subject, short_fingerprint(l.sha256), l.not_after.format("%Y-%m-%d"))
    };
    leaves.iter().map(one).collect::<Vec<_>>().join(", ")
}

fn fingerprints<'a>(leaves: &[Leaf<'a>]) -> BTreeSet<&'a str> {
    leaves.iter().map(|l| l.sha256).collect()
}

fn earliest_end(leaves: &[Leaf<'_>]) -> Option<DateTime<Utc>> {
    leaves.iter().map(|l| l.not_after).min()
}

/// The certificate lines: a fingerprint change, then a threshold crossing.
pub(super) fn compare_certificates(a: &RunStatus, b: &RunStatus, options: &DiffOptions, out: &mut Vec<Change>) {
    let (la, lb) = (leaves(a), leaves(b));
    compare_fingerprints(&la, &lb, out);
    compare_expiry(&la, &lb, options.cert_min_days, out);
}

/// A different certificate is always reported; it is a regression only when it ends before the one it replaced.
fn compare_fingerprints(la: &[Leaf<'_>], lb: &[Leaf<'_>], out: &mut Vec<Change>) {
    if la.is_empty() || lb.is_empty() || fingerprints(la) == fingerprints(lb) {
        return;
    }
    let gone: Vec<Leaf<'_>> = la.iter().filter(|l| !lb.iter().any(|n| n.sha256 == l.sha256)).copied().collect();
    let new: Vec<Leaf<'_>> = lb.iter().filter(|l| !la.iter().any(|o| o.sha256 == l.sha256)).copied().collect();
    let weakened = gone.iter().flat_map(|o| new.iter().filter_map(move |n| weaker(o, n))).next();
    if let Some(why) = weakened {
        out.push(Change {
            before: describe(la),
            after: describe(lb),
            note: format!("サーバ証明書がより弱いものに替わった: {why}"),
            ..change(ChangeClass::Regression, None, "certificate", "certificate.fingerprint")
        });
        return;
    }
    let (class, note) = match (earliest_end(&gone), earliest_end(&new)) {
        (Some(old), Some(replacement)) if replacement < old => (
            ChangeClass::Regression,
            format!(
                "サーバ証明書が有効期限のより早いものに替わった（{} → {}）",
                old.format("%Y-%m-%d"),
                replacement.format("%Y-%m-%d")
            ),
        ),
        _ => (ChangeClass::Neutral, "サーバ証明書が替わった".to_owned()),
    };
    out.push(Change {
        before: describe(la),
        after: describe(lb),
        note,
        ..change(class, None, "certificate", "certificate.fingerprint")
    });
}

/// Crossing the warning threshold is a change; staying on the same side of it is not.
fn compare_expiry(la: &[Leaf<'_>], lb: &[Leaf<'_>], min_days: i64, out: &mut Vec<Change>) {
    let fewest = |l: &[Leaf<'_>]| l.iter().map(|l| l.days_left).min();
    let (class, note) = match (fewest(la), fewest(lb)) {
        (Some(before), Some(after)) if before >= min_days && after < min_days => {
            (ChangeClass::Regression, format!("サーバ証明書の残り日数が {min_days} 日を切った"))
        }
        (Some(before), Some(after)) if before < min_days && after >= min_days => {
            (ChangeClass::Improvement, format!("サーバ証明書の残り日数が再び {min_days} 日以上になった"))
        }
        (None, Some(after)) if after < min_days => (
            ChangeClass::Neutral,
            format!("サーバ証明書の残り日数が {min_days} 日未満（比較元の実行では証明書を取得していない）"),
        ),
        _ => return,
    };
    let days = |d: Option<i64>| d.map_or_else(|| "-".to_owned(), |d| format!("残り {d} 日"));
    out.push(Change {
        before: days(fewest(la)),
        after: days(fewest(lb)),
        note,
        ..change(class, None, "certificate", "certificate.expiry")
    });
}

#[cfg(test)]
mod tests {
    use super::super::{NoiseFloor, compare};
    use super::*;
    use crate::evidence::CertFacts;
    use crate::evidence::status::sample_status;

    /// A run that saw one leaf, `sha`, measured `days_left` before its end on day `ends_on_day` (days after
    /// the epoch), so the end and the days left are consistent with the run's own time.
    fn with_leaf(sha: &str, days_left: i64, ends_on_day: i64) -> RunStatus {
        let mut status = sample_status();
        let not_after = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(ends_on_day);
        let leaf = CertFacts {
            subject: "CN=localhost".to_owned(),
            issuer: "CN=ca".to_owned(),
            serial: "01".to_owned(),
            not_before: DateTime::<Utc>::UNIX_EPOCH,
            not_after,
            sha256: sha.to_owned(),
            days_left,
            key: Some(crate::evidence::record::KeyFacts { kind: "RSA".to_owned(), bits: 2048 }),
            signature_algorithm: Some("sha256WithRSAEncryption".to_owned()),
        };
        for probe in &mut status.probes {
            probe.server_chain = vec![leaf.clone()];
        }
        status
    }

    fn classes(before: &RunStatus, after: &RunStatus, min_days: i64) -> Vec<(String, ChangeClass)> {
        let options = DiffOptions { cert_min_days: min_days, ..DiffOptions::default() };
        let changes = compare(before, after, &options, &NoiseFloor::default());
        changes.into_iter().map(|c| (c.aspect, c.class)).collect()
    }

    #[test]
    fn the_same_certificate_below_the_threshold_in_both_runs_is_no_change() {
        let (before, after) = (with_leaf("AA", 29, 100), with_leaf("AA", 28, 100));
        assert_eq!(classes(&before, &after, 30), vec![]);
        assert_eq!(classes(&before, &before, 30), vec![]);
    }

    #[test]
    fn the_same_certificate_crossing_the_threshold_is_a_regression_and_back_an_improvement() {
        let (before, after) = (with_leaf("AA", 31, 100), with_leaf("AA", 29, 100));
        assert_eq!(classes(&before, &after, 30), vec![("certificate.expiry".to_owned(), ChangeClass::Regression)]);
        assert_eq!(classes(&after, &before, 30), vec![("certificate.expiry".to_owned(), ChangeClass::Improvement)]);
    }

    #[test]
    fn a_new_certificate_is_neutral_and_one_about_to_expire_is_a_regression() {
        // Runs 300 days apart: the renewed certificate ends later than the old one, but has only 10 days left.
        let before = with_leaf("AA", 300, 300);
        let after = with_leaf("BB", 10, 305);
        assert_eq!(
            classes(&before, &after, 30),
            vec![
                ("certificate.fingerprint".to_owned(), ChangeClass::Neutral),
                ("certificate.expiry".to_owned(), ChangeClass::Regression)
            ]
        );
    }

    #[test]
    fn a_replacement_that_ends_earlier_is_a_regression_even_above_the_threshold() {
        let (before, after) = (with_leaf("AA", 300, 400), with_leaf("BB", 200, 300));
        let changes = compare(&before, &after, &DiffOptions::default(), &NoiseFloor::default());
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            (changes[0].aspect.as_str(), changes[0].class),
            ("certificate.fingerprint", ChangeClass::Regression)
        );
        assert!(changes[0].note.contains("1971-02-05 → 1970-10-28"), "{}", changes[0].note);
        assert_eq!(classes(&after, &before, 30), vec![("certificate.fingerprint".to_owned(), ChangeClass::Neutral)]);
    }

    #[test]
    fn a_replacement_with_a_smaller_key_or_a_sha1_signature_is_a_regression() {
        let before = with_leaf("AA", 300, 400);
        let mut smaller = with_leaf("BB", 300, 400);
        for probe in &mut smaller.probes {
            probe.server_chain[0].key = Some(crate::evidence::record::KeyFacts { kind: "RSA".to_owned(), bits: 1024 });
        }
        let found = classes(&before, &smaller, 30);
        assert!(found.contains(&("certificate.fingerprint".to_owned(), ChangeClass::Regression)), "{found:?}");

        let mut sha1 = with_leaf("CC", 300, 400);
        for probe in &mut sha1.probes {
            probe.server_chain[0].signature_algorithm = Some("sha1WithRSAEncryption".to_owned());
        }
        let found = classes(&before, &sha1, 30);
        assert!(found.contains(&("certificate.fingerprint".to_owned(), ChangeClass::Regression)), "{found:?}");

        let same_strength = with_leaf("DD", 300, 400);
        let found = classes(&before, &same_strength, 30);
        assert!(found.contains(&("certificate.fingerprint".to_owned(), ChangeClass::Neutral)), "{found:?}");
    }
}
