//! Realistic mixed traffic with attacks and failures injected at known
//! times, and the findings they must raise.
//!
//! ```text
//! benign background: sshd logins, nginx page views (many clients, assets,
//!   some 404/304), JSON app logs, a few kernel lines
//! + injected: SSH brute force, password spraying, user enumeration,
//!   success after failures, SQL injection, path traversal, forced browsing,
//!   bad bot, OOM kill, crash loop, error surge, 5xx spike
//! ```
//! Deterministic for a seed (splitmix64), so the expected findings hold for
//! every run; event time starts at 2026-03-03T10:00:00Z and advances at
//! `events_per_sec` of simulated time.

use serde::Serialize;

use crate::time::format_rfc3339;

/// One simulated line, tagged with its stream.
pub struct SimLine {
    pub stream: Stream,
    pub text: String,
    /// Event time, epoch ms (lines are returned sorted by it).
    pub ts: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Sshd,
    Nginx,
    App,
    Kernel,
}

impl Stream {
    pub fn file_name(self) -> &'static str {
        match self {
            Stream::Sshd => "sshd.log",
            Stream::Nginx => "nginx.log",
            Stream::App => "app.jsonl",
            Stream::Kernel => "kernel.log",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct ExpectedFinding {
    pub detector: String,
    pub offender: String,
    /// Event time (epoch ms) when the attack begins.
    pub injected_at: i64,
}

/// Simulation settings.
pub struct SimConfig {
    pub events: usize,
    pub seed: u64,
    pub events_per_sec: f64,
}

pub const START_MS: i64 = 1_772_532_000_000; // 2026-03-03T10:00:00Z

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

fn syslog_time(ms: i64) -> String {
    let t = format_rfc3339(ms); // 2026-03-03T10:00:00.000Z
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m: usize = t[5..7].parse().unwrap_or(1);
    let d: u32 = t[8..10].parse().unwrap_or(1);
    format!("{} {:>2} {}", month[m - 1], d, &t[11..19])
}

fn clf_time(ms: i64) -> String {
    let t = format_rfc3339(ms);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m: usize = t[5..7].parse().unwrap_or(1);
    format!(
        "{}/{}/{}:{} +0000",
        &t[8..10],
        month[m - 1],
        &t[0..4],
        &t[11..19]
    )
}

/// A benign client address from a large pool (10.0.0.0/8 and 100.64.0.0/10).
fn client_ip(rng: &mut Rng) -> String {
    let n = rng.below(200_000);
    if n.is_multiple_of(2) {
        format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
    } else {
        format!(
            "100.{}.{}.{}",
            64 + ((n >> 16) & 63),
            (n >> 8) & 255,
            n & 255
        )
    }
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
const PAGES: &[&str] = &[
    "/",
    "/products",
    "/products/42",
    "/cart",
    "/about",
    "/blog/2026/rust-at-scale",
    "/search?q=boots",
    "/api/v1/items?page=2",
    "/account",
];
const ASSETS: &[&str] = &[
    "/static/app.js",
    "/static/site.css",
    "/img/logo.png",
    "/favicon.ico",
    "/fonts/inter.woff2",
];
const USERS: &[&str] = &[
    "alice", "bob", "carol", "deploy", "ci", "backup", "erin", "frank",
];

/// A benign account from a pool the size of a mid-sized company.
fn staff_user(rng: &mut Rng) -> String {
    format!("u{:04}", rng.below(2000))
}

/// Generates the traffic in event-time order and the expected findings.
pub fn generate(cfg: &SimConfig) -> (Vec<SimLine>, Vec<ExpectedFinding>) {
    let mut rng = Rng(cfg.seed);
    let mut out = Vec::with_capacity(cfg.events);
    let step_ms = 1000.0 / cfg.events_per_sec;
    let span_ms = (cfg.events as f64 * step_ms) as i64;
    let at = |frac: f64| START_MS + (span_ms as f64 * frac) as i64;
    let mut expected = Vec::new();
    // attack schedule: (start fraction, kind)
    let attacks = [
        (0.10, 0),
        (0.20, 1),
        (0.30, 2),
        (0.40, 3),
        (0.45, 4),
        (0.50, 5),
        (0.55, 6),
        (0.60, 7),
        (0.65, 8),
        (0.70, 9),
        (0.80, 10),
        (0.90, 11),
    ];
    // a backend outage: for a minute, half of all responses are 503; it
    // must end before the traffic does (a cut-short outage is no spike),
    // so short runs move it earlier and runs under 70 s have none
    let outage_start = at(0.80).min(START_MS + span_ms - 65_000);
    let outage = (outage_start, outage_start + 60_000);
    let mut pending: Vec<(i64, usize)> = attacks
        .iter()
        .filter(|&&(_, k)| k != 10 || outage_start >= START_MS)
        .map(|&(f, k)| (if k == 10 { outage_start } else { at(f) }, k))
        .collect();
    pending.sort_by_key(|p| p.0);
    pending.reverse();
    let mut req = 0u64;
    for i in 0..cfg.events {
        let now = START_MS + (i as f64 * step_ms) as i64;
        while pending.last().is_some_and(|p| p.0 <= now) {
            let (t, kind) = pending.pop().unwrap_or((now, 0));
            inject(kind, t, &mut out, &mut expected);
        }
        req += 1;
        let roll = rng.below(100);
        let line = if roll < 55 {
            let ip = client_ip(&mut rng);
            let asset = rng.chance(0.5);
            let path = if asset {
                ASSETS[rng.below(ASSETS.len() as u64) as usize]
            } else {
                PAGES[rng.below(PAGES.len() as u64) as usize]
            };
            let in_outage = now >= outage.0 && now < outage.1;
            let status = if in_outage && rng.chance(0.5) {
                503
            } else if rng.chance(0.01) {
                404
            } else if asset && rng.chance(0.3) {
                304
            } else if rng.chance(0.002) {
                502
            } else {
                200
            };
            SimLine {
                stream: Stream::Nginx,
                text: format!(
                    "{ip} - - [{}] \"GET {path} HTTP/1.1\" {status} {} \"https://shop.example/\" \"{UA}\"",
                    clf_time(now),
                    200 + rng.below(50_000)
                ),
                ts: now,
            }
        } else if roll < 85 {
            let level = if rng.chance(0.0005) {
                "error"
            } else if rng.chance(0.02) {
                "warn"
            } else {
                "info"
            };
            let msg = match (level, rng.below(5)) {
                ("error", n) => format!("payment provider call failed with code {}", 500 + n),
                (_, 0) => format!("order {} created for customer {}", req, rng.below(90_000)),
                (_, 1) => format!("cache miss for key product:{}", rng.below(5000)),
                (_, 2) => format!("request served in {} ms", rng.below(400)),
                (_, 3) => format!(
                    "user {} logged in",
                    USERS[rng.below(USERS.len() as u64) as usize]
                ),
                _ => format!(
                    "job {} finished after {} ms",
                    rng.below(1000),
                    rng.below(9000)
                ),
            };
            SimLine {
                stream: Stream::App,
                text: format!(
                    r#"{{"ts":"{}","level":"{level}","service":"shop-api","host":"api-{}","msg":"{msg}","trace_id":"{:016x}"}}"#,
                    format_rfc3339(now),
                    rng.below(4) + 1,
                    rng.next()
                ),
                ts: now,
            }
        } else if roll < 99 {
            let ip = format!("10.20.{}.{}", rng.below(8), rng.below(250) + 1);
            let user = staff_user(&mut rng);
            let text = match rng.below(200) {
                // a typo now and then, the same user and address
                0 => format!(
                    "Failed password for {user} from {ip} port {} ssh2",
                    30_000 + rng.below(30_000)
                ),
                1..=110 => format!(
                    "Accepted publickey for {user} from {ip} port {} ssh2: ED25519 SHA256:{:x}",
                    30_000 + rng.below(30_000),
                    rng.next()
                ),
                111..=160 => format!(
                    "pam_unix(sshd:session): session opened for user {user}(uid={}) by (uid=0)",
                    1000 + rng.below(2000)
                ),
                _ => format!(
                    "Received disconnect from {ip} port {}:11: disconnected by user",
                    30_000 + rng.below(30_000)
                ),
            };
            SimLine {
                stream: Stream::Sshd,
                text: format!(
                    "{} bastion-{} sshd-session[{}]: {text}",
                    syslog_time(now),
                    rng.below(2) + 1,
                    1000 + rng.below(60_000)
                ),
                ts: now,
            }
        } else {
            let text = match rng.below(3) {
                0 => format!(
                    "EXT4-fs (nvme0n1p{}): mounted filesystem with ordered data mode",
                    rng.below(3) + 1
                ),
                1 => format!(
                    "IPv6: ADDRCONF(NETDEV_CHANGE): veth{:x}: link becomes ready",
                    rng.below(1 << 24)
                ),
                _ => format!(
                    "TCP: request_sock_TCP: Possible SYN flooding on port {}. Sending cookies.",
                    8000 + rng.below(10)
                ),
            };
            SimLine {
                stream: Stream::Kernel,
                text: format!(
                    "{} node-{} kernel: {text}",
                    syslog_time(now),
                    rng.below(3) + 1
                ),
                ts: now,
            }
        };
        out.push(line);
    }
    while let Some((t, kind)) = pending.pop() {
        inject(kind, t, &mut out, &mut expected);
    }
    // shippers write in time order; attacks were generated ahead of the background
    out.sort_by_key(|l| l.ts);
    expected.sort();
    (out, expected)
}

fn expect(expected: &mut Vec<ExpectedFinding>, detector: &str, offender: &str, at: i64) {
    expected.push(ExpectedFinding {
        detector: detector.into(),
        offender: offender.into(),
        injected_at: at,
    });
}

fn inject(kind: usize, t: i64, out: &mut Vec<SimLine>, expected: &mut Vec<ExpectedFinding>) {
    let sshd = |out: &mut Vec<SimLine>, ms: i64, text: String| {
        out.push(SimLine {
            stream: Stream::Sshd,
            text: format!("{} bastion-1 sshd-session[4242]: {text}", syslog_time(ms)),
            ts: ms,
        })
    };
    let web = |out: &mut Vec<SimLine>, ms: i64, ip: &str, path: &str, status: u16, ua: &str| {
        out.push(SimLine {
            stream: Stream::Nginx,
            text: format!(
                "{ip} - - [{}] \"GET {path} HTTP/1.1\" {status} 162 \"-\" \"{ua}\"",
                clf_time(ms)
            ),
            ts: ms,
        })
    };
    match kind {
        0 => {
            // SSH brute force on root
            for i in 0..30 {
                sshd(
                    out,
                    t + i * 1500,
                    format!(
                        "Failed password for root from 203.0.113.50 port {} ssh2",
                        40_000 + i
                    ),
                );
            }
            expect(expected, "identity.ssh_brute_force", "203.0.113.50", t);
            expect(expected, "identity.ssh_slow_brute_force", "203.0.113.50", t);
        }
        1 => {
            // password spraying: one try per account, slow
            for (i, u) in USERS.iter().enumerate() {
                sshd(
                    out,
                    t + i as i64 * 30_000,
                    format!(
                        "Failed password for {u} from 198.51.100.23 port {} ssh2",
                        41_000 + i
                    ),
                );
            }
            expect(expected, "identity.password_spraying", "198.51.100.23", t);
        }
        2 => {
            // user enumeration
            for (i, u) in ["oracle", "test", "admin", "ubuntu", "pi", "git", "postgres"]
                .iter()
                .enumerate()
            {
                sshd(
                    out,
                    t + i as i64 * 20_000,
                    format!("Invalid user {u} from 198.51.100.77 port {}", 42_000 + i),
                );
            }
            expect(expected, "identity.user_enumeration", "198.51.100.77", t);
        }
        3 => {
            // successful brute force
            for i in 0..6 {
                sshd(
                    out,
                    t + i * 20_000,
                    format!(
                        "Failed password for deploy from 192.0.2.77 port {} ssh2",
                        43_000 + i
                    ),
                );
            }
            sshd(
                out,
                t + 130_000,
                "Accepted password for deploy from 192.0.2.77 port 43100 ssh2".into(),
            );
            expect(expected, "identity.success_after_failures", "192.0.2.77", t);
        }
        4 => {
            for (i, p) in [
                "/item?id=1%27%20or%201=1--",
                "/item?id=1%20union%20select%20null,version()",
                "/item?id=sleep(5)",
                "/search?q=1%27%20and%20benchmark(1000000,md5(1))",
            ]
            .iter()
            .enumerate()
            {
                web(
                    out,
                    t + i as i64 * 2000,
                    "203.0.113.81",
                    p,
                    500,
                    "Mozilla/5.0",
                );
            }
            expect(expected, "http.sqli_probing", "203.0.113.81", t);
        }
        5 => {
            for (i, p) in [
                "/download?file=../../../../etc/passwd",
                "/static/..%2f..%2f..%2fetc%2fshadow",
                "/view?page=....//....//boot.ini",
            ]
            .iter()
            .enumerate()
            {
                web(
                    out,
                    t + i as i64 * 2000,
                    "203.0.113.82",
                    p,
                    400,
                    "Mozilla/5.0",
                );
            }
            expect(expected, "http.path_traversal", "203.0.113.82", t);
            // the second path climbs by its path, not its query
            expect(expected, "http.dot_dot_path", "203.0.113.82", t);
        }
        6 => {
            for i in 0..40 {
                web(
                    out,
                    t + i * 500,
                    "203.0.113.83",
                    &format!("/old-page-{i}.php"),
                    404,
                    "Mozilla/5.0",
                );
            }
            expect(expected, "http.not_found_burst", "203.0.113.83", t);
        }
        7 => {
            web(
                out,
                t,
                "203.0.113.84",
                "/",
                200,
                "sqlmap/1.8#stable (https://sqlmap.org)",
            );
            expect(expected, "http.bad_bot", "203.0.113.84", t);
        }
        8 => {
            out.push(SimLine { stream: Stream::Kernel, text: format!("{} node-2 kernel: Memory cgroup out of memory: Killed process 31337 (java) total-vm:8123456kB, anon-rss:4096000kB, file-rss:0kB, shmem-rss:0kB", syslog_time(t)), ts: t });
            expect(expected, "infrastructure.oom_kill", "node-2", t);
        }
        9 => {
            for i in 0..60 {
                out.push(SimLine {
                    stream: Stream::App,
                    text: format!(r#"{{"ts":"{}","level":"error","service":"shop-api","host":"api-2","msg":"database connection pool exhausted after {} ms waiting"}}"#, format_rfc3339(t + i * 1000), 5000 + i),
                    ts: t + i * 1000,
                });
            }
            expect(
                expected,
                "infrastructure.error_template_surge",
                "database connection pool exhausted after <*> ms waiting",
                t,
            );
        }
        10 => {
            // the outage itself is in the background traffic (see `outage`)
            expect(expected, "infrastructure.http_5xx_spike", "http.access", t);
        }
        _ => {
            out.push(SimLine {
                stream: Stream::Kernel,
                text: format!(
                    "{} node-3 kernel: EXT4-fs (nvme0n1p2): Remounting filesystem read-only",
                    syslog_time(t)
                ),
                ts: t,
            });
            expect(expected, "infrastructure.disk_full", "node-3", t);
        }
    }
}
