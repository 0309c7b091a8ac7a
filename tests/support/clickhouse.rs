//! A ClickHouse server of a test's own (Debian's clickhouse-server 18.16):
//! its config, data and ports in a temporary folder; stoppable and
//! restartable on the same port and data, to test outages. Without the
//! binary, [`ClickhouseServer::start`] returns None and the caller skips,
//! unless THREATPILOT_REQUIRE_SERVERS=1.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ClickhouseServer {
    pub url: String,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ClickhouseServer {
    pub fn start(dir: PathBuf) -> Option<ClickhouseServer> {
        // 18.16's server answers neither --version nor --help with 0: look for it
        let ok = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| std::path::Path::new(d).join("clickhouse-server").is_file());
        if !ok {
            let required = std::env::var("THREATPILOT_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
            assert!(!required, "clickhouse-server is required but missing");
            eprintln!("skipped: clickhouse-server is not installed");
            return None;
        }
        let (http, tcp) = (free_port(), free_port());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy("/etc/clickhouse-server/users.xml", dir.join("users.xml")).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
</yandex>
"#
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        let mut s = ClickhouseServer {
            url: format!("http://{addr}"),
            addr,
            dir,
            child: None,
        };
        s.run();
        Some(s)
    }

    fn run(&mut self) {
        let child = Command::new("clickhouse-server")
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.query("SELECT 1").is_none_or(|r| r.trim() != "1") {
            assert!(Instant::now() < deadline, "clickhouse did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Runs a query over HTTP; None when the server does not answer 200.
    pub fn query(&self, sql: &str) -> Option<String> {
        let std::io::Result::Ok(mut s) = std::net::TcpStream::connect(self.addr) else {
            return None;
        };
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{sql}",
            sql.len()
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let ok = out.starts_with("HTTP/1.1 200");
        let body = out.split_once("\r\n\r\n")?.1;
        // chunked bodies: ClickHouse streams its answers
        let text: String = if out
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut b = body;
            let mut t = String::new();
            while let Some((size, rest)) = b.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 || rest.len() < n {
                    break;
                }
                t.push_str(&rest[..n]);
                b = rest[n..].trim_start_matches("\r\n");
            }
            t
        } else {
            body.to_owned()
        };
        if ok {
            Some(text)
        } else {
            panic!("clickhouse refused {sql:?}: {text}")
        }
    }

    /// A query's single number.
    pub fn number(&self, sql: &str) -> u64 {
        let r = self.query(sql).unwrap_or_default();
        r.trim().parse().unwrap_or_else(|_| panic!("{sql}: {r:?}"))
    }
}

impl Drop for ClickhouseServer {
    fn drop(&mut self) {
        self.stop();
    }
}
