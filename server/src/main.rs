//! The `phr-server` binary: a thin command line over the `phr_server` library.
//!
//! Exit codes: 0 success; 1 a check found a problem (`audit verify`, `check-secrets`); 2 the command could not
//! do its job (bad configuration, database unreachable).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use phr_server::config::{LayerKeyArgs, ServeArgs};
use phr_server::seed::SeedArgs;
use phr_server::{App, Db, Listeners, audit, secrets, storage};

#[derive(Debug, Parser)]
#[command(
    name = "phr-server",
    version,
    about = "The PHR (adm20) REST API: mTLS + Basic, Layer ID JWT, images, container, audit trail"
)]
#[command(
    after_help = "Example:\n  PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key PHR_TLS_CLIENT_CA=clients-ca.pem \\\n  PHR_LAYER_PRIVATE_KEY_PATH=layer.pk8 PHR_LAYER_KEY_ID=layer-1 PHR_LAYER_PROVIDER_ID=opd \\\n  phr-server serve"
)]
struct Cli {
    /// Database URL: postgres://user@host/db or sqlite:path (the embedded default).
    #[arg(long, env = "PHR_DATABASE_URL", default_value = "sqlite:data/phr.db", global = true)]
    database_url: String,

    /// Log format: text or json.
    #[arg(long, env = "PHR_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the PHR API (HTTPS, client certificate required) and the ops endpoints.
    Serve(Box<ServeArgs>),
    /// Apply pending migrations; with --dry-run apply them inside a transaction and roll back, leaving nothing
    /// (no table, and no SQLite file where there was none).
    Migrate {
        /// Apply inside a transaction, print what was done, then roll back.
        #[arg(long)]
        dry_run: bool,
        /// PostgreSQL: after migrating, give this existing role what `serve` needs and, on d_audit_event,
        /// INSERT and SELECT only (least privilege: serve as that role, migrate as the owner).
        #[arg(long, value_name = "ROLE", conflicts_with = "dry_run")]
        app_role: Option<String>,
    },
    /// Fill the database with a deterministic synthetic data set.
    Seed {
        #[command(flatten)]
        args: SeedArgs,
        /// Folder holding image blobs.
        #[arg(long, env = "PHR_IMAGE_STORE_DIR", default_value = "data/images")]
        image_store_dir: std::path::PathBuf,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the route map of the PHR listener: method, path, audit action (one line each).
    Routes,
    /// Check the secrets the server would need; prints one line per item, never a secret value.
    CheckSecrets(Box<CheckSecretsArgs>),
}

/// Flags of `check-secrets`: the profile, and the same variables `serve` reads.
#[derive(Debug, clap::Args)]
struct CheckSecretsArgs {
    #[arg(long, value_enum, default_value = "all")]
    profile: secrets::Profile,
    #[command(flatten)]
    layer: LayerKeyArgs,
    #[command(flatten)]
    export: phr_server::export::ExportArgs,
    #[command(flatten)]
    checkpoints: phr_server::config::audit::CheckpointArgs,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk every hash chain of d_audit_event, recompute each row's seal, and name the first row and column
    /// that do not hold; with --checkpoints and --public-key also every signed checkpoint the table no longer
    /// agrees with (exit 1 if any).
    Verify(VerifyArgs),
    /// Generate the Ed25519 key pair that signs audit checkpoints (PKCS#8 PEM and public key PEM); refuses to
    /// overwrite either file.
    Keygen {
        /// Where the private key goes (PHR_AUDIT_SIGNING_KEY), written with mode 0600.
        #[arg(long)]
        private_key: std::path::PathBuf,
        /// Where the public key goes (for `audit verify --public-key` and connrun's `[audit] public_key`).
        #[arg(long)]
        public_key: std::path::PathBuf,
    },
}

/// Flags of `audit verify`.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Signed checkpoints to hold the table to: a directory or s3://bucket/prefix (S3 region and endpoint from
    /// PHR_AUDIT_CHECKPOINT_S3_REGION / PHR_AUDIT_CHECKPOINT_S3_ENDPOINT).
    #[arg(long, requires = "public_key")]
    checkpoints: Option<String>,
    /// The Ed25519 public key (PEM or DER SubjectPublicKeyInfo) the checkpoints must be signed with.
    #[arg(long, requires = "checkpoints")]
    public_key: Option<std::path::PathBuf>,
    /// S3 region of an s3:// --checkpoints.
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_S3_REGION")]
    s3_region: Option<String>,
    /// S3 endpoint of an s3:// --checkpoints.
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("phr-server: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.validate(&cli.database_url)?;
            let listeners = Listeners {
                phr: tokio::net::TcpListener::bind(args.listen).await?,
                ops: tokio::net::TcpListener::bind(args.ops_listen).await?,
            };
            let (phr, ops) = (listeners.phr.local_addr()?, listeners.ops.local_addr()?);
            let app = App::build(config).await?;
            reload_on_sighup(app.tls());
            // The bound addresses, so that port 0 (tests, ad-hoc runs) tells where it landed.
            tracing::info!(%phr, %ops, "phr-server listening");
            app.serve(listeners, shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { dry_run: true, .. } => {
            let run = phr_server::db::dry_run::migrate_dry_run(&cli.database_url).await?;
            println!("BEGIN");
            if let Some(note) = &run.note {
                println!("-- {note}");
            }
            if run.applied.is_empty() {
                println!("-- no pending migrations ({})", run.backend);
            }
            for m in &run.applied {
                println!("would apply (rolled back): {} {}", m.version, m.description);
            }
            println!("ROLLBACK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { dry_run: false, app_role } => {
            let db = Db::connect(&cli.database_url).await?;
            let applied = db.migrate().await?;
            if applied.is_empty() {
                println!("no pending migrations ({})", db.backend());
            }
            for m in &applied {
                println!("applied: {} {}", m.version, m.description);
            }
            println!("COMMIT");
            if let Some(role) = app_role {
                db.grant_app_role(&role).await?;
                println!("granted to {role}: data on the working tables; INSERT, SELECT only on d_audit_event");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Routes => {
            let routes = phr_server::route_map();
            let width = routes.iter().map(|r| r.path.len()).max().unwrap_or(0);
            for route in &routes {
                println!("{:<7} {:<width$}  {}", route.method, route.path, route.action.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed { args, image_store_dir } => {
            let db = Db::connect(&cli.database_url).await?;
            db.migrate().await?;
            let images = storage::BlobStore::local(&image_store_dir)?;
            let report = phr_server::seed::run(&db, &images, &args).await?;
            println!("seeded: {report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify(args) } => verify(&cli.database_url, &args).await,
        Command::Audit { command: AuditCommand::Keygen { private_key, public_key } } => {
            let fingerprint = audit::checkpoint::keygen(&private_key, &public_key)?;
            println!(
                "wrote {} and {}; public key fingerprint {fingerprint}",
                private_key.display(),
                public_key.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckSecrets(args) => {
            let lines = secrets::check(args.profile, &args.layer, &args.export, &args.checkpoints);
            for line in &lines {
                println!("{} {}: {}", if line.ok { "OK  " } else { "FAIL" }, line.item, line.detail);
            }
            Ok(if lines.iter().all(|l| l.ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// `audit verify`: the walk, and the checkpoints when given; prints the findings, exit 1 on any.
async fn verify(database_url: &str, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let db = Db::connect(database_url).await?;
    let log = audit::AuditLog::new(db, phr_server::Clock::System);
    let (watch, documents) = match (&args.checkpoints, &args.public_key) {
        (Some(dest), Some(key)) => {
            let key =
                auditchain::checkpoint::PublicKey::from_file(key).map_err(|e| anyhow::anyhow!("--public-key: {e}"))?;
            let dest = phr_server::config::audit::CheckpointDest::parse(
                dest,
                args.s3_region.as_deref(),
                args.s3_endpoint.as_deref(),
            )?;
            let sink = audit::checkpoint::sink::CheckpointSink::open(&dest)?;
            let (watch, documents) = sink.load_watch(&key).await?;
            (watch, Some(documents))
        }
        _ => (auditchain::watch::CheckpointWatch::default(), None),
    };
    let report = log.verify_against(watch).await?;
    match &report.first_broken {
        None => {
            println!("audit chain intact: {} rows checked", report.rows_checked);
            for chain in &report.chains {
                println!(
                    "chain {:?}: {} rows, head id {} event_hash {}",
                    chain.chain_id, chain.rows, chain.last_id, chain.last_hash
                );
            }
        }
        Some(broken) => println!("audit chain BROKEN at {broken}"),
    }
    let mut intact = report.is_intact();
    if let Some(documents) = documents {
        println!("checkpoints: {documents} documents, {} agree with the table", report.checkpoints_matched);
        if documents == 0 {
            println!("CHECKPOINT none found: nothing to hold the table to");
            intact = false;
        }
    }
    for finding in &report.checkpoint_findings {
        println!("CHECKPOINT {finding}");
    }
    Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PHR_LOG").unwrap_or_else(|_| "info".into());
    // Colours only for a terminal: a log file or a container's log driver gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Re-reads the client CRLs (PHR_TLS_CLIENT_CRL) on every SIGHUP; a failed reload keeps the CRLs in force and
/// has been logged with the file.
fn reload_on_sighup(tls: std::sync::Arc<phr_server::tls::LiveTls>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("SIGHUP cannot be handled; CRLs are reloaded by polling only");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading PHR_TLS_CLIENT_CRL");
                let tls = tls.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload(true)).await;
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
