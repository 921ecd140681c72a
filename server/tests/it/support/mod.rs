//! Shared test harness: a real `phr-server` on loopback, per test, against a database of its own.
//!
//! Every integration test follows zero2prod's shape: start the real app on port 0 against a fresh database
//! (a temporary SQLite file, and a freshly created PostgreSQL database when one is reachable), talk to it
//! with a real HTTPS client that presents a real client certificate from a CA generated for the test, and
//! assert on responses and on the rows the server left. PostgreSQL comes from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it is unreachable the PostgreSQL half of each test is
//! skipped with a loud message, unless `REQUIRE_PG=1`, where that is a failure.

pub mod export;
pub mod spec_fields;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use devpki::{Authority, Identity, LeafSpec};
use phr_server::config::LayerKeyArgs;
use phr_server::paths::PHR_BASE;
use phr_server::seed::SeedArgs;
use phr_server::{App, AppState, Clock, Config, ImagePolicy, Listeners, TlsMaterial};
use sqlx::Row;

/// The password every seeded user gets in tests.
pub const PASSWORD: &str = "test-password-Zq8!";
/// The facility and user the default client authenticates as.
pub const FACILITY: &str = "F001";
pub const USER: &str = "ops";

/// Which store a test database lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database created for one test; dropped with it.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// Holds the SQLite file's folder.
    _dir: Option<tempfile::TempDir>,
    /// `(admin url, database name)` of a PostgreSQL database to drop afterwards.
    pg_drop: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_drop.take() {
            // Dropping needs async I/O; do it on a thread with its own runtime so it works from any context.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&pool)
                        .await;
                        pool.close().await;
                    }
                });
            })
            .join();
        }
    }
}

impl TestDb {
    /// The same PostgreSQL database, connected to as `user` (created by the test; trust authentication), for a
    /// server that serves as a role other than the owner. Dropping it still drops the database.
    pub fn connect_as(mut self, user: &str) -> TestDb {
        let options: sqlx::postgres::PgConnectOptions = self.url.parse().expect("PostgreSQL test URL");
        self.url = sqlx::ConnectOptions::to_url_lossy(&options.username(user)).to_string();
        self
    }
}

/// A fresh SQLite database in a temporary folder.
pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("phr.db").display());
    TestDb { url, backend: Backend::Sqlite, _dir: Some(dir), pg_drop: None }
}

/// A freshly created PostgreSQL database, or `None` (with a loud message) when no server is reachable.
/// Panics under `REQUIRE_PG=1` when none is reachable.
pub async fn postgres() -> Option<TestDb> {
    let admin =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let required = std::env::var("REQUIRE_PG").as_deref() == Ok("1");
    // A short wait only where a slow answer means "skip"; when PostgreSQL is required, a server busy with
    // every other test's CREATE DATABASE on a loaded CI machine must not fail the test.
    let wait = std::time::Duration::from_secs(if required { 60 } else { 3 });
    let pool = match sqlx::postgres::PgPoolOptions::new().max_connections(1).acquire_timeout(wait).connect(&admin).await
    {
        Ok(pool) => pool,
        Err(error) => {
            if required {
                panic!("REQUIRE_PG=1 but PostgreSQL at TEST_DATABASE_URL is unreachable: {error}");
            }
            eprintln!(
                "\n!!! SKIPPING the PostgreSQL half of this test: {error}\n!!! set TEST_DATABASE_URL or start PostgreSQL; REQUIRE_PG=1 makes this a failure\n"
            );
            return None;
        }
    };
    let name = format!("phr_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&pool)
        .await
        .expect("create test database");
    pool.close().await;
    let options: sqlx::postgres::PgConnectOptions = admin.parse().expect("TEST_DATABASE_URL parses");
    let url = sqlx::ConnectOptions::to_url_lossy(&options.database(&name)).to_string();
    Some(TestDb { url, backend: Backend::Postgres, _dir: None, pg_drop: Some((admin, name)) })
}

/// SQLite always, plus PostgreSQL when reachable: the backends a test should run against.
pub async fn backends() -> Vec<TestDb> {
    let mut dbs = vec![sqlite()];
    dbs.extend(postgres().await);
    dbs
}

/// How a test wants its server.
#[derive(Clone)]
pub struct Options {
    pub image: ImagePolicy,
    /// `false` starts the server with the explicit opt-out and no Layer ID key.
    pub layer_key: bool,
    /// Patients per facility the seed creates.
    pub seed_patients: u32,
    /// Where the manual clock starts.
    pub clock_start: DateTime<Utc>,
    /// Peers whose X-Forwarded-For is trusted.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Phase F settings; filesystem storage at the default base is moved into the test's temporary folder.
    pub export: phr_server::export::ExportConfig,
    /// The PHR listener's connection cap, timeouts and HTTP/2 stream limit.
    pub connections: phr_server::config::connections::ConnectionLimits,
    /// How long in-flight requests may run on after shutdown begins.
    pub shutdown_grace: std::time::Duration,
    /// Password checks at once, queued, and the per-certificate failure throttle.
    pub auth: phr_server::config::auth::AuthLimits,
    /// Client CRL files and their polling (off by default).
    pub revocation: phr_server::config::revocation::RevocationConfig,
    /// The PROXY protocol on the PHR listener (off by default).
    pub proxy_protocol: phr_server::config::proxy::ProxyProtocol,
    /// A PKI made by the test (to sign CRLs before the server starts); a fresh one when `None`.
    pub pki: Option<Arc<Pki>>,
    /// Client CAs trusted besides the PKI's own.
    pub extra_client_ca: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Signed audit checkpoints (key, destination, frequency); `None` writes none.
    pub audit_checkpoints: Option<phr_server::config::audit::CheckpointConfig>,
    /// Which chain each audit row joins (a chain per facility by default).
    pub audit_chains: phr_server::config::audit::ChainPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            image: ImagePolicy::default(),
            layer_key: true,
            seed_patients: 5,
            clock_start: Utc.with_ymd_and_hms(2025, 11, 19, 1, 30, 0).single().expect("valid date"),
            trusted_proxies: Vec::new(),
            export: phr_server::export::ExportConfig::default(),
            connections: phr_server::config::connections::ConnectionLimits::default(),
            shutdown_grace: std::time::Duration::from_secs(5),
            auth: phr_server::config::auth::AuthLimits::default(),
            revocation: phr_server::config::revocation::RevocationConfig::default(),
            proxy_protocol: phr_server::config::proxy::ProxyProtocol::default(),
            pki: None,
            extra_client_ca: Vec::new(),
            audit_checkpoints: None,
            audit_chains: phr_server::config::audit::ChainPolicy::default(),
        }
    }
}

/// The test PKI: one CA for clients and server, plus the default client identity.
pub struct Pki {
    pub ca: Authority,
    pub server: Identity,
    pub client: Identity,
}

impl Pki {
    pub fn new() -> Self {
        let ca = Authority::new("phr-test").expect("CA");
        let server = ca.issue(&LeafSpec::loopback_server()).expect("server cert");
        let client = ca.issue(&LeafSpec::client("ops-client")).expect("client cert");
        Self { ca, server, client }
    }
}

/// One RSA-2048 Layer ID key per test binary (generation is the slow part).
pub fn layer_key_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| devpki::rsa_signing_key_pkcs8().expect("RSA key"))
}

/// The Layer ID settings tests use.
pub fn layer_args() -> LayerKeyArgs {
    LayerKeyArgs {
        layer_private_key_base64: Some(base64::engine::general_purpose::STANDARD.encode(layer_key_pkcs8())),
        layer_private_key_path: None,
        layer_key_id: Some("layer-test-key".into()),
        layer_provider_id: Some("opd-test-provider".into()),
        layer_key_optional: false,
    }
}

/// A running server and everything a test needs to talk to it.
pub struct TestServer {
    /// `https://localhost:<port>`.
    pub base: String,
    pub phr_addr: SocketAddr,
    /// `http://127.0.0.1:<port>` of the ops listener.
    pub ops_base: String,
    pub app: AppState,
    pub clock: Clock,
    pub pki: Arc<Pki>,
    pub backend: Backend,
    /// The PHR listener's TLS configuration in force; `reload(true)` is what SIGHUP does to the binary.
    pub tls: Arc<phr_server::tls::LiveTls>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Shared with sibling instances ([`TestServer::sibling`]); removed when the last one goes.
    _images: Arc<tempfile::TempDir>,
    _db: Arc<TestDb>,
}

impl TestServer {
    /// Builds, seeds and starts the server on loopback ports chosen by the OS.
    pub async fn start(db: TestDb, options: Options) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PHR_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let pki = options.pki.clone().unwrap_or_else(|| Arc::new(Pki::new()));
        let images = tempfile::tempdir().expect("image dir");
        let tls = TlsMaterial {
            cert_chain: pki.server.chain.clone(),
            key: Arc::new(pki.server.private_key()),
            client_ca: [pki.ca.cert_der()].into_iter().chain(options.extra_client_ca.iter().cloned()).collect(),
        };
        let clock = Clock::manual(options.clock_start);
        let mut config = Config::new(db.url.clone(), tls, images.path());
        config.clock = clock.clone();
        config.image = options.image;
        config.trusted_proxies = options.trusted_proxies.clone();
        config.shutdown_grace = options.shutdown_grace;
        config.connections = options.connections;
        config.auth = options.auth;
        config.revocation = options.revocation.clone();
        config.proxy_protocol = options.proxy_protocol.clone();
        config.export = options.export.clone();
        config.audit_checkpoints = options.audit_checkpoints.clone();
        config.audit_chains = options.audit_chains;
        if let phr_server::export::StorageSettings::Filesystem { base } = &mut config.export.storage
            && base.as_path() == std::path::Path::new(phr_server::config::export::DEFAULT_FS_BASE)
        {
            *base = images.path().join("exports");
        }
        config.layer = if options.layer_key {
            layer_args()
        } else {
            LayerKeyArgs { layer_key_optional: true, ..LayerKeyArgs::default() }
        };
        let app = App::build(config).await.expect("server builds");
        let seed = SeedArgs { patients: options.seed_patients, user_password: PASSWORD.to_owned() };
        phr_server::seed::run(&app.state.db, &app.state.images, &seed).await.expect("seed");
        Self::serve(app, pki, clock, Arc::new(db), Arc::new(images)).await
    }

    /// A second server instance on the same database, files, configuration, clock and PKI, on ports of its
    /// own: what a second task behind the load balancer is.
    pub async fn sibling(&self) -> Self {
        let app = App::build(self.app.config.clone()).await.expect("sibling builds");
        Self::serve(app, self.pki.clone(), self.clock.clone(), self._db.clone(), self._images.clone()).await
    }

    async fn serve(app: App, pki: Arc<Pki>, clock: Clock, db: Arc<TestDb>, images: Arc<tempfile::TempDir>) -> Self {
        let phr = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind phr");
        let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind ops");
        let phr_addr = phr.local_addr().expect("addr");
        let ops_addr = ops.local_addr().expect("addr");
        let state = app.state.clone();
        let tls = app.tls();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(Listeners { phr, ops }, async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("https://localhost:{}", phr_addr.port()),
            phr_addr,
            ops_base: format!("http://{ops_addr}"),
            app: state,
            clock,
            pki,
            backend: db.backend,
            tls,
            shutdown: Some(tx),
            task: Some(task),
            _images: images,
            _db: db,
        }
    }

    /// Asks the server to shut down and waits until it has drained; the database stays for inspection.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Shuts the server down and starts a new one with the same configuration, database, files, clock and PKI
    /// (a process restart; the seed is not run again). The new server listens on new ports.
    pub async fn restart(mut self) -> Self {
        self.shutdown().await;
        let app = App::build(self.app.config.clone()).await.expect("server rebuilds");
        let TestServer { pki, clock, _images, _db, .. } = self;
        Self::serve(app, pki, clock, _db, _images).await
    }

    /// [`TestServer::restart`] with the configuration changed by `change` first (e.g. workers switched on
    /// once a queue has been filled).
    pub async fn restart_with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        self.shutdown().await;
        let mut config = self.app.config.clone();
        change(&mut config);
        let app = App::build(config).await.expect("server rebuilds");
        let TestServer { pki, clock, _images, _db, .. } = self;
        Self::serve(app, pki, clock, _db, _images).await
    }

    /// Shuts down and drops the test's database.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// A full URL for `path`; a path not starting with `/` is relative to the PHR base path.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') { format!("{}{path}", self.base) } else { format!("{}{PHR_BASE}/{path}", self.base) }
    }

    /// An HTTPS client presenting `identity` (or no certificate) and trusting the test CA only.
    pub fn client_with(&self, identity: Option<&Identity>) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(client_tls(&self.pki.ca, identity))
            .resolve("localhost", self.phr_addr)
            .build()
            .expect("client")
    }

    /// The default client: the test CA's client certificate.
    pub fn client(&self) -> reqwest::Client {
        self.client_with(Some(&self.pki.client))
    }

    /// A request with the client certificate, Basic `F001:ops:<password>`, X-Facility-Id and the given
    /// X-Trace-Id. (reqwest's `.header()` appends, so a test that wants its own trace id passes it here
    /// rather than adding a second header.)
    pub fn request_traced(&self, method: reqwest::Method, path: &str, trace_id: &str) -> reqwest::RequestBuilder {
        self.client()
            .request(method, self.url(path))
            .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
            .header("X-Trace-Id", trace_id)
            .header("X-Facility-Id", FACILITY)
    }

    /// [`TestServer::request_traced`] with a random trace id.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_traced(method, path, &format!("test-{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn get_traced(&self, path: &str, trace_id: &str) -> reqwest::RequestBuilder {
        self.request_traced(reqwest::Method::GET, path, trace_id)
    }

    /// Audit rows whose trace id equals `trace_id`, oldest first: `(action, outcome, payload JSON)`.
    pub async fn audit_rows(&self, trace_id: &str) -> Vec<AuditRow> {
        let sql = "SELECT id, chain_id, action, outcome, actor_id, patient_id, payload FROM d_audit_event \
                   WHERE trace_id = $1 ORDER BY id";
        let rows = phr_server::with_pool!(&self.app.db, |pool| {
            sqlx::query(sql)
                .bind(trace_id)
                .fetch_all(pool)
                .await
                .expect("audit query")
                .into_iter()
                .map(|r| AuditRow {
                    id: r.get("id"),
                    chain_id: r.get("chain_id"),
                    action: r.get("action"),
                    outcome: r.get("outcome"),
                    actor_id: r.get("actor_id"),
                    patient_id: r.get("patient_id"),
                    payload: serde_json::from_str(r.get::<Option<String>, _>("payload").as_deref().unwrap_or("null"))
                        .expect("payload is JSON"),
                })
                .collect()
        });
        rows
    }

    /// The ops listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.ops_base)).await.expect("metrics").text().await.expect("metrics text")
    }

    /// Waits until `/metrics` has a line starting with `line` (series and value), for events the server counts
    /// just after the client has seen their effect. Panics after a generous bound instead of hanging.
    pub async fn wait_for_metric(&self, line: &str) {
        for _ in 0..3000 {
            if self.metrics().await.lines().any(|l| l.starts_with(line)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("/metrics never showed {line:?}:\n{}", self.metrics().await);
    }

    /// Number of rows in `d_audit_event`.
    pub async fn audit_count(&self) -> i64 {
        phr_server::with_pool!(&self.app.db, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM d_audit_event").fetch_one(pool).await.expect("count")
        })
    }
}

/// One audit row, as tests inspect it.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub chain_id: String,
    pub action: String,
    pub outcome: String,
    pub actor_id: Option<String>,
    pub patient_id: Option<String>,
    pub payload: serde_json::Value,
}

/// A rustls client configuration trusting `ca`, presenting `identity` when given.
pub fn client_tls(ca: &Authority, identity: Option<&Identity>) -> rustls::ClientConfig {
    phr_server::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).expect("CA");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.private_key()).expect("client auth"),
        None => builder.with_no_client_auth(),
    }
}

/// The JSON error body's `type`, asserting the shape of the body on the way.
pub async fn error_type(response: reqwest::Response) -> String {
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with("application/json"), "error body must be JSON, got {content_type:?}");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["status"], status, "status field matches HTTP status: {body}");
    assert!(body["message"].is_string(), "message present: {body}");
    body["type"].as_str().expect("type").to_owned()
}
