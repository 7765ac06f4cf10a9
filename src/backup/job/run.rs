//! Running a backup job: its plan (what a run would do, nothing changed) and
//! its run (sources stored under the destination, deletions mirrored,
//! databases dumped, a snapshot taken and the job's retention applied, the run
//! recorded in the history, hooks run and notifications sent).

use super::config::JobSection;
use super::walk::{self, Filter, Local, Pair};
use super::{history, hooks};
use crate::format::{JobRunRecord, Kind, RunResult};
use crate::front::ops::{self, ProgressFn, RemoveReport, Transfer, TransferReport};
use crate::fs::{now_nanos, Caller, Errno, Fs, SetAttr};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a run would do, as seen now.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Plan {
    pub job: String,
    pub destination: String,
    /// Entries (files, symlinks, special files) to store anew, to store again,
    /// to remove from the live tree (mirrored deletes) and left alone.
    pub new: u64,
    pub changed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Bytes of the new and changed files.
    pub bytes: u64,
    /// Whether files whose size or time differ were read and compared by chunk
    /// ids (`--dry-run`); a quick plan counts them as changed.
    pub thorough: bool,
    /// Thorough plans: bytes storing them would upload (chunks the volume holds
    /// nowhere yet); database dumps are not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bytes: Option<u64>,
    /// Databases each run dumps (`NAME.EXT` under `destination/databases`).
    pub databases: Vec<String>,
    /// Entries that could not be read.
    pub errors: Vec<String>,
}

impl Plan {
    /// The plan as printed before a run (or for `--dry-run`).
    pub fn render(&self) -> String {
        let mut s = format!(
            "plan for job {} -> {}: {} new, {} changed, {} to delete, {} unchanged; {} to store",
            self.job,
            self.destination,
            self.new,
            self.changed,
            self.deleted,
            self.unchanged,
            crate::config::human(self.bytes)
        );
        if let Some(u) = self.upload_bytes {
            s.push_str(&format!(
                ", {} to upload after deduplication",
                crate::config::human(u)
            ));
        }
        s.push('\n');
        if !self.databases.is_empty() {
            s.push_str(&format!(
                "databases to dump: {}\n",
                self.databases.join(", ")
            ));
        }
        for e in &self.errors {
            s.push_str(&format!("cannot read: {e}\n"));
        }
        s
    }
}

/// The volume path of `name` in `dir`.
fn join(dir: &str, name: &[u8]) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        String::from_utf8_lossy(name)
    )
}

/// A walk over a job's sources: planning (`transfer` is `None`) or running.
struct Walk<'a> {
    fs: &'a Fs,
    job: &'a JobSection,
    owner: Caller,
    thorough: bool,
    transfer: Option<Transfer<'a>>,
    plan: Plan,
    report: TransferReport,
    /// Keep the local owner of what is stored (when running as root).
    keep_owner: bool,
    /// Mirrored deletes, done after every source is stored: a file moved
    /// within the sources is then stored at its new path while its old one
    /// still holds its chunks, so nothing is uploaded again.
    deletes: Vec<Delete>,
}

/// A volume entry to remove at the end of a run.
struct Delete {
    parent: u64,
    name: Vec<u8>,
    ino: u64,
    kind: Kind,
    vpath: String,
}

/// What waits on the walk's stack.
enum Item {
    /// A directory to compare: local path, volume directory (`None` while
    /// planning one that does not exist yet), its volume path, and the
    /// (device, inode) of the local directories above it (symlink loops).
    Dir {
        local: PathBuf,
        vol: Option<u64>,
        vpath: String,
        above: Vec<(u64, u64)>,
    },
    /// A directory whose entries are all stored: its times are set last.
    Finish { ino: u64, md: std::fs::Metadata },
}

impl Walk<'_> {
    fn running(&self) -> bool {
        self.transfer.is_some()
    }

    fn error(&mut self, e: String) {
        self.plan.errors.push(e);
    }

    /// Walks one source into volume directory `dest` (`None`: it does not exist
    /// yet, while planning).
    async fn source(&mut self, src: &Path, dest: Option<u64>, dest_path: &str) {
        let Some(name) = JobSection::stored_name(src) else {
            return self.error(format!("{}: has no name to store it under", src.display()));
        };
        // The source itself is followed when it is a symlink: it was named.
        let root = match walk::local_entry(src.to_path_buf(), name.into_bytes(), true) {
            Ok(r) => r,
            Err(e) => return self.error(e),
        };
        let base = if root.is_dir() {
            root.path.clone()
        } else {
            src.parent().unwrap_or(Path::new("/")).to_path_buf()
        };
        let filter = match Filter::new(&base, self.job) {
            Ok(f) => f,
            Err(e) => return self.error(e),
        };
        let existing = match dest {
            Some(d) => match self.fs.lookup(d, &root.name).await {
                Ok(a) => Some((a.ino, a.kind)),
                Err(_) => None,
            },
            None => None,
        };
        let root_dev = root.md.dev();
        let mut stack = Vec::new();
        self.entry(root, existing, dest, dest_path, root_dev, &[], &mut stack)
            .await;
        while let Some(item) = stack.pop() {
            match item {
                Item::Finish { ino, md } => {
                    let _ = self.fs.setattr(ino, ops::times_of(&md)).await;
                }
                Item::Dir {
                    local,
                    vol,
                    vpath,
                    above,
                } => {
                    let mut errors = Vec::new();
                    let locals = walk::local_children(
                        &local,
                        &filter,
                        self.job.follow_symlinks,
                        &mut errors,
                    );
                    for e in errors {
                        self.error(e);
                    }
                    let locals = match locals {
                        Ok(l) => l,
                        Err(e) => {
                            // Unreadable: what the volume holds of it is kept.
                            self.error(e);
                            continue;
                        }
                    };
                    let vols = match vol {
                        Some(ino) => match ops::children(self.fs, ino).await {
                            Ok(v) => v,
                            Err(e) => {
                                self.error(ops::fs_err(&vpath, e));
                                continue;
                            }
                        },
                        None => Vec::new(),
                    };
                    for p in walk::pair(locals, vols) {
                        match p {
                            Pair::Gone(name, ino, kind) => {
                                if let Some(parent) = vol {
                                    self.gone(parent, &name, ino, kind, &vpath).await
                                }
                            }
                            Pair::Local(l, existing) => {
                                self.entry(*l, existing, vol, &vpath, root_dev, &above, &mut stack)
                                    .await
                            }
                        }
                    }
                }
            }
        }
    }

    /// One local entry, against what the volume has under its name.
    #[allow(clippy::too_many_arguments)]
    async fn entry(
        &mut self,
        l: Local,
        mut existing: Option<(u64, Kind)>,
        parent: Option<u64>,
        parent_path: &str,
        root_dev: u64,
        above: &[(u64, u64)],
        stack: &mut Vec<Item>,
    ) {
        let vpath = join(parent_path, &l.name);
        // A kind that changed (a directory became a file, or the reverse):
        // the old entry goes first.
        if let Some((ino, kind)) = existing {
            if (kind == Kind::Dir) != l.is_dir() {
                if !self.job.mirror_deletes {
                    return self.error(format!(
                        "{}: is a {} in the volume but not in the source, and mirror_deletes = false keeps it; remove it with `cloudraid rm -r`",
                        vpath,
                        if kind == Kind::Dir { "directory" } else { "file" }
                    ));
                }
                if !self.remove(parent, &l.name, ino, kind, &vpath).await {
                    return;
                }
                existing = None;
            }
        }
        if l.is_dir() {
            let id = (l.md.dev(), l.md.ino());
            if above.contains(&id) {
                return self.error(format!(
                    "{}: a symlink loop (it leads back to a directory above it); skipped",
                    l.path.display()
                ));
            }
            let vol = match (&self.transfer, parent) {
                (Some(t), Some(parent)) => {
                    let mut r = TransferReport::default();
                    match t.put_entry(&l.src, parent, &l.name, &mut r).await {
                        Ok(Some((ino, _))) => {
                            if r.dirs > 0 {
                                self.keep_owner_of(ino, &l.md).await;
                            }
                            Some(ino)
                        }
                        Ok(None) => None,
                        Err(e) => return self.error(e),
                    }
                }
                _ => existing.map(|(ino, _)| ino),
            };
            if let (true, Some(ino)) = (self.running(), vol) {
                stack.push(Item::Finish {
                    ino,
                    md: l.md.clone(),
                });
            }
            // A directory on another file system is stored, empty.
            if !(self.job.one_file_system && l.md.dev() != root_dev) {
                let mut above = above.to_vec();
                above.push(id);
                stack.push(Item::Dir {
                    local: l.path,
                    vol,
                    vpath,
                    above,
                });
            }
            return;
        }
        // Same size and time: unchanged, without reading it.
        if let Some((ino, Kind::File)) = existing {
            if l.md.is_file() && walk::same_size_and_time(self.fs, ino, &l.md).await {
                self.plan.unchanged += 1;
                return;
            }
        }
        let Some(t) = &self.transfer else {
            return self.plan_entry(&l, existing).await;
        };
        let Some(parent) = parent else { return };
        let stored = |r: &TransferReport| r.files + r.symlinks + r.specials;
        let mut r = TransferReport::default();
        match t.put_entry(&l.src, parent, &l.name, &mut r).await {
            Ok(_) if stored(&r) > 0 => {
                if existing.is_some() {
                    self.plan.changed += 1;
                } else {
                    self.plan.new += 1;
                }
                if let Ok(a) = self.fs.lookup(parent, &l.name).await {
                    self.keep_owner_of(a.ino, &l.md).await;
                }
            }
            // The same content, link target or node already.
            Ok(_) => self.plan.unchanged += 1,
            Err(e) => self.error(e),
        }
        self.report.files += r.files;
        self.report.bytes += r.bytes;
        self.report.bytes_uploaded += r.bytes_uploaded;
        self.report.chunks_uploaded += r.chunks_uploaded;
        self.report.chunks_deduplicated += r.chunks_deduplicated;
    }

    /// Planning a non-directory entry whose size or time differ (or that is new).
    async fn plan_entry(&mut self, l: &Local, existing: Option<(u64, Kind)>) {
        let fs = self.fs;
        match (existing, l.kind()) {
            (Some((ino, Kind::Symlink)), Kind::Symlink) => {
                let same = match (std::fs::read_link(&l.src), fs.readlink(ino).await) {
                    (Ok(local), Ok(theirs)) => {
                        use std::os::unix::ffi::OsStrExt;
                        local.as_os_str().as_bytes() == theirs.as_slice()
                    }
                    _ => false,
                };
                if same {
                    self.plan.unchanged += 1;
                    return;
                }
            }
            (Some((ino, Kind::File)), Kind::File) if self.thorough => {
                let same = match std::fs::File::open(&l.src) {
                    Ok(f) => fs.same_content(ino, f, l.md.len()).await.unwrap_or(false),
                    Err(e) => return self.error(format!("{}: {e}", l.src.display())),
                };
                if same {
                    self.plan.unchanged += 1;
                    return;
                }
            }
            (Some((ino, k)), lk) if k == lk && k != Kind::File => {
                // A special file: the same node when kind and device agree.
                if let Ok(a) = fs.getattr(ino).await {
                    if a.rdev == l.md.rdev() || !matches!(k, Kind::CharDevice | Kind::BlockDevice) {
                        self.plan.unchanged += 1;
                        return;
                    }
                }
            }
            _ => {}
        }
        if existing.is_some() {
            self.plan.changed += 1;
        } else {
            self.plan.new += 1;
        }
        if l.md.is_file() {
            self.plan.bytes += l.md.len();
            if self.thorough {
                let est = match std::fs::File::open(&l.src) {
                    Ok(f) => fs.upload_estimate(f, l.md.len()).await,
                    Err(e) => return self.error(format!("{}: {e}", l.src.display())),
                };
                match est {
                    Ok(n) => *self.plan.upload_bytes.get_or_insert(0) += n,
                    Err(e) => self.error(format!("{}: {e}", l.src.display())),
                }
            }
        }
    }

    /// A volume entry the source no longer has (or no longer takes).
    async fn gone(&mut self, parent: u64, name: &[u8], ino: u64, kind: Kind, vpath: &str) {
        if walk::is_leftover(name) {
            // What an interrupted run left: never the user's.
            if self.running() {
                let mut r = RemoveReport::default();
                let _ = ops::remove_at(
                    self.fs,
                    parent,
                    name,
                    &join(vpath, name),
                    true,
                    self.owner,
                    &mut r,
                )
                .await;
            }
            return;
        }
        if !self.job.mirror_deletes {
            return;
        }
        let vpath = join(vpath, name);
        if self.running() {
            self.deletes.push(Delete {
                parent,
                name: name.to_vec(),
                ino,
                kind,
                vpath,
            });
        } else {
            self.remove(Some(parent), name, ino, kind, &vpath).await;
        }
    }

    /// The mirrored deletes, once everything new is stored; an entry whose
    /// name meanwhile names something else is left alone.
    async fn finish_deletes(&mut self) {
        for d in std::mem::take(&mut self.deletes) {
            match self.fs.lookup(d.parent, &d.name).await {
                Ok(a) if a.ino == d.ino => {
                    self.remove(Some(d.parent), &d.name, d.ino, d.kind, &d.vpath)
                        .await;
                }
                _ => {}
            }
        }
    }

    /// Removes a volume entry (a directory with its contents); counts what goes.
    async fn remove(
        &mut self,
        parent: Option<u64>,
        name: &[u8],
        ino: u64,
        kind: Kind,
        vpath: &str,
    ) -> bool {
        if !self.running() {
            self.plan.deleted += if kind == Kind::Dir {
                walk::count_entries(self.fs, ino).await
            } else {
                1
            };
            return true;
        }
        let Some(parent) = parent else { return false };
        let mut r = RemoveReport::default();
        let res = ops::remove_at(self.fs, parent, name, vpath, true, self.owner, &mut r).await;
        self.plan.deleted += r.files;
        self.plan.errors.extend(r.errors);
        match res {
            Ok(()) => true,
            Err(e) => {
                self.error(e);
                false
            }
        }
    }

    /// Gives what was just stored the local entry's owner (when running as root).
    async fn keep_owner_of(&self, ino: u64, md: &std::fs::Metadata) {
        if self.keep_owner {
            let _ = self
                .fs
                .setattr(
                    ino,
                    SetAttr {
                        uid: Some(md.uid()),
                        gid: Some(md.gid()),
                        ..Default::default()
                    },
                )
                .await;
        }
    }
}

/// Checks that every source is there and readable: a run with one missing
/// changes nothing (mirrored deletes would otherwise empty its folder).
fn check_sources(job: &JobSection) -> Result<(), String> {
    for s in &job.sources {
        if let Err(e) = std::fs::metadata(s) {
            return Err(format!(
                "job {}: source {} cannot be read ({e}); nothing was changed in the volume — mount or restore it, or remove it from the job's sources",
                job.name,
                s.display()
            ));
        }
    }
    Ok(())
}

fn new_walk<'a>(fs: &'a Fs, job: &'a JobSection, owner: Caller, thorough: bool) -> Walk<'a> {
    Walk {
        fs,
        job,
        owner,
        thorough,
        transfer: None,
        plan: Plan {
            job: job.name.clone(),
            destination: job.destination.clone(),
            thorough,
            databases: job.databases.iter().map(|d| d.file_name()).collect(),
            ..Default::default()
        },
        report: TransferReport::default(),
        keep_owner: unsafe { libc::geteuid() } == 0,
        deletes: Vec::new(),
    }
}

/// What a run of `job` would do now; `thorough` also reads the files whose
/// size or time differ to compare their chunks and count the bytes to upload.
pub async fn plan(fs: &Fs, job: &JobSection, thorough: bool) -> Result<Plan, String> {
    check_sources(job)?;
    let mut w = new_walk(fs, job, ops::current_caller(), thorough);
    let dest = ops::resolve(fs, &job.destination).await.ok().map(|a| a.ino);
    for s in &job.sources {
        w.source(s, dest, &job.destination).await;
    }
    Ok(w.plan)
}

/// How a run was asked for.
pub struct RunRequest<'a> {
    pub trigger: &'a str,
    /// The volume's env file entries (hooks, databases, notifications).
    pub env: &'a [(String, String)],
    /// Bytes the progress counts up to (from the plan; 0 when unknown).
    pub total: u64,
}

/// The result of a run, for the CLI.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunOutcome {
    pub run: JobRunRecord,
    /// Snapshots the job's retention removed.
    #[serde(default)]
    pub forgotten: Vec<String>,
    /// Notifications that could not be delivered (the run's result stands).
    #[serde(default)]
    pub notify_errors: Vec<String>,
}

impl RunOutcome {
    pub fn render(&self) -> String {
        let r = &self.run;
        let mut s = format!(
            "job {}: {} — {} new, {} changed, {} deleted, {} unchanged; {} stored, {} uploaded; {} database(s) in {:.1}s\n",
            r.job,
            r.result.name(),
            r.new,
            r.changed,
            r.deleted,
            r.unchanged,
            crate::config::human(r.bytes),
            crate::config::human(r.uploaded_bytes),
            r.databases,
            r.duration_ms as f64 / 1000.0
        );
        if let Some(id) = &r.snapshot {
            s.push_str(&format!("snapshot {id}"));
            if !self.forgotten.is_empty() {
                s.push_str(&format!(
                    "; retention removed {} older one(s): {}",
                    self.forgotten.len(),
                    self.forgotten.join(", ")
                ));
            }
            s.push('\n');
        }
        for e in &r.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        for e in &self.notify_errors {
            s.push_str(&format!("warning: {e}\n"));
        }
        s
    }
}

/// One lock per job name: one run of a job at a time in this process.
static RUNNING: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>> =
    std::sync::Mutex::new(BTreeMap::new());

fn job_lock(job: &str) -> Arc<tokio::sync::Mutex<()>> {
    RUNNING
        .lock()
        .unwrap()
        .entry(job.to_string())
        .or_default()
        .clone()
}

/// Is a run of `job` going on in this process?
pub fn is_running(job: &str) -> bool {
    job_lock(job).try_lock().is_err()
}

/// Runs `job` now (hooks included), without recording it or notifying.
pub async fn run_unrecorded(
    fs: &Fs,
    job: &JobSection,
    req: &RunRequest<'_>,
    progress: ProgressFn<'_>,
) -> RunOutcome {
    let started = now_nanos();
    // One run of a job at a time in this process (a schedule, a watch and a
    // `backup run` through the daemon may meet): a run asked for waits for the
    // one running; a scheduled or watch run is skipped.
    let lock = job_lock(&job.name);
    let _running = match lock.try_lock() {
        Ok(g) => g,
        Err(_) if req.trigger == "manual" => {
            tracing::info!("job {}: waiting for the run in progress to end", job.name);
            lock.lock().await
        }
        Err(_) => {
            return RunOutcome {
                run: JobRunRecord {
                    job: job.name.clone(),
                    trigger: req.trigger.to_string(),
                    started,
                    result: RunResult::Skipped,
                    errors: vec![format!(
                        "job {} is already running; this run was skipped",
                        job.name
                    )],
                    ..Default::default()
                },
                forgotten: Vec::new(),
                notify_errors: Vec::new(),
            };
        }
    };
    let started = now_nanos();
    let clock = std::time::Instant::now();
    let mut out = RunOutcome {
        run: JobRunRecord {
            job: job.name.clone(),
            trigger: req.trigger.to_string(),
            started,
            ..Default::default()
        },
        forgotten: Vec::new(),
        notify_errors: Vec::new(),
    };
    let timeout = job.hook_timeout();
    let before = match &job.before {
        Some(cmd) => {
            hooks::run(
                cmd,
                timeout,
                &hooks::HookEnv {
                    job: &job.name,
                    hook: "before",
                    result: None,
                    error: None,
                },
            )
            .await
        }
        None => Ok(()),
    };
    match before {
        Err(e) => {
            out.run.result = RunResult::Skipped;
            out.run.errors.push(format!("{e}; the run was skipped"));
        }
        Ok(()) => execute(fs, job, req, progress, &mut out).await,
    }
    // after: when something was stored; on_error: when anything went wrong.
    let r = out.run.result;
    let first_error = out.run.errors.first().cloned();
    let hook = match r {
        RunResult::Success => job.after.as_ref().map(|c| ("after", c)),
        RunResult::Partial => job.after.as_ref().map(|c| ("after", c)),
        RunResult::Failed | RunResult::Skipped => None,
    };
    let mut hooks_to_run: Vec<(&str, &String)> = hook.into_iter().collect();
    if r != RunResult::Success {
        if let Some(c) = &job.on_error {
            hooks_to_run.push(("on_error", c));
        }
    }
    for (name, cmd) in hooks_to_run {
        let env = hooks::HookEnv {
            job: &job.name,
            hook: name,
            result: Some(r.name()),
            error: first_error.as_deref(),
        };
        if let Err(e) = hooks::run(cmd, timeout, &env).await {
            out.run.errors.push(e);
            if out.run.result == RunResult::Success {
                out.run.result = RunResult::Partial;
            }
        }
    }
    out.run.duration_ms = clock.elapsed().as_millis() as u64;
    out.run.errors = history::cap_errors(std::mem::take(&mut out.run.errors));
    out
}

/// Runs `job` now: the whole run, recorded in the history whatever its
/// result, then the notifications its result asks for.
pub async fn run(
    fs: &Fs,
    job: &JobSection,
    req: &RunRequest<'_>,
    progress: ProgressFn<'_>,
) -> RunOutcome {
    let mut out = run_unrecorded(fs, job, req, progress).await;
    if let Err(e) = history::record(fs, &out.run) {
        tracing::error!("{e}");
        out.run.errors.push(e);
    }
    // A notification that cannot be delivered is said, never fails the run.
    out.notify_errors = super::notify::send_all(job, &out.run, req.env).await;
    for e in &out.notify_errors {
        tracing::warn!("{e}");
    }
    out
}

/// The run itself, after the `before` hook: fills `out.run`.
async fn execute(
    fs: &Fs,
    job: &JobSection,
    req: &RunRequest<'_>,
    progress: ProgressFn<'_>,
    out: &mut RunOutcome,
) {
    let owner = ops::current_caller();
    if let Err(e) = check_sources(job) {
        out.run.result = RunResult::Failed;
        out.run.errors.push(e);
        return;
    }
    let dest = match ops::mkdir(fs, std::slice::from_ref(&job.destination), true, owner).await {
        Ok(r) if r.errors.is_empty() => ops::resolve(fs, &job.destination).await,
        Ok(r) => Err(r.errors.join("; ")),
        Err(e) => Err(e),
    };
    let dest = match dest {
        Ok(a) if a.kind == Kind::Dir => a.ino,
        Ok(_) => {
            out.run.result = RunResult::Failed;
            out.run
                .errors
                .push(ops::fs_err(&job.destination, Errno::ENOTDIR));
            return;
        }
        Err(e) => {
            out.run.result = RunResult::Failed;
            out.run
                .errors
                .push(format!("job {}: destination: {e}", job.name));
            return;
        }
    };
    let mut w = new_walk(fs, job, owner, false);
    w.transfer = Some(Transfer::new(fs, owner, req.total, progress));
    for s in &job.sources {
        w.source(s, Some(dest), &job.destination).await;
    }
    w.finish_deletes().await;
    let Walk { plan, report, .. } = w;
    let rec = &mut out.run;
    rec.new = plan.new;
    rec.changed = plan.changed;
    rec.deleted = plan.deleted;
    rec.unchanged = plan.unchanged;
    rec.bytes = report.bytes;
    rec.uploaded_bytes = report.bytes_uploaded;
    rec.errors.extend(plan.errors);
    for db in &job.databases {
        match super::databases::store_dump(fs, dest, db, req.env, owner).await {
            Ok((bytes, fresh)) => {
                rec.databases += 1;
                rec.bytes += bytes;
                rec.uploaded_bytes += fresh;
            }
            Err(e) => rec.errors.push(e),
        }
    }
    rec.result = if rec.errors.is_empty() {
        RunResult::Success
    } else {
        RunResult::Partial
    };
    // Make what was stored durable before the snapshot names it.
    if let Err(e) = fs.sync_all().await {
        rec.result = RunResult::Failed;
        rec.errors
            .push(format!("the index could not be made durable: {e}"));
        return;
    }
    if job.snapshot {
        snapshot_and_forget(fs, job, out).await;
    }
}

/// Ends a run with a snapshot of the destination tagged with the job's name,
/// then applies the job's retention to the job's snapshots.
async fn snapshot_and_forget(fs: &Fs, job: &JobSection, out: &mut RunOutcome) {
    let snap = fs
        .create_snapshot(crate::fs::snapshot::NewSnapshot {
            tags: vec![job.name.clone()],
            paths: vec![job.destination.clone()],
            origin: format!("job {}", job.name),
        })
        .await;
    match snap {
        Ok(info) => out.run.snapshot = Some(info.id),
        Err(e) => {
            out.run.result = RunResult::Partial;
            out.run
                .errors
                .push(format!("the run's snapshot could not be taken: {}", e.0));
            return;
        }
    }
    let policy = job.policy();
    if policy.is_empty() {
        return;
    }
    match crate::backup::protect::protected(fs) {
        Ok(false) => {}
        Ok(true) => {
            out.run.result = RunResult::Partial;
            out.run.errors.push(format!(
                "job {}: retention not applied: the volume's snapshots are protected (deleting them needs the passphrase); apply it with `cloudraid snapshot forget --tag {} ...` or remove keep_* from the job",
                job.name, job.name
            ));
            return;
        }
        Err(e) => {
            out.run.result = RunResult::Partial;
            out.run
                .errors
                .push(format!("retention not applied: {}", e.0));
            return;
        }
    }
    let req = crate::backup::forget::ForgetRequest {
        policy,
        only_tags: vec![job.name.clone()],
        dry_run: false,
        prune: false,
    };
    match crate::backup::forget::forget(fs, &req).await {
        Ok(r) => {
            out.forgotten = r
                .snapshots
                .iter()
                .filter(|f| !f.keep)
                .map(|f| f.id.clone())
                .collect()
        }
        Err(e) => {
            out.run.result = RunResult::Partial;
            out.run
                .errors
                .push(format!("retention not applied: {}", e.0));
        }
    }
}
