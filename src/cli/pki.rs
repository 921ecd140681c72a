//! `connrun pki init <dir>`: everything a newcomer needs to stand up a real phr-server and probe it.
//!
//! The demo makes the same material in a scratch folder that vanishes when it exits; operators had to write
//! ten openssl commands by guesswork to get a CA, a server certificate, a client `.p12` and a Layer ID key
//! that fit together. This command writes them once, with the same generator as the demo (`devpki`, rcgen on
//! aws-lc-rs), plus the Ed25519 key pair that signs audit checkpoints, a `targets.toml` (whose `[audit]` names the public key
//! and the ops listener's checkpoint URL) and a `phr-server.env` that point at each other. Secrets (the `.p12`
//! password, the Basic password, private keys, the export signing secret) go into files of mode 0600 and are
//! never printed. Nothing is overwritten: the folder must be new or empty, and every file is created with
//! `create_new`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use devpki::{Authority, LeafSpec, Pkcs12Flavor};
use serde_json::json;

use crate::cli::args::{GlobalArgs, PkiInitArgs};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{absolute, emit};

/// The target name written into `targets.toml`.
pub const LOCAL_TARGET: &str = "local";

/// A file to write: name in the folder, content, and whether it holds a secret (mode 0600).
struct Planned {
    /// File name inside the folder.
    name: &'static str,
    /// Content.
    bytes: Vec<u8>,
    /// Secret material: created with mode 0600.
    secret: bool,
}

fn pki_error(what: &str, detail: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("pki init: {what}: {detail}"))
}

/// A random secret of 32 hex digits (128 bits) per call.
fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Runs `connrun pki init`.
pub fn init(global: &GlobalArgs, args: &PkiInitArgs) -> Result<Verdict, CliError> {
    let dir = prepare_folder(&args.dir)?;
    if !args.user.contains(':') {
        return Err(pki_error("--user", format!("`{}` is not facility:user, e.g. F001:ops", args.user)));
    }
    let files = plan_files(&dir, args)?;
    for file in &files {
        write_new(&dir.join(file.name), &file.bytes, file.secret)?;
    }
    let names: Vec<&str> = files.iter().map(|f| f.name).collect();
    let text = format!(
        "created {} ({} files): {}\nnext:\n  set -a && . {}/phr-server.env && set +a\n  phr-server migrate && phr-server seed --patients 20 && phr-server serve\n  connrun --targets {}/targets.toml run --template phr-seq --target {LOCAL_TARGET}\n",
        dir.display(),
        names.len(),
        names.join(", "),
        args.dir.display(),
        args.dir.display(),
    );
    emit(global, &json!({ "dir": dir, "files": names, "target": LOCAL_TARGET }), &text)?;
    Ok(Verdict::Ok)
}

/// Creates the folder, or accepts an existing empty one; returns its absolute path.
fn prepare_folder(dir: &Path) -> Result<PathBuf, CliError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(pki_error(
                    &dir.display().to_string(),
                    "the folder is not empty; give a new folder (nothing is ever overwritten)",
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| pki_error(&dir.display().to_string(), e))?;
        }
        Err(e) => return Err(pki_error(&dir.display().to_string(), e)),
    }
    let dir = absolute(dir);
    if dir.to_string_lossy().contains(['\'', '\n']) {
        return Err(pki_error(
            &dir.display().to_string(),
            "a folder path with a quote or newline cannot go into phr-server.env",
        ));
    }
    Ok(dir)
}

/// Every file's content, generated before anything is written.
fn plan_files(dir: &Path, args: &PkiInitArgs) -> Result<Vec<Planned>, CliError> {
    let ca = Authority::new("connrun-pki").map_err(|e| pki_error("CA", e))?;
    let hosts: Vec<&str> = args.hosts.iter().map(String::as_str).collect();
    let server = ca.issue(&LeafSpec::server(&hosts, args.days)).map_err(|e| pki_error("server certificate", e))?;
    let client_name = format!("connrun-{}", args.user.replace(':', "-"));
    let client = ca
        .issue(&LeafSpec::client(&client_name).valid_for_days(args.days))
        .map_err(|e| pki_error("client certificate", e))?;
    let p12_password = random_secret();
    let p12 = client.to_pkcs12(&p12_password, Pkcs12Flavor::Modern).map_err(|e| pki_error("PKCS#12", e))?;
    let layer_key = devpki::rsa_signing_key_pkcs8().map_err(|e| pki_error("Layer ID key", e))?;
    let basic_password = random_secret();
    let database_url = args.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", dir.join("phr.db").display()));
    let env = server_env(dir, args, &database_url, &basic_password);
    let (audit_key, audit_signer) =
        auditchain::checkpoint::SigningKey::generate().map_err(|e| pki_error("audit signing key", e))?;
    let file = |name, bytes: Vec<u8>, secret| Planned { name, bytes, secret };
    Ok(vec![
        file("ca.pem", ca.cert_pem().into_bytes(), false),
        file("server.pem", server.chain_pem().into_bytes(), false),
        file("server.key", server.key_pem().into_bytes(), true),
        file("client.p12", p12, true),
        file("client.p12.password", p12_password.into_bytes(), true),
        file("layer.pk8", layer_key, true),
        file("ops.password", basic_password.into_bytes(), true),
        file("audit.url", database_url.into_bytes(), true),
        file("audit-signing.pk8.pem", audit_key.into_bytes(), true),
        file("audit-signing.pub.pem", audit_signer.public_key().to_pem().into_bytes(), false),
        file("targets.toml", targets_toml(args).into_bytes(), false),
        file("phr-server.env", env.into_bytes(), true),
    ])
}

/// The URL the target probes: the listen address when the certificate names it, else the first host.
fn base_url(args: &PkiInitArgs) -> String {
    let ip = args.listen.ip().to_string();
    let host = if !args.listen.ip().is_unspecified() && args.hosts.contains(&ip) {
        if args.listen.is_ipv6() { format!("[{ip}]") } else { ip }
    } else {
        args.hosts.first().cloned().unwrap_or_else(|| "localhost".to_owned())
    };
    format!("https://{host}:{}", args.listen.port())
}

fn targets_toml(args: &PkiInitArgs) -> String {
    let ops = args.ops_listen;
    let ops_host = if ops.ip().is_unspecified() { "127.0.0.1".to_owned() } else { ops.ip().to_string() };
    format!(
        "# Written by `connrun pki init`; relative paths are relative to this file. Secrets are files of mode 0600.\n\
         [targets.{LOCAL_TARGET}]\nbase_url = \"{}\"\nreadyz_url = \"http://{ops_host}:{}/readyz\"\n\n\
         [targets.{LOCAL_TARGET}.tls]\nca_bundle = \"ca.pem\"\n\n\
         [targets.{LOCAL_TARGET}.identity]\np12 = \"client.p12\"\npassword_file = \"client.p12.password\"\n\n\
         [targets.{LOCAL_TARGET}.basic]\nuser = \"{}\"\npassword_file = \"ops.password\"\n\n\
         [targets.{LOCAL_TARGET}.audit]\nurl_file = \"audit.url\"\npublic_key = \"audit-signing.pub.pem\"\n\
         checkpoint_url = \"http://{ops_host}:{}/audit/checkpoint\"\n",
        base_url(args),
        ops.port(),
        args.user,
        ops.port(),
    )
}

fn server_env(dir: &Path, args: &PkiInitArgs, database_url: &str, basic_password: &str) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    let signing_secret = format!("{}{}", random_secret(), random_secret());
    let settings = [
        ("PHR_LISTEN", args.listen.to_string()),
        ("PHR_OPS_LISTEN", args.ops_listen.to_string()),
        ("PHR_DATABASE_URL", database_url.to_owned()),
        ("PHR_TLS_CERT", path("server.pem")),
        ("PHR_TLS_KEY", path("server.key")),
        ("PHR_TLS_CLIENT_CA", path("ca.pem")),
        ("PHR_LAYER_PRIVATE_KEY_PATH", path("layer.pk8")),
        ("PHR_LAYER_KEY_ID", format!("layer-{}", chrono::Utc::now().format("%Y%m%d"))),
        ("PHR_LAYER_PROVIDER_ID", "opd".to_owned()),
        ("PHR_IMAGE_STORE_DIR", path("data/images")),
        ("PHR_EXPORT_FS_BASE", path("data/exports")),
        ("PHR_EXPORT_SIGNING_SECRET", signing_secret),
        ("PHR_PUBLIC_BASE_URL", base_url(args)),
        ("PHR_SEED_USER_PASSWORD", basic_password.to_owned()),
        ("PHR_AUDIT_SIGNING_KEY", path("audit-signing.pk8.pem")),
        ("PHR_AUDIT_CHECKPOINT_DEST", path("audit-checkpoints")),
        ("PHR_AUDIT_CHECKPOINT_SECONDS", "5".to_owned()),
    ];
    let mut text = String::from(
        "# phr-server settings written by `connrun pki init` (mode 0600: it holds secrets).\n\
         # Load into a shell with: set -a && . ./phr-server.env && set +a   (or systemd EnvironmentFile=)\n",
    );
    for (name, value) in settings {
        text.push_str(&format!("{name}='{}'\n", value.replace('\'', "")));
    }
    text
}

/// Creates `path` (never replacing a file), mode 0600 for secrets.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|e| pki_error(&path.display().to_string(), e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| pki_error(&path.display().to_string(), e))
}
