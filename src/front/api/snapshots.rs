//! `/api/v1/snapshots`: list and take snapshots (as `cloudraid snapshot`),
//! browse one and download its files (the snapshot's read-only view,
//! `/.snapshots/ID/...`, through the same listing and download code as
//! `/api/v1/files`), and bring paths of one back into the live tree.

use super::{authorize, files, op, ApiError, ApiResult, Shared};
use crate::format::TokenRole;
use crate::front::control;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Deserialize;

/// `GET /api/v1/snapshots`: as `cloudraid snapshot list --json` (and whether
/// they are protected).
pub async fn snapshots(State(api): Shared, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    op(&api, control::Request::SnapshotList).await
}

#[derive(Deserialize, Default)]
struct NewSnapshotBody {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

/// `POST /api/v1/snapshots` (`{"tags": [...], "paths": [...]}`, both optional):
/// a snapshot now, as `cloudraid snapshot create`.
pub async fn create_snapshot(
    State(api): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let b: NewSnapshotBody = if body.is_empty() {
        NewSnapshotBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not a snapshot request: {e}"))
        })?
    };
    op(
        &api,
        control::Request::SnapshotCreate {
            tags: b.tags,
            paths: b.paths,
        },
    )
    .await
}

/// The view path of `path` in snapshot `id` (an id, a unique prefix, or
/// `latest`), and `path` as the volume path it had.
fn view_path(api: &super::Api, id: &str, path: &str) -> ApiResult<(String, String)> {
    let (n, _) = api
        .fs
        .find_snapshot(id)
        .map_err(|e| ApiError::from_message(e.0))?;
    let hex = crate::format::snapshot_id_hex(n);
    let inner = files::volume_path(path)?;
    let inner = inner.trim_end_matches('/');
    let shown = if inner.is_empty() { "/" } else { inner };
    Ok((format!("/.snapshots/{hex}{inner}"), shown.to_string()))
}

/// `GET /api/v1/snapshots/ID/files`: the snapshot's root.
pub async fn browse_root(
    State(api): Shared,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let (path, shown) = view_path(&api, &id, "")?;
    files::serve(&api.fs, path, &shown, method, &headers).await
}

/// `GET /api/v1/snapshots/ID/files/PATH`: a folder's listing or a file's
/// bytes, as the snapshot holds them.
pub async fn browse_path(
    State(api): Shared,
    Path((id, raw)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let (path, shown) = view_path(&api, &id, &raw)?;
    files::serve(&api.fs, path, &shown, method, &headers).await
}

#[derive(Deserialize)]
pub struct RestoreBody {
    paths: Vec<String>,
    #[serde(default)]
    overwrite: bool,
}

/// `POST /api/v1/snapshots/ID/restore` `{"paths": [...], "overwrite": false}`:
/// brings the paths back into the live tree at their old places, as
/// `cloudraid restore --in-place` (nothing is uploaded).
pub async fn restore(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let b: RestoreBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not {{\"paths\": [...], \"overwrite\": false}}: {e}"
        ))
    })?;
    let mut paths = Vec::new();
    for p in &b.paths {
        paths.push(if p == "/" || p.is_empty() {
            "/".to_string()
        } else {
            files::volume_path(p.trim_end_matches('/'))?
        });
    }
    op(
        &api,
        control::Request::Restore {
            snapshot: id,
            paths,
            dest: None,
            in_place: true,
            overwrite: b.overwrite,
        },
    )
    .await
    .map_err(|mut e| {
        // The message names the CLI's flag; here it is a field of the body.
        e.message = e.message.replace("--overwrite", "\"overwrite\": true");
        e
    })
}
