//! Signed checkpoints against the tamper cases the chain alone cannot see: a chain rewritten and re-hashed
//! from some row on, a deleted tail, a middle row deleted and the rest re-hashed, and a forged checkpoint.
//! The real server writes checkpoints into a directory while it serves; `phr-server audit verify
//! --checkpoints <dir> --public-key <file>` (the operator's command, a separate process) must name the kind
//! of tampering and the checkpoint. On SQLite and PostgreSQL.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use auditchain::checkpoint::{Checkpoint, SignedCheckpoint, SigningKey};
use phr_server::audit::seal::{self, StoredRow};
use phr_server::config::audit::{CheckpointConfig, CheckpointDest};

use crate::audit_tamper::{as_table_owner, insert_rows, read_rows, restore};
use crate::support::{self, Options, TestServer};

/// Calls made before tampering (each writes one row).
const CALLS: usize = 5;

/// Checkpoints after every commit, into `dir`, signed with `key`.
pub(crate) fn options(key: &Arc<SigningKey>, dir: &Path) -> Options {
    Options {
        audit_checkpoints: Some(CheckpointConfig {
            key: key.clone(),
            dest: CheckpointDest::Dir(dir.to_owned()),
            every_rows: 1,
            every: Duration::from_secs(3600),
        }),
        ..Options::default()
    }
}

/// `audit verify --checkpoints <dir> --public-key <file>` as a separate process.
fn verify(server_url: &str, dir: &Path, public_key: &Path) -> (Option<i32>, String) {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_phr-server"))
        .args(["audit", "verify", "--database-url", server_url, "--checkpoints"])
        .arg(dir)
        .arg("--public-key")
        .arg(public_key)
        .env_remove("PHR_AUDIT_CHECKPOINT_S3_REGION")
        .output()
        .unwrap();
    (
        output.status.code(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

/// Waits until the ops listener serves a checkpoint of `chain` covering row `last_id`: the task writes it
/// after the commit, off the append path.
pub(crate) async fn newest_checkpoint_covering(server: &TestServer, chain: &str, last_id: i64) -> SignedCheckpoint {
    let url = format!("{}/audit/checkpoint?chain={chain}", server.ops_base);
    for _ in 0..400 {
        let response = reqwest::get(&url).await.unwrap();
        if response.status() == 200 {
            let signed: SignedCheckpoint = response.json().await.unwrap();
            if signed.checkpoint.last_id >= last_id {
                return signed;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint of chain {chain} covering row {last_id} was served within 20 s");
}

/// The rows from index `from` on, re-sealed so the chain holds in itself: what an intruder with the owner's
/// rights and the formula does after changing a row.
fn rehashed(rows: &[StoredRow], from: usize, previous: &str) -> Vec<StoredRow> {
    let mut previous = previous.to_owned();
    rows[from..]
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row.previous_hash = Some(previous.clone());
            row.event_hash = seal::v2(&row);
            previous = row.event_hash.clone();
            row
        })
        .collect()
}

#[tokio::test]
async fn checkpoints_expose_a_rehashed_chain_a_cut_tail_deleted_rows_and_a_forged_checkpoint() {
    for db in support::backends().await {
        // Arrange: a key pair, a checkpoint directory, calls, and the checkpoint of the head.
        let keys = tempfile::tempdir().unwrap();
        let dir = keys.path().join("checkpoints");
        let public_key = keys.path().join("audit.pub.pem");
        let (_, key) = SigningKey::generate().unwrap();
        std::fs::write(&public_key, key.public_key().to_pem()).unwrap();
        let key = Arc::new(key);
        let server = TestServer::start(db, options(&key, &dir)).await;
        for i in 0..CALLS {
            let response = server.get_traced("allergy/P0001", &format!("checkpoint-{i}")).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
        let snapshot = read_rows(&server).await;
        let last = snapshot.last().unwrap().clone();
        // The default caller's rows are in its facility's chain.
        let served = newest_checkpoint_covering(&server, support::FACILITY, last.id).await;
        let url = server.app.config.database_url.clone();
        let head_file = served.checkpoint.file_name();

        // The untouched table agrees with every checkpoint, and the served one is in the directory.
        assert_eq!(key.public_key().verify(&served), Ok(()));
        assert_eq!(
            (served.checkpoint.rows, served.checkpoint.event_hash.as_str()),
            (snapshot.len() as u64, last.event_hash.as_str())
        );
        assert!(dir.join(&head_file).is_file(), "{head_file} written");
        let (code, out) = verify(&url, &dir, &public_key);
        assert_eq!(code, Some(0), "{:?}: {out}", server.backend);
        assert!(out.contains("audit chain intact"), "{out}");

        let middle = snapshot.len() / 2;
        let mut rewritten_row = snapshot[middle].clone();
        rewritten_row.resource = Some("/elsewhere".into());
        let mut rewritten = snapshot.clone();
        rewritten[middle] = rewritten_row;
        let rewritten = rehashed(&rewritten, middle, &snapshot[middle - 1].event_hash);
        let mut without_middle = snapshot.clone();
        without_middle.remove(middle);
        let without_middle = rehashed(&without_middle, middle, &snapshot[middle - 1].event_hash);
        let from = snapshot[middle].id;
        let cases: Vec<(&str, Vec<String>, Vec<StoredRow>, &str)> = vec![
            (
                "re-hashed chain",
                vec![format!("DELETE FROM d_audit_event WHERE id >= {from}")],
                rewritten,
                "chain rewritten",
            ),
            (
                "deleted tail",
                vec![format!("DELETE FROM d_audit_event WHERE id = {}", last.id)],
                vec![],
                "tail truncated",
            ),
            (
                "deleted middle row, the rest re-hashed",
                vec![format!("DELETE FROM d_audit_event WHERE id >= {from}")],
                without_middle,
                "rows deleted",
            ),
        ];
        for (name, statements, reinserted, kind) in cases {
            // Act: tamper as the owner, past the trigger, then verify against the checkpoints.
            as_table_owner(&server, &statements).await;
            insert_rows(&server, &reinserted).await;
            let plain = server.app.audit.verify().await.unwrap();
            let (code, out) = verify(&url, &dir, &public_key);
            restore(&server, &snapshot).await;

            // Assert: the chain holds in itself, the checkpoint of the head says what happened.
            assert_eq!(plain.first_broken, None, "{:?} {name}: consistent in itself", server.backend);
            assert_eq!(code, Some(1), "{:?} {name}: {out}", server.backend);
            assert!(
                out.lines().any(|l| l.starts_with("CHECKPOINT") && l.contains(&head_file) && l.contains(kind)),
                "{:?} {name}: expected {kind} at {head_file}:\n{out}",
                server.backend
            );
        }

        // A checkpoint signed with another key, claiming the real key's id, is named as forged.
        let (_, intruder) = SigningKey::generate().unwrap();
        let forged = intruder.sign(Checkpoint { last_id: last.id + 1, ..served.checkpoint.clone() });
        std::fs::write(dir.join(forged.checkpoint.file_name()), forged.to_document()).unwrap();
        let (code, out) = verify(&url, &dir, &public_key);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.lines().any(|l| l.contains(&forged.checkpoint.file_name())
                && l.contains("bad signature")
                && l.contains("forged")),
            "{out}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_final_checkpoint_is_written_on_shutdown() {
    for db in support::backends().await {
        // Arrange: checkpoints only every 1000 rows or hour, so only the shutdown writes one for these calls.
        let keys = tempfile::tempdir().unwrap();
        let dir = keys.path().join("checkpoints");
        let public_key = keys.path().join("audit.pub.pem");
        let (_, key) = SigningKey::generate().unwrap();
        std::fs::write(&public_key, key.public_key().to_pem()).unwrap();
        let mut options = options(&Arc::new(key), &dir);
        if let Some(settings) = options.audit_checkpoints.as_mut() {
            settings.every_rows = 1000;
        }
        let mut server = TestServer::start(db, options).await;
        for i in 0..3 {
            server.get_traced("allergy/P0001", &format!("final-{i}")).send().await.unwrap();
        }
        let head = read_rows(&server).await.last().unwrap().id;
        let url = server.app.config.database_url.clone();

        // Act
        server.shutdown().await;

        // Assert: the newest document names the head, and verify agrees with it.
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        let newest = SignedCheckpoint::parse(&std::fs::read(dir.join(names.last().unwrap())).unwrap()).unwrap();
        assert_eq!(newest.checkpoint.last_id, head, "{:?}: {names:?}", server.backend);
        let (code, out) = verify(&url, &dir, &public_key);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("{} documents", names.len())), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_go_to_an_s3_prefix_and_verify_from_there() {
    let Some(endpoint) = crate::export_s3::s3_endpoint().await else { return };
    let s3 = reqwest::Client::new();
    for db in support::backends().await {
        // Arrange: a bucket of this test's own, checkpoints under a prefix in it.
        let bucket = format!("phr-audit-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let created = crate::export_s3::moto(&s3, reqwest::Method::PUT, &format!("{endpoint}/{bucket}"), "s3")
            .body("<CreateBucketConfiguration><LocationConstraint>ap-northeast-1</LocationConstraint></CreateBucketConfiguration>")
            .send()
            .await
            .expect("create bucket");
        assert!(created.status().is_success(), "create bucket: {}", created.text().await.unwrap_or_default());
        let keys = tempfile::tempdir().unwrap();
        let public_key = keys.path().join("audit.pub.pem");
        let (_, key) = SigningKey::generate().unwrap();
        std::fs::write(&public_key, key.public_key().to_pem()).unwrap();
        let dest = format!("s3://{bucket}/phr/checkpoints");
        let CheckpointDest::S3 { mut settings, prefix } =
            CheckpointDest::parse(&dest, Some("ap-northeast-1"), Some(&endpoint)).unwrap()
        else {
            panic!("an S3 destination")
        };
        settings.static_credentials = Some(phr_server::export::StaticCredentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        });
        let mut options = options(&Arc::new(key), keys.path());
        if let Some(checkpoints) = options.audit_checkpoints.as_mut() {
            checkpoints.dest = CheckpointDest::S3 { settings, prefix };
        }
        let mut server = TestServer::start(db, options).await;
        for i in 0..3 {
            server.get_traced("allergy/P0001", &format!("s3-{i}")).send().await.unwrap();
        }
        let head = read_rows(&server).await.last().unwrap().id;
        let url = server.app.config.database_url.clone();

        // Act: shut down (the final checkpoint), then verify from the bucket as the operator would.
        server.shutdown().await;
        let output = Command::new(env!("CARGO_BIN_EXE_phr-server"))
            .args(["audit", "verify", "--database-url", &url, "--checkpoints", &dest, "--public-key"])
            .arg(&public_key)
            .env("PHR_AUDIT_CHECKPOINT_S3_REGION", "ap-northeast-1")
            .env("PHR_AUDIT_CHECKPOINT_S3_ENDPOINT", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();

        // Assert: the head's document is in the bucket under the prefix, and the table agrees with it.
        let listing = crate::export_s3::moto(
            &s3,
            reqwest::Method::GET,
            &format!("{endpoint}/{bucket}?list-type=2&prefix=phr/checkpoints/"),
            "s3",
        )
        .send()
        .await
        .expect("list objects");
        let listed = listing.text().await.unwrap();
        let name = format!("phr/checkpoints/checkpoint-{}-{head:020}.json", support::FACILITY);
        assert!(listed.contains(&name), "{listed}");
        let out = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&output.stderr));
        assert!(out.contains("audit chain intact") && !out.contains("CHECKPOINT"), "{out}");
    }
}
