//! `bench --report` and `bench --notify`: the two outputs people read.
//!
//! `--report` writes a day of N findings (default 1M: many offenders,
//! every domain, hours and detectors) to a scratch embedded store through
//! the Parquet sink, then times `report` on it: gathering (the grouped
//! scans) and rendering Markdown and HTML.
//!
//! `--notify` times the durable outbox: a storm of incident updates put
//! and synced (most replacing an unsent older state), then messages
//! delivered one at a time, as a channel sends them, to a local webhook
//! receiver over HTTP: put, sync, send, acknowledge, sync.

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::bench::median;
use crate::store::rows::FindingRow;
use crate::store::spool::Batch;

pub struct OutputsBench {
    pub events: usize,
    pub runs: usize,
    pub json: bool,
}

#[derive(Serialize)]
struct ReportFigures {
    findings: usize,
    store_write_secs: f64,
    gather_ms_median: f64,
    render_ms_median: f64,
    total_ms_median: f64,
    html_bytes: usize,
}

const DOMAINS: [(&str, &str); 6] = [
    ("identity", "brute_force"),
    ("identity", "password_spraying"),
    ("http", "sqli"),
    ("http", "path_traversal"),
    ("infrastructure", "crash_loop"),
    ("infrastructure", "http_5xx_spike"),
];
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

fn finding(i: usize, day_start: i64) -> FindingRow {
    let (domain, classification) = DOMAINS[i % DOMAINS.len()];
    let first = day_start + (i as i64 * 86_399_000 / 1_000_000) % 86_400_000;
    let offender = format!(
        "10.{}.{}.{}",
        (i >> 16) % 256,
        (i >> 8) % 256,
        (i * 7) % 251
    );
    FindingRow {
        finding_id: format!("f-{i:012x}"),
        update_count: 1,
        execution_id: "bench".into(),
        detector_id: format!("{domain}.{classification}"),
        detector_version: 1,
        domain: domain.into(),
        classification: classification.into(),
        title: format!("{classification} from {offender}"),
        severity: SEVERITIES[i % 4].into(),
        confidence: 0.9,
        status: "resolved".into(),
        offender_type: "ip".into(),
        offender_value: offender,
        event_count: 5 + (i % 50) as u64,
        unique_targets: 1,
        success_count: 0,
        failure_count: 5,
        duration_sec: 30,
        metric_value: 5.0,
        threshold: 5.0,
        window_start_ms: first,
        window_end_ms: first + 60_000,
        first_seen: (first / 1000) as u32,
        last_seen: (first / 1000 + 30) as u32,
        first_seen_ms: first,
        last_seen_ms: first + 30_000,
        crossed_at_ms: first + (i % 120) as i64 * 250,
        emitted_at_ms: first + 31_000,
        context: "{}".into(),
        evidence: vec![],
        recommended_actions: vec![],
        attack: vec![],
        day: (first / 86_400_000) as u16,
    }
}

pub fn report(args: OutputsBench) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    let dir = std::env::temp_dir().join(format!("threatpilot-bench-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).expect("a valid date");
    let day = crate::report::Day::new(date, chrono_tz::UTC)?;
    let n = args.events;
    let t = Instant::now();
    rt.block_on(async {
        let cfg: crate::store::parquet::ParquetSinkConfig =
            serde_json::from_value(json!({"dir": dir.display().to_string()}))?;
        let (handle, task) = crate::store::parquet::start(cfg)?;
        let mut i = 0;
        while i < n {
            let rows: Vec<FindingRow> = (i..(i + 50_000).min(n))
                .map(|k| finding(k, day.start_ms))
                .collect();
            i += rows.len();
            handle.send(Batch::Findings(rows)).await;
        }
        drop(handle);
        task.await?;
        anyhow::Ok(())
    })?;
    let store_write_secs = t.elapsed().as_secs_f64();
    let (mut gather, mut render, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut html_bytes = 0;
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let r = rt.block_on(async {
            let src = crate::report::source::Source::embedded(&dir).await?;
            crate::report::gather(&src, &day, &[]).await
        })?;
        let g = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            r.findings as usize == n,
            "the report counts {} of {n} findings",
            r.findings
        );
        let t2 = Instant::now();
        let md = crate::report::markdown::render(&r, &day);
        let html = crate::report::html::render(&r, &day);
        html_bytes = html.len();
        std::hint::black_box(md);
        let rd = t2.elapsed().as_secs_f64() * 1000.0;
        gather.push(g);
        render.push(rd);
        total.push(g + rd);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let f = ReportFigures {
        findings: n,
        store_write_secs,
        gather_ms_median: median(gather),
        render_ms_median: median(render),
        total_ms_median: median(total),
        html_bytes,
    };
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        println!(
            "report over {} findings in one day: {:.0} ms (gather {:.0} ms, render {:.1} ms; median of {}); HTML {} KiB",
            f.findings,
            f.total_ms_median,
            f.gather_ms_median,
            f.render_ms_median,
            args.runs.max(1),
            f.html_bytes / 1024
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct NotifyFigures {
    storm_updates: usize,
    storm_incidents: usize,
    storm_puts_per_sec: f64,
    pending_after_storm: usize,
    delivered: usize,
    delivered_per_sec: f64,
}

pub fn notify(args: OutputsBench) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    let runs = args.runs.max(1);
    let updates = args.events.clamp(1_000, 1_000_000);
    let incidents = (updates / 500).max(1);
    let delivered = (updates / 50).clamp(200, 5_000);
    let (mut storm, mut send, mut pending) = (Vec::new(), Vec::new(), 0);
    rt.block_on(async {
        // a receiver that takes every webhook
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", l.local_addr()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        let client = crate::net::http_client(None, std::time::Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!(e))?;
        for run in 0..runs {
            let dir = std::env::temp_dir().join(format!("threatpilot-bench-notify-{}-{run}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut ob = crate::notify::outbox::Outbox::open(&dir)?;
            let body = |i: usize| json!({"type": "incident", "incident": {"incident_id": format!("i-{}", i % incidents), "version": i}});
            // a storm: updates of few incidents, synced in groups as the
            // notifier does every 250 ms
            let t = Instant::now();
            for i in 0..updates {
                ob.put(&format!("webhook:bench:i-{}", i % incidents), "bench", body(i), 0)?;
                if i % 1_000 == 999 {
                    ob.sync()?;
                }
            }
            ob.sync()?;
            storm.push(updates as f64 / t.elapsed().as_secs_f64());
            pending = ob.pending();
            // delivery, one at a time
            let t = Instant::now();
            for i in 0..delivered {
                let key = format!("webhook:bench:d-{i}");
                let seq = ob.put(&key, "bench", body(i), 0)?;
                ob.sync()?;
                match crate::notify::webhook::send(&client, &url, None, &key, &body(i), 0).await {
                    crate::notify::Outcome::Sent(_) => ob.ack(seq)?,
                    other => anyhow::bail!("the local receiver refused: {other:?}"),
                }
                ob.sync()?;
            }
            send.push(delivered as f64 / t.elapsed().as_secs_f64());
            drop(ob);
            let _ = std::fs::remove_dir_all(&dir);
        }
        anyhow::Ok(())
    })?;
    let f = NotifyFigures {
        storm_updates: updates,
        storm_incidents: incidents,
        storm_puts_per_sec: median(storm),
        pending_after_storm: pending,
        delivered,
        delivered_per_sec: median(send),
    };
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        println!(
            "outbox: {} updates of {} incidents put and synced at {:.0}/s, leaving {} to send; {} messages delivered (put, sync, HTTP, ack, sync) at {:.0}/s (medians of {runs})",
            f.storm_updates,
            f.storm_incidents,
            f.storm_puts_per_sec,
            f.pending_after_storm,
            f.delivered,
            f.delivered_per_sec
        );
    }
    Ok(ExitCode::SUCCESS)
}
