//! `/api/v1/tasks`: scrubs and repairs started through the API run in the
//! daemon as tasks, each followed by polling (`GET /api/v1/tasks/ID`) or as a
//! stream of Server-Sent Events (`GET /api/v1/tasks/ID/events`). They are the
//! control socket's `Scrub` and `Repair`, with their progress kept. One task
//! runs at a time; the newest [`KEEP`] are remembered until the daemon stops.

use super::{authorize, ApiError, ApiResult, Shared};
use crate::format::TokenRole;
use crate::front::control;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tasks remembered (running or ended), newest first.
pub const KEEP: usize = 20;

/// A task as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    /// `scrub` or `repair`.
    pub kind: &'static str,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// Chunks checked so far, of `total`.
    pub done: u64,
    pub total: u64,
    /// RFC 3339.
    pub started: String,
    pub ended: Option<String>,
    /// The scrub or repair report, once done.
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

struct Task {
    view: tokio::sync::watch::Sender<TaskView>,
}

#[derive(Default)]
pub struct Tasks {
    list: Mutex<VecDeque<Arc<Task>>>,
}

impl Tasks {
    fn find(&self, id: &str) -> Option<Arc<Task>> {
        self.list
            .lock()
            .unwrap()
            .iter()
            .find(|t| t.view.borrow().id == id)
            .cloned()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    kind: String,
    /// Scrub only: the percentage of chunks to check (all by default).
    #[serde(default)]
    sample: Option<f64>,
}

/// `POST /api/v1/tasks` `{"kind": "scrub"[, "sample": 10]}` or `{"kind":
/// "repair"}`: starts it and answers `202` with the task.
pub async fn start(
    State(api): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let b: StartBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not {{\"kind\": \"scrub\"|\"repair\"}}: {e}"
        ))
    })?;
    let (kind, req) = match (b.kind.as_str(), b.sample) {
        ("scrub", s) => {
            let sample = s.unwrap_or(100.0);
            if !(sample > 0.0 && sample <= 100.0) {
                return Err(ApiError::bad_request(
                    "sample is a percentage of chunks: above 0, at most 100",
                ));
            }
            ("scrub", control::Request::Scrub { sample })
        }
        ("repair", None) => ("repair", control::Request::Repair),
        ("repair", Some(_)) => {
            return Err(ApiError::bad_request(
                "a repair checks every chunk: it takes no sample",
            ))
        }
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "unknown task kind {other:?}: use \"scrub\" or \"repair\""
            )))
        }
    };
    let task = {
        let mut list = api.tasks.list.lock().unwrap();
        if let Some(t) = list.iter().find(|t| t.view.borrow().state == "running") {
            let v = t.view.borrow();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!(
                    "a {} is running (task {}); start another when it ends",
                    v.kind, v.id
                ),
            ));
        }
        let view = TaskView {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            kind,
            state: "running",
            done: 0,
            total: 0,
            started: now(),
            ended: None,
            result: None,
            error: None,
        };
        let task = Arc::new(Task {
            view: tokio::sync::watch::channel(view).0,
        });
        list.push_front(task.clone());
        list.truncate(KEEP);
        task
    };
    let first = task.view.borrow().clone();
    let api2 = api.clone();
    tokio::spawn(async move {
        let progress = |done: u64, total: u64| {
            task.view.send_modify(|v| {
                v.done = done;
                v.total = total;
            })
        };
        let r = control::execute(
            &api2.fs,
            req,
            crate::front::ops::current_caller(),
            api2.mountpoint.as_deref(),
            &progress,
        )
        .await;
        let result = if r.ok {
            r.scrub
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .or_else(|| {
                    r.repair
                        .map(|s| serde_json::to_value(s).unwrap_or_default())
                })
        } else {
            None
        };
        task.view.send_modify(|v| {
            v.ended = Some(now());
            if r.ok {
                v.state = "done";
                v.result = result;
            } else {
                v.state = "failed";
                v.error = Some(r.error.unwrap_or_else(|| "the task failed".into()));
            }
        });
    });
    Ok((StatusCode::ACCEPTED, Json(first)).into_response())
}

/// `GET /api/v1/tasks`: `{"tasks": [...]}`, newest first.
pub async fn list(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let tasks: Vec<TaskView> = api
        .tasks
        .list
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.view.borrow().clone())
        .collect();
    Ok(Json(serde_json::json!({ "tasks": tasks })).into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no task {id} (`GET /api/v1/tasks` lists them; they are forgotten when the daemon stops)"),
    )
}

/// `GET /api/v1/tasks/ID`: the task now.
pub async fn get(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let t = api.tasks.find(&id).ok_or_else(|| not_found(&id))?;
    let v = t.view.borrow().clone();
    Ok(Json(v).into_response())
}

/// `GET /api/v1/tasks/ID/events`: Server-Sent Events: `progress` with the task
/// at most every 250 ms while it runs, then `end` with the task as it ended.
pub async fn events(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let t = api.tasks.find(&id).ok_or_else(|| not_found(&id))?;
    let rx = t.view.subscribe();
    // (receiver, the end was sent)
    let stream = futures::stream::unfold((rx, false, true), |(mut rx, ended, first)| async move {
        if ended {
            return None;
        }
        if !first {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if rx.borrow().state == "running" {
                // Wait for a change (the task ending closes nothing: it ends by state).
                let _ = rx.changed().await;
            }
        }
        let v = rx.borrow_and_update().clone();
        let end = v.state != "running";
        let ev = Event::default()
            .event(if end { "end" } else { "progress" })
            .json_data(&v)
            .unwrap_or_else(|_| Event::default().event("error"));
        Some((Ok::<_, std::convert::Infallible>(ev), (rx, end, false)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
