//! The REST API (and, later, the web dashboard): HTTP on the daemon's tokio
//! runtime, served by the mount daemon when the config has `[api] listen`, and
//! by `cloudraid serve` for a volume that is not mounted. Every operation is
//! one the control socket has (`control::execute`, `ops`), called the same way:
//! there is no second implementation.
//!
//! Every endpoint but `/healthz` takes a bearer token (`tokens`); errors are
//! JSON `{"error": {"code": ..., "message": ...}}` with a stable code.

pub mod files;
pub mod jobs;
pub mod metrics;
pub mod session;
pub mod snapshots;
pub mod tasks;
pub mod tls;
pub mod tokens;

use crate::format::TokenRole;
use crate::front::control;
use crate::fs::Fs;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// `[api]` of the config: off unless `listen` is set.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address and port to listen on, e.g. "127.0.0.1:7878".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Serve `/metrics` without a token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_public: bool,
    /// Allow a non-loopback address without TLS (behind a TLS proxy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// HTTPS: the server's certificate chain and private key (PEM files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl ApiSection {
    /// The address to listen on, checked; `None` when the API is off.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        let Some(l) = &self.listen else {
            return Ok(None);
        };
        let addr: SocketAddr = l.parse().map_err(|_| {
            format!(
                "[api] listen = {l:?} is not an address and port; write e.g. \"127.0.0.1:7878\""
            )
        })?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err("[api] has tls_cert but no tls_key: give both (PEM files)".into())
            }
            (None, Some(_)) => {
                return Err("[api] has tls_key but no tls_cert: give both (PEM files)".into())
            }
            _ => {}
        }
        if !addr.ip().is_loopback() && !self.insecure && !self.tls() {
            return Err(format!(
                "[api] listen = {l:?} is not a loopback address: tokens would cross the network in clear; give tls_cert and tls_key, or serve it behind a TLS proxy and set insecure = true, or listen on 127.0.0.1"
            ));
        }
        Ok(Some(addr))
    }

    /// Reads the TLS certificate and key, if any: what is wrong with them.
    pub fn check_tls(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => tls::acceptor(c, k).map(drop),
            _ => Ok(()),
        }
    }

    /// Does the server speak HTTPS?
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls() {
            "https"
        } else {
            "http"
        }
    }
}

/// What the handlers share.
pub struct Api {
    pub fs: Arc<Fs>,
    pub section: ApiSection,
    /// Where the volume is mounted (the mount daemon), for status.
    pub mountpoint: Option<String>,
    /// The config the daemon was started with (absolute): its backup jobs.
    pub config_path: std::path::PathBuf,
    /// The volume's figures as `/metrics` last counted them.
    pub tally: metrics::Tally,
    /// Scrubs and repairs started through the API.
    pub tasks: tasks::Tasks,
}

type Shared = State<Arc<Api>>;

/// An error answer: HTTP status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// An operation's error message, sorted by what it says.
    pub fn from_message(message: String) -> Self {
        let m = message.as_str();
        let (status, code) =
            if m.contains("no such file or directory") || m.contains("no snapshot ") {
                (StatusCode::NOT_FOUND, "not_found")
            } else if m.contains("is not a snapshot id") {
                (StatusCode::BAD_REQUEST, "bad_request")
            } else if m.contains("already exists") || m.contains("exists in the live tree") {
                (StatusCode::CONFLICT, "exists")
            } else if m.contains("directory not empty") {
                (StatusCode::CONFLICT, "not_empty")
            } else if m.contains("is a directory") || m.contains("not a directory") {
                (StatusCode::CONFLICT, "wrong_kind")
            } else if m.contains("`..` is not allowed") {
                (StatusCode::BAD_REQUEST, "bad_path")
            } else if m.contains("read-only") {
                (StatusCode::CONFLICT, "read_only")
            } else if m.contains("too few backends") {
                (StatusCode::SERVICE_UNAVAILABLE, "backends_unavailable")
            } else if m.contains("being thawed") {
                (StatusCode::SERVICE_UNAVAILABLE, "thawing")
            } else if m.contains("No space left") || m.contains("disk full") {
                (StatusCode::INSUFFICIENT_STORAGE, "no_space")
            } else if m.contains("Permission denied") {
                (StatusCode::FORBIDDEN, "forbidden")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "failed")
            };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The token of the request, if it may do what `need` allows.
pub async fn authorize(
    api: &Api,
    headers: &HeaderMap,
    need: TokenRole,
) -> ApiResult<tokens::TokenInfo> {
    let secret = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default()
            .to_string(),
        None => {
            let Some(secret) = session::cookie_token(headers) else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "no token: send `Authorization: Bearer TOKEN` (made by `cloudraid token create`)",
                ));
            };
            // The dashboard's cookie is sent by the browser on its own: a change
            // must also carry a header another site's page cannot set.
            if need > TokenRole::Read && !headers.contains_key(session::CHANGE_HEADER) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "a change made with the dashboard's session cookie needs the {} header",
                        session::CHANGE_HEADER
                    ),
                ));
            }
            secret
        }
    };
    let t = known_token(api, secret).await?;
    if t.role < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {} has the {} role; this needs {}",
                t.name,
                role_name(t.role),
                role_name(need)
            ),
        ));
    }
    Ok(t)
}

/// The valid token whose secret is `secret`; `401` for an unknown or revoked one.
pub async fn known_token(api: &Api, secret: String) -> ApiResult<tokens::TokenInfo> {
    let fs = api.fs.clone();
    let found = tokio::task::spawn_blocking(move || tokens::check(&fs, &secret))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e))?;
    found.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked token (`cloudraid token list` shows the valid ones)",
        )
    })
}

pub fn role_name(r: TokenRole) -> &'static str {
    match r {
        TokenRole::Read => "read",
        TokenRole::Write => "write",
        TokenRole::Admin => "admin",
    }
}

/// The routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(crate::front::web::index))
        .route("/assets/{name}", get(crate::front::web::file))
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/v1/session",
            get(session::whoami)
                .post(session::login)
                .delete(session::logout),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/backends", get(backends))
        .route("/api/v1/cost", get(cost))
        .route(
            "/api/v1/snapshots",
            get(snapshots::snapshots).post(snapshots::create_snapshot),
        )
        .route("/api/v1/snapshots/{id}/files", get(snapshots::browse_root))
        .route("/api/v1/snapshots/{id}/files/", get(snapshots::browse_root))
        .route(
            "/api/v1/snapshots/{id}/files/{*path}",
            get(snapshots::browse_path),
        )
        .route("/api/v1/snapshots/{id}/restore", post(snapshots::restore))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/history", get(jobs::all_history))
        .route("/api/v1/jobs/{job}/history", get(jobs::job_history))
        .route("/api/v1/jobs/{job}/run", post(jobs::run_job))
        .route("/api/v1/tasks", get(tasks::list).post(tasks::start))
        .route("/api/v1/tasks/{id}", get(tasks::get))
        .route("/api/v1/tasks/{id}/events", get(tasks::events))
        .route("/api/v1/stat/{*path}", get(files::stat))
        .route("/api/v1/files", get(files::get_root))
        .route("/api/v1/files/", get(files::get_root))
        .route(
            "/api/v1/files/{*path}",
            get(files::get_path)
                .put(files::put_path)
                .delete(files::delete_path),
        )
        .route("/api/v1/dirs/{*path}", post(files::mkdir_path))
        .fallback(not_found)
        .with_state(api)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint (see docs/API.md)",
    )
}

/// The OpenAPI 3.1 document of every route (`GET /api/openapi.json`).
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/openapi.json` (no token: it says what exists, not what is stored).
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// `GET /healthz`: the server answers (no token).
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"ok": true}))
}

/// The status report, as `cloudraid status --json` shows it.
pub(crate) async fn status_report(api: &Api) -> ApiResult<crate::front::status::StatusReport> {
    let r = control::execute(
        &api.fs,
        control::Request::Status,
        crate::front::ops::current_caller(),
        api.mountpoint.as_deref(),
        &|_, _| {},
    )
    .await;
    match (r.ok, r.status) {
        (true, Some(s)) => Ok(s),
        _ => Err(ApiError::from_message(
            r.error.unwrap_or_else(|| "status failed".into()),
        )),
    }
}

/// `GET /api/v1/status`: what `cloudraid status --json` shows.
async fn status(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    Ok(Json(status_report(&api).await?).into_response())
}

/// `GET /api/v1/backends`: each backend's state, as status shows it.
async fn backends(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let s = status_report(&api).await?;
    Ok(Json(serde_json::json!({"backends": s.backends})).into_response())
}

#[derive(Deserialize)]
struct CostQuery {
    restore_mbps: Option<f64>,
}

/// `GET /api/v1/cost[?restore_mbps=N]`: what `cloudraid cost --json` shows:
/// the index's usage priced with the daemon's config (list prices and its
/// `[[price]]` entries).
async fn cost(
    State(api): Shared,
    axum::extract::Query(q): axum::extract::Query<CostQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    use crate::policy::{cost, price::PriceTable};
    authorize(&api, &headers, TokenRole::Read).await?;
    let mbps = q.restore_mbps.unwrap_or(100.0);
    if !(mbps > 0.0 && mbps.is_finite()) {
        return Err(ApiError::bad_request(
            "restore_mbps is a download speed in Mbit/s, above 0",
        ));
    }
    let failed = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e);
    let config = crate::config::Config::load(&api.config_path).map_err(failed)?;
    let backends = cost::BackendInfo::of_config(&config).map_err(failed)?;
    let prices = PriceTable::list_prices()
        .with_overrides(&config.prices, &config.backends)
        .map_err(failed)?;
    let r = control::execute(
        &api.fs,
        control::Request::Cost,
        crate::front::ops::current_caller(),
        api.mountpoint.as_deref(),
        &|_, _| {},
    )
    .await;
    let usage: cost::UsageReport = match (r.ok, r.data) {
        (true, Some(d)) => serde_json::from_value(d).map_err(|e| failed(e.to_string()))?,
        _ => {
            return Err(ApiError::from_message(
                r.error.unwrap_or_else(|| "the usage cannot be read".into()),
            ))
        }
    };
    let report = cost::report(
        &config.volume.name,
        &usage.usage,
        &backends,
        &prices,
        usage.requests.as_deref(),
        mbps,
    )
    .map_err(failed)?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    since: Option<String>,
}

/// `GET /api/v1/events[?since=1h]`: the event history, oldest first.
async fn events(
    State(api): Shared,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let since = q
        .since
        .as_deref()
        .map(crate::meta::events::parse_since)
        .transpose()
        .map_err(ApiError::bad_request)?;
    op(&api, control::Request::Events { since }).await
}

/// Carries out a control-socket operation and answers with its report.
pub(crate) async fn op(api: &Api, req: control::Request) -> ApiResult<Response> {
    let r = control::execute(
        &api.fs,
        req,
        crate::front::ops::current_caller(),
        api.mountpoint.as_deref(),
        &|_, _| {},
    )
    .await;
    match (r.ok, r.data) {
        (true, Some(d)) => Ok(Json(d).into_response()),
        _ => Err(ApiError::from_message(
            r.error.unwrap_or_else(|| "the operation failed".into()),
        )),
    }
}

/// The API's socket, bound before the daemon says it is ready: plain TCP, or
/// TCP with the TLS setup read from `[api] tls_cert`/`tls_key`.
pub struct Bound {
    tcp: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Binds the API's address (before the daemon says it is ready); reads the
/// TLS certificate and key, so a bad one stops the daemon with its reason.
pub async fn bind(section: &ApiSection) -> Result<Option<Bound>, String> {
    let Some(addr) = section.address()? else {
        return Ok(None);
    };
    let tls = match (&section.tls_cert, &section.tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        _ => None,
    };
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("[api] cannot listen on {addr}: {e}"))?;
    Ok(Some(Bound { tcp, tls }))
}

/// Serves the API on `bound` until the task is aborted.
pub fn spawn(
    bound: Bound,
    fs: Arc<Fs>,
    section: ApiSection,
    mountpoint: Option<String>,
    config_path: std::path::PathBuf,
) -> tokio::task::JoinHandle<()> {
    if let Ok(a) = bound.tcp.local_addr() {
        tracing::info!("REST API listening on {}://{a}", section.scheme());
    }
    let api = Arc::new(Api {
        fs,
        section,
        mountpoint,
        config_path,
        tally: Default::default(),
        tasks: Default::default(),
    });
    tokio::spawn(async move {
        let served = match bound.tls {
            None => axum::serve(bound.tcp, router(api)).await,
            Some(acceptor) => match tls::TlsListener::new(bound.tcp, acceptor) {
                Ok(l) => axum::serve(l, router(api)).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = served {
            tracing::error!("REST API stopped: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("mod.rs");
        let mut routed = std::collections::BTreeSet::new();
        let router = &source[..source.find("#[cfg(test)]").unwrap()];
        for piece in router.split(".route(").skip(1) {
            let path = piece.trim_start().trim_start_matches('"');
            let path = &path[..path.find('"').unwrap()];
            // A folder's path with a trailing slash answers as without.
            if path.len() > 1 && path.ends_with('/') {
                continue;
            }
            routed.insert(path.replace("{*", "{"));
        }
        assert!(routed.len() > 20, "{routed:?}");
        assert_eq!(routed, documented);
    }
}
