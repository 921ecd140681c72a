//! `phr-server check-secrets` through the built binary, with a cleared environment: one line per item,
//! exit 0 only when everything passes, exit 1 otherwise, and no secret value on stdout or stderr in any form.

use std::process::{Command, Output};

use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;

const LONG_SECRET: &str = "s3cr3t-signing-key-0123456789abcdef-QWERTY";
const SHORT_SECRET: &str = "short-s3cr3t-VALUE";

/// Runs `phr-server check-secrets --profile <profile>` with exactly `env` as its environment.
fn check_secrets(profile: &str, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phr-server"))
        .args(["check-secrets", "--profile", profile])
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("phr-server runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Fails if `secret` appears in `output` raw, base64-encoded, or in a 24-character piece.
fn assert_not_leaked(output: &str, secret: &str) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
    assert!(!output.contains(secret) && !output.contains(&encoded), "secret leaked:\n{output}");
    for window in secret.as_bytes().windows(24.min(secret.len())) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(!output.contains(piece), "a piece of the secret leaked ({piece}):\n{output}");
    }
}

/// A fresh RSA-2048 key: (PKCS#8 DER, SHA-256 hex of its SubjectPublicKeyInfo).
fn rsa_key() -> (Vec<u8>, String) {
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8: Pkcs8V1Der<'static> = key.as_der().unwrap();
    let spki: PublicKeyX509Der<'static> = key.public_key().as_der().unwrap();
    let fingerprint = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.as_ref()));
    (pkcs8.as_ref().to_vec(), fingerprint)
}

#[test]
fn a_valid_layer_key_passes_showing_its_fingerprint_but_never_the_key() {
    let (pkcs8, fingerprint) = rsa_key();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&pkcs8);

    let output = check_secrets(
        "phr-layer-id",
        &[
            ("PHR_LAYER_PRIVATE_KEY_BASE64", &encoded),
            ("PHR_LAYER_KEY_ID", "phr-layerid-20251118"),
            ("PHR_LAYER_PROVIDER_ID", "opd"),
        ],
    );

    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("sha256:{fingerprint}")), "{out}");
    assert!(out.contains("RSA 2048 bits"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("OK")).count(), 4, "key, key id, provider id, signing:\n{out}");
    assert_not_leaked(&out, &encoded);
}

#[test]
fn a_pem_key_file_passes_and_a_missing_key_fails_naming_both_variables() {
    let (pkcs8, fingerprint) = rsa_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.pem");
    let body = base64::engine::general_purpose::STANDARD.encode(&pkcs8);
    std::fs::write(&path, format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")).unwrap();
    let ids = [("PHR_LAYER_KEY_ID", "k1"), ("PHR_LAYER_PROVIDER_ID", "opd")];

    let from_file =
        check_secrets("phr-layer-id", &[ids[0], ids[1], ("PHR_LAYER_PRIVATE_KEY_PATH", path.to_str().unwrap())]);
    let missing = check_secrets("phr-layer-id", &ids);

    assert_eq!(from_file.status.code(), Some(0), "{}", text(&from_file));
    assert!(text(&from_file).contains(&fingerprint));
    let out = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL")
            && out.contains("PHR_LAYER_PRIVATE_KEY_BASE64")
            && out.contains("PHR_LAYER_PRIVATE_KEY_PATH"),
        "{out}"
    );
}

#[test]
fn a_short_signing_secret_exits_1_without_printing_it() {
    let output = check_secrets("phr-export", &[("PHR_EXPORT_SIGNING_SECRET", SHORT_SECRET)]);

    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL") && l.contains("PHR_EXPORT_SIGNING_SECRET")), "{out}");
    assert_not_leaked(&out, SHORT_SECRET);
}

#[test]
fn s3_needs_bucket_region_and_prefix_and_a_complete_setup_passes() {
    let complete = [
        ("PHR_EXPORT_SIGNING_SECRET", LONG_SECRET),
        ("PHR_EXPORT_STORAGE_TYPE", "S3"),
        ("PHR_EXPORT_S3_BUCKET", "opd-phr-export-prod"),
        ("PHR_EXPORT_S3_REGION", "ap-northeast-1"),
        ("PHR_EXPORT_S3_PREFIX", "facility/{facilityId}/jobs/"),
        ("PHR_EXPORT_S3_KMS_KEY", "alias/opd/phr-export"),
    ];

    let passing = check_secrets("phr-export", &complete);
    let without_region = check_secrets("phr-export", &[complete[0], complete[1], complete[2], complete[4]]);

    let out = text(&passing);
    assert_eq!(passing.status.code(), Some(0), "{out}");
    assert!(out.contains("opd-phr-export-prod") && out.contains("alias/opd/phr-export"), "{out}");
    assert_not_leaked(&out, LONG_SECRET);
    let out = text(&without_region);
    assert_eq!(without_region.status.code(), Some(1), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL") && l.contains("PHR_EXPORT_S3_REGION")), "{out}");
    assert_not_leaked(&out, LONG_SECRET);
}

#[test]
fn profile_all_fails_when_either_half_fails() {
    let output = check_secrets("all", &[("PHR_EXPORT_SIGNING_SECRET", LONG_SECRET)]);

    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "the layer key is missing:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("OK") && l.contains("PHR_EXPORT_SIGNING_SECRET")), "{out}");
    assert_not_leaked(&out, LONG_SECRET);
}

#[test]
fn the_audit_profile_prints_the_checkpoint_keys_fingerprint_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("audit-signing.pk8.pem");
    let (private_pem, key) = auditchain::checkpoint::SigningKey::generate().unwrap();
    std::fs::write(&key_path, &private_pem).unwrap();
    let key_path = key_path.to_str().unwrap();
    let checkpoints = dir.path().join("checkpoints");

    let complete = check_secrets(
        "phr-audit",
        &[("PHR_AUDIT_SIGNING_KEY", key_path), ("PHR_AUDIT_CHECKPOINT_DEST", checkpoints.to_str().unwrap())],
    );
    let without_dest = check_secrets("phr-audit", &[("PHR_AUDIT_SIGNING_KEY", key_path)]);
    let absent = check_secrets("phr-audit", &[]);

    let out = text(&complete);
    assert_eq!(complete.status.code(), Some(0), "{out}");
    assert!(out.contains(&key.public_key().fingerprint()), "{out}");
    let body: String = private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_not_leaked(&out, &body);
    let out = text(&without_dest);
    assert_eq!(without_dest.status.code(), Some(1), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL") && l.contains("PHR_AUDIT_CHECKPOINT_DEST")), "{out}");
    let out = text(&absent);
    assert_eq!(absent.status.code(), Some(1), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL") && l.contains("PHR_AUDIT_SIGNING_KEY")), "{out}");
}
