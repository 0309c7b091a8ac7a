//! The service API: health, readiness and Prometheus metrics for a running
//! pipeline (`api: {listen: …}` in the pipeline file).
//!
//! ```text
//! GET /healthz   200 while the process serves requests
//! GET /readyz    200 once the pipeline consumes (sources bound), else 503
//! GET /metrics   every metric of src/metrics.rs in Prometheus text format
//! ```
//! The Prometheus recorder is installed once per process, before any stage
//! records a metric, so nothing emitted early is lost; histograms are
//! summarized by a periodic upkeep task.

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use config::ApiConfig;

/// What the handlers read; `ready` is shared with the pipeline, which sets
/// it once its sources are bound.
struct ApiState {
    ready: Arc<AtomicBool>,
    prometheus: PrometheusHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The operator's to fix: a bad or taken address.
    #[error("api cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("metrics recorder: {0}")]
    Recorder(String),
}

/// Installs the Prometheus recorder and starts serving on `cfg.listen`;
/// returns the bound address and the readiness flag for the pipeline to set.
pub async fn start(cfg: &ApiConfig) -> Result<(SocketAddr, Arc<AtomicBool>), ApiError> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| ApiError::Recorder(e.to_string()))?;
    crate::metrics::describe();
    let ready = Arc::new(AtomicBool::new(false));
    let state = Arc::new(ApiState {
        ready: ready.clone(),
        prometheus,
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
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "api server stopped");
        }
    });
    let upkeep = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.prometheus.run_upkeep();
        }
    });
    tracing::info!(%addr, "api listening");
    eprintln!("threatpilot api: listening on http://{addr}");
    Ok((addr, ready))
}

async fn readyz(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
}
