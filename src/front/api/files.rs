//! `/api/v1/files/PATH`: a directory's listing (JSON) or a file's bytes
//! (streamed, HTTP Range, ETag, Last-Modified), uploads (`PUT`, streamed into
//! the volume as `ops::upload` stores any stream: nothing is buffered whole),
//! deletes, and `POST /api/v1/dirs/PATH` for new folders.

use super::{authorize, ApiError, ApiResult, Shared};
use crate::format::{Kind, TokenRole};
use crate::front::ops;
use crate::fs::{Attr, Fs};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Bytes read from the volume per block of a download.
const BLOCK: u64 = 1 << 20;

/// The volume path of a request's PATH, refused when it could name anything
/// outside the volume's tree or is not a plain path: `..`, NUL, a leading `/`.
pub fn volume_path(raw: &str) -> ApiResult<String> {
    if raw.contains('\0') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "a path cannot hold NUL",
        ));
    }
    if raw.starts_with('/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "absolute paths are refused: write the path from the volume's root, without a leading /",
        ));
    }
    if raw.split('/').any(|c| c == "..") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "`..` is not allowed in volume paths",
        ));
    }
    Ok(format!("/{raw}"))
}

fn err(m: String) -> ApiError {
    ApiError::from_message(m)
}

/// `GET /api/v1/files`: the root's listing.
pub async fn get_root(
    State(api): Shared,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    serve(&api.fs, "/".into(), "/", method, &headers).await
}

/// `GET /api/v1/files/PATH`.
pub async fn get_path(
    State(api): Shared,
    Path(raw): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let path = volume_path(&raw)?;
    serve(&api.fs, path.clone(), &path, method, &headers).await
}

/// A folder's listing or a file's bytes (`GET`/`HEAD`).
/// `shown`: the path the listing says it is (a snapshot's view has another).
pub(super) async fn serve(
    fs: &Arc<Fs>,
    path: String,
    shown: &str,
    method: Method,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let a = ops::resolve(fs, &path).await.map_err(err)?;
    match a.kind {
        Kind::Dir => {
            let entries = ops::list(fs, &path).await.map_err(err)?;
            Ok(Json(serde_json::json!({"path": shown, "entries": entries})).into_response())
        }
        Kind::File => download(fs, &path, &a, method, headers).await,
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong_kind",
            format!("{path}: not a file or directory (list its folder to see what it is)"),
        )),
    }
}

/// `GET /api/v1/stat/PATH`: one entry, as `cloudraid ls --json` shows it (a
/// folder too: its own entry, not its contents).
pub async fn stat(
    State(api): Shared,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Read).await?;
    let path = volume_path(raw.trim_end_matches('/'))?;
    let entry = ops::stat(&api.fs, &path).await.map_err(err)?;
    Ok(Json(entry).into_response())
}

/// A strong validator of a file's content as it is now.
fn etag(a: &Attr) -> String {
    let m = a
        .mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{:x}-{:x}-{:x}\"", a.ino, a.size, m)
}

/// The file's bytes (or the one range asked for).
async fn download(
    fs: &Arc<Fs>,
    path: &str,
    a: &Attr,
    method: Method,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let tag = etag(a);
    let modified = httpdate::fmt_http_date(a.mtime);
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut h = HeaderMap::new();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    h.insert(header::ETAG, value(&tag));
    h.insert(header::LAST_MODIFIED, value(&modified));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, value(mime.essence_str()));
    let given = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    if given(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    // A range is honoured unless If-Range names another version.
    let range = given(header::RANGE)
        .filter(|_| given(header::IF_RANGE).is_none_or(|v| v == tag || v == modified));
    let (status, from, to) = match range.map(http_range_header::parse_range_header) {
        Some(Ok(parsed)) => match parsed.validate(a.size) {
            Ok(ranges) if ranges.len() == 1 => {
                let r = &ranges[0];
                h.insert(
                    header::CONTENT_RANGE,
                    value(&format!("bytes {}-{}/{}", r.start(), r.end(), a.size)),
                );
                (StatusCode::PARTIAL_CONTENT, *r.start(), r.end() + 1)
            }
            // Several ranges: the whole file (a server may ignore Range).
            Ok(_) => (StatusCode::OK, 0, a.size),
            Err(_) => {
                h.insert(header::CONTENT_RANGE, value(&format!("bytes */{}", a.size)));
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    h,
                    Json(serde_json::json!({"error": {"code": "bad_range", "message": format!("{path}: the range asked for is outside the file's {} bytes", a.size)}})),
                )
                    .into_response());
            }
        },
        // Not a range this server reads: the whole file.
        _ => (StatusCode::OK, 0, a.size),
    };
    h.insert(header::CONTENT_LENGTH, value(&(to - from).to_string()));
    if method == Method::HEAD {
        return Ok((status, h).into_response());
    }
    let fh = fs
        .open(a.ino, libc::O_RDONLY)
        .await
        .map_err(|e| err(ops::fs_err(path, e)))?;
    let reader = Reader {
        fs: fs.clone(),
        fh: Some(fh),
        off: from,
        end: to,
    };
    let stream = futures::stream::unfold(reader, |mut r| async move {
        let fh = r.fh?;
        if r.off >= r.end {
            return None;
        }
        let n = (r.end - r.off).min(BLOCK) as u32;
        match r.fs.read(fh, r.off, n).await {
            Ok(v) if v.is_empty() => None,
            Ok(v) => {
                r.off += v.len() as u64;
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(v)), r))
            }
            Err(e) => {
                // The client sees the body end short of its length.
                tracing::warn!("download of inode {}: {e}", fh);
                r.off = r.end;
                Some((Err(std::io::Error::from_raw_os_error(e.0)), r))
            }
        }
    });
    Ok((status, h, Body::from_stream(stream)).into_response())
}

/// An open file being sent; closed when the body is done or dropped.
struct Reader {
    fs: Arc<Fs>,
    fh: Option<u64>,
    off: u64,
    end: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(fh) = self.fh.take() {
            let fs = self.fs.clone();
            tokio::spawn(async move {
                let _ = fs.release(fh).await;
            });
        }
    }
}

/// `PUT /api/v1/files/PATH`: the body becomes the file (missing folders are
/// made); what the path held is replaced once the whole body is stored.
pub async fn put_path(
    State(api): Shared,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let path = volume_path(&raw)?;
    let fs = &api.fs;
    let owner = ops::current_caller();
    let (dir, name) = match path.trim_end_matches('/').rsplit_once('/') {
        Some((d, n)) if !n.is_empty() => (if d.is_empty() { "/" } else { d }, n),
        _ => return Err(ApiError::bad_request("name a file to upload, not the root")),
    };
    if dir != "/" && ops::resolve(fs, dir).await.is_err() {
        let r = ops::mkdir(fs, &[dir.to_string()], true, owner)
            .await
            .map_err(err)?;
        if !r.errors.is_empty() {
            return Err(err(r.errors.join("; ")));
        }
    }
    let parent = ops::resolve(fs, dir).await.map_err(err)?;
    if parent.kind != Kind::Dir {
        return Err(err(ops::fs_err(dir, crate::fs::Errno::ENOTDIR)));
    }
    let existed = match fs.lookup(parent.ino, name.as_bytes()).await {
        Ok(a) if a.kind == Kind::Dir => {
            return Err(err(ops::fs_err(&path, crate::fs::Errno::EISDIR)));
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let blocks = body
        .into_data_stream()
        .map(|r| r.map_err(|e| format!("the upload stopped: {e}")));
    let (size, _) =
        ops::upload::store_stream(fs, parent.ino, name.as_bytes(), &path, 0o644, owner, blocks)
            .await
            .map_err(|e| match e {
                ops::upload::StreamError::Source(m) => {
                    ApiError::bad_request(format!("{path}: {m}; nothing was changed"))
                }
                ops::upload::StreamError::Volume(_, m) => err(m),
            })?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(serde_json::json!({"path": path, "size": size})),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    recursive: bool,
}

/// `DELETE /api/v1/files/PATH[?recursive=true]`.
pub async fn delete_path(
    State(api): Shared,
    Path(raw): Path<String>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let path = volume_path(&raw)?;
    if path.trim_matches('/').is_empty() {
        return Err(ApiError::bad_request("the root cannot be deleted"));
    }
    let r = ops::remove(
        &api.fs,
        std::slice::from_ref(&path),
        q.recursive,
        ops::current_caller(),
    )
    .await
    .map_err(err)?;
    if !r.errors.is_empty() {
        let m = r.errors.join("; ");
        if m.contains("use -r") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "is_directory",
                m.replace("use -r", "add ?recursive=true"),
            ));
        }
        return Err(err(m));
    }
    Ok(Json(r).into_response())
}

/// `POST /api/v1/dirs/PATH`: a new folder (with the folders above it).
pub async fn mkdir_path(
    State(api): Shared,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, TokenRole::Write).await?;
    let path = volume_path(&raw)?;
    let r = ops::mkdir(
        &api.fs,
        std::slice::from_ref(&path),
        true,
        ops::current_caller(),
    )
    .await
    .map_err(err)?;
    if !r.errors.is_empty() {
        return Err(err(r.errors.join("; ")));
    }
    Ok((StatusCode::CREATED, Json(r)).into_response())
}
