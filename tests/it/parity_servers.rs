//! `connrun parity` between two differently-configured phr-servers finds the planted differences, only those.
//!
//! Legacy: defaults. Modern: a 1-byte image limit (PHR-07 no longer 200), ServerInfo answering `modern`, and
//! a different Layer ID provider (the JWT's `iss` claim), which the run is told to ignore.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use devpki::{Authority, LeafSpec, Pkcs12Flavor};

/// A running phr-server on loopback; dropped servers stop with the test runtime.
struct Server {
    base_url: String,
}

async fn start(dir: &Path, ca: &Authority, name: &str, tweak: impl FnOnce(&mut phr_server::Config)) -> Server {
    let server_identity = ca.issue(&LeafSpec::loopback_server()).expect("server certificate");
    let database_url = format!("sqlite:{}", dir.join(format!("{name}.db")).display());
    let mut config = phr_server::Config::new(
        database_url,
        phr_server::TlsMaterial {
            cert_chain: server_identity.chain.clone(),
            key: Arc::new(server_identity.private_key()),
            client_ca: vec![ca.cert_der()],
        },
        dir.join(format!("{name}-images")),
    );
    let layer_key = devpki::rsa_signing_key_pkcs8().expect("layer key");
    config.layer = phr_server::config::LayerKeyArgs {
        layer_private_key_base64: Some(base64::engine::general_purpose::STANDARD.encode(layer_key)),
        layer_private_key_path: None,
        layer_key_id: Some("parity-layer".to_owned()),
        layer_provider_id: Some("legacy-provider".to_owned()),
        layer_key_optional: false,
    };
    if let phr_server::export::StorageSettings::Filesystem { base } = &mut config.export.storage {
        *base = dir.join(format!("{name}-exports"));
    }
    tweak(&mut config);
    let app = phr_server::App::build(config).await.expect("server builds");
    let seed = phr_server::seed::SeedArgs { patients: 5, user_password: "parity-ops-password".to_owned() };
    phr_server::seed::run(&app.state.db, &app.state.images, &seed).await.expect("seed");
    let phr = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = phr.local_addr().expect("addr").port();
    tokio::spawn(app.serve(phr_server::Listeners { phr, ops }, std::future::pending::<()>()));
    Server { base_url: format!("https://127.0.0.1:{port}") }
}

fn target(name: &str, server: &Server) -> String {
    format!(
        "[targets.{name}]\nbase_url = \"{}\"\n[targets.{name}.tls]\nca_bundle = \"ca.pem\"\n\
         [targets.{name}.identity]\np12 = \"client.p12\"\npassword_file = \"client.p12.password\"\n\
         [targets.{name}.basic]\nuser = \"F001:ops\"\npassword_file = \"ops.password\"\n",
        server.base_url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_finds_the_planted_differences_and_only_those() {
    // Arrange
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::new("parity-ca").expect("CA");
    let legacy = start(dir.path(), &ca, "legacy", |_| {}).await;
    let modern = start(dir.path(), &ca, "modern", |config| {
        config.image.max_bytes = 1;
        config.server_info.claim_conn = "modern".to_owned();
        config.layer.layer_provider_id = Some("modern-provider".to_owned());
    })
    .await;
    let client = ca.issue(&LeafSpec::client("parity-ops")).expect("client certificate");
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).expect("ca");
    std::fs::write(dir.path().join("client.p12"), client.to_pkcs12("p12-pass", Pkcs12Flavor::Modern).expect("p12"))
        .expect("p12");
    std::fs::write(dir.path().join("client.p12.password"), "p12-pass").expect("password");
    std::fs::write(dir.path().join("ops.password"), "parity-ops-password").expect("password");
    let targets = dir.path().join("targets.toml");
    std::fs::write(&targets, target("legacy", &legacy) + &target("modern", &modern)).expect("targets");
    let artifacts = dir.path().join("artifacts");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");
    let parity = |extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connrun"));
        command
            .arg("--artifacts")
            .arg(&artifacts)
            .arg("--targets")
            .arg(&targets)
            .arg("--run-templates")
            .arg(&templates);
        command.args(["--json", "parity", "--target", "legacy", "--target", "modern", "--template", "phr-seq"]);
        command.args(extra).output().expect("connrun runs")
    };

    // Act
    let output = parity(&["--ignore", "iss", "--ignore", "iat", "--ignore", "exp"]);
    let strict = parity(&["--ignore", "iat", "--ignore", "exp"]);

    // Assert: exit 1, exactly PHR-07 (status) and serverinfo (body) differ; PHR-06's iss is ignored.
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("parity --json");
    let differing: Vec<&str> = json["parity"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["equal"] == false)
        .map(|r| r["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(differing, vec!["serverinfo", "PHR-07"], "{text}");
    let rows = json["parity"]["rows"].as_array().expect("rows");
    let phr07 = rows.iter().find(|r| r["id"] == "PHR-07").expect("PHR-07 row");
    assert_eq!(phr07["left_http"], "200");
    assert_ne!(phr07["right_http"], "200");
    // Both sides are complete, sealed evidence trees under the one RUN_ID, and the whole verifies.
    let evidence = Path::new(json["evidence"].as_str().expect("evidence"));
    for side in ["legacy", "modern"] {
        assert!(
            evidence.join(side).join("status.json").is_file() && evidence.join(side).join("manifest.json").is_file()
        );
    }
    assert!(evidence.join("parity.md").is_file());
    let report = connrun::evidence::verify_dir(evidence).expect("verify");
    assert!(report.first_mismatch.is_none(), "{:?}", report.first_mismatch);
    // Without ignoring `iss`, the JWT claims of PHR-06 differ too (the ignore list is what hid it).
    let json: serde_json::Value = serde_json::from_slice(&strict.stdout).expect("parity --json");
    let phr06 = json["parity"]["rows"].as_array().expect("rows").iter().find(|r| r["id"] == "PHR-06").cloned();
    let phr06 = phr06.expect("PHR-06 row");
    assert_eq!(phr06["equal"], false, "{phr06}");
    assert!(phr06["body"].as_str().unwrap_or("").contains("/claims/iss"), "{phr06}");
}
