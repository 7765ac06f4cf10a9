//! The control socket: how commands reach a mounted volume's daemon.
//!
//! A Unix socket `control.sock` in the state dir (mode 0600). One request per
//! connection: a line of JSON, answered by a line of JSON. Later front ends (CLI
//! transfers, web dashboard) speak the same protocol.

use crate::backup::diff::{self, Side};
use crate::backup::forget::{self, ForgetRequest};
use crate::backup::protect::{self, Proof};
use crate::front::ops;
use crate::front::status::{self, StatusReport};
use crate::fs::restore::RestoreReport;
use crate::fs::snapshot::{Freed, NewSnapshot, SnapResult, SnapshotInfo};
use crate::fs::{Caller, Fs};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// What the volume stores, by layout, and the requests counted since the
    /// mount started: priced by `cloudraid cost` (a `cost::UsageReport`).
    Cost,
    /// Commit every open file and make the index durable.
    Sync,
    /// Check the shards of `sample` percent of the chunks.
    Scrub {
        sample: f64,
    },
    /// Rebuild missing and damaged shards.
    Repair,
    /// Re-place stored files by the rules of the config at `config` (absolute).
    PolicyApply {
        config: PathBuf,
        dry_run: bool,
    },
    /// The entries of a directory (or one file), as `ops::list`.
    Ls {
        path: String,
    },
    /// Copy local files into the volume (paths are absolute).
    Put {
        sources: Vec<PathBuf>,
        dest: String,
    },
    /// Copy files out of the volume to a local path (absolute).
    Get {
        paths: Vec<String>,
        dest: PathBuf,
    },
    Rm {
        paths: Vec<String>,
        recursive: bool,
    },
    Mkdir {
        paths: Vec<String>,
        parents: bool,
    },
    Du {
        path: String,
    },
    /// Ask for the thaws files in an archive class need to be read.
    Thaw {
        paths: Vec<String>,
        /// `expedited`, `standard` or `bulk`.
        tier: String,
        days: u32,
    },
    /// Check the index against itself and the backends; fix what can be fixed.
    Fsck {
        repair: bool,
        grace_secs: u64,
    },
    /// Take a snapshot of the tree (or of `paths`), as committed now.
    SnapshotCreate {
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        paths: Vec<String>,
    },
    /// Every snapshot, oldest first, and whether they are protected.
    SnapshotList,
    /// Delete snapshots (ids, unique prefixes or `latest`); all are checked first.
    SnapshotDelete {
        ids: Vec<String>,
        #[serde(default)]
        proof: Option<Proof>,
    },
    /// What changed from snapshot `a` to snapshot `b` (or `live`).
    SnapshotDiff {
        a: String,
        b: String,
    },
    /// Copy paths of a snapshot to the local path `dest` (absolute), or bring
    /// them back into the live tree (`in_place`).
    Restore {
        snapshot: String,
        paths: Vec<String>,
        #[serde(default)]
        dest: Option<PathBuf>,
        #[serde(default)]
        in_place: bool,
        #[serde(default)]
        overwrite: bool,
    },
    /// Apply a retention policy to the snapshots.
    Forget {
        request: ForgetRequest,
        #[serde(default)]
        proof: Option<Proof>,
    },
    /// What a run of backup job `job` of the config at `config` (absolute)
    /// would do (`backup run --dry-run`); `thorough` also counts the bytes to upload.
    BackupPlan {
        config: PathBuf,
        job: String,
        #[serde(default)]
        thorough: bool,
    },
    /// Run backup job `job` now (`backup run`); `total`: bytes the progress counts to.
    BackupRun {
        config: PathBuf,
        job: String,
        #[serde(default)]
        total: u64,
        /// What started it ("manual" from the CLI, "schedule" from `backup daemon`).
        #[serde(default)]
        trigger: Option<String>,
    },
    /// The runs of one job (every job's without one), oldest first.
    BackupHistory {
        #[serde(default)]
        job: Option<String>,
    },
    /// The event history from `since` (nanoseconds since the epoch; all without it).
    Events {
        #[serde(default)]
        since: Option<i64>,
    },
    /// A new API token (its secret is in the answer, and nowhere else).
    TokenCreate {
        name: String,
        role: crate::format::TokenRole,
    },
    /// The API tokens (names, roles, creation times; never secrets).
    TokenList,
    /// Revoke the API token named `name`.
    TokenRevoke {
        name: String,
    },
    /// `passwd` rewrote the volume's key on these backends: its event.
    KeyChanged {
        backends: Vec<String>,
    },
    /// Turn snapshot protection on or off (off needs the proof).
    SnapshotProtect {
        on: bool,
        #[serde(default)]
        proof: Option<Proof>,
    },
}

/// The answer to `snapshot_list`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SnapshotListing {
    pub snapshots: Vec<SnapshotInfo>,
    pub protected: bool,
}

/// The answer to `snapshot_delete`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeleteReport {
    pub deleted: Vec<String>,
    /// What only they held (plaintext and stored bytes of those chunks).
    pub freed: Freed,
}

/// The answer to `restore`: one of the two reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub snapshot: String,
    /// `in_place`: what came back into the live tree.
    pub in_place: Option<RestoreReport>,
    /// To a local folder: what was written there.
    pub copied: Option<ops::TransferReport>,
}

/// The answer to `snapshot_protect`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProtectReport {
    pub protected: bool,
    /// Whether the setting changed (it may already have been so).
    pub changed: bool,
}

/// Sent before the response by long operations (put, get), a few times a second.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProgressLine {
    pub progress: (u64, u64),
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub error: Option<String>,
    pub status: Option<StatusReport>,
    #[serde(default)]
    pub scrub: Option<crate::fs::scrub::ScrubReport>,
    #[serde(default)]
    pub repair: Option<crate::fs::scrub::RepairReport>,
    /// The result of ls, put, get, rm, mkdir and du (their `ops` report).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Backends the daemon has marked down (named in the CLI's messages).
    #[serde(default)]
    pub down: Vec<String>,
    /// Refused because the snapshots are protected and the request had no proof.
    #[serde(default)]
    pub needs_proof: bool,
    pub pid: u32,
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Binds the control socket at `path` (mode 0600), replacing a stale one. Bound
/// before the daemon says it is ready, so that a command right after `mount`
/// returns finds it.
pub fn listen(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until the task is dropped.
pub async fn serve(listener: UnixListener, fs: Arc<Fs>, mountpoint: String) -> std::io::Result<()> {
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

fn data<T: Serialize>(r: Result<T, String>) -> Response {
    let mut resp = Response::default();
    match r.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string())) {
        Ok(v) => {
            resp.ok = true;
            resp.data = Some(v);
        }
        Err(e) => resp.error = Some(e),
    }
    resp
}

/// Carries out one request on `fs`: for the mount daemon, and for the CLI when
/// the volume is not mounted. `mountpoint` is set when running in the daemon.
pub async fn execute(
    fs: &Arc<Fs>,
    req: Request,
    owner: Caller,
    mountpoint: Option<&str>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Response {
    let mut resp = Response::default();
    match req {
        Request::Status => match status::gather(fs.volume(), fs.index()).await {
            Ok(mut s) => {
                s.mountpoint = mountpoint.map(str::to_string);
                if mountpoint.is_some() {
                    s.pid = Some(std::process::id());
                }
                s.cache = Some(fs.volume().cache.stats());
                let (n, b) = crate::fs::commit_all_stats(fs);
                s.pending_files = n;
                s.pending_bytes = b;
                s.local_disk = fs.local_disk();
                resp.ok = true;
                resp.status = Some(s);
            }
            Err(e) => resp.error = Some(e),
        },
        Request::Cost => {
            let vol = fs.volume();
            resp = data(
                crate::policy::cost::usage_of(fs.index(), vol.slots.len()).map(|usage| {
                    crate::policy::cost::UsageReport {
                        usage,
                        requests: mountpoint.map(|_| {
                            vol.health
                                .iter()
                                .map(|h| {
                                    let s = h.snapshot();
                                    crate::policy::cost::RequestCount {
                                        put: s.puts,
                                        get: s.gets,
                                    }
                                })
                                .collect()
                        }),
                    }
                }),
            )
        }
        Request::Scrub { sample } => {
            match crate::fs::scrub::scrub(fs.volume(), fs.index(), sample, progress).await {
                Ok(r) => {
                    crate::fs::scrub::record_scrub(fs.index(), &r);
                    resp.ok = true;
                    resp.scrub = Some(r);
                }
                Err(e) => resp.error = Some(e),
            }
        }
        Request::Repair => {
            match crate::fs::scrub::repair(fs.volume(), fs.index(), progress).await {
                Ok(r) => {
                    crate::fs::scrub::record_repair(fs.index(), &r);
                    resp.ok = true;
                    resp.repair = Some(r);
                }
                Err(e) => resp.error = Some(e),
            }
        }
        Request::PolicyApply { config, dry_run } => {
            resp = data(crate::fs::placement::apply_config(fs, &config, dry_run, progress).await)
        }
        Request::Sync => match fs.sync_all().await {
            Ok(()) => resp.ok = true,
            Err(e) => resp.error = Some(format!("sync failed: {e}")),
        },
        Request::Ls { path } => resp = data(ops::list(fs, &path).await),
        Request::Put { sources, dest } => {
            resp = data(ops::put(fs, &sources, &dest, owner, progress).await)
        }
        Request::Get { paths, dest } => resp = data(ops::get(fs, &paths, &dest, progress).await),
        Request::Rm { paths, recursive } => {
            resp = data(ops::remove(fs, &paths, recursive, owner).await)
        }
        Request::Mkdir { paths, parents } => {
            resp = data(ops::mkdir(fs, &paths, parents, owner).await)
        }
        Request::Du { path } => resp = data(ops::du(fs, &path).await),
        Request::Thaw { paths, tier, days } => {
            resp = data(ops::thaw(fs, &paths, &tier, days).await)
        }
        Request::Fsck { repair, grace_secs } => {
            resp = data(
                fs.fsck(repair, std::time::Duration::from_secs(grace_secs))
                    .await
                    .map_err(|e| format!("fsck stopped: {e}")),
            )
        }
        Request::SnapshotCreate { tags, paths } => {
            resp = snap_data(
                fs.create_snapshot(NewSnapshot {
                    tags,
                    paths,
                    origin: "cli".into(),
                })
                .await,
            )
        }
        Request::SnapshotList => {
            resp = snap_data((|| {
                Ok(SnapshotListing {
                    snapshots: fs.list_snapshots()?,
                    protected: protect::protected(fs)?,
                })
            })())
        }
        Request::SnapshotDelete { ids, proof } => {
            // Unknown names are said before the proof is asked for.
            resp = match resolve_ids(fs, &ids) {
                Err(e) => snap_data::<()>(Err(e)),
                Ok(ids) => match protect::check(fs, proof.as_ref(), "deleting snapshots").await {
                    Err(e) => refused(e),
                    Ok(()) => snap_data(delete(fs, &ids).await),
                },
            }
        }
        Request::SnapshotDiff { a, b } => {
            resp = snap_data(blocking(|| {
                let side = |name: &str| -> SnapResult<Side> {
                    Ok(Side::Snapshot(fs.find_snapshot(name)?.0))
                };
                let sa = if a == "live" {
                    return Err(crate::fs::snapshot::SnapError(
                        "the live tree can only be the second side: cloudraid snapshot diff SNAPSHOT live".into(),
                    ));
                } else {
                    side(&a)?
                };
                let sb = if b == "live" { Side::Live } else { side(&b)? };
                diff::diff(fs, sa, sb)
            }))
        }
        Request::Restore {
            snapshot,
            paths,
            dest,
            in_place,
            overwrite,
        } => resp = restore(fs, &snapshot, &paths, dest, in_place, overwrite, progress).await,
        Request::Forget { request, proof } => {
            let guarded = !request.dry_run && !request.policy.is_empty();
            let allowed = if guarded {
                protect::check(fs, proof.as_ref(), "forget").await
            } else {
                Ok(())
            };
            resp = match allowed {
                Err(e) => refused(e),
                Ok(()) => snap_data(forget::forget(fs, &request).await),
            }
        }
        Request::BackupPlan {
            config,
            job,
            thorough,
        } => {
            resp = data(match job_of(fs, &config, &job) {
                Ok((job, _)) => crate::backup::job::run::plan(fs, &job, thorough).await,
                Err(e) => Err(e),
            })
        }
        Request::BackupRun {
            config,
            job,
            total,
            trigger,
        } => {
            resp = data(match job_of(fs, &config, &job) {
                Ok((job, env)) => {
                    let req = crate::backup::job::run::RunRequest {
                        trigger: trigger.as_deref().unwrap_or("manual"),
                        env: &env,
                        total,
                    };
                    Ok(crate::backup::job::run::run(fs, &job, &req, progress).await)
                }
                Err(e) => Err(e),
            })
        }
        Request::BackupHistory { job } => {
            resp = data(blocking(|| {
                crate::backup::job::history::runs(fs, job.as_deref())
            }))
        }
        Request::Events { since } => {
            resp = data(blocking(|| crate::meta::events::list(fs.index(), since)))
        }
        Request::TokenCreate { name, role } => {
            resp = data(blocking(|| {
                crate::front::api::tokens::create(fs, &name, role)
            }))
        }
        Request::TokenList => resp = data(blocking(|| crate::front::api::tokens::list(fs))),
        Request::TokenRevoke { name } => {
            resp = data(blocking(|| crate::front::api::tokens::revoke(fs, &name)))
        }
        Request::KeyChanged { backends } => {
            crate::meta::events::record(
                fs.index(),
                "key_changed",
                crate::format::Severity::Info,
                "",
                &format!(
                    "the volume's passphrase (key wrapping) was changed on {} backend(s): {}",
                    backends.len(),
                    backends.join(", ")
                ),
            );
            resp = data(Ok::<_, String>(()))
        }
        Request::SnapshotProtect { on, proof } => {
            let allowed = if on {
                Ok(())
            } else {
                protect::check(fs, proof.as_ref(), "turning protection off").await
            };
            resp = match allowed {
                Err(e) => refused(e),
                Ok(()) => snap_data(
                    async {
                        let was = protect::protected(fs)?;
                        fs.set_snapshot_protection(on).await?;
                        Ok(ProtectReport {
                            protected: on,
                            changed: was != on,
                        })
                    }
                    .await,
                ),
            }
        }
    }
    resp
}

/// Job `name` of the config at `path`, and the config's env file entries; the
/// config must be this volume's.
fn job_of(
    fs: &Fs,
    path: &Path,
    name: &str,
) -> Result<
    (
        crate::backup::job::config::JobSection,
        Vec<(String, String)>,
    ),
    String,
> {
    let config = crate::config::Config::load(path)?;
    if config.volume.name != fs.volume().name {
        return Err(format!(
            "{} is the config of volume {}, not of the mounted volume {}: give this volume's config",
            path.display(),
            config.volume.name,
            fs.volume().name
        ));
    }
    let job = config.job(name)?.clone();
    Ok((job, config.env_vars()?))
}

fn snap_data<T: Serialize>(r: SnapResult<T>) -> Response {
    data(r.map_err(|e| e.0))
}

/// A refusal of a protected operation (`needs_proof` when no proof came with it).
fn refused((error, needs_proof): (String, bool)) -> Response {
    Response {
        error: Some(error),
        needs_proof,
        ..Default::default()
    }
}

/// Runs a synchronous walk of the index without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The snapshots named (ids, prefixes, `latest`), each once; one unknown name
/// is an error.
fn resolve_ids(fs: &Fs, names: &[String]) -> SnapResult<Vec<u32>> {
    if names.is_empty() {
        return Err(crate::fs::snapshot::SnapError(
            "no snapshot named: give one or more ids (cloudraid snapshot list shows them)".into(),
        ));
    }
    let mut ids = Vec::new();
    for n in names {
        let id = fs.find_snapshot(n)?.0;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Deletes snapshots, all checked to exist before.
async fn delete(fs: &Fs, ids: &[u32]) -> SnapResult<DeleteReport> {
    let freed = fs.release_estimate(ids)?;
    fs.delete_snapshots(ids).await?;
    Ok(DeleteReport {
        deleted: ids
            .iter()
            .map(|i| crate::format::snapshot_id_hex(*i))
            .collect(),
        freed,
    })
}

async fn restore(
    fs: &Arc<Fs>,
    snapshot: &str,
    paths: &[String],
    dest: Option<PathBuf>,
    in_place: bool,
    overwrite: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Response {
    let found = fs.find_snapshot(snapshot).and_then(|(id, rec)| {
        // Every path must be in the snapshot (a clear message before anything).
        for p in paths {
            fs.snapshot_entry(id, &rec, &crate::fs::snapshot::path_components(p)?)?;
        }
        Ok(id)
    });
    let id = match found {
        Ok(id) => id,
        Err(e) => return snap_data::<()>(Err(e)),
    };
    let hex = crate::format::snapshot_id_hex(id);
    if paths.is_empty() {
        return data::<()>(Err(
            "nothing to restore: give one or more paths of the snapshot (/ for everything)".into(),
        ));
    }
    if in_place {
        return snap_data(
            fs.restore_in_place(id, paths, overwrite, progress)
                .await
                .map(|r| RestoreOutcome {
                    snapshot: hex.clone(),
                    in_place: Some(r),
                    copied: None,
                }),
        );
    }
    let Some(dest) = dest else {
        return data::<()>(Err(
            "restore needs a local destination, or --in-place to restore into the volume".into(),
        ));
    };
    let view: Vec<String> = paths
        .iter()
        .map(|p| format!("/.snapshots/{hex}/{}", p.trim_start_matches('/')))
        .collect();
    data(
        ops::get_with(fs, &view, &dest, overwrite, progress)
            .await
            .map(|r| RestoreOutcome {
                snapshot: hex.clone(),
                in_place: None,
                copied: Some(r),
            }),
    )
}

async fn handle(stream: UnixStream, fs: Arc<Fs>, mountpoint: String) -> std::io::Result<()> {
    // New files belong to whoever asks (the socket only admits the daemon's user
    // and root). Without the peer's credentials nobody is trusted.
    let cred = stream.peer_cred()?;
    let owner = Caller {
        uid: cred.uid(),
        gid: cred.gid(),
    };
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let done = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    // The operation runs in its own task: a client that goes away (Ctrl-C) does
    // not cut it short half-way; it finishes and cleans up after itself.
    let mut work = {
        let (done, total, fs) = (done.clone(), total.clone(), fs.clone());
        tokio::spawn(async move {
            let progress = |d: u64, t: u64| {
                done.store(d, Ordering::Relaxed);
                total.store(t, Ordering::Relaxed);
            };
            match serde_json::from_str::<Request>(&line) {
                Err(e) => Response {
                    error: Some(format!("bad request: {e}")),
                    ..Default::default()
                },
                Ok(req) => execute(&fs, req, owner, Some(&mountpoint), &progress).await,
            }
        })
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    let mut sent = (0, 0);
    let mut resp = loop {
        tokio::select! {
            r = &mut work => break r.unwrap_or_else(|e| Response {
                error: Some(format!("the operation failed in the daemon: {e}")),
                ..Default::default()
            }),
            _ = tick.tick() => {
                let now = (done.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
                if now != sent && now.1 > 0 {
                    sent = now;
                    let mut out = serde_json::to_vec(&ProgressLine { progress: now }).unwrap_or_default();
                    out.push(b'\n');
                    // The client is gone: the operation goes on without it.
                    w.write_all(&out).await?;
                }
            }
        }
    };
    resp.pid = std::process::id();
    resp.down = fs.volume().down_names();
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Sends one request to the daemon of the volume whose state dir is given.
/// `Ok(None)` means no daemon is listening (the volume is not mounted).
pub async fn request(state_dir: &Path, req: &Request) -> Result<Option<Response>, String> {
    request_with_progress(state_dir, req, &|_, _| {}).await
}

/// As [`request`], passing the progress lines of long operations to `progress`.
pub async fn request_with_progress(
    state_dir: &Path,
    req: &Request,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Option<Response>, String> {
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
    let mut lines = BufReader::new(r).lines();
    loop {
        let answer = lines
            .next_line()
            .await
            .map_err(|e| format!("control socket: {e}"))?
            .ok_or("the mount daemon closed the connection without answering (see mount.log in the state dir)")?;
        if let Ok(p) = serde_json::from_str::<ProgressLine>(&answer) {
            progress(p.progress.0, p.progress.1);
            continue;
        }
        let resp: Response = serde_json::from_str(&answer)
            .map_err(|e| format!("the mount daemon gave an unreadable answer: {e}"))?;
        return Ok(Some(resp));
    }
}
