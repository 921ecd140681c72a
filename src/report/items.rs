//! What a run leaves to do, and what its audit trail says, computed once for every page.
//!
//! The summary, the open items, the container summary, the daily entry, the weekly summary, the status row,
//! history and the HTML report all show the audit state and the open items; when each page worded them on
//! its own, one said 監査 OK while another said 未採取. Here the three-valued [`AuditState`] and the exact
//! findings of [`RunStatus::audit_findings`] become one [`AuditSummary`], and probes that are not Ready,
//! audit problems and failed preflight checks become [`OpenItem`]s with their 解除条件.

use serde::Serialize;

use crate::evidence::status::{AuditFinding, AuditState, RunStatus};
use crate::evidence::{EvidenceLayout, ProbeRecord};
use crate::report::wording;

/// The audit trail of a run as every page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSummary {
    /// `collected` / `not_configured` / `failed`, as in `status.json`.
    pub state: &'static str,
    /// 採取済み / 未採取 / 採取失敗.
    pub label: &'static str,
    /// Why the pull failed (redacted), when it did.
    pub reason: Option<String>,
    /// Every count was taken.
    pub collected: bool,
    /// The target has no audit database: nothing was checked.
    pub not_configured: bool,
    /// The database could not be reached or a query failed.
    pub failed: bool,
    /// One line per count that differs from the template's expectation.
    pub findings: Vec<String>,
    /// Collected and no findings: the only case that may say 期待した監査アクションを全て確認.
    pub confirmed: bool,
    /// The label with its qualifier, for one table cell: `採取済み（期待どおり）`, `採取済み・所見 2 件`,
    /// `未採取（監査 DB 未設定）`, `採取失敗`.
    pub short: String,
    /// Repo-rooted `audit/sql/` of the run, only when SQL files were written (the database answered).
    pub sql_dir: Option<String>,
    /// Repo-rooted `audit/counts.json` of the run (always written).
    pub counts_file: String,
}

/// `artifacts/<suite>/<RUN_ID>/`: where a run's evidence lives, written from the repository root so that a
/// path still points at it once the Markdown is pasted into `docs/…/logs/*.md`.
pub fn evidence_root(status: &RunStatus) -> String {
    format!("artifacts/{}/{}/", status.suite, status.run_id)
}

/// A finding as a sentence with its phase, action and outcome.
fn finding_line(count: &crate::evidence::status::AuditCount, finding: &AuditFinding) -> String {
    let outcome = count.outcome.as_deref().map(|o| format!("（{o}）")).unwrap_or_default();
    format!("Phase-{} {}{outcome}: {}", count.phase, count.action, finding.describe_ja())
}

impl AuditSummary {
    /// The audit summary of a run.
    pub fn of(status: &RunStatus) -> AuditSummary {
        let state = status.audit_state();
        let failed = matches!(state, AuditState::Failed { .. });
        // A failed pull already says why nothing was counted; "not counted" findings would only repeat it.
        let findings: Vec<String> = status
            .audit_findings()
            .filter(|(_, f)| !(failed && *f == AuditFinding::NotCounted))
            .map(|(c, f)| finding_line(c, &f))
            .collect();
        let confirmed = state == AuditState::Collected && findings.is_empty();
        let short = match &state {
            AuditState::Collected if confirmed => "採取済み（期待どおり）".to_owned(),
            AuditState::Collected => format!("採取済み・所見 {} 件", findings.len()),
            AuditState::NotConfigured => "未採取（監査 DB 未設定）".to_owned(),
            AuditState::Failed { .. } => "採取失敗".to_owned(),
        };
        // SQL evidence exists only when the database answered: the counts are kept only then.
        let sql_written = state != AuditState::NotConfigured && !status.audit.is_empty();
        let root = evidence_root(status);
        AuditSummary {
            state: state.key(),
            label: state.label_ja(),
            reason: match &state {
                AuditState::Failed { reason } => Some(reason.clone()),
                _ => None,
            },
            collected: state == AuditState::Collected,
            not_configured: state == AuditState::NotConfigured,
            failed,
            findings,
            confirmed,
            short,
            sql_dir: sql_written.then(|| format!("{root}{}/", EvidenceLayout::AUDIT_SQL_DIR)),
            counts_file: format!("{root}{}", EvidenceLayout::AUDIT_COUNTS),
        }
    }
}

/// Something the run leaves to resolve: a probe not Ready, an audit problem, a failed preflight check.
#[derive(Debug, Clone, Serialize)]
pub struct OpenItem {
    /// What (項目): `PHR-07 image（Phase-D）`, `監査（d_audit_event）`.
    pub subject: String,
    /// Its state with the reason (状態): `Pending（HTTP 401 認証失敗）`, `採取失敗: …`.
    pub state: String,
    /// What clears it (解除条件).
    pub condition: String,
    /// The TODO line: the subject and what went wrong.
    pub text: String,
}

impl OpenItem {
    fn new(subject: String, state: String, detail: &str, condition: &str) -> OpenItem {
        let text = format!("{subject}: {detail}");
        OpenItem { subject, state, condition: condition.to_owned(), text }
    }
}

fn probe_item(probe: &ProbeRecord, serverinfo: bool) -> OpenItem {
    let subject = if serverinfo {
        format!("ServerInfo {}", probe.name)
    } else {
        format!("{} {}（Phase-{}）", probe.id, probe.name, probe.phase)
    };
    OpenItem::new(
        subject,
        wording::pending_state_ja(probe),
        &wording::not_ready_ja(probe),
        &wording::release_condition_ja(probe),
    )
}

/// Everything a run leaves to resolve, in page order: probes (server info first), audit, preflight.
pub fn open_items(status: &RunStatus) -> Vec<OpenItem> {
    let mut items: Vec<OpenItem> = Vec::new();
    items.extend(status.serverinfo.iter().filter(|p| !p.ready).map(|p| probe_item(p, true)));
    items.extend(status.probes.iter().filter(|p| !p.ready).map(|p| probe_item(p, false)));
    let audit = AuditSummary::of(status);
    if let Some(reason) = &audit.reason {
        items.push(OpenItem::new(
            "監査（d_audit_event）".to_owned(),
            format!("採取失敗: {reason}"),
            &format!("採取失敗（{reason}）"),
            "監査 DB への接続（ターゲットの `[audit]`）と照会 SQL を確認のうえ再実行し、監査行を採取する",
        ));
    }
    for (count, finding) in status.audit_findings() {
        if audit.failed && finding == AuditFinding::NotCounted {
            continue;
        }
        let condition = match finding {
            AuditFinding::Missing { .. } | AuditFinding::NotCounted => {
                "サーバが d_audit_event に監査行を書いているか確認のうえ再実行し、期待件数を得る"
            }
            AuditFinding::Extra { .. } | AuditFinding::Unexpected { .. } => {
                "余分・想定外の監査行（失敗行を含む）の原因をサーバログと `audit/sql/` で確認する"
            }
        };
        let outcome = count.outcome.as_deref().map(|o| format!("（{o}）")).unwrap_or_default();
        items.push(OpenItem::new(
            format!("Phase-{} 監査 {}{outcome}", count.phase, count.action),
            format!("所見: {}", finding.describe_ja()),
            &finding.describe_ja(),
            condition,
        ));
    }
    if let Some(crate::evidence::chain::ChainVerdict::Ng { reason }) = &status.audit_chain {
        items.push(OpenItem::new(
            "監査チェーン".to_owned(),
            format!("監査チェーン検証: NG ({reason})"),
            &format!("NG（{reason}）"),
            "`audit/chain.json` の行とチェックポイントを確認し、サーバで `phr-server audit verify --checkpoints` を実行する",
        ));
    }
    for check in &status.preflight {
        if !check.ok {
            items.push(OpenItem::new(
                format!("事前チェック {}", check.name),
                format!("不合格: {}", check.detail),
                &format!("不合格（{}）", check.detail),
                "事前チェックの指摘（`connrun preflight`）を解消する",
            ));
        } else if check.detail.contains("renew soon") {
            items.push(OpenItem::new(
                format!("事前チェック {}", check.name),
                format!("要更新: {}", check.detail),
                &format!("証明書の有効期限が近い（{}）", check.detail),
                "証明書を更新し、事前チェックで残日数を確認する",
            ));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::status::sample_status;

    #[test]
    fn a_failed_pull_is_one_item_with_its_reason_and_no_sql_link() {
        let mut status = sample_status();
        status.audit_state = Some(AuditState::Failed { reason: "connection refused".to_owned() });
        status.audit.clear();
        let audit = AuditSummary::of(&status);
        assert_eq!((audit.label, audit.confirmed, audit.sql_dir.clone()), ("採取失敗", false, None));
        let items = open_items(&status);
        assert!(items.iter().any(|i| i.text.contains("採取失敗（connection refused）")), "{items:?}");
    }

    #[test]
    fn only_a_collected_trail_without_findings_is_confirmed() {
        let mut status = sample_status();
        assert!(!AuditSummary::of(&status).confirmed, "the sample misses a row");
        status.audit[0].expected = 1;
        let audit = AuditSummary::of(&status);
        assert!(audit.confirmed && audit.sql_dir.is_some(), "{audit:?}");
        status.audit_state = Some(AuditState::NotConfigured);
        let audit = AuditSummary::of(&status);
        assert_eq!((audit.label, audit.confirmed), ("未採取", false));
    }
}
