//! `put`: copying local files, directories, symlinks and special files into the volume.

use super::{fs_err, resolve, resolve_parent, temp_name, ProgressFn, Transfer, TransferReport};
use crate::format::Kind;
use crate::fs::{to_nanos, Attr, Caller, Errno, Fs, SetAttr, SetTime};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// Local bytes under `paths` (regular files only), for progress totals.
fn local_size(paths: &[PathBuf]) -> u64 {
    fn walk(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(md) if md.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(md) if md.is_file() => md.len(),
            _ => 0,
        }
    }
    paths.iter().map(|p| walk(p)).sum()
}

/// The name a local file is stored under: its own, byte for byte.
fn base_name(p: &Path) -> Result<Vec<u8>, String> {
    let name = p
        .file_name()
        .ok_or_else(|| format!("{}: has no file name to copy under", p.display()))?;
    Ok(name.as_bytes().to_vec())
}

/// Where each source goes: into `dest` when it is a directory (or when there
/// are several sources, creating it), else as `dest` itself.
async fn targets(
    fs: &Fs,
    sources: &[String],
    dest: &str,
    dest_is_dir: impl FnOnce(&Attr) -> bool,
) -> Result<Option<u64>, String> {
    match resolve(fs, dest).await {
        Ok(a) if dest_is_dir(&a) => Ok(Some(a.ino)),
        Ok(_) if sources.len() > 1 => Err(fs_err(dest, Errno::ENOTDIR)),
        Ok(_) => Ok(None),
        Err(_) => Ok(None),
    }
}

/// `put`: copies local files, directories and symlinks into the volume, under
/// `dest`. Files whose content the destination already holds (same size, same
/// chunk hashes) are left alone; chunks the volume holds anywhere are not
/// uploaded again. Each file is stored under a temporary name and renamed over
/// its destination once complete, so a reader sees the old or the new file.
pub async fn put(
    fs: &Fs,
    sources: &[PathBuf],
    dest: &str,
    owner: Caller,
    progress: ProgressFn<'_>,
) -> Result<TransferReport, String> {
    if sources.is_empty() {
        return Err("nothing to put".into());
    }
    for s in sources {
        std::fs::symlink_metadata(s).map_err(|e| format!("{}: {e}", s.display()))?;
    }
    let names: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
    let into = targets(fs, &names, dest, |a| a.kind == Kind::Dir).await?;
    let mut plan = Vec::new();
    match into {
        Some(dir) => {
            for s in sources {
                plan.push((s.clone(), dir, base_name(s)?));
            }
        }
        None if sources.len() > 1 => {
            let (parent, name) = resolve_parent(fs, dest).await?;
            let d = fs
                .mkdir(parent.ino, name.as_bytes(), 0o755, owner)
                .await
                .map_err(|e| fs_err(dest, e))?;
            fs.forget_name(parent.ino, name.as_bytes()).await;
            for s in sources {
                plan.push((s.clone(), d.ino, base_name(s)?));
            }
        }
        None => {
            let (parent, name) = resolve_parent(fs, dest).await?;
            plan.push((sources[0].clone(), parent.ino, name.into_bytes()));
        }
    }
    let t = Transfer {
        fs,
        owner,
        total: local_size(sources),
        done: AtomicU64::new(0),
        progress,
    };
    let mut report = TransferReport::default();
    for (src, parent, name) in plan {
        t.put_one(&src, parent, &name, &mut report).await;
    }
    Ok(report)
}

impl Transfer<'_> {
    async fn put_one(&self, src: &Path, parent: u64, name: &[u8], report: &mut TransferReport) {
        // Depth-first without recursion of futures: a stack of (local, parent, name).
        let mut stack = vec![(src.to_path_buf(), parent, name.to_vec())];
        let mut dirs_done = Vec::new();
        while let Some((src, parent, name)) = stack.pop() {
            match self.put_entry(&src, parent, &name, report).await {
                Ok(Some((dir, md))) => {
                    let mut kids: Vec<PathBuf> = match std::fs::read_dir(&src) {
                        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
                        Err(e) => {
                            report.errors.push(format!("{}: {e}", src.display()));
                            continue;
                        }
                    };
                    kids.sort();
                    for k in kids.into_iter().rev() {
                        match base_name(&k) {
                            Ok(n) => stack.push((k, dir, n)),
                            Err(e) => report.errors.push(e),
                        }
                    }
                    dirs_done.push((dir, md));
                }
                Ok(None) => {}
                Err(e) => report.errors.push(e),
            }
        }
        // Directory times last: storing their entries changed them.
        for (dir, md) in dirs_done.into_iter().rev() {
            let _ = self.fs.setattr(dir, times_of(&md)).await;
        }
    }

    /// Stores one entry; for a directory returns its inode so that the caller
    /// walks its entries.
    pub(crate) async fn put_entry(
        &self,
        src: &Path,
        parent: u64,
        name: &[u8],
        report: &mut TransferReport,
    ) -> Result<Option<(u64, std::fs::Metadata)>, String> {
        let fs = self.fs;
        let md = std::fs::symlink_metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
        let shown = src.display().to_string();
        let err = |e: Errno| format!("{shown} -> {}", fs_err(&String::from_utf8_lossy(name), e));
        let existing = match fs.lookup(parent, name).await {
            Ok(a) => Some(a),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(err(e)),
        };
        let ft = md.file_type();
        if ft.is_dir() {
            let ino = match existing {
                Some(a) if a.kind == Kind::Dir => a.ino,
                Some(_) => return Err(err(Errno::EEXIST)),
                None => {
                    let a = fs
                        .mkdir(parent, name, md.mode() & 0o7777, self.owner)
                        .await
                        .map_err(err)?;
                    fs.forget_name(parent, name).await;
                    report.dirs += 1;
                    a.ino
                }
            };
            return Ok(Some((ino, md)));
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(src).map_err(|e| format!("{shown}: {e}"))?;
            let target = target.as_os_str().as_bytes();
            match existing {
                Some(a) if a.kind == Kind::Dir => return Err(err(Errno::EISDIR)),
                Some(a)
                    if a.kind == Kind::Symlink
                        && fs.readlink(a.ino).await.map_err(err)? == target =>
                {
                    return Ok(None);
                }
                Some(_) => {
                    // Made beside it, then renamed over it: never missing.
                    let tmp = loop {
                        let tmp = temp_name(name, "put");
                        match fs.symlink(parent, &tmp, target, self.owner).await {
                            Err(Errno::EEXIST) => continue,
                            r => break r.map(|_| tmp).map_err(err)?,
                        }
                    };
                    if let Err(e) = fs
                        .rename_as(parent, &tmp, parent, name, 0, self.owner)
                        .await
                    {
                        let _ = fs.unlink(parent, &tmp).await;
                        return Err(err(e));
                    }
                }
                None => {
                    fs.symlink(parent, name, target, self.owner)
                        .await
                        .map_err(err)?;
                }
            }
            fs.forget_name(parent, name).await;
            report.symlinks += 1;
            return Ok(None);
        }
        if let Some(kind) = special_kind(&ft) {
            let rdev = match kind {
                Kind::CharDevice | Kind::BlockDevice => md.rdev(),
                _ => 0,
            };
            let mode = kind.mode_bits() | (md.mode() & 0o7777);
            let made = match existing {
                Some(a) if a.kind == Kind::Dir => return Err(err(Errno::EISDIR)),
                // The same node already: left as it is, like an unchanged file.
                Some(a) if a.kind == kind && a.rdev == rdev => return Ok(None),
                Some(_) => {
                    // Made beside it, then renamed over it: never missing.
                    let (tmp, a) = loop {
                        let tmp = temp_name(name, "put");
                        match fs.mknod(parent, &tmp, mode, rdev, self.owner).await {
                            Err(Errno::EEXIST) => continue,
                            r => break (tmp, r.map_err(err)?),
                        }
                    };
                    let placed = match fs.setattr(a.ino, times_of(&md)).await {
                        Ok(_) => {
                            fs.rename_as(parent, &tmp, parent, name, 0, self.owner)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = placed {
                        let _ = fs.unlink(parent, &tmp).await;
                        return Err(err(e));
                    }
                    a
                }
                None => {
                    let a = fs
                        .mknod(parent, name, mode, rdev, self.owner)
                        .await
                        .map_err(err)?;
                    fs.setattr(a.ino, times_of(&md)).await.map_err(err)?;
                    a
                }
            };
            debug_assert_eq!(made.kind, kind);
            fs.forget_name(parent, name).await;
            report.specials += 1;
            return Ok(None);
        }
        if !ft.is_file() {
            return Err(format!(
                "{shown}: skipped: not a file type that can be stored"
            ));
        }
        // A file that changes while it is stored is tried again a few times,
        // then reported: never stored half-written.
        let mut attempt = 1;
        loop {
            match self
                .store_file(src, parent, name, existing.as_ref(), report)
                .await
            {
                Err(Stored::Changed(e)) if attempt < CHANGED_TRIES => {
                    tracing::debug!("{e} (try {attempt} of {CHANGED_TRIES})");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64))
                        .await;
                    attempt += 1;
                }
                Err(Stored::Changed(e) | Stored::Failed(e)) => return Err(e),
                Ok(()) => return Ok(None),
            }
        }
    }

    /// Stores regular file `src` as `name` in `parent` (`existing`: what the
    /// name holds now), unless it holds the same content already.
    async fn store_file(
        &self,
        src: &Path,
        parent: u64,
        name: &[u8],
        existing: Option<&Attr>,
        report: &mut TransferReport,
    ) -> Result<(), Stored> {
        let fs = self.fs;
        let shown = src.display().to_string();
        let failed = |e: std::io::Error| Stored::Failed(format!("{shown}: {e}"));
        let err = |e: Errno| {
            Stored::Failed(format!(
                "{shown} -> {}",
                fs_err(&String::from_utf8_lossy(name), e)
            ))
        };
        // What was opened is what gets stored; its size and time are checked
        // again at the end, so a file changed meanwhile is not stored torn.
        let file = std::fs::File::open(src).map_err(failed)?;
        let reader = || file.try_clone().map_err(failed);
        let md = file.metadata().map_err(failed)?;
        if !md.is_file() {
            return Err(Stored::Changed(format!(
                "{shown}: replaced while being read; put it again"
            )));
        }
        let size = md.len();
        if let Some(a) = existing {
            if a.kind == Kind::Dir {
                return Err(err(Errno::EISDIR));
            }
            if a.kind == Kind::File && fs.same_content(a.ino, reader()?, size).await.map_err(err)? {
                report.unchanged += 1;
                report.unchanged_bytes += size;
                self.advance(size);
                return Ok(());
            }
        }
        // Stored under a temporary name of its own (concurrent puts of the same
        // file do not meet), then renamed over the destination.
        let (tmp, a) = loop {
            let tmp = temp_name(name, "put");
            match fs
                .mknod_file(parent, &tmp, md.mode() & 0o7777, self.owner)
                .await
            {
                // Left by an earlier daemon with the same process id.
                Err(Errno::EEXIST) => continue,
                r => break (tmp, r.map_err(err)?),
            }
        };
        let uploaded = AtomicU64::new(0);
        let uploaded_bytes = AtomicU64::new(0);
        let reused = AtomicU64::new(0);
        let done_before = self.done.load(Ordering::Relaxed);
        let stored = async {
            fs.import(
                a.ino,
                (parent, name),
                reader()?,
                size,
                to_nanos(md.modified().unwrap_or(UNIX_EPOCH)),
                &|n, fresh| {
                    if fresh {
                        uploaded_bytes.fetch_add(n, Ordering::Relaxed);
                        &uploaded
                    } else {
                        &reused
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    self.advance(n);
                },
            )
            .await
            .map_err(err)?;
            let now = file.metadata().map_err(failed)?;
            if now.len() != size || now.modified().ok() != md.modified().ok() {
                return Err(Stored::Changed(format!(
                    "{shown}: changed while being stored, so it was not stored; put it again once it is still"
                )));
            }
            fs.setattr(a.ino, times_of(&md)).await.map_err(err)?;
            fs.rename_as(parent, &tmp, parent, name, 0, self.owner)
                .await
                .map_err(err)
        }
        .await;
        if stored.is_err() {
            let _ = fs.unlink(parent, &tmp).await;
            // What this try counted is counted again by the next one.
            self.done.store(done_before, Ordering::Relaxed);
        }
        stored?;
        fs.forget_name(parent, name).await;
        report.files += 1;
        report.bytes += size;
        report.chunks_uploaded += uploaded.into_inner();
        report.chunks_deduplicated += reused.into_inner();
        report.bytes_uploaded += uploaded_bytes.into_inner();
        Ok(())
    }
}

/// How often a file that changes while it is stored is tried.
const CHANGED_TRIES: u32 = 3;

/// Why a file was not stored: it changed while read (worth another try), or
/// anything else.
enum Stored {
    Changed(String),
    Failed(String),
}

/// The kind of a local FIFO, socket or device; `None` for other file types.
fn special_kind(ft: &std::fs::FileType) -> Option<Kind> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        Some(Kind::Fifo)
    } else if ft.is_socket() {
        Some(Kind::Socket)
    } else if ft.is_char_device() {
        Some(Kind::CharDevice)
    } else if ft.is_block_device() {
        Some(Kind::BlockDevice)
    } else {
        None
    }
}

/// The access and modification times of a local file, to set in the volume.
pub(crate) fn times_of(md: &std::fs::Metadata) -> SetAttr {
    SetAttr {
        atime: md.accessed().ok().map(SetTime::At),
        mtime: md.modified().ok().map(SetTime::At),
        ..Default::default()
    }
}
