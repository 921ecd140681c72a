//! Throw-away PostgreSQL clusters for tests, with TLS on or off.
//!
//! Production databases refuse plain-text connections (`rds.force_ssl=1`), so both binaries have to be tested
//! against a server that really speaks TLS, with a certificate whose CA and host names the test controls. A
//! shared server on 127.0.0.1:5432 cannot be reconfigured per test, so each test starts its own cluster:
//! `initdb` into a temporary folder, a server certificate from a CA generated for the cluster (valid for
//! `localhost` only, so `127.0.0.1` is a wrong host name for `verify-full`), listening on a free port on
//! 127.0.0.1 only with its Unix socket in the same folder, and stopped (fast) when the handle is dropped.
//!
//! When the tests run as root (CI does), PostgreSQL refuses to start, so the cluster is created and run as
//! the `postgres` OS user and its folder handed to that user. When PostgreSQL is not installed (neither on
//! `PATH` nor under `/usr/lib/postgresql/*/bin`) [`PgCluster::start`] says so loudly and returns `None`;
//! under `REQUIRE_PG=1` that is a failure instead.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use devpki::{Authority, LeafSpec};

/// The superuser every cluster is created with.
pub const USER: &str = "postgres";
/// The superuser's password; TCP connections authenticate with SCRAM-SHA-256 as production servers do.
pub const PASSWORD: &str = "pgcluster-test-pw";
/// The database every cluster has from `initdb`.
pub const DATABASE: &str = "postgres";

/// How the server accepts TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ssl=on` and `hostssl` only: a plain-text TCP connection is refused by pg_hba.conf.
    Tls,
    /// `ssl=off`: the server answers `N` to every SSLRequest.
    Plain,
}

/// A running throw-away cluster; stopped and deleted on drop.
pub struct PgCluster {
    /// The temporary folder holding the data directory, certificates, socket and log; removed after the
    /// server has stopped (fields drop after [`Drop::drop`] ran).
    dir: tempfile::TempDir,
    /// The data directory `initdb` created, what `pg_ctl -D` takes.
    data: PathBuf,
    /// `pg_ctl` of the same installation as `initdb`, to stop the server.
    pg_ctl: PathBuf,
    /// The `postgres` OS user's uid and gid when the tests run as root; `None` runs as ourselves.
    run_as: Option<(u32, u32)>,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// Whether the server speaks TLS.
    transport: Transport,
    /// PEM file of the CA that signed the server certificate (TLS clusters only).
    ca_pem: Option<PathBuf>,
    /// PEM file of a CA that signed nothing this server presents, for "untrusted certificate" tests.
    foreign_ca_pem: PathBuf,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Where `initdb` and `pg_ctl` live.
#[derive(Debug, Clone)]
struct Binaries {
    /// `initdb`, which creates the data directory.
    initdb: PathBuf,
    /// `pg_ctl`, which starts and stops the server and waits for it.
    pg_ctl: PathBuf,
}

impl PgCluster {
    /// A cluster with `ssl=on` and `hostssl` only.
    pub fn tls() -> Option<Self> {
        Self::start(Transport::Tls)
    }

    /// A cluster with `ssl=off`.
    pub fn plain() -> Option<Self> {
        Self::start(Transport::Plain)
    }

    /// Creates and starts a cluster, or returns `None` (loudly) when PostgreSQL is not installed.
    ///
    /// # Panics
    /// When PostgreSQL is missing under `REQUIRE_PG=1`, and whenever an installed PostgreSQL fails to
    /// create or start the cluster (with its output and log, so the cause is visible).
    pub fn start(transport: Transport) -> Option<Self> {
        let Some(bin) = find_binaries() else {
            let message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed: neither on PATH nor under \
                           /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)";
            if std::env::var("REQUIRE_PG").as_deref() == Ok("1") {
                panic!("REQUIRE_PG=1 but {message}");
            }
            eprintln!("\n!!! SKIPPING this test: {message}\n!!! REQUIRE_PG=1 makes this a failure\n");
            return None;
        };
        Some(Self::create(&bin, transport).unwrap_or_else(|problem| panic!("throw-away PostgreSQL cluster: {problem}")))
    }

    fn create(bin: &Binaries, transport: Transport) -> Result<Self, String> {
        let dir = tempfile::Builder::new().prefix("pgcluster-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let run_as = if fs::metadata(dir.path()).map_err(|e| e.to_string())?.uid() == 0 {
            Some(postgres_os_user()?)
        } else {
            None
        };
        let path = dir.path().to_path_buf();
        let data = path.join("data");

        let ca = Authority::new("pgcluster").map_err(|e| e.to_string())?;
        let mut spec = LeafSpec::loopback_server();
        spec.subject_alt_names = vec!["localhost".to_owned()];
        let server = ca.issue(&spec).map_err(|e| e.to_string())?;
        let foreign = Authority::new("pgcluster-foreign").map_err(|e| e.to_string())?;
        let write = |name: &str, contents: &str, mode: u32| -> Result<PathBuf, String> {
            let file = path.join(name);
            let mut handle = fs::File::create(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            handle.write_all(contents.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))?;
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
            Ok(file)
        };
        let cert = write("server.crt", &server.chain_pem(), 0o644)?;
        let key = write("server.key", &server.key_pem(), 0o600)?;
        let pwfile = write("pwfile", PASSWORD, 0o600)?;
        let ca_pem = write("ca.pem", &ca.cert_pem(), 0o644)?;
        let foreign_ca_pem = write("foreign-ca.pem", &foreign.cert_pem(), 0o644)?;
        if let Some((uid, gid)) = run_as {
            for owned in [&path, &cert, &key, &pwfile] {
                std::os::unix::fs::chown(owned, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {} to the postgres user: {e}", owned.display()))?;
            }
        }

        let mut initdb = Command::new(&bin.initdb);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--no-instructions"]);
        checked(run(&mut initdb, &path, run_as), "initdb")?;

        let ssl = match transport {
            Transport::Tls => {
                format!("ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n", cert.display(), key.display())
            }
            Transport::Plain => "ssl = off\n".to_owned(),
        };
        let settings = format!(
            "\n# pgcluster\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n{ssl}\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n\
             shared_buffers = 16MB\n",
            path.display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        let tcp = match transport {
            Transport::Tls => "hostssl",
            Transport::Plain => "host",
        };
        let hba = format!("local all all trust\n{tcp} all all 127.0.0.1/32 scram-sha-256\n");
        fs::write(data.join("pg_hba.conf"), hba).map_err(|e| format!("pg_hba.conf: {e}"))?;

        // A free port can be taken by another test between our probe and the server's bind: try again then.
        let log = path.join("postgres.log");
        let mut last_problem = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut start = Command::new(&bin.pg_ctl);
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"))
                .arg("start");
            let output = run(&mut start, &path, run_as);
            match checked(output, "pg_ctl start") {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        data,
                        pg_ctl: bin.pg_ctl.clone(),
                        run_as,
                        port,
                        transport,
                        ca_pem: (transport == Transport::Tls).then_some(ca_pem),
                        foreign_ca_pem,
                    });
                }
                Err(problem) => {
                    let log_text = fs::read_to_string(&log).unwrap_or_default();
                    last_problem = format!("{problem}\n--- postgres.log ---\n{log_text}");
                    if !(log_text.contains("could not bind") || log_text.contains("could not create listen socket")) {
                        break;
                    }
                }
            }
        }
        Err(last_problem)
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this cluster speaks TLS.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The folder holding the Unix socket (`host=<this>` connects over it, trusted without a password).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// PEM file of the CA that signed the server certificate; `None` for a plain cluster.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// PEM file of a CA unrelated to this server, for "untrusted certificate" tests.
    pub fn foreign_ca_pem_path(&self) -> &Path {
        &self.foreign_ca_pem
    }

    /// `postgres://postgres:<pw>@<host>:<port>/postgres` with `query` (without `?`) appended when not empty.
    ///
    /// `host` is `localhost` (the name the server certificate is for) or `127.0.0.1` (a wrong name for it).
    pub fn url(&self, host: &str, query: &str) -> String {
        let mut url = format!("postgres://{USER}:{PASSWORD}@{host}:{}/{DATABASE}", self.port);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The server log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = Command::new(&self.pg_ctl);
        stop.arg("-D").arg(&self.data).args(["-m", "fast", "-w", "-t", "30", "stop"]);
        if let Err(problem) = checked(run(&mut stop, self.dir.path(), self.run_as), "pg_ctl stop") {
            eprintln!("pgcluster: could not stop the cluster in {}: {problem}", self.dir.path().display());
        }
    }
}

/// Runs `command` in `dir` (PostgreSQL's tools complain when they cannot read their working directory), as
/// the given user when set.
fn run(command: &mut Command, dir: &Path, run_as: Option<(u32, u32)>) -> std::io::Result<Output> {
    command.current_dir(dir).env("LC_ALL", "C").env_remove("PGDATA");
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    command.output()
}

/// Turns a failed run into a message with everything the tool printed.
fn checked(output: std::io::Result<Output>, what: &str) -> Result<(), String> {
    let output = output.map_err(|e| format!("{what}: cannot run: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `initdb` and `pg_ctl` from `PATH`, else from the newest `/usr/lib/postgresql/<version>/bin` (where
/// Debian installs them without putting them on `PATH`).
fn find_binaries() -> Option<Binaries> {
    let in_dir = |dir: &Path| {
        let initdb = dir.join("initdb");
        let pg_ctl = dir.join("pg_ctl");
        (initdb.is_file() && pg_ctl.is_file()).then_some(Binaries { initdb, pg_ctl })
    };
    if let Some(path) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&path).find_map(|dir| in_dir(&dir))
    {
        return Some(found);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.iter().rev().find_map(|(_, dir)| in_dir(dir))
}

/// uid and gid of the `postgres` OS user, from `/etc/passwd`.
fn postgres_os_user() -> Result<(u32, u32), String> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != "postgres" {
                return None;
            }
            let _password = fields.next();
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .ok_or_else(|| {
            "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` OS user to run it \
             as (Debian's postgresql package creates one)"
                .to_owned()
        })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_on_its_socket_and_stops_on_drop() {
        let Some(cluster) = PgCluster::tls() else { return };
        let socket = cluster.socket_dir().join(format!(".s.PGSQL.{}", cluster.port()));
        assert!(socket.exists(), "socket at {}", socket.display());
        assert!(std::net::TcpStream::connect(("127.0.0.1", cluster.port())).is_ok());
        let data = cluster.data.clone();
        drop(cluster);
        assert!(!data.exists(), "the folder is removed after the server stopped");
    }
}
