//! connrun proves its own rows (HARNESS.md §6): after the phases, it takes, in every chain holding the run's
//! rows (the facility's own, and `main` for calls that did not authenticate), the segment from the chain's
//! head before the run started to the newest signed checkpoint covering them,
//! recomputes every row's seal itself (`auditchain`, the same code the server's `audit verify` uses, so
//! connrun does not depend on the server), verifies the checkpoint's Ed25519 signature with the public key
//! the target names, and holds the segment to it (row count and hash at the checkpointed row).
//!
//! Whatever goes wrong while reading is "unverified" with the reason, never OK; only a row that does not
//! hold, a checkpoint the table disagrees with or a bad signature is NG. The checkpoint is written by the
//! server after the commit, so a checkpoint not yet covering the run's last row is waited for, briefly (one
//! deadline for every chain). The run is OK only when every chain is.

pub mod fetch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use auditchain::checkpoint::PublicKey;
use auditchain::seal::StoredRow;
use auditchain::walk::{ChainState, check};
use auditchain::watch::{CheckpointWatch, Expected};
use chrono::{DateTime, Utc};

use super::{AuditDb, sql_literal};
use crate::evidence::chain::{ChainProof, ChainSegmentProof, ChainVerdict};
pub use fetch::CheckpointSource;

/// Rows a segment may hold; a busier server between the run and its checkpoint leaves the run unverified.
pub const MAX_SEGMENT_ROWS: usize = 200_000;
/// Chains a run's rows may span (its facility's, `main`, and a few more for a run with several users); more
/// leaves the run unverified rather than walking without bound.
pub const MAX_CHAINS: usize = 16;
/// How often a checkpoint not yet covering the run is fetched again.
const POLL: Duration = Duration::from_millis(250);
/// The default of `checkpoint_wait_seconds`, and its largest accepted value.
pub const WAIT_SECONDS: (u64, u64) = (10, 300);

/// `[targets.<name>.audit]`'s `public_key` and checkpoint source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    /// The server's checkpoint public key (SubjectPublicKeyInfo, PEM or DER).
    pub public_key: PathBuf,
    /// Where the newest checkpoint is read.
    pub checkpoint: CheckpointSource,
    /// How long a checkpoint not yet covering the run's rows is waited for (`checkpoint_wait_seconds`).
    pub wait: Duration,
}

/// What the proof needs from the run.
pub struct ChainInput<'a> {
    /// The audit database, when connected.
    pub db: Option<&'a AuditDb>,
    /// The target's key and checkpoint source, when configured.
    pub spec: Option<&'a ChainSpec>,
    /// The RUN_ID (`run_id` column of the run's rows).
    pub run_id: &'a str,
    /// The largest id in the table before the run started, when it could be read.
    pub start_head: Option<i64>,
}

/// A chain holding the run's rows: its id and the run's first id, last id and count in it.
type RunRows = (String, (i64, i64, u64));

/// Why the proof stopped.
enum Stop {
    /// Nothing proved, and why.
    Unverified(String),
    /// A problem found.
    Ng(String),
}

/// The largest id before the run: the segment starts at the chain's row at or below it.
pub async fn head_id(db: &AuditDb) -> Option<i64> {
    let outcome = db.query_text("SELECT MAX(id) FROM d_audit_event").await;
    outcome.rows.first()?.first()?.as_deref()?.parse().ok()
}

/// Proves the run's rows; never fails, the reason is in the verdict.
pub async fn prove(input: &ChainInput<'_>) -> ChainProof {
    let Some(spec) = input.spec else {
        return ChainProof::unverified("公開鍵未設定（ターゲットの [audit] public_key）");
    };
    let Some(db) = input.db else {
        return ChainProof::unverified("監査 DB に接続していない");
    };
    let key = match PublicKey::from_file(&spec.public_key) {
        Ok(key) => key,
        Err(e) => return ChainProof::unverified(format!("公開鍵を読めない: {e}")),
    };
    let mut proof = ChainProof::unverified("");
    proof.public_key = Some(key.fingerprint());
    let sql = format!(
        "SELECT chain_id, MIN(id), MAX(id), COUNT(*) FROM d_audit_event WHERE run_id = {} GROUP BY chain_id \
         ORDER BY chain_id LIMIT {}",
        sql_literal(input.run_id),
        MAX_CHAINS + 1
    );
    let read: Result<Vec<RunRows>, Stop> =
        query(db, &sql).await.and_then(|rows| rows.iter().map(|row| run_rows(row)).collect());
    let chains = match read {
        Ok(chains) => chains,
        Err(Stop::Unverified(reason) | Stop::Ng(reason)) => {
            proof.verdict = ChainVerdict::Unverified { reason };
            return proof;
        }
    };
    if chains.is_empty() {
        proof.verdict = ChainVerdict::Unverified { reason: "この RUN_ID の監査行がない".into() };
        return proof;
    }
    if chains.len() > MAX_CHAINS {
        proof.verdict = ChainVerdict::Unverified {
            reason: format!("本 run の行が上限 {MAX_CHAINS} を超えるチェーンにある"),
        };
        return proof;
    }
    let deadline = Instant::now() + spec.wait;
    for (chain, rows) in chains {
        let mut segment = ChainSegmentProof {
            chain_id: chain,
            verdict: ChainVerdict::Unverified { reason: String::new() },
            run_rows: rows,
            segment: None,
            checkpoint_source: None,
            checkpoint: None,
        };
        segment.verdict = match walk(db, spec, &key, input, deadline, &mut segment).await {
            Ok(()) => ChainVerdict::Ok,
            Err(Stop::Ng(reason)) => ChainVerdict::Ng { reason },
            Err(Stop::Unverified(reason)) => ChainVerdict::Unverified { reason },
        };
        proof.chains.push(segment);
    }
    proof.verdict = ChainProof::overall(&proof.chains);
    proof
}

/// `(chain, (first id, last id, count))` of one row of the run's rows grouped by chain.
fn run_rows(row: &[Option<String>]) -> Result<RunRows, Stop> {
    Ok((text(row, 0)?, (int(row, 1)?, int(row, 2)?, u64::try_from(int(row, 3)?).unwrap_or(0))))
}

/// Walks one chain's segment, from its head before the run to the newest checkpoint covering the run's rows.
async fn walk(
    db: &AuditDb,
    spec: &ChainSpec,
    key: &PublicKey,
    input: &ChainInput<'_>,
    deadline: Instant,
    proof: &mut ChainSegmentProof,
) -> Result<(), Stop> {
    let chain = proof.chain_id.clone();
    let (first, last, _) = proof.run_rows;
    let (signed, source) = newest_covering(spec, &chain, last, deadline, proof).await?;
    key.verify(&signed).map_err(|e| Stop::Ng(format!("チェックポイント {source} の署名: {e}")))?;
    let cp = signed.checkpoint;
    let chain_sql = sql_literal(&chain);
    let below = input.start_head.map_or(first - 1, |head| head.min(first - 1));
    let anchor =
        query(db, &format!("SELECT MAX(id) FROM d_audit_event WHERE chain_id = {chain_sql} AND id <= {below}")).await?;
    let anchor: Option<i64> = anchor.first().and_then(|r| r.first().cloned().flatten()).and_then(|v| v.parse().ok());
    let start = anchor.unwrap_or(first);
    let before =
        query(db, &format!("SELECT COUNT(*) FROM d_audit_event WHERE chain_id = {chain_sql} AND id < {start}")).await?;
    let before = u64::try_from(before.first().map(|r| int(r, 0)).transpose()?.unwrap_or(0)).unwrap_or(0);
    let sql = format!(
        "SELECT {} FROM d_audit_event WHERE chain_id = {chain_sql} AND id >= {start} AND id <= {} ORDER BY id LIMIT {}",
        columns(db),
        cp.last_id,
        MAX_SEGMENT_ROWS + 1
    );
    let rows = query(db, &sql).await?;
    if rows.len() > MAX_SEGMENT_ROWS {
        return Err(Stop::Unverified(format!("区間が上限 {MAX_SEGMENT_ROWS} 行を超える")));
    }
    proof.segment = Some((start, rows.last().map_or(start, |r| int(r, 0).unwrap_or(start)), rows.len() as u64));
    let mut state = ChainState { rows: before, ..ChainState::default() };
    let mut watch = CheckpointWatch::new(vec![Expected { source: source.clone(), checkpoint: cp }]);
    for (index, raw) in rows.iter().enumerate() {
        let row = stored_row(raw).map_err(Stop::Unverified)?;
        // The segment's first row is the anchor: its own seal is checked, its link to the row before is not.
        let linked = index > 0 || anchor.is_none();
        if let Err((column, problem)) = check(&state, &row, linked) {
            return Err(Stop::Ng(format!("行 id {} の列 {column}: {problem}", row.id)));
        }
        state.advance(&row);
        watch.row(&row.chain_id, row.id, &row.event_hash, state.rows);
    }
    let (matched, findings) = watch.finish(true);
    if let Some(finding) = findings.first() {
        return Err(Stop::Ng(finding.to_string()));
    }
    if matched == 0 {
        return Err(Stop::Unverified("チェックポイントの行に届かなかった".into()));
    }
    Ok(())
}

/// The newest checkpoint of `chain`, fetched again (until `deadline`) until it covers row `last`. The server
/// signs after the commit, so "none yet" (a 404, no file) is waited for like "not covering yet".
async fn newest_covering(
    spec: &ChainSpec,
    chain: &str,
    last: i64,
    deadline: Instant,
    proof: &mut ChainSegmentProof,
) -> Result<(auditchain::checkpoint::SignedCheckpoint, String), Stop> {
    loop {
        let waited = match spec.checkpoint.newest(chain).await {
            Ok((signed, from, document)) => {
                proof.checkpoint_source = Some(from.clone());
                proof.checkpoint = Some(document);
                if signed.checkpoint.last_id >= last {
                    return Ok((signed, from));
                }
                format!(
                    "最新のチェックポイント（id {}）が {} 秒待っても本 run の最終行（id {last}）に届いていない",
                    signed.checkpoint.last_id,
                    spec.wait.as_secs()
                )
            }
            Err(e) => format!("{} 秒待ってもチェックポイントを取得できない: {e}", spec.wait.as_secs()),
        };
        if Instant::now() + POLL > deadline {
            return Err(Stop::Unverified(waited));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The columns of [`StoredRow`], `event_time` as epoch milliseconds on PostgreSQL (its text form depends on
/// the session's time zone), as stored text on SQLite.
fn columns(db: &AuditDb) -> String {
    let time = if db.is_postgres() { "round(extract(epoch from event_time) * 1000)::bigint" } else { "event_time" };
    auditchain::seal::COLUMNS.replacen("event_time", time, 1)
}

async fn query(db: &AuditDb, sql: &str) -> Result<Vec<Vec<Option<String>>>, Stop> {
    let outcome = db.query_text(sql).await;
    match outcome.error {
        Some(error) => Err(Stop::Unverified(format!("監査 DB の照会に失敗: {error}"))),
        None => Ok(outcome.rows),
    }
}

fn text(row: &[Option<String>], index: usize) -> Result<String, Stop> {
    row.get(index).cloned().flatten().ok_or_else(|| Stop::Unverified(format!("列 {index} が NULL")))
}

fn int(row: &[Option<String>], index: usize) -> Result<i64, Stop> {
    text(row, index)?.parse().map_err(|e| Stop::Unverified(format!("列 {index}: {e}")))
}

/// A row read as text (in [`auditchain::seal::COLUMNS`] order) as the server stored it.
fn stored_row(raw: &[Option<String>]) -> Result<StoredRow, String> {
    let get = |i: usize| raw.get(i).cloned().flatten();
    let need = |i: usize| get(i).ok_or_else(|| format!("列 {i} が NULL"));
    let number = |i: usize| need(i).and_then(|v| v.parse::<i64>().map_err(|e| format!("列 {i}: {e}")));
    let time = need(3)?;
    let event_time = match time.parse::<i64>() {
        Ok(millis) => DateTime::from_timestamp_millis(millis),
        Err(_) => parse_time(&time),
    }
    .ok_or_else(|| format!("event_time {time:?} を読めない"))?;
    Ok(StoredRow {
        id: number(0)?,
        chain_id: need(1)?,
        hash_version: i32::try_from(number(2)?).map_err(|e| e.to_string())?,
        event_time,
        actor_id: get(4),
        actor_display_name: get(5),
        actor_role: get(6),
        action: need(7)?,
        outcome: need(8)?,
        resource: get(9),
        patient_id: get(10),
        request_id: get(11),
        trace_id: get(12),
        ip_address: get(13),
        user_agent: get(14),
        run_id: get(15),
        payload: get(16),
        payload_hash: need(17)?,
        previous_hash: get(18),
        event_hash: need(19)?,
    })
}

/// SQLite's stored text of a `DateTime<Utc>` (RFC 3339, or with a space instead of `T`).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
