//! The service API of a running pipeline (`api: {listen: …}` in the
//! pipeline file), served with axum.
//!
//! ```text
//! GET  /healthz                     200 while the process serves requests
//! GET  /readyz                      200 once the pipeline consumes, else 503
//! GET  /metrics                     Prometheus text: stages, sources, queues, NATS
//! GET  /api/v1/status               pipeline, sources, queue depth, findings held
//! GET  /api/v1/findings[?filters]   latest findings, newest first
//! GET  /api/v1/findings/{id}        one finding and its updates
//! GET  /api/v1/findings/stream      live findings (server-sent events)
//! POST /loki/api/v1/push            Loki push (JSON or snappy protobuf)
//! POST /alertmanager/webhook        Alertmanager webhook (version 4)
//! …    /api/v1/incidents, /api/v1/actions, /api/v1/breakers: see [`respond`]
//! ```
//! `schemas/openapi.yaml` describes it. With `auth` set, every route but
//! the health checks (and `/metrics`, unless made private) needs a bearer
//! token whose role allows it ([`auth`]); ingestion has its own limits
//! ([`limits`]). The Prometheus recorder is installed once per process,
//! before any stage records a metric, so nothing emitted early is lost.

pub mod auth;
pub mod config;
pub mod findings;
pub mod limits;
pub mod push;
pub mod respond;
mod slack;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

pub use config::ApiConfig;

use crate::flow::Ingress;
use crate::hub::FindingsHub;
use crate::ingest::SourceStats;
use crate::ingest::config::{AlertmanagerConfig, LokiPushConfig};
use push::PushSource;

/// Every route the API serves (method, path), as `schemas/openapi.yaml`
/// documents them; a test keeps the two in step.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/findings"),
    ("get", "/api/v1/findings/stream"),
    ("get", "/api/v1/findings/{id}"),
    ("post", "/loki/api/v1/push"),
    ("post", "/alertmanager/webhook"),
    ("get", "/api/v1/incidents"),
    ("get", "/api/v1/incidents/{id}"),
    ("get", "/api/v1/incidents/{id}/tail"),
    ("get", "/api/v1/actions"),
    ("post", "/api/v1/actions/{id}/approve"),
    ("post", "/api/v1/actions/{id}/reject"),
    ("get", "/api/v1/breakers"),
    ("post", "/api/v1/breakers/{connector}/reset"),
    ("post", "/slack/interactions"),
];

/// What the handlers read.
pub(crate) struct ApiState {
    pub(crate) pipeline: String,
    started: Instant,
    ready: Arc<AtomicBool>,
    prometheus: PrometheusHandle,
    pub(crate) auth: auth::Auth,
    limits: config::LimitsConfig,
    rate: limits::RateLimiter,
    pub(crate) hub: Arc<FindingsHub>,
    /// Taken at shutdown, so pushes get 503 and the graph can drain.
    ingress: RwLock<Option<Ingress>>,
    loki: Option<PushSource<LokiPushConfig>>,
    alertmanager: Option<PushSource<AlertmanagerConfig>>,
    sources: Vec<Arc<SourceStats>>,
    stages: crate::flow::Board,
    budget: Arc<crate::ingest::budget::MemoryBudget>,
    /// Push bodies decoded at once (one per core).
    decoders: Arc<tokio::sync::Semaphore>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) respond: Option<Arc<crate::respond::runtime::View>>,
    slack: Vec<crate::notify::runtime::Interactive>,
    /// The web console, unless the pipeline turned it off.
    pub(crate) console: Option<crate::console::Console>,
}

impl ApiState {
    /// Notes an authenticated sender, so response never blocks it.
    fn note_peer(&self, peer: SocketAddr, what: &str, source: &str) {
        if let Some(v) = &self.respond
            && !v.guarded.contains(&peer.ip())
        {
            v.guarded
                .add(peer.ip(), &format!("{what} of source {source}"));
        }
    }
}

/// What a pipeline offers the API beyond health and metrics.
pub struct Routes {
    pub pipeline: String,
    pub hub: Arc<FindingsHub>,
    pub ingress: Option<Ingress>,
    pub loki: Option<(LokiPushConfig, Arc<SourceStats>)>,
    pub alertmanager: Option<(AlertmanagerConfig, Arc<SourceStats>)>,
    /// Every source's counters, for `/api/v1/status`.
    pub sources: Vec<Arc<SourceStats>>,
    /// Every stage's counters as they stand (drops by reason), for `/api/v1/status`.
    pub stages: crate::flow::Board,
    /// Ingestion's memory budget, shared with the pipeline's other sources.
    pub budget: Arc<crate::ingest::budget::MemoryBudget>,
    /// Turns true at shutdown (ends live streams).
    pub stop: watch::Receiver<bool>,
    /// Incidents, actions and approvals, when the pipeline responds.
    pub respond: Option<Arc<crate::respond::runtime::View>>,
    /// Slack channels whose approve / reject buttons come back here.
    pub slack: Vec<crate::notify::runtime::Interactive>,
    /// What the console reads beyond this: the store, reports, search.
    pub console: crate::console::Context,
}

impl Routes {
    /// Health, metrics and findings only (a NATS worker, a file run).
    pub fn basic(pipeline: &str, hub: Arc<FindingsHub>) -> Routes {
        Routes {
            pipeline: pipeline.to_owned(),
            hub,
            ingress: None,
            loki: None,
            alertmanager: None,
            sources: Vec::new(),
            stages: crate::flow::Board::default(),
            budget: crate::ingest::budget::MemoryBudget::new(512 << 20),
            stop: watch::channel(false).1,
            respond: None,
            slack: Vec::new(),
            console: crate::console::Context::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The operator's to fix: a bad or taken address.
    #[error("api cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("metrics recorder: {0}")]
    Recorder(String),
    #[error("api auth: {0}")]
    Auth(String),
}

/// A serving API.
pub struct Api {
    pub addr: SocketAddr,
    /// Set once the pipeline's sources are bound.
    pub ready: Arc<AtomicBool>,
    state: Arc<ApiState>,
}

impl Api {
    /// Stops taking pushes (they get 503) and lets go of the graph's ingress.
    pub fn close_ingestion(&self) {
        if let Ok(mut i) = self.state.ingress.write() {
            i.take();
        }
    }
}

/// Installs the Prometheus recorder and starts serving on `cfg.listen`.
pub async fn start(cfg: &ApiConfig, routes: Routes) -> Result<Api, ApiError> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| ApiError::Recorder(e.to_string()))?;
    crate::metrics::describe();
    let auth = auth::Auth::load(cfg.auth.as_ref()).map_err(|e| ApiError::Auth(e.to_string()))?;
    let ready = Arc::new(AtomicBool::new(false));
    let state = Arc::new(ApiState {
        pipeline: routes.pipeline,
        started: Instant::now(),
        ready: ready.clone(),
        prometheus: prometheus.clone(),
        auth,
        limits: cfg.limits.clone(),
        rate: limits::RateLimiter::new(cfg.limits.requests_per_sec, cfg.limits.burst),
        hub: routes.hub,
        ingress: RwLock::new(routes.ingress),
        loki: push_source(routes.loki),
        alertmanager: push_source(routes.alertmanager),
        sources: routes.sources,
        stages: routes.stages,
        budget: routes.budget,
        decoders: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        stop: routes.stop,
        respond: routes.respond,
        slack: routes.slack,
        console: cfg
            .console
            .enabled
            .then(|| crate::console::Console::new(cfg.console.clone(), routes.console)),
    });
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| ApiError::Listen {
            addr: cfg.listen.clone(),
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ApiError::Listen {
        addr: cfg.listen.clone(),
        reason: e.to_string(),
    })?;
    // bodies are read by the handlers under their own limit
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/findings", get(findings::list))
        .route("/api/v1/findings/stream", get(findings::stream))
        .route("/api/v1/findings/{id}", get(findings::get))
        .route("/loki/api/v1/push", post(push::loki_push))
        .route("/alertmanager/webhook", post(push::alertmanager))
        .route("/api/v1/incidents", get(respond::incidents))
        .route("/api/v1/incidents/{id}", get(respond::incident))
        .route("/api/v1/incidents/{id}/tail", get(respond::tail))
        .route("/api/v1/actions", get(respond::actions))
        .route("/api/v1/actions/{id}/approve", post(respond::approve))
        .route("/api/v1/actions/{id}/reject", post(respond::reject))
        .route("/api/v1/breakers", get(respond::breakers))
        .route(
            "/api/v1/breakers/{connector}/reset",
            post(respond::reset_breaker),
        )
        .route("/slack/interactions", post(slack::interactions))
        .merge(crate::console::routes())
        .layer(axum::extract::DefaultBodyLimit::disable())
        // no answer is ever sniffed into HTML or script by a browser
        .layer(axum::middleware::map_response(
            |mut r: axum::response::Response| async move {
                r.headers_mut().insert(
                    axum::http::header::X_CONTENT_TYPE_OPTIONS,
                    axum::http::HeaderValue::from_static("nosniff"),
                );
                r
            },
        ))
        .with_state(state.clone());
    tokio::spawn(crate::listen::serve_http(
        listener,
        app,
        cfg.limits.connections(),
    ));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            prometheus.run_upkeep();
        }
    });
    tracing::info!(%addr, "api listening");
    eprintln!("threatpilot api: listening on http://{addr}");
    Ok(Api { addr, ready, state })
}

fn push_source<C>(c: Option<(C, Arc<SourceStats>)>) -> Option<PushSource<C>> {
    c.map(|(cfg, stats)| PushSource { cfg, stats })
}

async fn readyz(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if !s.auth.metrics_public()
        && let Err(e) = s.auth.check(&headers, auth::Need::Read)
    {
        return e.into_response();
    }
    if let Ok(Some(i)) = s.ingress.read().map(|i| i.as_ref().map(Ingress::queued)) {
        metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "ingress").set(i as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}

#[derive(serde::Serialize)]
struct StatusAnswer {
    pipeline: String,
    version: &'static str,
    uptime_secs: u64,
    ready: bool,
    ingesting: bool,
    /// Groups of batches waiting for the parse stage.
    ingress_queue: usize,
    sources: Vec<crate::flow::StageReport>,
    /// parse, dedupe, cluster, detect: what each received, passed on,
    /// dropped (late, merged, …) and adjusted (time clamped), by reason.
    stages: Vec<crate::flow::StageReport>,
    findings_held: usize,
    findings_forgotten: u64,
    findings_by_status: std::collections::BTreeMap<String, usize>,
}

async fn status(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Err(e) = s.auth.check(&headers, auth::Need::Read) {
        return e.into_response();
    }
    let ingress = s
        .ingress
        .read()
        .ok()
        .and_then(|i| i.as_ref().map(Ingress::queued));
    let (held, forgotten) = s.hub.counts();
    axum::Json(StatusAnswer {
        pipeline: s.pipeline.clone(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: s.started.elapsed().as_secs(),
        ready: s.ready.load(Ordering::Acquire),
        ingesting: ingress.is_some(),
        ingress_queue: ingress.unwrap_or(0),
        sources: s.sources.iter().map(|x| x.report()).collect(),
        stages: s.stages.reports(),
        findings_held: held,
        findings_forgotten: forgotten,
        findings_by_status: findings::by_status(&s.hub),
    })
    .into_response()
}
