//! A real PostgreSQL server from the installed binaries, in a temp dir, on a free
//! port: `initdb -A trust -U postgres`, then `postgres -k <dir> -p <port>`.
//!
//! As root (CI), initdb refuses to run, so the data dir is handed to the `postgres`
//! (or `nobody`) user and both programs run under `runuser`. The server runs under a
//! small shell watchdog that stops it (and removes its files) when the test process
//! is gone, so the server shared through a `OnceLock`, never dropped, cannot outlive
//! the test binary.
//!
//! [`PgServer::with_tls`] starts one with `ssl=on`, a given certificate and key, and
//! a given `pg_hba.conf`. The harness itself always connects through the Unix
//! socket (`local ... trust`), which every variant allows.

use crate::util::{skip, wait_for};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running server; stopped (and its files removed) on drop.
pub struct PgServer {
    bin: PathBuf,
    /// The temp dir: `data/` and the Unix socket live here.
    root: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    user: Option<String>,
    child: Option<Child>,
    owned: bool,
    ssl: bool,
}

/// What a TLS server is started with.
pub struct ServerTls {
    /// PEM of `ssl_cert_file` (the server's certificate, then its chain).
    pub cert_pem: String,
    /// PEM of `ssl_key_file`; written 0600 and owned by the server's user.
    pub key_pem: String,
    /// The whole `pg_hba.conf`; it must keep `local all all trust` for the harness.
    pub hba: String,
    /// PEM of `ssl_ca_file`: the CA client certificates must lead to (for `cert`
    /// authentication and `clientcert=`).
    pub client_ca_pem: String,
}

/// The server shared by the tests of this binary run; None when skipped.
pub fn shared() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::new(false)).as_ref()
}

/// Where initdb and postgres are: the newest /usr/lib/postgresql/*/bin, else PATH.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The user to run as when root: `postgres` if it exists, else `nobody`.
fn run_user() -> Option<String> {
    ["postgres", "nobody"]
        .into_iter()
        .find(|u| {
            Command::new("id")
                .arg("-u")
                .arg(u)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_string)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PgServer {
    /// Initializes and starts a server; None (after printing why) when the binaries
    /// are missing, unless services are required, then it panics.
    pub fn new(owned: bool) -> Option<PgServer> {
        PgServer::init(owned, None)
    }

    /// Like [`PgServer::new`], with `ssl=on` and `tls`'s files and `pg_hba.conf`.
    pub fn with_tls(owned: bool, tls: &ServerTls) -> Option<PgServer> {
        PgServer::init(owned, Some(tls))
    }

    fn init(owned: bool, tls: Option<&ServerTls>) -> Option<PgServer> {
        let Some(bin) = find_bin() else {
            skip("no PostgreSQL binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH");
            return None;
        };
        let user = if is_root() {
            match run_user() {
                Some(u) => Some(u),
                None => {
                    skip("running as root and no postgres or nobody user to run initdb as");
                    return None;
                }
            }
        } else {
            None
        };
        let root = tempfile::Builder::new()
            .prefix("tidepool-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        if let Some(tls) = tls {
            // Written before the chown below, so they belong to the server's user:
            // postgres refuses a key that is not 0600 or not its own (or root's).
            std::fs::write(root.join("server.crt"), &tls.cert_pem).expect("write server.crt");
            std::fs::write(root.join("client-ca.crt"), &tls.client_ca_pem)
                .expect("write client-ca.crt");
            let key = root.join("server.key");
            std::fs::write(&key, &tls.key_pem).expect("write server.key");
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600 server.key");
        }
        if let Some(u) = &user {
            let ok = Command::new("chown")
                .args(["-R", &format!("{u}:"), &root.display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {} to {u}", root.display());
        }
        let data = root.join("data");
        let out = as_user(&user, &bin.join("initdb"))
            .args(["-D", &data.display().to_string()])
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                // 1 MiB WAL segments instead of 16: the tests' servers stay a few tens
                // of MB on disk, which matters on CI machines with little free space.
                "--wal-segsize=1",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            free_space(&root)
        );
        if let Some(tls) = tls {
            // Overwriting keeps initdb's owner and mode.
            std::fs::write(data.join("pg_hba.conf"), &tls.hba).expect("write pg_hba.conf");
        }
        let mut s = PgServer {
            bin,
            root,
            port: free_port(),
            user,
            child: None,
            owned,
            ssl: tls.is_some(),
        };
        s.start();
        Some(s)
    }

    /// Starts the server (again, after [`PgServer::stop`]) and waits until it answers.
    pub fn start(&mut self) {
        let me = std::process::id();
        // The watchdog: stop the server when this test process is gone; a shared
        // server also takes its files with it.
        let clean = if self.owned { ":" } else { "rm -rf \"$ROOT\"" };
        let ssl = if self.ssl {
            r#" -c ssl=on -c ssl_cert_file="$ROOT/server.crt" -c ssl_key_file="$ROOT/server.key" -c ssl_ca_file="$ROOT/client-ca.crt""#
        } else {
            ""
        };
        let script = format!(
            "BIN='{}'\nROOT='{}'\n",
            self.bin.display(),
            self.root.display()
        ) + &format!(
            r#""$BIN/postgres" -D "$ROOT/data" -k "$ROOT" -p {port} -c listen_addresses=127.0.0.1 \
 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
 -c shared_buffers=16MB -c min_wal_size=2MB -c max_wal_size=16MB{ssl} \
 >>"$ROOT/log" 2>&1 &
P=$!
while [ -d /proc/{me} ] && kill -0 $P 2>/dev/null; do sleep 1; done
kill -INT $P 2>/dev/null
wait $P
[ -d /proc/{me} ] || {{ {clean}; }}
"#,
            port = self.port,
        );
        let child = as_user(&self.user, Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let admin = self.admin("postgres");
        let (log, child) = (self.root.join("log"), &mut self.child);
        wait_for("PostgreSQL to accept connections", || {
            if let Some(c) = child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("postgres exited ({status}):\n{log}");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                client.simple_query("SELECT 1").await.ok().map(|_| ())
            })
        });
    }

    /// Stops the server (fast shutdown) and waits until it is gone.
    pub fn stop(&mut self) {
        let pid = std::fs::read_to_string(self.root.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// A URL for database `db` as user postgres.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Connection parameters for database `db` as user postgres over the Unix
    /// socket, which every variant trusts: for the harness and for checks from
    /// outside what a test is proving.
    pub fn admin(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.root.display(),
            self.port
        )
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
    }

    /// Creates a fresh database named `db` and returns its URL.
    pub fn database(&self, db: &str) -> String {
        let admin = self.admin("postgres");
        block_on(async {
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .expect("connect as postgres");
            tokio::spawn(conn);
            // Separately: two statements in one batch are one transaction, which
            // CREATE DATABASE refuses.
            for sql in [
                format!("DROP DATABASE IF EXISTS {db}"),
                format!("CREATE DATABASE {db}"),
            ] {
                client
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}{}", free_space(&self.root)));
            }
        });
        self.url(db)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `df -h` of the file system holding `path`, so a failure caused by a full disk says so.
fn free_space(path: &Path) -> String {
    Command::new("df")
        .arg("-h")
        .arg(path)
        .output()
        .map(|o| format!("\nfree space:\n{}", String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// `program` run as `user` (via runuser) when set, else as ourselves.
fn as_user(user: &Option<String>, program: &Path) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs a future on a fresh current-thread runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
