//! `phr-server check-secrets`: proves the secrets a deployment needs are present and usable, without
//! showing them.
//!
//! Ops ran `ops/check-secrets.sh --profile phr-layer-id|phr-export` before each weekly run and pasted its
//! exit status into the log; this is that check, built into the server so it applies exactly the rules the
//! server applies at start-up (the Layer ID key goes through [`LayerKey`] and [`LayerSigner`] themselves).
//! Each item gives one [`CheckLine`]: whether it is present, whether it is valid, and a fingerprint where one
//! helps compare deployments. A secret's value is never printed, nor anything from which a short one could
//! be read back: errors name variables, and secret fingerprints are truncated SHA-256 of long values only.

use crate::audit::sha256_hex;
use crate::config::LayerKeyArgs;
use crate::config::audit::CheckpointArgs;
use crate::config::export::{ExportArgs, MIN_SECRET_BYTES, StorageType, normalise_prefix, normalise_public_base};
use crate::layer_key::{BASE64_VARIABLE, KEY_ID_VARIABLE, LayerKey, LayerSigner, PATH_VARIABLE, PROVIDER_ID_VARIABLE};

/// Which secrets to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    PhrLayerId,
    PhrExport,
    /// The audit checkpoint signing key and where checkpoints go.
    PhrAudit,
    All,
}

/// One line of the check: the item, whether it passed, and a detail that never contains a secret value.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub item: String,
    pub ok: bool,
    pub detail: String,
}

impl CheckLine {
    fn pass(item: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { item: item.into(), ok: true, detail: detail.into() }
    }

    fn fail(item: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { item: item.into(), ok: false, detail: detail.into() }
    }
}

/// Runs the checks of `profile`; the caller prints the lines and exits 1 if any failed.
pub fn check(
    profile: Profile,
    layer: &LayerKeyArgs,
    export: &ExportArgs,
    checkpoints: &CheckpointArgs,
) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    if matches!(profile, Profile::PhrLayerId | Profile::All) {
        lines.extend(check_layer(layer));
    }
    if matches!(profile, Profile::PhrExport | Profile::All) {
        lines.extend(check_export(export));
    }
    if matches!(profile, Profile::PhrAudit | Profile::All) {
        lines.push(check_audit(checkpoints));
    }
    lines
}

/// The checkpoint signing key: absent, unusable, or valid with its public key's fingerprint (what a verifier
/// configures), judged by the same validation `serve` runs.
fn check_audit(args: &CheckpointArgs) -> CheckLine {
    const ITEM: &str = "PHR_AUDIT_SIGNING_KEY";
    match args.validate() {
        Ok(None) => CheckLine::fail(ITEM, "absent: no signed audit checkpoints are written"),
        Ok(Some(settings)) => CheckLine::pass(
            ITEM,
            format!(
                "present; valid: Ed25519; public key fingerprint {}; checkpoints every {} rows or {} s to {}",
                settings.key.public_key().fingerprint(),
                settings.every_rows,
                settings.every.as_secs(),
                args.audit_checkpoint_dest.as_deref().unwrap_or_default()
            ),
        ),
        Err(error) => CheckLine::fail(error.variable, format!("invalid: {}", error.problem)),
    }
}

fn check_layer(args: &LayerKeyArgs) -> Vec<CheckLine> {
    let item = format!("phr-layer-id key ({BASE64_VARIABLE} | {PATH_VARIABLE})");
    let key_line = match LayerKey::from_args(args) {
        Ok(Some(key)) => CheckLine::pass(
            item,
            format!(
                "present ({}); valid: RSA {} bits; fingerprint sha256:{}",
                key.source(),
                key.modulus_bits(),
                key.fingerprint()
            ),
        ),
        Ok(None) => CheckLine::fail(item, format!("absent: set {BASE64_VARIABLE} or {PATH_VARIABLE}")),
        Err(error) => CheckLine::fail(item, format!("present; invalid: {error}")),
    };
    let key_ok = key_line.ok;
    let mut lines = vec![
        key_line,
        id_line(KEY_ID_VARIABLE, &args.layer_key_id),
        id_line(PROVIDER_ID_VARIABLE, &args.layer_provider_id),
    ];
    if key_ok && lines.iter().all(|l| l.ok) {
        let item = "phr-layer-id RS256 signing";
        lines.push(match LayerSigner::load(args) {
            Ok(_) => CheckLine::pass(item, "a probe token was signed"),
            Err(error) => CheckLine::fail(item, error.to_string()),
        });
    }
    lines
}

/// Ids are public (they appear in every token), so their values are shown.
fn id_line(variable: &'static str, value: &Option<String>) -> CheckLine {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(id) => CheckLine::pass(variable, format!("present: {id}")),
        None => CheckLine::fail(variable, "absent"),
    }
}

/// Every Phase F item at once (an operator fixes them in one go), judged by the export module's own rules so
/// this check and the server's start-up never disagree.
fn check_export(args: &ExportArgs) -> Vec<CheckLine> {
    let mut lines = vec![signing_secret_line(args.export_signing_secret.as_deref())];
    lines.push(match normalise_prefix(&args.export_s3_prefix) {
        Ok(prefix) => CheckLine::pass("PHR_EXPORT_S3_PREFIX", format!("valid: {prefix}")),
        Err(problem) => CheckLine::fail("PHR_EXPORT_S3_PREFIX", format!("invalid: {problem}")),
    });
    if let Some(base) = present(args.public_base_url.as_deref()) {
        lines.push(match normalise_public_base(base) {
            Ok(base) => CheckLine::pass("PHR_PUBLIC_BASE_URL", format!("valid: {base}")),
            Err(problem) => CheckLine::fail("PHR_PUBLIC_BASE_URL", format!("invalid: {problem}")),
        });
    }
    match args.export_storage_type {
        StorageType::Filesystem => lines.push(CheckLine::pass(
            "PHR_EXPORT_STORAGE_TYPE",
            format!("FILESYSTEM under {} (development only)", args.export_fs_base.display()),
        )),
        StorageType::S3 => {
            lines.push(CheckLine::pass("PHR_EXPORT_STORAGE_TYPE", "S3"));
            lines.push(required_setting("PHR_EXPORT_S3_BUCKET", args.export_s3_bucket.as_deref()));
            lines.push(required_setting("PHR_EXPORT_S3_REGION", args.export_s3_region.as_deref()));
            lines.push(match present(args.export_s3_kms_key.as_deref()) {
                Some(key) => CheckLine::pass("PHR_EXPORT_S3_KMS_KEY", format!("present: {key} (SSE-KMS)")),
                None => CheckLine::pass("PHR_EXPORT_S3_KMS_KEY", "absent: objects get the bucket's default encryption"),
            });
        }
    }
    // Whatever else the server would refuse at start-up (endpoint, TTLs, worker timings), named by variable.
    let without_secret = ExportArgs { export_signing_secret: None, ..args.clone() };
    if let Err(error) = without_secret.validate()
        && !lines.iter().any(|line| line.item == error.variable)
    {
        lines.push(CheckLine::fail(error.variable, error.problem));
    }
    lines
}

fn signing_secret_line(secret: Option<&str>) -> CheckLine {
    const ITEM: &str = "PHR_EXPORT_SIGNING_SECRET";
    match secret.filter(|s| !s.is_empty()) {
        None => CheckLine::fail(ITEM, "absent: signed download URLs cannot be issued"),
        Some(secret) if secret.len() < MIN_SECRET_BYTES => CheckLine::fail(
            ITEM,
            format!("present; invalid: {} bytes, at least {MIN_SECRET_BYTES} required", secret.len()),
        ),
        // A truncated hash of a long secret lets two deployments be compared without revealing it.
        Some(secret) => CheckLine::pass(
            ITEM,
            format!(
                "present; valid: {} bytes; fingerprint sha256:{}…",
                secret.len(),
                &sha256_hex(secret.as_bytes())[..16]
            ),
        ),
    }
}

fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn required_setting(variable: &'static str, value: Option<&str>) -> CheckLine {
    match present(value) {
        Some(value) => CheckLine::pass(variable, format!("present: {value}")),
        None => CheckLine::fail(variable, "absent: required with PHR_EXPORT_STORAGE_TYPE=S3"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The export variables as `phr-server check-secrets` would parse them from these flags.
    fn export_args(flags: &[&str]) -> ExportArgs {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            export: ExportArgs,
        }
        <Flags as clap::Parser>::try_parse_from(std::iter::once("check-secrets").chain(flags.iter().copied()))
            .expect("flags parse")
            .export
    }

    fn s3(secret: &str) -> Vec<String> {
        ["--export-storage-type", "s3", "--export-s3-bucket", "opd-phr-export", "--export-s3-region", "ap-northeast-1"]
            .into_iter()
            .map(str::to_owned)
            .chain(["--export-signing-secret".to_owned(), secret.to_owned()])
            .collect()
    }

    fn no_key() -> CheckpointArgs {
        CheckpointArgs {
            audit_signing_key: None,
            audit_checkpoint_dest: None,
            audit_checkpoint_rows: 1000,
            audit_checkpoint_seconds: 60,
            audit_checkpoint_s3_region: None,
            audit_checkpoint_s3_endpoint: None,
        }
    }

    fn refs(flags: &[String]) -> Vec<&str> {
        flags.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_complete_s3_export_setup_passes_without_showing_the_secret() {
        let secret = "0123456789abcdef0123456789abcdef-long";

        let lines = check(Profile::PhrExport, &LayerKeyArgs::default(), &export_args(&refs(&s3(secret))), &no_key());

        assert!(lines.iter().all(|l| l.ok), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.item == "PHR_EXPORT_S3_PREFIX" && l.detail.contains("facility/{facilityId}/jobs/"))
        );
        assert!(lines.iter().all(|l| !l.detail.contains(secret) && !l.item.contains(secret)));
    }

    #[test]
    fn short_secret_missing_bucket_escaping_prefix_and_http_public_base_each_fail() {
        let mut flags: Vec<String> = s3("too-short").into_iter().filter(|f| f != "opd-phr-export").collect();
        flags.retain(|f| f != "--export-s3-bucket");
        flags.extend(["--export-s3-prefix", "../other/", "--public-base-url", "http://phr.example"].map(str::to_owned));

        let lines = check(Profile::PhrExport, &LayerKeyArgs::default(), &export_args(&refs(&flags)), &no_key());

        let failed: Vec<&str> = lines.iter().filter(|l| !l.ok).map(|l| l.item.as_str()).collect();
        assert_eq!(
            failed,
            ["PHR_EXPORT_SIGNING_SECRET", "PHR_EXPORT_S3_PREFIX", "PHR_PUBLIC_BASE_URL", "PHR_EXPORT_S3_BUCKET"]
        );
        assert!(lines.iter().all(|l| !l.detail.contains("too-short")));
    }

    #[test]
    fn filesystem_storage_needs_no_s3_settings_and_a_bad_endpoint_is_named() {
        let secret = "x".repeat(32);
        let lines = check_export(&export_args(&["--export-signing-secret", &secret]));
        assert!(lines.iter().all(|l| l.ok), "{lines:?}");

        let mut flags = s3(&secret);
        flags.extend(["--export-s3-endpoint".to_owned(), "http://s3.example.com".to_owned()]);
        let lines = check_export(&export_args(&refs(&flags)));
        assert!(lines.iter().any(|l| !l.ok && l.item == "PHR_EXPORT_S3_ENDPOINT"), "{lines:?}");
    }

    #[test]
    fn the_layer_profile_fails_naming_both_variables_when_no_key_is_set() {
        let lines = check(Profile::PhrLayerId, &LayerKeyArgs::default(), &export_args(&[]), &no_key());

        assert!(!lines[0].ok);
        assert!(lines[0].detail.contains(BASE64_VARIABLE) && lines[0].detail.contains(PATH_VARIABLE));
        assert!(lines.iter().filter(|l| !l.ok).count() == 3, "key, key id, provider id: {lines:?}");
    }
}
