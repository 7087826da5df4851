//! `/healthz`, `/readyz` and `/metrics` for the relay's sidecar probes and Prometheus.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::service::health::Health;

/// Where the endpoints listen unless told otherwise: every interface, port 9187.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9187);

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
}

/// The router: liveness, readiness (database and broker reachable) and metrics.
pub fn router(health: Arc<Health>, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { health, metrics })
}

/// Binds `addr` (a port in use is an error now, not later) and serves the endpoints in the
/// background until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = router(health, metrics);
    tokio::spawn(async move {
        info!(%addr, "serving /healthz, /readyz and /metrics");
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
        {
            error!(%error, "HTTP server failed");
        }
    });
    Ok(())
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let database = state.health.database_ok();
    let broker = state.health.broker_ok();
    let body = format!("database: {}\nbroker: {}\n", up(database), up(broker));
    if database && broker {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn up(ok: bool) -> &'static str {
    if ok { "up" } else { "down" }
}

async fn render_metrics(State(state): State<AppState>) -> (StatusCode, String) {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled\n".to_owned(),
        ),
    }
}
