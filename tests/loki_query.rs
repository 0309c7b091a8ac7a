//! The Loki query source against a Loki stand-in that answers
//! `/loki/api/v1/query_range` as Loki documents it: start inclusive, end
//! exclusive, `limit` entries in forward order across streams, and only
//! entries that have "arrived" (timestamp before now). Lines keep arriving
//! while the source runs, pages split instants shared by several entries,
//! and the first request fails: every line must be read exactly once.

#[path = "support/service.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::Service;

struct Entry {
    ns: i64,
    stream: usize,
    line: String,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The (start, end) of every query_range request answered.
type Requests = Arc<Mutex<Vec<(i64, i64)>>>;

/// Serves query_range over `entries`; returns its port and the requests seen.
fn fake_loki(entries: Arc<Vec<Entry>>) -> (u16, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut h = String::new();
            while reader.read_line(&mut h).unwrap_or(0) > 2 {
                h.clear();
            }
            let target = first.split(' ').nth(1).unwrap_or("");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let n = requests.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if n == 0 {
                (
                    "500 Internal Server Error",
                    "too many outstanding requests".to_owned(),
                )
            } else if path != "/loki/api/v1/query_range"
                || param(query, "direction") != Some("forward")
            {
                ("400 Bad Request", format!("unexpected request {target}"))
            } else {
                let start: i64 = param(query, "start").unwrap().parse().unwrap();
                let end: i64 = param(query, "end").unwrap().parse().unwrap();
                let limit: usize = param(query, "limit").unwrap().parse().unwrap();
                log.lock().unwrap().push((start, end));
                let now = now_ns();
                let mut hits: Vec<&Entry> = entries
                    .iter()
                    .filter(|e| e.ns < now && e.ns >= start && e.ns < end)
                    .collect();
                hits.sort_by_key(|e| (e.ns, e.stream));
                hits.truncate(limit);
                let mut by: BTreeMap<usize, Vec<serde_json::Value>> = BTreeMap::new();
                for e in hits {
                    by.entry(e.stream)
                        .or_default()
                        .push(serde_json::json!([e.ns.to_string(), e.line]));
                }
                let result: Vec<serde_json::Value> = by
                    .into_iter()
                    .map(|(s, values)| {
                        serde_json::json!({"stream": {"job": "sshd", "host": format!("web-{s}")}, "values": values})
                    })
                    .collect();
                let body = serde_json::json!({"status": "success", "data": {"resultType": "streams", "result": result, "stats": {}}});
                ("200 OK", body.to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn every_line_is_read_once_across_runs_pages_and_a_failure() {
    // three streams, an entry in each at every instant (ties at page
    // boundaries), from 20 s ago to 3 s ahead (arriving during the test)
    let base = now_ns() - 20_000_000_000;
    let entries: Vec<Entry> = (0..180)
        .map(|k| Entry {
            ns: base + (k / 3) as i64 * 390_000_000,
            stream: k % 3,
            line: format!(
                "Failed password for root from 203.0.113.{} port {} ssh2",
                k % 3 + 1,
                10_000 + k
            ),
        })
        .collect();
    let total = entries.len();
    let last_ns = entries.iter().map(|e| e.ns).max().unwrap();
    let (port, requests) = fake_loki(Arc::new(entries));
    let yaml = format!(
        "version: 1\nname: lq\nsources:\n  - type: loki_query\n    id: lq\n    url: http://127.0.0.1:{port}\n    query: '{{job=\"sshd\"}}'\n    every_secs: 1\n    delay_secs: 0\n    lookback_secs: 60\n    limit: 7\ndetect:\n  paths: [detectors]\nsinks:\n  - type: events\n    path: {{dir}}/events.jsonl\napi:\n  listen: 127.0.0.1:0\n"
    );
    let svc = Service::start("lokiq", &yaml, Stdio::null());
    svc.wait_for("every line", 40, |s| {
        s.read_jsonl("events.jsonl").len() >= total
    });
    // later runs find nothing new
    while now_ns() < last_ns + 2_500_000_000 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = svc.read_jsonl("events.jsonl");
    let mut ports: Vec<u64> = events
        .iter()
        .map(|e| e["source.port"].as_u64().unwrap())
        .collect();
    ports.sort();
    let want: Vec<u64> = (0..total as u64).map(|k| 10_000 + k).collect();
    assert_eq!(ports, want, "each line exactly once");
    assert!(events.iter().all(|e| e["event.dataset"] == "sshd"));
    // runs tile time: each run starts where the previous one ended
    let reqs = requests.lock().unwrap().clone();
    let runs: Vec<(i64, i64)> = reqs
        .iter()
        .enumerate()
        .filter(|(i, r)| *i == 0 || reqs[i - 1].1 != r.1)
        .map(|(_, r)| *r)
        .collect();
    for w in runs.windows(2) {
        assert_eq!(w[1].0, w[0].1, "a gap or an overlap between runs: {runs:?}");
    }
    assert!(reqs.len() > runs.len(), "pages were followed");
    let err = svc.stop();
    assert!(
        err.contains(&format!("received={total} emitted={total}")),
        "{err}"
    );
}
