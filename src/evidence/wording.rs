//! The phrases of a probe record in Japanese: what an outcome, an HTTP status or a failed check means.
//!
//! Both the reports and the comparison of two runs describe the same records to the same readers (a Japanese
//! team pasting them into its logs), so the phrases live beside the records rather than in either of them:
//! `report/wording.rs` builds the report's sentences on top of these, and `compare/diff` writes its notes
//! with them. The probe engine keeps its machine vocabulary (`status.json` stays stable); error details that
//! come from elsewhere (an OS message, a server's text) are kept verbatim in parentheses, as the seed logs
//! quote them.

use super::{Outcome, ProbeRecord};

/// What the outcome of a probe means, as a phrase (`接続が拒否された（…）`); empty for an HTTP response.
pub fn outcome_ja(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Http => String::new(),
        Outcome::DnsFailure { message } => format!("名前解決に失敗（{message}）"),
        Outcome::ConnectionRefused { message } => format!("接続が拒否された（{message}）"),
        Outcome::ConnectFailed { message } => format!("接続に失敗（{message}）"),
        Outcome::TlsFailure { reason } => format!("TLS ハンドシェイクに失敗（{reason}）"),
        Outcome::ClientCertRejected { reason } => format!("クライアント証明書が拒否された（{reason}）"),
        Outcome::Timeout { during } => format!("{}にタイムアウト", during_ja(during)),
        Outcome::ProtocolError { message } => format!("HTTP プロトコルエラー（{message}）"),
        Outcome::LocalError { message } => format!("connrun 側のエラー（{message}）"),
        Outcome::ProxyFailure { message } => format!("プロキシが CONNECT を拒否した（{message}）"),
    }
}

fn during_ja(during: &str) -> String {
    match during {
        "dns" => "名前解決中".to_owned(),
        "connect" => "TCP 接続中".to_owned(),
        "tls" => "TLS ハンドシェイク中".to_owned(),
        "proxy" => "プロキシへの CONNECT 中".to_owned(),
        "response" => "応答待ち".to_owned(),
        "body" => "本文受信中".to_owned(),
        other => format!("{other} の段階で"),
    }
}

/// What an HTTP status usually means, in a word or two (`認証失敗`).
pub fn http_status_ja(status: u16) -> &'static str {
    match status {
        400 => "リクエスト不正",
        401 => "認証失敗",
        403 => "権限なし",
        404 => "エンドポイントなし",
        405 => "メソッド未対応",
        408 | 504 => "タイムアウト",
        409 => "競合",
        410 => "失効済み",
        413 => "サイズ超過",
        415 => "メディアタイプ未対応",
        422 => "入力エラー",
        429 => "流量制限",
        500 => "サーバ内部エラー",
        502 => "ゲートウェイエラー",
        503 => "サービス停止中",
        _ if (400..500).contains(&status) => "クライアントエラー",
        _ if (500..600).contains(&status) => "サーバエラー",
        _ => "Ready 判定外の応答",
    }
}

/// A body-check or flow failure of the probe engine in Japanese; the known forms are translated, anything
/// else is quoted after `チェック不合格`.
pub fn check_failure_ja(text: &str) -> String {
    if let Some(needle) = text.strip_prefix("body does not contain ") {
        return format!("本文に {needle} が含まれない");
    }
    if let Some((size, limit)) =
        text.strip_prefix("body is ").and_then(|r| r.split_once(" bytes, more than the allowed "))
    {
        return format!("本文が {size} バイトで上限 {limit} バイトを超えた");
    }
    if let Some(pointer) = text.strip_prefix("JSON field ").and_then(|r| r.strip_suffix(" is missing")) {
        return format!("JSON フィールド {pointer} がない");
    }
    if let Some(variable) = text.strip_prefix("variable ").and_then(|r| r.strip_suffix(" was not captured")) {
        return format!("変数 {variable} を前のプローブから取得できていない");
    }
    if let Some(rest) = text.strip_prefix("poll: ") {
        return format!("ポーリングで期待値にならなかった（{rest}）");
    }
    if let Some(rest) = text.strip_prefix("capture ") {
        return format!("応答から値を取得できなかった（{rest}）");
    }
    format!("チェック不合格（{text}）")
}

/// Everything that went wrong with a probe, in one line (empty when it is Ready).
pub fn problem_ja(probe: &ProbeRecord) -> String {
    let mut parts: Vec<String> = Vec::new();
    let outcome = outcome_ja(&probe.outcome);
    if !outcome.is_empty() {
        parts.push(outcome);
    }
    if let Some(status) = probe.http_status
        && !probe.ready
        && probe.check_failures.is_empty()
    {
        parts.push(format!("HTTP {status}（{}）は Ready ステータスではない", http_status_ja(status)));
    }
    parts.extend(probe.check_failures.iter().map(|f| check_failure_ja(f)));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_kind_has_a_japanese_phrase() {
        let outcomes = [
            Outcome::DnsFailure { message: "m".to_owned() },
            Outcome::ConnectionRefused { message: "m".to_owned() },
            Outcome::ConnectFailed { message: "m".to_owned() },
            Outcome::TlsFailure { reason: "m".to_owned() },
            Outcome::ClientCertRejected { reason: "m".to_owned() },
            Outcome::Timeout { during: "tls".to_owned() },
            Outcome::ProtocolError { message: "m".to_owned() },
            Outcome::LocalError { message: "m".to_owned() },
            Outcome::ProxyFailure { message: "m".to_owned() },
        ];
        for outcome in outcomes {
            let phrase = outcome_ja(&outcome);
            assert!(!phrase.is_empty() && !phrase.contains(&outcome.describe()), "{phrase}");
            assert!(phrase.chars().any(|c| c > '\u{3000}'), "{} has no Japanese: {phrase}", outcome.kind());
        }
        assert_eq!(outcome_ja(&Outcome::Http), "");
    }

    #[test]
    fn the_probe_engines_check_messages_are_translated() {
        assert_eq!(check_failure_ja("body does not contain \"x\""), "本文に \"x\" が含まれない");
        assert_eq!(
            check_failure_ja("body is 10 bytes, more than the allowed 5"),
            "本文が 10 バイトで上限 5 バイトを超えた"
        );
        assert_eq!(check_failure_ja("JSON field /a is missing"), "JSON フィールド /a がない");
        assert_eq!(check_failure_ja("something new"), "チェック不合格（something new）");
    }
}
