//! `/api/v1/jobs`: the config's backup jobs, their history, and a run now
//! (as `cloudraid backup list|history|run`).

use super::{authorize, op, ApiError, ApiResult, Shared};
use crate::format::TokenRole;
use crate::front::control;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /api/v1/jobs`: each job of the daemon's config with its schedule, next
/// run and newest run, as `cloudraid backup list --json`.
pub async fn list(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let cfg = crate::config::Config::load(&api.config_path)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e))?;
    let fs = api.fs.clone();
    let runs = tokio::task::spawn_blocking(move || crate::backup::job::history::runs(&fs, None))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()))?
        .map_err(ApiError::from_message)?;
    Ok(Json(crate::backup::job::history::summaries(&cfg.jobs, &runs)).into_response())
}

/// `GET /api/v1/jobs/history`: every job's runs, oldest first, as `cloudraid
/// backup history --json`.
pub async fn all_history(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    op(&api, control::Request::BackupHistory { job: None }).await
}

/// `GET /api/v1/jobs/JOB/history`: one job's runs.
pub async fn job_history(
    State(api): Shared,
    axum::extract::Path(job): axum::extract::Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    op(&api, control::Request::BackupHistory { job: Some(job) }).await
}

/// `POST /api/v1/jobs/JOB/run`: runs the job now (from the daemon's config) and
/// answers when it is done, with the run's report (`run.result` says how it went).
pub async fn run_job(
    State(api): Shared,
    axum::extract::Path(job): axum::extract::Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let config = api.config_path.clone();
    let known = crate::config::Config::load(&config).map(|c| c.job(&job).is_ok());
    if let Ok(false) = known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no backup job named {job} in {}", config.display()),
        ));
    }
    op(
        &api,
        control::Request::BackupRun {
            config,
            job,
            total: 0,
            trigger: Some("api".into()),
        },
    )
    .await
}
