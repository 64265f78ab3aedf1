//! Servers a fault test starts for itself, so it may kill, freeze and restart them without
//! touching anyone else's: a nats-server with JetStream, and a PostgreSQL cluster of its own
//! (initdb and pg_ctl, run as the `postgres` user when the test runs as root, since PostgreSQL
//! refuses to). Each on a free loopback port, in a directory of its own, stopped and removed
//! on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edupulse_events::Uuid;

/// A free port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports on 127.0.0.1.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// Waits until something accepts on `port`, at most `within`.
fn wait_for_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A nats-server of the test's own, on a free port, with its own store directory.
pub struct OwnNatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// Its name and cluster block, when it is one of a cluster's servers.
    cluster_args: Vec<String>,
}

/// The nats-server the fault tests run: one that fences a relay that lost its leadership
/// (2.11 or later), which `scripts/services` installs beside the build; `NATS_SERVER_BIN`
/// overrides it.
fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return path.into();
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools")
        .join(format!("nats-server-{FENCING_NATS_VERSION}"))
        .join("bin/nats-server");
    assert!(
        installed.exists(),
        "nats-server {FENCING_NATS_VERSION} is not installed at {}: run scripts/services",
        installed.display()
    );
    installed
}

/// Kept in step with `scripts/services`.
const FENCING_NATS_VERSION: &str = "2.12.8";

impl OwnNatsServer {
    /// Started and accepting.
    pub fn start() -> Self {
        let mut server = Self::stopped(free_port());
        server.restart();
        server
    }

    /// One that will listen on `port` once [`restart`](Self::restart)ed.
    pub fn stopped(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("edupulse-nats-{}", Uuid::now_v7().simple()));
        OwnNatsServer {
            child: None,
            port,
            dir,
            cluster_args: Vec::new(),
        }
    }

    /// `size` servers clustered on loopback (JetStream replicated across them), started; the
    /// caller waits for JetStream to elect its meta leader before creating streams.
    pub fn cluster(size: usize) -> Vec<Self> {
        // All ports drawn while holding them, so no two are the same.
        let ports = free_ports(2 * size);
        let (route_ports, client_ports) = ports.split_at(size);
        let cluster_name = format!("edupulse-{}", Uuid::now_v7().simple());
        let mut servers: Vec<Self> = (0..size)
            .map(|n| {
                let mut server = Self::stopped(client_ports[n]);
                let routes: Vec<String> = route_ports
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != n)
                    .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                    .collect();
                server.cluster_args = vec![
                    "--server_name".into(),
                    format!("n{n}"),
                    "--cluster_name".into(),
                    cluster_name.clone(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route_ports[n]),
                    "--routes".into(),
                    routes.join(","),
                ];
                server
            })
            .collect();
        for server in &mut servers {
            server.restart();
        }
        servers
    }

    /// The server's name in its cluster (`n0`, `n1`, ...).
    pub fn name(&self) -> Option<&str> {
        let at = self
            .cluster_args
            .iter()
            .position(|a| a == "--server_name")?;
        self.cluster_args.get(at + 1).map(String::as_str)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store directory, and waits until it accepts.
    pub fn restart(&mut self) {
        let child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.cluster_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20), "nats-server");
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of the test's own (trust authentication, user `postgres`).
pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
    running: bool,
}

fn pg_binary(name: &str) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("PostgreSQL is not installed: run scripts/services")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL version installed")
        .join("bin")
        .join(name)
}

/// `program args...`, as the `postgres` user when this process is root.
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl OwnPostgres {
    /// A new cluster, initialised but not started.
    pub fn init() -> Self {
        let dir = std::env::temp_dir().join(format!("edupulse-pg-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // The cluster's owner must own its directory.
        let _ = Command::new("chown").arg("postgres:").arg(&dir).status();
        let status = as_postgres(&pg_binary("initdb"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        OwnPostgres {
            port: free_port(),
            dir,
            running: false,
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster and waits until it accepts connections.
    pub fn start(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = as_postgres(&pg_binary("pg_ctl"))
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        assert!(status.success(), "pg_ctl start failed");
        self.running = true;
    }

    /// Stops it at once (`immediate`: as a crash would).
    pub fn stop(&mut self) {
        if self.running {
            let _ = as_postgres(&pg_binary("pg_ctl"))
                .args(["-m", "immediate", "-D"])
                .arg(self.dir.join("data"))
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
