//! The control socket: how commands reach a mounted volume's daemon.
//!
//! A Unix socket `control.sock` in the state dir (mode 0600). One request per
//! connection: a line of JSON, answered by a line of JSON. Later front ends (CLI
//! transfers, web dashboard) speak the same protocol.

use crate::fs::Fs;
use crate::status::{self, StatusReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Commit every open file and make the index durable.
    Sync,
    /// Check the shards of `sample` percent of the chunks.
    Scrub {
        sample: f64,
    },
    /// Rebuild missing and damaged shards.
    Repair,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub error: Option<String>,
    pub status: Option<StatusReport>,
    #[serde(default)]
    pub scrub: Option<crate::scrub::ScrubReport>,
    #[serde(default)]
    pub repair: Option<crate::scrub::RepairReport>,
    pub pid: u32,
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Serves requests until the task is dropped.
pub async fn serve(path: PathBuf, fs: Arc<Fs>, mountpoint: String) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let fs = fs.clone();
        let mp = mountpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, fs, mp).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

async fn handle(stream: UnixStream, fs: Arc<Fs>, mountpoint: String) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let mut resp = Response {
        pid: std::process::id(),
        ..Default::default()
    };
    match serde_json::from_str::<Request>(&line) {
        Err(e) => resp.error = Some(format!("bad request: {e}")),
        Ok(Request::Status) => match status::gather(fs.volume(), fs.index()).await {
            Ok(mut s) => {
                s.mountpoint = Some(mountpoint);
                s.pid = Some(std::process::id());
                s.cache = Some(fs.volume().cache.stats());
                let (n, b) = crate::fs::commit_all_stats(&fs);
                s.pending_files = n;
                s.pending_bytes = b;
                resp.ok = true;
                resp.status = Some(s);
            }
            Err(e) => resp.error = Some(e),
        },
        Ok(Request::Scrub { sample }) => {
            match crate::scrub::scrub(fs.volume(), fs.index(), sample, &|_, _| {}).await {
                Ok(r) => {
                    resp.ok = true;
                    resp.scrub = Some(r);
                }
                Err(e) => resp.error = Some(e),
            }
        }
        Ok(Request::Repair) => {
            match crate::scrub::repair(fs.volume(), fs.index(), &|_, _| {}).await {
                Ok(r) => {
                    resp.ok = true;
                    resp.repair = Some(r);
                }
                Err(e) => resp.error = Some(e),
            }
        }
        Ok(Request::Sync) => match fs.sync_all().await {
            Ok(()) => resp.ok = true,
            Err(e) => resp.error = Some(format!("sync failed: {e}")),
        },
    }
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Sends one request to the daemon of the volume whose state dir is given.
/// `Ok(None)` means no daemon is listening (the volume is not mounted).
pub async fn request(state_dir: &Path, req: &Request) -> Result<Option<Response>, String> {
    let path = socket_path(state_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the mount daemon at {}: {e}",
                path.display()
            ))
        }
    };
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    w.write_all(&line)
        .await
        .map_err(|e| format!("control socket: {e}"))?;
    let mut answer = String::new();
    BufReader::new(r)
        .read_line(&mut answer)
        .await
        .map_err(|e| format!("control socket: {e}"))?;
    let resp: Response = serde_json::from_str(&answer)
        .map_err(|e| format!("the mount daemon gave an unreadable answer: {e}"))?;
    Ok(Some(resp))
}
