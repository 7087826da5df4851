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

/// The router: liveness, readiness (database and broker reachable, and the broker not
/// refusing the relay) and metrics.
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
    readiness(&state.health)
}

/// `/readyz`'s answer: 200 only while both servers are up; the body names each server's
/// state, a broker's refusal with its cause (`broker: refused (vhost "x" does not exist)`).
pub fn readiness(health: &Health) -> (StatusCode, String) {
    let database = health.database_ok();
    let refusal = health.broker_refusal();
    let broker = health.broker_ok() && refusal.is_none();
    let broker_state = match refusal {
        Some(cause) => format!("refused ({cause})"),
        None => up(broker).to_owned(),
    };
    let body = format!("database: {}\nbroker: {broker_state}\n", up(database));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal wins over a link that is up (a channel open while publishing is refused),
    /// and is named with its cause.
    #[test]
    fn readyz_names_a_refusal_with_its_cause() {
        let health = Health::default();
        health.set_database(true);
        health.set_broker(0, true);
        assert_eq!(
            readiness(&health),
            (StatusCode::OK, "database: up\nbroker: up\n".to_owned())
        );
        health.set_broker_refusal(Some("vhost \"x\" does not exist".to_owned()));
        assert_eq!(
            readiness(&health),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database: up\nbroker: refused (vhost \"x\" does not exist)\n".to_owned()
            )
        );
        health.set_broker_refusal(None);
        health.set_broker(0, false);
        assert_eq!(readiness(&health).1, "database: up\nbroker: down\n");
    }
}
