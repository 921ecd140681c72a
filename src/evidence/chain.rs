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

/// `audit/chain.json`: what was walked and against which checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainProof {
    /// The verdict over every chain and its reason: NG when one chain is NG, unverified when one could not
    /// be proved, OK only when every chain holding the run's rows was.
    #[serde(flatten)]
    pub verdict: ChainVerdict,
    /// The configured public key's fingerprint.
    pub public_key: Option<String>,
    /// One entry per chain holding the run's rows (a facility's own, `main` for unauthenticated calls).
    pub chains: Vec<ChainSegmentProof>,
}

/// One chain's part of the proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainSegmentProof {
    /// The chain.
    pub chain_id: String,
    /// This chain's verdict and its reason.
    #[serde(flatten)]
    pub verdict: ChainVerdict,
    /// The run's rows (`run_id` = RUN_ID) in this chain: first id, last id, count.
    pub run_rows: (i64, i64, u64),
    /// The segment walked: first id (the chain's head before the run, when there was one), last id, rows.
    pub segment: Option<(i64, i64, u64)>,
    /// Where the checkpoint came from (URL or file).
    pub checkpoint_source: Option<String>,
    /// The checkpoint document as fetched.
    pub checkpoint: Option<serde_json::Value>,
}

impl ChainProof {
    /// A proof that proved nothing, for `reason`.
    pub fn unverified(reason: impl Into<String>) -> Self {
        Self { verdict: ChainVerdict::Unverified { reason: reason.into() }, public_key: None, chains: Vec::new() }
    }

    /// The verdict over `chains`: the first NG, else the first unverified, each naming its chain; OK only
    /// when there is at least one chain and every one is OK.
    pub fn overall(chains: &[ChainSegmentProof]) -> ChainVerdict {
        let named = |segment: &ChainSegmentProof, reason: &str| format!("チェーン {}: {reason}", segment.chain_id);
        if let Some((segment, reason)) = chains.iter().find_map(|c| match &c.verdict {
            ChainVerdict::Ng { reason } => Some((c, reason)),
            _ => None,
        }) {
            return ChainVerdict::Ng { reason: named(segment, reason) };
        }
        if let Some((segment, reason)) = chains.iter().find_map(|c| match &c.verdict {
            ChainVerdict::Unverified { reason } => Some((c, reason)),
            _ => None,
        }) {
            return ChainVerdict::Unverified { reason: named(segment, reason) };
        }
        if chains.is_empty() {
            return ChainVerdict::Unverified { reason: "検証したチェーンがない".into() };
        }
        ChainVerdict::Ok
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

    fn segment(chain: &str, verdict: ChainVerdict) -> ChainSegmentProof {
        ChainSegmentProof {
            chain_id: chain.into(),
            verdict,
            run_rows: (1, 2, 2),
            segment: None,
            checkpoint_source: None,
            checkpoint: None,
        }
    }

    #[test]
    fn every_chain_must_be_ok_for_ok_and_the_worst_names_its_chain() {
        let ok = |c: &str| segment(c, ChainVerdict::Ok);
        let unverified = |c: &str| segment(c, ChainVerdict::Unverified { reason: "待ち切れ".into() });
        let ng = |c: &str| segment(c, ChainVerdict::Ng { reason: "行 id 9".into() });
        assert_eq!(ChainProof::overall(&[ok("F001"), ok("main")]), ChainVerdict::Ok);
        assert_eq!(
            ChainProof::overall(&[ok("F001"), unverified("main")]),
            ChainVerdict::Unverified { reason: "チェーン main: 待ち切れ".into() }
        );
        assert_eq!(
            ChainProof::overall(&[unverified("F001"), ng("main")]),
            ChainVerdict::Ng { reason: "チェーン main: 行 id 9".into() }
        );
        assert!(matches!(ChainProof::overall(&[]), ChainVerdict::Unverified { .. }));
        let json =
            serde_json::to_value(ChainProof { chains: vec![ng("F001")], ..ChainProof::unverified("x") }).unwrap();
        assert_eq!(json["chains"][0]["chain_id"], "F001");
        assert_eq!(json["chains"][0]["verdict"], "ng");
    }
}
