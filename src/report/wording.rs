//! The Japanese of the reports' own sentences: what to do to clear a Pending item (解除条件), the Pending and
//! TODO phrasing of a probe that is not Ready, and the names of diff verdicts and aspects.
//!
//! The logs are pasted into a Japanese team's documents, so "HTTP 401 is not a Ready status" or
//! "connection refused: …" in a TODO line is a sentence someone has to translate by hand every week. The
//! phrases of a single record (outcomes, HTTP statuses, failed checks) live beside the records in
//! `evidence/wording.rs`, because the comparison writes its notes with them too; they are re-exported here so
//! a report reads every phrase from this one module.

pub use crate::evidence::wording::{check_failure_ja, http_status_ja, outcome_ja, problem_ja};
use crate::evidence::{Outcome, ProbeRecord};

/// How a probe travelled, when it was not the plain way: `プロキシ経由（…）`, `再試行 1 回で成功（…）`; empty for
/// a direct probe that stood on its first attempt.
pub fn transport_ja(probe: &ProbeRecord) -> String {
    let mut parts = Vec::new();
    if let Some(proxy) = &probe.proxy {
        let status = proxy.connect_status.map_or_else(|| "応答なし".to_owned(), |s| s.to_string());
        parts.push(format!(
            "プロキシ経由（{}、{}、CONNECT {status}、{:.0} ms）",
            proxy.url, proxy.source, probe.timings.proxy_ms
        ));
    }
    if !probe.retried.is_empty() {
        let n = probe.retried.len();
        let earlier: Vec<String> =
            probe.retried.iter().map(|a| format!("{} 回目: {}", a.attempt, outcome_ja(&a.outcome))).collect();
        let verdict = if probe.outcome == Outcome::Http { "で成功" } else { "でも応答なし" };
        parts.push(format!("再試行 {n} 回{verdict}（{}）", earlier.join("; ")));
    }
    parts.join("; ")
}

/// The state of a probe that is not Ready, for the Pending table: `Pending（HTTP 401 認証失敗）`, or with the
/// reason when there was no response: `Pending（応答なし）: 接続が拒否された（…）`.
pub fn pending_state_ja(probe: &ProbeRecord) -> String {
    match probe.http_status {
        Some(status) if probe.check_failures.is_empty() => {
            format!("Pending（HTTP {status} {}）", http_status_ja(status))
        }
        Some(status) => format!("Pending（HTTP {status} 本文チェック不合格）: {}", problem_ja(probe)),
        None => format!("Pending（応答なし）: {}", problem_ja(probe)),
    }
}

/// What went wrong with a probe that is not Ready, with its HTTP code, for a TODO line.
pub fn not_ready_ja(probe: &ProbeRecord) -> String {
    match probe.http_status {
        Some(_) if probe.check_failures.is_empty() => problem_ja(probe),
        Some(status) => format!("HTTP {status}: {}", problem_ja(probe)),
        None => format!("HTTP 000（応答なし）: {}", problem_ja(probe)),
    }
}

/// What clears a probe that is not Ready (解除条件), derived from how it ended.
pub fn release_condition_ja(probe: &ProbeRecord) -> String {
    let check = match (&probe.outcome, probe.http_status) {
        (Outcome::Http, Some(_)) if !probe.check_failures.is_empty() => {
            "応答本文をテンプレートのチェック（`checks`）と突き合わせ、サーバ側の応答内容を確認する"
        }
        (Outcome::Http, Some(401)) => {
            "Basic 認証情報の確認（ターゲットの `basic.user` と、パスワードを持つ環境変数 / ファイル）"
        }
        (Outcome::Http, Some(403)) => "利用者の権限と施設 ID（`X-Facility-Id`）の確認",
        (Outcome::Http, Some(404)) => "エンドポイントの公開確認（パス・デプロイ・ルーティング）",
        (Outcome::Http, Some(405)) => "サーバ側でのメソッド実装の確認",
        (Outcome::Http, Some(400 | 415 | 422)) => "リクエスト（ヘッダ・ボディ・テンプレート変数）の確認",
        (Outcome::Http, Some(429)) => "流量制限・帯域ポリシーの確認",
        (Outcome::Http, Some(500..=599)) => "サーバのエラーログ（X-Trace-Id = RUN_ID）の確認",
        (Outcome::Http, _) => "応答とテンプレートの Ready 定義（`ready`）の突き合わせ",
        (Outcome::DnsFailure { .. }, _) => "ホスト名と DNS 設定（ターゲットの `base_url`）の確認",
        (Outcome::ConnectionRefused { .. }, _) => "サーバの起動状態と待ち受けポート（ターゲットの `base_url`）の確認",
        (Outcome::ConnectFailed { .. }, _) => "ネットワーク経路（ファイアウォール・セキュリティグループ）の確認",
        (Outcome::TlsFailure { .. }, _) => "サーバ証明書と信頼する CA（ターゲットの `tls.ca_bundle`）の確認",
        (Outcome::ClientCertRejected { .. }, _) => {
            "クライアント証明書（ターゲットの `identity`）がサーバの信頼する CA で発行され有効期限内かの確認"
        }
        (Outcome::Timeout { .. }, _) => "サーバの負荷とタイムアウト設定（`timeout_seconds`）の確認",
        (Outcome::ProtocolError { .. }, _) => "プロキシ・ロードバランサを含む HTTP/1.1 経路の確認",
        (Outcome::LocalError { .. }, _) => "connrun 側の入力ファイルと証跡の書き込み先の確認",
        (Outcome::ProxyFailure { .. }, _) => {
            "プロキシ設定（HTTPS_PROXY・NO_PROXY、ターゲットの `proxy`）とプロキシ認証情報・許可ポートの確認"
        }
    };
    format!("{check}のうえ再実行し、Ready ステータスを得る")
}

/// A comparison's verdict word (`退行` / `改善` / `変化`).
pub fn change_class_ja(label: &str) -> &str {
    match label {
        "regression" => "退行",
        "improvement" => "改善",
        "neutral" => "変化",
        other => other,
    }
}

/// A comparison aspect in words (`status` → `ステータス`); unknown aspects are shown as they are.
pub fn aspect_ja(aspect: &str) -> String {
    let known = match aspect {
        "status" => "ステータス",
        "retries" => "再試行",
        "proxy" => "プロキシ",
        "outcome" => "結果",
        "probe" => "プローブ",
        "phase" => "フェーズ",
        "audit.delta" => "監査件数",
        "audit.errors" => "監査エラー",
        "audit.state" => "監査状態",
        "certificate.expiry" => "証明書の残日数",
        "certificate.fingerprint" => "証明書フィンガープリント",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    match aspect.strip_prefix("latency.") {
        Some(phase) => format!("レイテンシ（{phase}）"),
        None => aspect.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_401_points_at_the_basic_credentials() {
        let mut probe = crate::evidence::status::sample_status().probes[0].clone();
        probe.ready = false;
        probe.http_status = Some(401);
        assert!(release_condition_ja(&probe).starts_with("Basic 認証情報の確認"), "{}", release_condition_ja(&probe));
        assert_eq!(problem_ja(&probe), "HTTP 401（認証失敗）は Ready ステータスではない");
        assert_eq!(pending_state_ja(&probe), "Pending（HTTP 401 認証失敗）");
    }
}
