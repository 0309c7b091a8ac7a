//! Runs a pipeline file: its sources, the stage graph and the service API,
//! until the files end or, for a pipeline with long-lived sources (Loki
//! push, Alertmanager, syslog, Loki query), until SIGTERM or Ctrl-C.
//!
//! Shutdown is ordered so nothing accepted is lost: pushes are refused
//! (503), listeners flush what they read, every ingress is dropped, then the
//! graph drains and detect resolves its open windows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::config::{PipelineSpec, SourceConfig};
use super::graph::{self, RunSummary, SourceInput, StageReport};
use super::sinks::Sinks;
use crate::api::Routes;
use crate::detect::Detector;
use crate::hub::FindingsHub;
use crate::ingest::SourceStats;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Whether the pipeline runs until stopped rather than to the end of its files.
pub fn long_lived(spec: &PipelineSpec) -> bool {
    spec.sources.iter().any(|s| {
        matches!(
            s,
            SourceConfig::LokiPush(_)
                | SourceConfig::Alertmanager(_)
                | SourceConfig::Syslog(_)
                | SourceConfig::LokiQuery(_)
        )
    })
}

/// The store reports and the console read: the pipeline's first
/// Parquet or ClickHouse sink.
fn report_store(spec: &PipelineSpec) -> Option<crate::report::schedule::Store> {
    spec.sinks.iter().find_map(|s| match s {
        super::config::SinkConfig::Parquet(p) => Some(crate::report::schedule::Store::Parquet(
            std::path::PathBuf::from(&p.dir),
        )),
        super::config::SinkConfig::Clickhouse(c) => {
            Some(crate::report::schedule::Store::Clickhouse(c.clone()))
        }
        _ => None,
    })
}

/// Where the console finds the store, the reports and the search index.
fn console_context(spec: &PipelineSpec, detectors: &[Detector]) -> crate::console::Context {
    let store = report_store(spec);
    let reports = spec
        .report
        .as_ref()
        .map(|r| crate::console::reports::ReportsAt {
            dir: std::path::PathBuf::from(&r.dir),
            timezone: r.timezone.parse().unwrap_or(chrono_tz::UTC),
            geoip: r.geoip.clone(),
        });
    crate::console::Context {
        store,
        reports,
        detectors: detectors.iter().map(|d| d.id.clone()).collect(),
    }
}

/// Runs everything the pipeline file declares (not a NATS worker).
pub async fn serve(
    spec: &PipelineSpec,
    inputs: Vec<SourceInput>,
    detectors: Vec<Detector>,
    mut sinks: Sinks,
    respond: Option<crate::respond::Compiled>,
    notify: Option<crate::notify::Compiled>,
    stop_when: impl std::future::Future<Output = ()>,
) -> anyhow::Result<RunSummary> {
    let hub = spec
        .api
        .as_ref()
        .map(|a| Arc::new(FindingsHub::new(a.max_findings)));
    if let Some(h) = &hub {
        sinks = sinks.with_subscriber(h.clone());
    }
    let mut stores = Vec::new();
    let mut tap: Option<super::sinks::StoreTap> = None;
    for s in &spec.sinks {
        let (handle, task, events, sample_rate) = match s {
            super::config::SinkConfig::Clickhouse(c) => {
                let (h, t) = crate::store::sink::start(c.clone()).await?;
                (h, t, c.events, c.sample_rate)
            }
            super::config::SinkConfig::Parquet(c) => {
                let (h, t) = crate::store::parquet::start(c.clone())?;
                (h, t, c.events, c.sample_rate)
            }
            _ => continue,
        };
        // validation made both stores' events the same: picked once, sent to both
        tap = Some(match tap {
            Some(t) => super::sinks::StoreTap {
                handle: t.handle.join(handle),
                ..t
            },
            None => super::sinks::StoreTap {
                handle,
                events,
                sample_rate,
            },
        });
        stores.push(task);
    }
    if let Some(t) = tap {
        sinks = sinks.with_store(t);
    }
    let response = match respond {
        Some(c) => {
            let history = spec.sinks.iter().find_map(|s| match s {
                super::config::SinkConfig::Parquet(p) => {
                    Some(crate::respond::history::Store::Parquet(p.dir.clone()))
                }
                super::config::SinkConfig::Clickhouse(c) => {
                    Some(crate::respond::history::Store::Clickhouse(c.clone()))
                }
                _ => None,
            });
            let repeat =
                crate::respond::history::repeat_offenders(history, c.cfg.repeat_offender_days)
                    .await;
            let store = sinks.store().map(|t| t.handle.clone());
            let (tap, running) = crate::respond::runtime::start(c, store, repeat)?;
            sinks = sinks.with_subscriber(tap);
            Some(running)
        }
        None => None,
    };
    let view = response.as_ref().map(|r| r.view.clone());
    let (notify_stop, notify_stop_rx) = watch::channel(false);
    let notify_stop_rx2 = notify_stop_rx.clone();
    let notify = notify.map(|mut n| {
        n.analysis = spec.analysis.clone();
        n
    });
    let notify_compiled = notify.clone();
    let notifier = match (notify, &view) {
        (Some(n), Some(v)) => Some(crate::notify::runtime::start(n, v.clone(), notify_stop_rx)?),
        _ => None,
    };
    let mut schedule = None;
    if let Some(r) = &spec.report
        && long_lived(spec)
    {
        let compiled = r
            .compile(notify_compiled.as_ref())
            .map_err(|e| anyhow::anyhow!("report: {e}"))?;
        let store = report_store(spec);
        if let Some(store) = store {
            let channels = notify_compiled
                .as_ref()
                .map(|n| n.channels.iter().map(|(c, _)| c.clone()).collect())
                .unwrap_or_default();
            schedule = Some(crate::report::schedule::start(
                compiled,
                store,
                detectors.iter().map(|d| d.id.clone()).collect(),
                channels,
                notifier.as_ref().map(|n| n.post.clone()),
                notify_stop_rx2,
            ));
        }
    }
    let (files, states): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .map(|i| ((i.paths, i.pace_lines_per_sec), i.state))
        .unzip();
    let console = console_context(spec, &detectors);
    let (ingress, running) = graph::start(spec, states, detectors, sinks)?;
    // senders the sources see are never acted on
    let ingress = match &view {
        Some(v) => ingress.with_peers(v.guarded.clone()),
        None => ingress,
    };
    let budget = crate::ingest::budget::MemoryBudget::new(spec.ingest_memory_mib.max(1) << 20);
    let ingress = ingress.with_budget(budget.clone());
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut loki = None;
    let mut alertmanager = None;
    let mut stats: Vec<Arc<SourceStats>> = Vec::new();
    let mut tasks = Vec::new();
    for src in &spec.sources {
        match src {
            SourceConfig::LokiPush(c) => {
                let st = Arc::new(SourceStats::new(&c.id));
                stats.push(st.clone());
                loki = Some((c.clone(), st));
            }
            SourceConfig::Alertmanager(c) => {
                let st = Arc::new(SourceStats::new(&c.id));
                stats.push(st.clone());
                alertmanager = Some((c.clone(), st));
            }
            SourceConfig::Syslog(c) => {
                let st = Arc::new(SourceStats::new(&c.id));
                stats.push(st.clone());
                let l = crate::ingest::syslog::Listeners::bind(c).await?;
                let addr = |a: Option<std::io::Result<std::net::SocketAddr>>| {
                    a.and_then(Result::ok)
                        .map_or("-".to_owned(), |a| a.to_string())
                };
                eprintln!(
                    "threatpilot syslog {}: udp {} tcp {}",
                    c.id,
                    addr(l.udp.as_ref().map(|s| s.local_addr())),
                    addr(l.tcp.as_ref().map(|s| s.local_addr()))
                );
                tasks.push(tokio::spawn(crate::ingest::syslog::run(
                    c.clone(),
                    l,
                    ingress.clone(),
                    st,
                    stop_rx.clone(),
                )));
            }
            SourceConfig::LokiQuery(c) => {
                let st = Arc::new(SourceStats::new(&c.id));
                stats.push(st.clone());
                tasks.push(tokio::spawn(crate::ingest::loki_query::run(
                    c.clone(),
                    ingress.clone(),
                    st,
                    stop_rx.clone(),
                )));
            }
            SourceConfig::File { .. } | SourceConfig::Stdin { .. } | SourceConfig::Nats(_) => {}
        }
    }
    let api = match (&spec.api, hub) {
        (Some(cfg), Some(hub)) => {
            let pushes = loki.is_some() || alertmanager.is_some();
            let routes = Routes {
                pipeline: spec.name.clone(),
                hub,
                ingress: pushes.then(|| ingress.clone()),
                loki,
                alertmanager,
                sources: stats.clone(),
                stages: running.board(),
                budget,
                stop: stop_rx.clone(),
                respond: view.clone(),
                slack: notifier
                    .as_ref()
                    .map(|n| n.interactive.clone())
                    .unwrap_or_default(),
                console,
            };
            Some(crate::api::start(cfg, routes).await?)
        }
        _ => None,
    };
    let files = graph::spawn_files(files, spec.batch_size, ingress);
    if let Some(a) = &api {
        a.ready.store(true, Ordering::Release);
    }
    let mut reports = Vec::new();
    if long_lived(spec) {
        stop_when.await;
        tracing::info!("stopping: refusing new input, draining the pipeline");
        let _ = stop_tx.send(true);
        if let Some(a) = &api {
            a.close_ingestion();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    // a file that cannot be read stops the reading, not the stages: what
    // was read before it is evaluated and stored, then the error is told
    let (file_report, file_error) = match files.await? {
        Ok(report) => (report, None),
        Err(e) => (StageReport::new("source"), Some(e)),
    };
    if file_report.received > 0 || !long_lived(spec) {
        reports.push(file_report);
    }
    reports.extend(stats.iter().map(|s| s.report()));
    let mut summary = running.finish(reports).await?;
    if let Some(r) = response {
        // the sink stage has finished, so the response queue is closed
        let report = r.task.await?;
        eprintln!("threatpilot respond: {}", serde_json::to_string(&report)?);
    }
    let _ = notify_stop.send(true);
    if let Some(s) = schedule {
        let _ = s.await;
    }
    if let Some(n) = notifier {
        let report = n.task.await?;
        eprintln!("threatpilot notify: {}", serde_json::to_string(&report)?);
    }
    for task in stores {
        summary.stages.push(task.await?);
    }
    let _ = stop_tx.send(true);
    match file_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}
