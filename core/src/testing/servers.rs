//! Real servers for the production adapters' tests, each on its own loopback port and
//! stopped when dropped: moto (SQS and Secrets Manager), redis-server and PostgreSQL.
//! `scripts/tools.sh` installs them; each binary can be overridden by an environment
//! variable.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools")
}

/// A port the OS says is free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status})");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what} did not listen on port {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// moto's server mode: SQS, Secrets Manager and KMS on one port.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Moto({})", self.endpoint)
    }
}

impl Moto {
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// With extra environment for moto, e.g. `INITIAL_NO_AUTH_ACTION_COUNT` to enforce IAM
    /// policies after that many requests.
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let bin = std::env::var("MOTO_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|_| {
            // scripts/tools.sh writes this launcher: moto with KMS's digest signing as AWS's.
            let local = tools_dir().join("moto-server");
            if local.exists() { local } else { PathBuf::from("moto_server") }
        });
        let port = free_port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto at {} ({e}); run scripts/tools.sh", bin.display()));
        wait_for_port(port, "moto_server", &mut child);
        Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// Environment for clients of this moto: a region and the static test credentials
    /// moto accepts.
    pub fn env() -> [(&'static str, &'static str); 3] {
        [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")]
    }

    /// SDK settings pointing at this moto, with static credentials (no environment).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// redis-server with an append-only file in its own directory, so a restart keeps what
/// was acknowledged (as an ElastiCache node with persistence would).
pub struct Redis {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis({})", self.url)
    }
}

fn redis_bin() -> PathBuf {
    std::env::var("REDIS_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("redis-server"))
}

fn spawn_redis(dir: &Path, port: u16) -> Child {
    spawn_redis_with(dir, port, &["--port".into(), port.to_string()])
}

/// redis-server on `port` (the one it is waited on), with `listen` saying how it listens.
fn spawn_redis_with(dir: &Path, port: u16, listen: &[String]) -> Child {
    let bin = redis_bin();
    let mut child = Command::new(&bin)
        .args(listen)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server at {} ({e}); run scripts/tools.sh", bin.display()));
    wait_for_port(port, "redis-server", &mut child);
    child
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("redis data directory");
        let port = free_port();
        let child = spawn_redis(dir.path(), port);
        Redis { child, dir, port, url: format!("redis://127.0.0.1:{port}/") }
    }

    /// redis-server speaking TLS only (no plain port), its certificate signed by `ca` for
    /// `localhost`, and AUTH with `password`: as ElastiCache with in-transit encryption.
    /// `url` is the `rediss://` URL with the password.
    pub fn start_tls(ca: &TestCa, password: &str) -> Redis {
        let dir = tempfile::tempdir().expect("redis data directory");
        let (cert, key) = ca.server_cert(dir.path(), "redis");
        let port = free_port();
        let listen: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-ca-cert-file",
            &ca.cert.display().to_string(),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ]
        .map(String::from)
        .to_vec();
        let child = spawn_redis_with(dir.path(), port, &listen);
        Redis { child, dir, port, url: format!("rediss://:{password}@localhost:{port}/") }
    }

    /// Stops the server (SIGKILL: nothing gets a chance to flush) and starts it again on
    /// the same port and data.
    pub fn restart(&mut self) {
        stop(&mut self.child);
        self.child = spawn_redis(self.dir.path(), self.port);
    }

    /// Stops the server for good (until `start_again`).
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    pub fn start_again(&mut self) {
        self.child = spawn_redis(self.dir.path(), self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A PostgreSQL cluster of its own (initdb in a temporary directory), with trust auth on
/// loopback. Run as root, the server runs as the `postgres` user.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    pub url: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Postgres({})", self.url)
    }
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(p) = std::env::var("PG_BIN_DIR") {
        return PathBuf::from(p);
    }
    for v in ["17", "16", "15"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if p.join("initdb").exists() {
            return p;
        }
    }
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(None)
    }

    /// A cluster with `ssl = on`, its certificate signed by `ca` for `localhost`; `url` asks
    /// for `sslmode=verify-full` against that CA, as a role connects to RDS.
    pub fn start_tls(ca: &TestCa) -> Postgres {
        Self::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> Postgres {
        let bin = pg_bin_dir();
        let dir = std::env::temp_dir().join(format!("withdraw-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("postgres directory");
        if is_root() {
            let ok = Command::new("chown").arg("postgres:postgres").arg(&dir).status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "cannot chown {} to postgres", dir.display());
        }
        let out = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb from {} ({e}); run scripts/tools.sh", bin.display()));
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let mut opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", dir.display());
        if let Some(ca) = ca {
            // The server reads its key as the postgres user and refuses one others can read.
            let (cert, key) = ca.server_cert(&dir, "postgres");
            if is_root() {
                for f in [&cert, &key] {
                    let ok = Command::new("chown").arg("postgres:postgres").arg(f).status().map(|s| s.success()).unwrap_or(false);
                    assert!(ok, "cannot chown {} to postgres", f.display());
                }
            }
            opts.push_str(&format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", cert.display(), key.display()));
        }
        let out = as_postgres(&bin, "pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .expect("pg_ctl start");
        assert!(out.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&out.stderr));
        let url = match ca {
            Some(ca) => format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}", ca.cert.display()),
            None => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        Postgres { dir, bin, port, url }
    }
}

/// A certificate authority of a test's own (openssl, in a temporary directory) that signs
/// server certificates for `localhost` and 127.0.0.1, for the servers' TLS tests.
pub struct TestCa {
    dir: tempfile::TempDir,
    /// The CA's certificate (PEM): what a client trusts.
    pub cert: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestCa({})", self.cert.display())
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); run scripts/tools.sh"));
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("CA directory");
        openssl(
            &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
                .into_iter()
                .chain(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=withdrawd test CA"])
                .chain(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .collect::<Vec<_>>(),
            dir.path(),
        );
        let cert = dir.path().join("ca.crt");
        TestCa { dir, cert }
    }

    /// A key and a certificate for `localhost` signed by this CA, written into `into` as
    /// `name.crt` and `name.key` (the key readable by its owner only).
    pub fn server_cert(&self, into: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key, csr) = (into.join(format!("{name}.crt")), into.join(format!("{name}.key")), into.join(format!("{name}.csr")));
        let ext = into.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("extensions file");
        let s = |p: &Path| p.display().to_string();
        openssl(
            &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost"]
                .into_iter()
                .chain(["-keyout", &s(&key), "-out", &s(&csr)])
                .collect::<Vec<_>>(),
            self.dir.path(),
        );
        openssl(
            &["x509", "-req", "-in", &s(&csr), "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"]
                .into_iter()
                .chain(["-out", &s(&cert), "-extfile", &s(&ext)])
                .collect::<Vec<_>>(),
            self.dir.path(),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("key permissions");
        (cert, key)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl").arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
