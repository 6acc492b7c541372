//! The operators' listener (`admin-listen`, loopback by default): `/healthz`, `/metrics` and
//! `/status`. Unauthenticated, so it never shares a port with the agents' WebSocket.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(app)
}

/// 200 while serving, 503 while draining (also on the agent listener, for load balancers).
pub async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut body = app.metrics.render(&app.tokens.render_metrics());
    if let Some(fleet) = &app.fleet {
        body.push_str(&fleet.render_metrics());
    }
    app.change_events.render_metrics(&mut body);
    app.metrics.append_module_snapshot(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let mut body = serde_json::json!({
        "draining": app.is_draining(),
        "orgs": app.tokens.status(),
        "pops_pending": app.pops.pending(),
        "change_data_capture": app.change_events.status(),
        "outbox": {
            "pending": app.metrics.outbox_pending.get(),
            "delivered": app.metrics.outbox_delivered.get(),
            "failed": app.metrics.outbox_failed.get(),
        },
    });
    if let Some(fleet) = &app.fleet {
        body["fleet"] = fleet.status();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
