//! A `threatpilot run` process for integration tests: a pipeline file in a
//! temporary folder, the API (and syslog listeners) on ephemeral loopback
//! ports read back from its stderr, a plain HTTP/1.1 client, and a stop by
//! SIGTERM that returns what the process printed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Service {
    pub api: SocketAddr,
    pub syslog_udp: Option<SocketAddr>,
    pub syslog_tcp: Option<SocketAddr>,
    pub dir: PathBuf,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

/// A fresh folder for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let base = std::env::var("THREATPILOT_SERVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let d = base.join(format!("tp-{tag}-{}-{}", std::process::id(), crate_nanos()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `threatpilot ARGS` to the end.
pub fn threatpilot<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_threatpilot"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `threatpilot ARGS` to the end and fails the test, showing `what`
/// and its stderr, unless it succeeds.
pub fn threatpilot_ok<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
    what: &str,
) -> std::process::Output {
    let out = threatpilot(args);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `threatpilot run --pipeline FILE` to the end (a batch pipeline)
/// and fails the test, showing its stderr, unless it succeeds.
pub fn run_pipeline(file: &std::path::Path) -> std::process::Output {
    threatpilot_ok(
        [
            std::ffi::OsStr::new("run"),
            "--pipeline".as_ref(),
            file.as_os_str(),
        ],
        &file.display().to_string(),
    )
}

fn crate_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Service {
    /// Starts a pipeline; `{dir}` in the text is the test's folder. The
    /// pipeline's stdout goes where `stdout` says.
    pub fn start(tag: &str, pipeline: &str, stdout: Stdio) -> Service {
        let dir = temp_dir(tag);
        let text = pipeline.replace("{dir}", &dir.display().to_string());
        let path = dir.join("pipeline.yaml");
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_threatpilot"))
            .args(["run", "--pipeline"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let buf = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                buf.lock().unwrap().push_str(&line);
                let _ = tx.send(line.clone());
                line.clear();
            }
        });
        let (mut api, mut udp, mut tcp) = (None, None, None);
        let wants_syslog = pipeline.contains("type: syslog");
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_none() || (wants_syslog && udp.is_none() && tcp.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("threatpilot did not start: {}", stderr.lock().unwrap())
            });
            if let Some(a) = line.split("listening on http://").nth(1) {
                api = Some(a.trim().parse().unwrap());
            }
            if line.starts_with("threatpilot syslog") {
                let word = |w: &str| {
                    line.split_whitespace()
                        .skip_while(|x| *x != w)
                        .nth(1)
                        .and_then(|a| a.parse().ok())
                };
                udp = word("udp");
                tcp = word("tcp");
            }
        }
        let s = Service {
            api: api.unwrap(),
            syslog_udp: udp,
            syslog_tcp: tcp,
            dir,
            child,
            stderr,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let r = http(self.api, "GET", path, &[], b"");
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http(self.api, "POST", path, headers, body)
    }

    /// Complete lines of a JSON-lines file in the test folder (a line still
    /// being written is left for the next read).
    pub fn read_jsonl(&self, name: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `f` holds (polling), or fails with `what`.
    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut(&Service) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// SIGTERM, then waits; returns stderr (with the run's summary).
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let err = self.stderr.lock().unwrap().clone();
                assert!(status.success(), "threatpilot failed ({status}):\n{err}");
                return err;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("threatpilot did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on its own connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // a refused body may be answered before it is all sent
    let _ = s.write_all(body);
    read_response(&mut s)
}

/// Resident memory of a process, from /proc (kB).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One request that may fail (a server that closes or is not there yet):
/// `None` instead of a panic.
pub fn try_http(addr: SocketAddr, method: &str, path: &str) -> Option<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return None;
    }
    Some(read_response(&mut raw.as_slice()))
}

pub fn read_response(s: &mut impl Read) -> Response {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// Whether servers the test needs must be there (the test script sets it).
pub fn servers_required() -> bool {
    std::env::var("THREATPILOT_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

/// One HTTP/1.1 request, as the stand-in servers of the tests read it.
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads one request (with a `Content-Length` body); `None` when the
/// connection ends first.
pub fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = std::collections::BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
        }
    }
    let n: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; n];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// `n` failed SSH logins for `user` from `attacker`, dated now, sent as
/// syslog datagrams from the local address `from` to `to`.
pub fn ship_ssh_failures(to: SocketAddr, from: &str, attacker: &str, user: &str, n: usize) {
    let udp = std::net::UdpSocket::bind((from, 0)).unwrap();
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    for i in 0..n {
        let line = format!(
            "<38>{stamp} bastion sshd[{}]: Failed password for invalid user {user} from {attacker} port {} ssh2",
            300 + i,
            42000 + i
        );
        udp.send_to(line.as_bytes(), to).unwrap();
    }
}
