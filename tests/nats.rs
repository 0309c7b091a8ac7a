//! The JetStream worker against a real nats-server: crash safety under
//! `kill -9`, scale-out across partitioned workers, reconnection after a
//! server restart, dead letters, and the publishing helper.
//!
//! Each test starts its own server on an ephemeral port (tests/support).
//! The reference for "nothing lost, nothing doubled" is the same input
//! through one uninterrupted worker on a fresh server: the final state of
//! every finding must match it exactly, and the findings must be the attacks
//! `threatpilot simulate` injected, no more.

#[path = "support/nats.rs"]
mod nats_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use nats_support::{NatsServer, temp_dir};
use serde_json::Value;
use threatpilot::finding::{Finding, Status};

fn tp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_threatpilot"))
}

/// Simulated traffic with injected attacks: (subject, file, lines per message).
struct Traffic {
    dir: PathBuf,
    feeds: Vec<(String, PathBuf, usize)>,
}

fn simulate(dir: &Path, events: u64, seed: u64) -> Traffic {
    let out = dir.join("sim");
    let st = tp()
        .args([
            "simulate",
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let f = |n: &str| out.join(n);
    Traffic {
        dir: out.clone(),
        feeds: vec![
            ("logs.sshd.bastion-1".into(), f("sshd.log"), 1),
            ("logs.nginx.web-1".into(), f("nginx.log"), 10),
            ("logs.app.api-1".into(), f("app.jsonl"), 1),
            ("logs.kernel.node-1".into(), f("kernel.log"), 1),
        ],
    }
}

/// The injected attacks. A service's offender is its dataset, which the
/// subject names (`logs.nginx.…`), where a file replay says `http.access`.
fn expected(t: &Traffic) -> BTreeSet<(String, String)> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(t.dir.join("expected.json")).unwrap())
            .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (d, o) = (
                e["detector"].as_str().unwrap(),
                e["offender"].as_str().unwrap(),
            );
            let o = if o == "http.access" { "nginx" } else { o };
            (d.to_owned(), o.to_owned())
        })
        .collect()
}

/// Publishes every feed; returns the lines sent.
fn publish(url: &str, t: &Traffic) -> u64 {
    let mut lines = 0;
    for (subject, file, per) in &t.feeds {
        let out = tp()
            .args(["publish", "--nats-url", url, "--subject", subject])
            .args(["--lines-per-message", &per.to_string()])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["stored"], r["messages"], "{r}");
        lines += r["lines"].as_u64().unwrap();
    }
    lines
}

/// Three messages no parser can take: they must be dead-lettered, not lost.
async fn publish_bad(url: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let bad: [(&str, Vec<u8>); 3] = [
        ("logs.sshd.bastion-1", vec![0xff, 0xfe, b'x']),
        ("logs.sshd.bastion-1", vec![b'a'; 100_000]),
        ("logs.nginx.web-1", b"  \n".to_vec()),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while js.get_stream("THREATPILOT_INPUT").await.is_err() {
        assert!(Instant::now() < deadline, "the input stream never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (i, (subject, body)) in bad.into_iter().enumerate() {
        js.send_publish(
            subject,
            jetstream::message::PublishMessage::build()
                .payload(body.into())
                .message_id(format!("bad-{i}")),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// A worker pipeline tuned to checkpoint often (so kills land between checkpoints).
fn pipeline(dir: &Path, partitions: Option<u32>) -> PathBuf {
    let shipped = std::fs::read_to_string("pipelines/nats.yaml").unwrap();
    let mut tuned = shipped.replace(
        "    checkpoint_interval_ms: 2000",
        "    checkpoint_interval_ms: 100\n    checkpoint_messages: 3000\n    max_message_bytes: 65536",
    );
    if let Some(p) = partitions {
        tuned = tuned.replace(
            "    checkpoint_interval_ms: 100",
            &format!("    checkpoint_interval_ms: 100\n    partitions: {p}"),
        );
    }
    let path = dir.join(format!("pipeline-{}.yaml", partitions.unwrap_or(0)));
    std::fs::write(&path, tuned).unwrap();
    path
}

struct Worker {
    child: Child,
    log: PathBuf,
}

fn worker(
    url: &str,
    pipe: &Path,
    partitions: Option<&str>,
    until_idle: bool,
    log: PathBuf,
) -> Worker {
    let mut cmd = tp();
    cmd.args(["run", "--nats-url", url, "--pipeline"]).arg(pipe);
    if let Some(p) = partitions {
        cmd.args(["--partitions", p]);
    }
    if until_idle {
        cmd.args(["--until-idle-secs", "1.5"]);
    }
    let err = std::fs::File::create(&log).unwrap();
    let child = cmd
        .env("THREATPILOT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    Worker { child, log }
}

impl Worker {
    /// Waits for an until-idle worker to finish; returns its summary.
    fn summary(mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap();
                assert!(st.success(), "worker failed: {log}");
                let line = log
                    .lines()
                    .find_map(|l| l.strip_prefix("threatpilot worker: "))
                    .unwrap_or_else(|| panic!("no summary in: {log}"));
                return serde_json::from_str(line).unwrap();
            }
            assert!(Instant::now() < deadline, "worker did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The test pipeline's worker in this process (its metrics are this
/// process's), until the stream is idle for `idle_ms`.
async fn worker_in_process(
    url: &str,
    dir: &Path,
    idle_ms: u64,
) -> threatpilot::nats::WorkerSummary {
    let text = std::fs::read_to_string(pipeline(dir, None)).unwrap();
    let spec = threatpilot::pipeline::load_str(&text, "pipeline.yaml").unwrap();
    threatpilot::nats::run_worker(
        &spec,
        threatpilot::detect::load_dir(Path::new("detectors")).unwrap(),
        threatpilot::pipeline::sinks::Sinks::open(Vec::new()).unwrap(),
        threatpilot::nats::WorkerOptions {
            url: Some(url.to_owned()),
            until_idle: Some(Duration::from_millis(idle_ms)),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Every finding version stored in the findings stream, with its message id.
async fn stored_findings(url: &str) -> Vec<(String, Finding)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream("THREATPILOT_FINDINGS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((id, serde_json::from_slice(&m.payload).unwrap()));
    }
    out
}

async fn stream_messages(url: &str, name: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// What must match between runs: each finding's id and final state.
type Finals = BTreeMap<String, (String, String, u64, Status)>;

/// Each id in its final (highest) version; fails on a doubled version.
fn finals(versions: &[(String, Finding)]) -> Finals {
    let ids: BTreeSet<&str> = versions.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        versions.len(),
        "a finding version was stored twice"
    );
    let mut last: BTreeMap<String, &Finding> = BTreeMap::new();
    for (_, f) in versions {
        let e = last.entry(f.finding_id.clone()).or_insert(f);
        if f.update_count > e.update_count {
            *e = f;
        }
    }
    last.into_iter()
        .map(|(id, f)| {
            (
                id,
                (
                    f.detector.id.clone(),
                    f.offender.value.clone(),
                    f.metrics.event_count,
                    f.status,
                ),
            )
        })
        .collect()
}

/// The same traffic through one worker that is never interrupted.
async fn reference(t: &Traffic) -> Finals {
    let server = NatsServer::start("").unwrap();
    publish(&server.url, t);
    publish_bad(&server.url).await;
    let dir = temp_dir("reference");
    let w = worker(
        &server.url,
        &pipeline(&dir, None),
        None,
        true,
        dir.join("w.log"),
    );
    w.summary();
    finals(&stored_findings(&server.url).await)
}

/// The findings stored are the injected attacks, each once, in the same
/// final states as an uninterrupted in-process run.
async fn assert_found_as_uninterrupted(url: &str, t: &Traffic) {
    let got = finals(&stored_findings(url).await);
    assert_eq!(offenders(&got), expected(t));
    assert_eq!(got, reference(t).await);
}

fn offenders(f: &Finals) -> BTreeSet<(String, String)> {
    f.values().map(|v| (v.0.clone(), v.1.clone())).collect()
}

/// A small deterministic generator for kill times (seed printed on failure).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const KILLS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_at_random_points_loses_and_doubles_nothing() {
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let dir = temp_dir("crash");
    let t = simulate(&dir, 100_000, 21);
    // the stream grows while workers are killed and restarted
    let (url, feeds) = (
        server.url.clone(),
        Traffic {
            dir: t.dir.clone(),
            feeds: t.feeds.clone(),
        },
    );
    let publisher = std::thread::spawn(move || publish(&url, &feeds));
    publish_bad(&server.url).await;
    let pipe = pipeline(&dir, None);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);
    for i in 0..KILLS {
        let w = worker(
            &server.url,
            &pipe,
            None,
            false,
            dir.join(format!("w{i}.log")),
        );
        tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
        w.kill9();
    }
    let lines = publisher.join().unwrap();
    let summary = worker(&server.url, &pipe, None, true, dir.join("final.log")).summary();
    // where each run resumed: kills must have landed mid-stream, between checkpoints
    let resumed: Vec<u64> = (0..KILLS)
        .map(|i| std::fs::read_to_string(dir.join(format!("w{i}.log"))).unwrap())
        .chain(std::iter::once(
            std::fs::read_to_string(dir.join("final.log")).unwrap(),
        ))
        .filter_map(|log| {
            log.lines()
                .find(|l| l.contains("restored checkpoint"))
                .and_then(|l| l.split("last_seq=").nth(1))
                .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        })
        .collect();
    let total = summary["last_seq"].as_u64().unwrap();
    eprintln!("runs resumed at {resumed:?} of {total} (seed {seed})");
    assert!(
        resumed.iter().any(|&r| r > 0 && r < total),
        "no kill landed mid-stream: {resumed:?} of {total}"
    );

    // every input message accounted for, exactly once, across the kills
    let c = &summary["counters"];
    let messages = stream_messages(&server.url, "THREATPILOT_INPUT").await;
    assert_eq!(
        c["processed"].as_u64().unwrap() + c["dead_lettered"].as_u64().unwrap(),
        messages,
        "{summary}"
    );
    assert_eq!(c["dead_lettered"], 3);
    assert_eq!(c["events"].as_u64().unwrap(), lines, "{summary}");
    assert_eq!(
        stream_messages(&server.url, "THREATPILOT_INPUT_DEADLETTER").await,
        3
    );

    // every expected finding exactly once, none invented, final states as uninterrupted
    let got = finals(&stored_findings(&server.url).await);
    assert_eq!(offenders(&got), expected(&t), "{got:#?}");
    assert!(got.values().all(|v| v.3 == Status::Resolved));
    assert_eq!(got, reference(&t).await, "kill schedule seed {seed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_partitioned_workers_equal_one_worker_with_a_restart_mid_stream() {
    let Some(server) = NatsServer::start_partitioned() else {
        return;
    };
    let dir = temp_dir("scale");
    let mut t = simulate(&dir, 60_000, 33);
    // more sources, so every partition owns some
    let sim = t.dir.clone();
    for host in ["bastion-2", "bastion-3", "bastion-4"] {
        t.feeds
            .push((format!("logs.sshd.{host}"), sim.join("sshd.log"), 1));
    }
    t.feeds
        .push(("logs.access.web-2".into(), sim.join("nginx.log"), 10));
    publish(&server.url, &t);
    publish_bad(&server.url).await;
    let pipe = pipeline(&dir, Some(3));
    let w0 = worker(&server.url, &pipe, Some("0"), true, dir.join("w0.log"));
    let w1 = worker(&server.url, &pipe, Some("1"), true, dir.join("w1.log"));
    let w2 = worker(&server.url, &pipe, Some("2"), true, dir.join("w2.log"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    w1.kill9();
    let w1 = worker(&server.url, &pipe, Some("1"), true, dir.join("w1b.log"));
    let summaries = [w0.summary(), w1.summary(), w2.summary()];
    let mut accounted = 0;
    for s in &summaries {
        let c = &s["counters"];
        assert!(
            c["processed"].as_u64().unwrap() > 0,
            "an idle partition: {s}"
        );
        accounted += c["processed"].as_u64().unwrap() + c["dead_lettered"].as_u64().unwrap();
    }
    assert_eq!(
        accounted,
        stream_messages(&server.url, "THREATPILOT_INPUT").await
    );

    let got = finals(&stored_findings(&server.url).await);
    assert_eq!(got, reference(&t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_nothing() {
    let Some(mut server) = NatsServer::start("") else {
        return;
    };
    let dir = temp_dir("restart");
    let t = simulate(&dir, 60_000, 45);
    publish(&server.url, &t);
    publish_bad(&server.url).await;
    let w = worker(
        &server.url,
        &pipeline(&dir, None),
        None,
        true,
        dir.join("w.log"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    let summary = w.summary();
    let c = &summary["counters"];
    assert_eq!(
        c["processed"].as_u64().unwrap() + c["dead_lettered"].as_u64().unwrap(),
        stream_messages(&server.url, "THREATPILOT_INPUT").await,
        "{summary}"
    );
    assert_found_as_uninterrupted(&server.url, &t).await;
}

/// The server goes away while the worker runs (finding publishes may be
/// in flight, as the timing falls): acknowledgements it loses are waited
/// for together, for a few seconds, and those messages resent with their
/// ids; the worker used to wait five seconds for each in turn. The worker
/// must finish soon after the restart, with every finding right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_while_findings_are_published_costs_seconds_not_minutes() {
    let Some(mut server) = NatsServer::start("") else {
        return;
    };
    let dir = temp_dir("publish-stall");
    let t = simulate(&dir, 60_000, 46);
    publish(&server.url, &t);
    let w = worker(
        &server.url,
        &pipeline(&dir, None),
        None,
        true,
        dir.join("w.log"),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.restart_after(Duration::from_millis(500));
    let back = Instant::now();
    let summary = w.summary();
    let took = back.elapsed();
    // the worker's own run, idle wait included, takes a few seconds
    assert!(
        took < Duration::from_secs(40),
        "the worker took {took:?} to finish after the restart: {summary}"
    );
    assert_found_as_uninterrupted(&server.url, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reads_stdin_and_a_resend_is_deduplicated() {
    // the test script's shared server where there is one, else a private one
    let own;
    let url = match std::env::var("THREATPILOT_NATS_URL") {
        Ok(url) => url,
        Err(_) => {
            own = NatsServer::start("");
            match &own {
                Some(s) => s.url.clone(),
                None => return,
            }
        }
    };
    let mut sim = tp()
        .args(["simulate", "--stdout", "--events", "3000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tp()
        .args([
            "publish",
            "--nats-url",
            &url,
            "--subject",
            "logs.mixed.sim-1",
            "-",
        ])
        .stdin(sim.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(sim.wait().unwrap().success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["lines"].as_u64().unwrap() >= 3000);
    assert_eq!(r["stored"], r["lines"]);

    // a file sent twice is stored once: its message ids are derived from it
    let dir = temp_dir("publish");
    let file = dir.join("a.log");
    std::fs::write(
        &file,
        "Mar  3 10:00:00 h sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2\n"
            .repeat(5),
    )
    .unwrap();
    let send = || {
        let out = tp()
            .args(["publish", "--nats-url", &url, "--subject", "logs.sshd.h"])
            .arg(&file)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(send()["stored"], 5);
    let again = send();
    assert_eq!(
        (again["stored"].as_u64(), again["duplicate"].as_u64()),
        (Some(0), Some(5))
    );

    // a line that is not UTF-8 (a honeypot's raw request) goes as it is,
    // with the lines after it; the worker dead-letters what it cannot read
    let raw = dir.join("honeypot.log");
    let mut bytes =
        b"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"\r\n"
            .to_vec();
    bytes.extend_from_slice(b"203.0.113.5 - - [03/Mar/2026:10:00:01 +0000] \"GET /\xff\xfe\xc3 HTTP/1.1\" 400 1 \"-\" \"x\"\n");
    bytes.extend_from_slice(
        b"203.0.113.5 - - [03/Mar/2026:10:00:02 +0000] \"GET /last HTTP/1.1\" 200 1 \"-\" \"x\"\n",
    );
    std::fs::write(&raw, bytes).unwrap();
    let out = tp()
        .args(["publish", "--nats-url", &url, "--subject", "logs.nginx.h"])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["lines"].as_u64(), r["stored"].as_u64()),
        (Some(3), Some(3)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_metrics_report_dead_letters_lag_and_acknowledgements() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let dir = temp_dir("metrics");
    let t = simulate(&dir, 5_000, 5);
    publish(&server.url, &t);
    publish_bad(&server.url).await;

    let summary = worker_in_process(&server.url, &dir, 500).await;
    assert_eq!(summary.counters.dead_lettered, 3);

    let mut dead = BTreeMap::new();
    let (mut acks, mut connects, mut lag_seen) = (0, 0, false);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        match (k.name(), value) {
            (threatpilot::metrics::NATS_DEAD_LETTERS, DebugValue::Counter(n)) => {
                let reason = k.labels().find(|l| l.key() == "reason").unwrap();
                dead.insert(reason.value().to_owned(), n);
            }
            (threatpilot::metrics::NATS_ACK_LATENCY, DebugValue::Histogram(v)) => acks = v.len(),
            (threatpilot::metrics::NATS_CONNECTS, DebugValue::Counter(n)) => connects = n,
            (threatpilot::metrics::NATS_CONSUMER_PENDING, DebugValue::Gauge(_)) => lag_seen = true,
            _ => {}
        }
    }
    let want: BTreeMap<String, u64> = [("empty", 1), ("invalid_utf8", 1), ("oversized", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(dead, want);
    assert!(acks >= 1, "no acknowledgement latency recorded");
    assert!(connects >= 1);
    assert!(lag_seen, "consumer lag gauge never set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_an_existing_stream_keeps_its_settings_and_adds_subjects() {
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "THREATPILOT_INPUT".into(),
        subjects: vec!["logs.>".into()],
        max_messages: 1_000_000,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = temp_dir("bind");
    worker_in_process(&server.url, &dir, 200).await;
    let mut stream = js.get_stream("THREATPILOT_INPUT").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(
        config.max_messages, 1_000_000,
        "the operator's limit was reset"
    );
    assert_eq!(
        config.subjects,
        vec!["logs.>".to_owned(), "alerts.>".to_owned()]
    );
}

/// Response's NATS connector: a command message per action to the agent
/// on the target's subject, answered by request/reply. An agent here
/// answers for every pod but one, whose unit it cannot find.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_commands_reach_host_agents_by_request_reply() {
    use futures_util::StreamExt;
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let dir = temp_dir("agents");
    let client = async_nats::connect(&server.url).await.unwrap();
    let mut sub = client.subscribe("ops.agents.*").await.unwrap();
    let agent = client.clone();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(m) = sub.next().await {
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let a: Value = serde_json::from_slice(&m.payload).unwrap();
            let pod = m.subject.as_str().rsplit('.').next().unwrap().to_owned();
            let answer = if pod == "logging-agent" {
                serde_json::json!({"ok": false, "output": "unit logging-agent not found"})
            } else {
                serde_json::json!({"ok": true, "output": format!("restarted {pod}")})
            };
            if let Some(reply) = m.reply {
                agent
                    .publish(reply, serde_json::to_vec(&answer).unwrap().into())
                    .await
                    .unwrap();
            }
            seen.push((pod, id, a));
            if seen.len() == 3 {
                return seen;
            }
        }
        seen
    });
    std::fs::write(
        dir.join("playbooks.yaml"),
        "version: 1
playbooks:
  - id: restart-crash-loop
    title: Restart a crash loop through the host's agent
    match: {detector: [infrastructure.crash_loop]}
    steps:
      - action: restart_service
        risk: medium
        verify: {finding_quiet: true, after_secs: 1}
",
    )
    .unwrap();
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1
name: agents
sources:
  - type: file
    id: k8s
    paths: [fixtures/detectors/k8s-crashloop-describe/input.log]
sinks:
  - type: file
    path: {dir}/findings.jsonl
respond:
  playbooks: [{dir}/playbooks.yaml]
  state_dir: {dir}/respond
  policy:
    modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  connectors:
    - type: nats
      name: agents
      url: {url}
      subject: 'ops.agents.{{target}}'
      timeout_ms: 3000
  routes:
    infrastructure: {{restart_service: agents}}
",
            dir = dir.display(),
            url = server.url,
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        tp().args(["run", "--pipeline"])
            .arg(&pipeline)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let seen = tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("the agent saw three commands")
        .unwrap();
    let journal = std::fs::read_to_string(dir.join("respond/journal.jsonl")).unwrap();
    let mut actions: BTreeMap<String, Value> = BTreeMap::new();
    for l in journal.lines() {
        let r: Value = serde_json::from_str(l).unwrap();
        if r["t"] == "action" {
            actions.insert(
                r["v"]["action_id"].as_str().unwrap().to_owned(),
                r["v"].clone(),
            );
        }
    }
    assert_eq!(actions.len(), 3, "{journal}");
    for (pod, id, body) in &seen {
        // the message id is the action id, and the body the action itself
        let a = &actions[id];
        assert_eq!(a["target"], pod.as_str());
        assert_eq!(body["action_id"], id.as_str());
        assert_eq!(body["action"], "restart_service");
        if pod == "logging-agent" {
            assert_eq!(a["status"], "failed", "{a}");
            assert!(
                a["reason"]
                    .as_str()
                    .unwrap()
                    .contains("unit logging-agent not found"),
                "{a}"
            );
        } else {
            assert_eq!(a["status"], "verified", "{a}");
            assert!(
                a["output"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("restarted {pod}")),
                "{a}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_down_longer_than_the_duplicate_window_publishes_each_version_once() {
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let dir = temp_dir("long-down");
    let t = simulate(&dir, 60_000, 52);
    publish(&server.url, &t);
    // a one-second duplicate window, and no checkpoint before the kill:
    // the restarted worker reprocesses everything the first one published
    let text = std::fs::read_to_string("pipelines/nats.yaml").unwrap().replace(
        "    checkpoint_interval_ms: 2000",
        "    checkpoint_interval_ms: 3600000\n    checkpoint_messages: 100000000\n    duplicate_window_secs: 1",
    );
    let pipe = dir.join("pipeline.yaml");
    std::fs::write(&pipe, &text).unwrap();
    // the restarted worker checkpoints (and so notices it is idle) as usual
    let again = dir.join("pipeline-again.yaml");
    std::fs::write(
        &again,
        text.replace(
            "checkpoint_interval_ms: 3600000",
            "checkpoint_interval_ms: 200",
        ),
    )
    .unwrap();
    let first = worker(&server.url, &pipe, None, false, dir.join("w1.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_count(&server.url, "THREATPILOT_FINDINGS").await == 0 {
        assert!(Instant::now() < deadline, "no finding was published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the rest of the input is read, and what it opens published
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill9();
    let before = stream_messages(&server.url, "THREATPILOT_FINDINGS").await;
    // down three times the duplicate window: the server forgot every id
    tokio::time::sleep(Duration::from_secs(3)).await;
    let summary = worker(&server.url, &again, None, true, dir.join("w2.log")).summary();
    let c = &summary["counters"];
    assert!(
        c["findings_duplicate"].as_u64().unwrap() >= before,
        "the {before} versions published before the kill are counted as duplicates: {summary}"
    );
    // no version stored twice, and the same findings as a clean run
    let got = finals(&stored_findings(&server.url).await);
    assert_eq!(got, reference(&t).await);
}

/// Messages in a stream, 0 while it does not exist.
async fn stream_count(url: &str, name: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}
