//! Golden files for the rendered documents of fixed runs (fixed times, so the output is stable): the sample
//! run, and a red run whose server was down and whose audit database could not be reached, beside the green
//! demo run of `report_demo_snapshot.rs`. A template change shows up as a diff here; `UPDATE_SNAPSHOTS=1`
//! rewrites the files.

use std::path::Path;

use chrono::{DateTime, Utc};
use connrun::evidence::status::{AuditState, PhaseStatus, RunStatus, sample_status};
use connrun::evidence::{CheckResult, Outcome, ProbeRecord, Timings};
use connrun::report::{ReportSettings, Reports};

/// Compares `documents` with `tests/snapshots/<prefix><path with / as __>`, or rewrites them.
fn assert_snapshots(prefix: &str, documents: &[(&str, String)]) {
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1");
    for (path, text) in documents {
        let file = snapshots.join(format!("{prefix}{}", path.replace('/', "__")));
        if update {
            std::fs::write(&file, text).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)", file.display()));
        assert_eq!(text, &expected, "{path} differs from {}", file.display());
    }
}

#[test]
fn rendered_documents_match_their_snapshots() {
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&sample_status()).expect("render");

    assert_snapshots("", &documents);
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

/// A probe that met a closed port, as the probe engine records it.
fn refused(id: &str, name: &str, phase: &str, method: &str, path: &str) -> ProbeRecord {
    ProbeRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        phase: phase.to_owned(),
        method: method.to_owned(),
        url: format!("https://phr.example.jp:8443{path}"),
        started_at: at("2025-11-19T00:30:01Z"),
        outcome: Outcome::ConnectionRefused { message: "Connection refused (os error 111)".to_owned() },
        http_status: None,
        ready: false,
        check_failures: Vec::new(),
        timings: Timings { dns_ms: 0.2, connect_ms: 0.3, tls_ms: 0.0, ttfb_ms: 0.0, total_ms: 0.6, proxy_ms: 0.0 },
        tls: None,
        server_chain: Vec::new(),
        request_headers: Vec::new(),
        response_headers: Vec::new(),
        request_body_bytes: 0,
        response_body_bytes: 0,
        response_body_sha256: None,
        response_body_file: None,
        audit_expected: vec![],
        attempts: None,
        proxy: None,
        retried: Vec::new(),
    }
}

/// phr-seq against a server that is down, with an audit database that does not answer: what
/// `connrun run` records for it (no counts, because no query ever ran; the connection error as the reason).
pub fn red_status() -> RunStatus {
    let base = "/openDolphin/resources/20/adm/phr";
    let reason = "audit database postgres://auditor:<MASKED>@db.example.jp:5432/audit: error connecting to server: \
                  Connection refused (os error 111)";
    let phase = |id: &str, name: &str| PhaseStatus {
        id: id.to_owned(),
        name: name.to_owned(),
        started_at: at("2025-11-19T00:30:01Z"),
        finished_at: at("2025-11-19T00:30:02Z"),
    };
    let mut probes = vec![
        refused("PHR-06", "identityToken", "C", "POST", &format!("{base}/identityToken")),
        refused("PHR-07", "image", "D", "GET", &format!("{base}/image/P0001")),
        refused("PHR-11", "container", "E", "GET", &format!("{base}/F001,P0001")),
    ];
    let expected = ["PHR_LAYER_ID_TOKEN_ISSUE", "PHR_IMAGE_STREAM", "PHR_CONTAINER_FETCH"];
    for (probe, action) in probes.iter_mut().zip(expected) {
        probe.audit_expected = vec![action.to_owned()];
    }
    let mut status = sample_status();
    status.run_id = "20251119TorcaPHRSeqZ2".to_owned();
    status.template_description =
        "PHR Phase-C/D/E 接続確認 (PHR-06 identityToken, PHR-07 image, PHR-11 container) と d_audit_event 採取"
            .to_owned();
    status.target = "orca-stage".to_owned();
    status.base_url = "https://phr.example.jp:8443".to_owned();
    status.started_at = at("2025-11-19T00:30:00Z");
    status.finished_at = at("2025-11-19T00:30:02Z");
    status.all_ready = false;
    status.audit_ok = false;
    status.audit_checked = true;
    status.audit_state = Some(AuditState::Failed { reason: reason.to_owned() });
    status.phases = vec![phase("C", "Layer ID"), phase("D", "画像"), phase("E", "Container")];
    status.preflight = vec![
        CheckResult::new("tcp_connect", false, "phr.example.jp:8443: Connection refused (os error 111)"),
        CheckResult::new("audit_db", false, reason),
    ];
    status.serverinfo =
        Some(refused("serverinfo", "claim.conn", "serverinfo", "GET", "/openDolphin/resources/serverinfo/claim/conn"));
    status.serverinfo_body = None;
    status.probe_memos = [
        ("PHR-06", "Layer ID トークン発行 (RS256 JWT)"),
        ("PHR-07", "患者画像ストリーム (image/jpeg, 5MB 上限)"),
        ("PHR-11", "PHRContainer (docList / labList)"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    status.probes = probes;
    status.audit = Vec::new();
    status.audit_errors = vec![reason.to_owned()];
    status
}

fn operator() -> ReportSettings {
    ReportSettings {
        owner: Some("@OpsLead".to_owned()),
        contacts: vec![
            "Layer ID / Secrets: @OpsLead (#ops-secrets)".to_owned(),
            "PHR 実装: @Codex (#server-modernized)".to_owned(),
        ],
        ..ReportSettings::default()
    }
}

#[test]
fn a_red_runs_markdown_matches_its_snapshots_and_claims_nothing_it_did_not_collect() {
    let reports = Reports::load(None).expect("embedded templates").with_settings(operator());

    let documents = reports.render_all(&red_status()).expect("render");

    for (path, text) in &documents {
        assert!(!text.contains("0 rows"), "{path} reads a failed pull as no rows:\n{text}");
        assert!(!text.contains("audit/sql"), "{path} links SQL evidence that was never written:\n{text}");
        assert!(!text.contains("期待した監査アクションを全て確認"), "{path} confirms an audit it never saw");
    }
    let text = |name: &str| &documents.iter().find(|(p, _)| *p == name).expect(name).1;
    assert!(text("logs/phr_container_summary.md").contains("## 監査（d_audit_event）: 採取失敗"));
    assert!(text("logs/summary.md").contains("- 採取失敗: audit database postgres://auditor:&lt;MASKED&gt;@"));
    assert_snapshots("red__", &documents);
}
