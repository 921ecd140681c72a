//! `connrun demo`: the whole job on one machine with nothing installed beyond Rust.
//!
//! It generates a CA, a loopback server certificate and a client certificate (written as a password-protected
//! `.p12`), an RSA Layer ID key, starts `phr-server` in-process on 127.0.0.1 with an SQLite audit store (or
//! the PostgreSQL database given with `--database-url`), the seeded data and signed audit checkpoints, writes
//! a targets file for it and then runs `phr-seq` through exactly the path a real target takes: targets file →
//! PKCS#12 + password file → plan → probes → evidence. It prints the RUN_ID, the evidence folder and the run
//! memo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use devpki::{Authority, LeafSpec, Pkcs12Flavor};
use phr_server::config::LayerKeyArgs;

use crate::cli::args::{DemoArgs, GlobalArgs};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{emit, print_outcome};
use crate::evidence::{self, EvidenceLayout, RunFolder};
use crate::plan::Plan;
use crate::plan::target::Targets;
use crate::plan::template::Template;
use crate::report::Reports;
use crate::run::{self, RunOptions};

/// Basic password of the seeded `ops` users when the demo uses a PostgreSQL database that may already be
/// seeded (the seed keeps existing passwords); a temporary SQLite store gets a random one.
const POSTGRES_DEMO_PASSWORD: &str = "connrun-demo-ops";
/// Name of the target the demo writes.
pub const DEMO_TARGET: &str = "demo";

/// phr-seq, compiled in so the demo also works outside a checkout.
const EMBEDDED_PHR_SEQ: &[(&str, &str)] = &[
    ("template.toml", include_str!("../../run-templates/phr-seq/template.toml")),
    (
        "audit/PHR_LAYER_ID_TOKEN_ISSUE.sql",
        include_str!("../../run-templates/phr-seq/audit/PHR_LAYER_ID_TOKEN_ISSUE.sql"),
    ),
    ("audit/PHR_IMAGE_STREAM.sql", include_str!("../../run-templates/phr-seq/audit/PHR_IMAGE_STREAM.sql")),
    ("audit/PHR_CONTAINER_FETCH.sql", include_str!("../../run-templates/phr-seq/audit/PHR_CONTAINER_FETCH.sql")),
];

fn demo_error(what: &str, detail: impl std::fmt::Display) -> CliError {
    CliError::Demo(format!("{what}: {detail}"))
}

/// A scratch folder for certificates, the SQLite file and images, removed when the demo ends.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Scratch, CliError> {
        let path = std::env::temp_dir().join(format!("connrun-demo-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path).map_err(|e| demo_error("scratch folder", format!("{}: {e}", path.display())))?;
        Ok(Scratch(path))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CliError> {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| demo_error("scratch folder", e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| demo_error("scratch file", format!("{}: {e}", path.display())))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running in-process server.
struct DemoServer {
    /// The PHR (mTLS) listener.
    phr: SocketAddr,
    /// The ops (plain HTTP) listener.
    ops: SocketAddr,
    /// Tells the server to drain and stop.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The serve task, awaited on shutdown.
    task: tokio::task::JoinHandle<()>,
}

/// A running in-process phr-server with generated PKI and a targets file that points at it.
pub struct DemoEnvironment {
    /// Certificates, password files, SQLite file, images; removed after the server stops.
    scratch: Scratch,
    /// The running server.
    server: DemoServer,
    /// `targets.toml` with one target, [`DEMO_TARGET`].
    targets_file: PathBuf,
    /// The secrets the run must never write: the `.p12` password, the Basic password and the export
    /// signing secret.
    secrets: Vec<String>,
    /// The server's database URL (may hold a password).
    database_url: String,
}

impl DemoEnvironment {
    /// Generates the PKI and keys, starts and seeds phr-server on loopback, writes the targets file. With
    /// `database_url` the server uses that PostgreSQL database, otherwise a temporary SQLite file.
    pub async fn start(database_url: Option<&str>) -> Result<DemoEnvironment, CliError> {
        let scratch = Scratch::create()?;
        let (database_url, user_password) = match database_url {
            Some(url) => (url.to_owned(), POSTGRES_DEMO_PASSWORD.to_owned()),
            None => {
                (format!("sqlite:{}", scratch.0.join("phr.db").display()), uuid::Uuid::new_v4().simple().to_string())
            }
        };
        let p12_password = uuid::Uuid::new_v4().simple().to_string();
        let ca = Authority::new("connrun-demo").map_err(|e| demo_error("CA", e))?;
        let server_identity =
            ca.issue(&LeafSpec::loopback_server()).map_err(|e| demo_error("server certificate", e))?;
        let client =
            ca.issue(&LeafSpec::client("connrun-demo-ops")).map_err(|e| demo_error("client certificate", e))?;
        let p12 = client.to_pkcs12(&p12_password, Pkcs12Flavor::Modern).map_err(|e| demo_error("PKCS#12", e))?;
        scratch.write("pki/ca.pem", ca.cert_pem().as_bytes())?;
        scratch.write("pki/client.p12", &p12)?;
        scratch.write("pki/client.p12.password", p12_password.as_bytes())?;
        scratch.write("pki/ops.password", user_password.as_bytes())?;
        scratch.write("audit.url", database_url.as_bytes())?;

        let mut config = phr_server::Config::new(
            database_url.clone(),
            phr_server::TlsMaterial {
                cert_chain: server_identity.chain.clone(),
                key: Arc::new(server_identity.private_key()),
                client_ca: vec![ca.cert_der()],
            },
            scratch.0.join("images"),
        );
        let layer_key = devpki::rsa_signing_key_pkcs8().map_err(|e| demo_error("Layer ID key", e))?;
        config.layer = LayerKeyArgs {
            layer_private_key_base64: Some(base64::engine::general_purpose::STANDARD.encode(layer_key)),
            layer_private_key_path: None,
            layer_key_id: Some("connrun-demo-layer".to_owned()),
            layer_provider_id: Some("connrun-demo".to_owned()),
            layer_key_optional: false,
        };
        if let phr_server::export::StorageSettings::Filesystem { base } = &mut config.export.storage {
            *base = scratch.0.join("exports");
        }
        // Phase F needs minted download URLs; without a secret the server answers the NULL fallback.
        let signing_secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        config.export.signing_secret = Some(
            phr_server::export::SigningSecret::new(signing_secret.as_bytes())
                .map_err(|e| demo_error("export signing secret", e))?,
        );
        config.shutdown_grace = std::time::Duration::from_secs(5);
        // Signed audit checkpoints after every commit, so the run proves its own rows (audit/chain.json).
        let (_, audit_key) =
            auditchain::checkpoint::SigningKey::generate().map_err(|e| demo_error("audit signing key", e))?;
        scratch.write("pki/audit-signing.pub.pem", audit_key.public_key().to_pem().as_bytes())?;
        config.audit_checkpoints = Some(phr_server::config::audit::CheckpointConfig {
            key: Arc::new(audit_key),
            dest: phr_server::config::audit::CheckpointDest::Dir(scratch.0.join("audit-checkpoints")),
            every_rows: 1,
            every: std::time::Duration::from_secs(5),
        });
        let server = start_server(config, &user_password).await?;
        let targets_file = scratch.write("targets.toml", targets_toml(&server).as_bytes())?;
        let secrets = vec![p12_password, user_password, signing_secret];
        Ok(DemoEnvironment { scratch, server, targets_file, secrets, database_url })
    }

    /// The targets file (one target named [`DEMO_TARGET`]).
    pub fn targets_file(&self) -> &Path {
        &self.targets_file
    }

    /// Secret values the evidence must never contain.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `https://127.0.0.1:<port>` of the PHR listener.
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server.phr.port())
    }

    /// Stops the server (draining requests) and removes the scratch folder.
    pub async fn stop(self) {
        let DemoEnvironment { scratch, server, .. } = self;
        let _ = server.stop.send(());
        let _ = server.task.await;
        drop(scratch);
    }
}

/// Runs the demo.
pub async fn demo(global: &GlobalArgs, args: &DemoArgs) -> Result<Verdict, CliError> {
    eprintln!(
        "connrun demo: generating CA, server and client certificates and a Layer ID key, starting phr-server ..."
    );
    let environment = DemoEnvironment::start(args.database_url.as_deref()).await?;
    eprintln!(
        "connrun demo: phr-server on {} (ops http://{}), audit store {}",
        environment.base_url(),
        environment.server.ops,
        crate::audit::masked_url(&environment.database_url)
    );
    let result = run_demo(global, args, &environment).await;
    environment.stop().await;
    result
}

async fn start_server(config: phr_server::Config, user_password: &str) -> Result<DemoServer, CliError> {
    let app = phr_server::App::build(config).await.map_err(|e| demo_error("phr-server start-up", e))?;
    let seed = phr_server::seed::SeedArgs { patients: 5, user_password: user_password.to_owned() };
    phr_server::seed::run(&app.state.db, &app.state.images, &seed).await.map_err(|e| demo_error("seed", e))?;
    let bind = |what: &'static str| async move {
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| demo_error(what, e))
    };
    let phr = bind("PHR listener").await?;
    let ops = bind("ops listener").await?;
    let addr = |listener: &tokio::net::TcpListener| listener.local_addr().map_err(|e| demo_error("listener", e));
    let (phr_addr, ops_addr) = (addr(&phr)?, addr(&ops)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.serve(phr_server::Listeners { phr, ops }, async move {
        let _ = stopped.await;
    }));
    Ok(DemoServer { phr: phr_addr, ops: ops_addr, stop, task })
}

/// The template folder to use: the checkout's, or the embedded phr-seq written into the scratch folder.
fn template_dir(global: &GlobalArgs, name: &str, scratch: &Scratch) -> Result<PathBuf, CliError> {
    let checkout = global.run_templates.join(name);
    if checkout.join("template.toml").is_file() {
        return Ok(checkout);
    }
    if name != "phr-seq" {
        return Err(CliError::Usage(format!("no template {} (only phr-seq is built in)", checkout.display())));
    }
    for (file, text) in EMBEDDED_PHR_SEQ {
        scratch.write(&format!("run-templates/phr-seq/{file}"), text.as_bytes())?;
    }
    Ok(scratch.0.join("run-templates/phr-seq"))
}

fn targets_toml(server: &DemoServer) -> String {
    format!(
        "# Written by `connrun demo` for its in-process phr-server.\n\
         [targets.{DEMO_TARGET}]\n\
         base_url = \"https://127.0.0.1:{}\"\n\
         readyz_url = \"http://{}/readyz\"\n\
         [targets.{DEMO_TARGET}.tls]\nca_bundle = \"pki/ca.pem\"\n\
         [targets.{DEMO_TARGET}.identity]\np12 = \"pki/client.p12\"\npassword_file = \"pki/client.p12.password\"\n\
         [targets.{DEMO_TARGET}.basic]\nuser = \"F001:ops\"\npassword_file = \"pki/ops.password\"\n\
         [targets.{DEMO_TARGET}.audit]\nurl_file = \"audit.url\"\npublic_key = \"pki/audit-signing.pub.pem\"\n\
         checkpoint_url = \"http://{}/audit/checkpoint\"\n",
        server.phr.port(),
        server.ops,
        server.ops
    )
}

async fn run_demo(global: &GlobalArgs, args: &DemoArgs, environment: &DemoEnvironment) -> Result<Verdict, CliError> {
    let mut target = Targets::load(&environment.targets_file)?.resolve(DEMO_TARGET)?;
    // The demo's server is this process on loopback: an operator's HTTPS_PROXY is for the network outside
    // (curl would send even localhost through it unless NO_PROXY says otherwise).
    target.proxy.env = None;
    let mut template = Template::load(&template_dir(global, &args.template, &environment.scratch)?)?;
    // Demo runs live apart: their own suite and label, never in the real RUN_ID sequence or history.
    template.suite = EvidenceLayout::DEMO_SUITE.to_owned();
    template.label = format!("{}{}", template.label, EvidenceLayout::DEMO_LABEL_SUFFIX);
    let prepared = run::prepare(&target)?;
    let settings = crate::report::ReportSettings { zone: global.tz, ..Default::default() };
    let reports = Reports::load(global.templates_dir.as_deref())?.with_settings(settings);
    let (run_id, _) =
        evidence::reserve_next(&global.artifacts, &template.suite, &template.name, global.tz.today(), &template.label)?;
    let plan = Plan::build(&template, &target, &run_id)?;
    let (folder, _) = RunFolder::start(&global.artifacts, &run_id)?;
    let options = RunOptions {
        jobs: usize::from(args.jobs.max(1)),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()) && !global.json,
        reports,
    };
    let outcome = run::execute(&plan, &prepared, folder, &options).await?;
    print_outcome(global, &outcome)?;
    if !global.json {
        let summary = read_summary(&outcome.dir);
        emit(global, &serde_json::Value::Null, &format!("\n{summary}"))?;
    }
    Ok(Verdict::from_ok(outcome.status.is_ok()))
}

fn read_summary(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(crate::evidence::EvidenceLayout::SUMMARY))
        .unwrap_or_else(|e| format!("(logs/summary.md unreadable: {e})\n"))
}
