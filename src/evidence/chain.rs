//! `audit/chain.json` and the run's verdict on the audit chain: did the rows this run caused stay in a chain
//! that holds, under a checkpoint the server signed (HARNESS.md §6)?
//!
//! The verdict is three-valued like the audit state: `ok` only when a segment was walked, every row's seal
//! recomputed and a checkpoint covering the run's rows verified with the target's public key; `ng` when
//! something was found (a row that does not hold, a checkpoint the table disagrees with, a bad signature),
//! which fails the run; `unverified` with the reason when nothing could be proved (no key configured, no
//! audit database, no checkpoint covering the rows yet).

use serde::{Deserialize, Serialize};

/// The verdict, as `audit/chain.json` and `status.json` write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ChainVerdict {
    /// The segment holds and the signed checkpoint agrees with it.
    Ok,
    /// A problem was found.
    Ng {
        /// Which row or checkpoint, and what.
        reason: String,
    },
    /// Nothing was proved.
    Unverified {
        /// Why not.
        reason: String,
    },
}

impl ChainVerdict {
    /// The verdict in words: `OK` / `NG (理由)` / `未検証 (理由: …)`.
    pub fn value_ja(&self) -> String {
        match self {
            Self::Ok => "OK".to_owned(),
            Self::Ng { reason } => format!("NG ({reason})"),
            Self::Unverified { reason } => format!("未検証 (理由: {reason})"),
        }
    }

    /// The Markdown line: `監査チェーン検証: OK` / `NG (理由)` / `未検証 (理由: …)`.
    pub fn line_ja(&self) -> String {
        format!("監査チェーン検証: {}", self.value_ja())
    }

    /// Whether it fails the run.
    pub fn is_ng(&self) -> bool {
        matches!(self, Self::Ng { .. })
    }
}

/// `audit/chain.json`: what was walked and against which checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainProof {
    /// The verdict and its reason.
    #[serde(flatten)]
    pub verdict: ChainVerdict,
    /// The chain of the run's rows.
    pub chain_id: Option<String>,
    /// The run's rows (`run_id` = RUN_ID): first id, last id, count.
    pub run_rows: Option<(i64, i64, u64)>,
    /// The segment walked: first id (the chain's head before the run, when there was one), last id, rows.
    pub segment: Option<(i64, i64, u64)>,
    /// Where the checkpoint came from (URL or file).
    pub checkpoint_source: Option<String>,
    /// The checkpoint document as fetched.
    pub checkpoint: Option<serde_json::Value>,
    /// The configured public key's fingerprint.
    pub public_key: Option<String>,
}

impl ChainProof {
    /// A proof that proved nothing, for `reason`.
    pub fn unverified(reason: impl Into<String>) -> Self {
        Self {
            verdict: ChainVerdict::Unverified { reason: reason.into() },
            chain_id: None,
            run_rows: None,
            segment: None,
            checkpoint_source: None,
            checkpoint: None,
            public_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_three_valued_and_only_ng_fails() {
        let unverified = ChainProof::unverified("公開鍵未設定");
        assert_eq!(unverified.verdict.line_ja(), "監査チェーン検証: 未検証 (理由: 公開鍵未設定)");
        assert!(!unverified.verdict.is_ng());
        let ng = ChainVerdict::Ng { reason: "行 id 7".into() };
        assert!(ng.is_ng() && ng.line_ja().ends_with("NG (行 id 7)"));
        let json = serde_json::to_value(&unverified).unwrap();
        assert_eq!(json["verdict"], "unverified");
    }
}
