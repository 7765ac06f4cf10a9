//! `get`: copying files, directories, symlinks and special files out of the volume.

use super::{
    children, components, display, fs_err, join, resolve, temp_name, ProgressFn, Transfer,
    TransferReport,
};
use crate::format::Kind;
use crate::fs::{to_nanos, Attr, Caller, Errno, Fs};
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// Creates the FIFO, socket or device `a` at `local` with mknod(2) (as `cp -a`
/// and `rsync -a` do; devices need root), with its mode and times. An existing
/// `local` is replaced: the node is made beside it and renamed over it.
fn make_special(a: &Attr, local: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    let mknod = |p: &Path| -> std::io::Result<()> {
        let c = CString::new(p.as_os_str().as_bytes())?;
        let mode = a.kind.mode_bits() | (a.perm as u32 & 0o777);
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::mknod(c.as_ptr(), mode, a.rdev as libc::dev_t) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let finish = |p: &Path| -> std::io::Result<()> {
        // Path-based: opening a FIFO would block, a socket cannot be opened.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(a.perm as u32))?;
        let c = CString::new(p.as_os_str().as_bytes())?;
        let ts = |t: std::time::SystemTime| {
            let n = to_nanos(t);
            libc::timespec {
                tv_sec: n.div_euclid(1_000_000_000) as libc::time_t,
                tv_nsec: n.rem_euclid(1_000_000_000) as _,
            }
        };
        let times = [ts(a.atime), ts(a.mtime)];
        // SAFETY: c is a valid path, times an array of two timespecs.
        if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    match mknod(local) {
        Ok(()) => finish(local),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let name = local.file_name().unwrap_or_default().as_bytes();
            let tmp = loop {
                let tmp =
                    local.with_file_name(std::ffi::OsStr::from_bytes(&temp_name(name, "get")));
                match mknod(&tmp) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    r => break r.map(|_| tmp)?,
                }
            };
            let placed = finish(&tmp).and_then(|_| std::fs::rename(&tmp, local));
            if placed.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            placed
        }
        Err(e) => Err(e),
    }
}

/// `get`: copies files, directories and symlinks from the volume to `dest` on
/// the local filesystem, restoring modes and times; existing local files are
/// replaced.
pub async fn get(
    fs: &Fs,
    paths: &[String],
    dest: &Path,
    progress: ProgressFn<'_>,
) -> Result<TransferReport, String> {
    get_with(fs, paths, dest, true, progress).await
}

/// As [`get`]; without `replace`, nothing is written if any entry would replace
/// an existing local one (existing directories are merged): the error names it
/// (`restore` without `--overwrite`). Entries of one file with several links
/// (the same inode met again) are made hard links of the first one written.
pub async fn get_with(
    fs: &Fs,
    paths: &[String],
    dest: &Path,
    replace: bool,
    progress: ProgressFn<'_>,
) -> Result<TransferReport, String> {
    if paths.is_empty() {
        return Err("nothing to get".into());
    }
    let mut plan = Vec::new();
    for p in paths {
        plan.push((p.clone(), resolve(fs, p).await?));
    }
    let dest_is_dir = std::fs::metadata(dest).map(|m| m.is_dir()).unwrap_or(false);
    let into_dir = dest_is_dir || paths.len() > 1;
    let mut jobs = Vec::new();
    if into_dir {
        for (p, a) in plan {
            let name = components(&p)?
                .last()
                .copied()
                .unwrap_or("root")
                .to_string();
            jobs.push((p, a, dest.join(name)));
        }
    } else {
        let (p, a) = plan.pop().expect("one path");
        jobs.push((p, a, dest.to_path_buf()));
    }
    let mut total = 0;
    let mut clashes = Vec::new();
    let mut seen = HashSet::new();
    for (p, a, local) in &jobs {
        total += walk_plan(fs, a, local, !replace, &mut seen, &mut clashes)
            .await
            .map_err(|e| fs_err(p, e))?;
    }
    clashes.sort();
    if let Some(first) = clashes.first() {
        let others = match clashes.len() - 1 {
            0 => String::new(),
            1 => " and 1 other local entry".into(),
            n => format!(" and {n} other local entries"),
        };
        return Err(format!(
            "{}{others} already exist{}: nothing was written (--overwrite replaces them; existing directories are merged)",
            first.display(),
            if clashes.len() == 1 { "s" } else { "" }
        ));
    }
    if into_dir && !dest_is_dir {
        std::fs::create_dir(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let t = Transfer {
        fs,
        owner: Caller::default(),
        total,
        done: AtomicU64::new(0),
        progress,
    };
    let mut report = TransferReport::default();
    // Files with several links: inode → the local file written for it.
    let mut links: HashMap<u64, PathBuf> = HashMap::new();
    for (p, a, local) in jobs {
        let mut stack = vec![(p, a, local)];
        let mut dirs_done = Vec::new();
        while let Some((p, a, local)) = stack.pop() {
            if a.kind == Kind::File && a.nlink > 1 {
                if let Some(first) = links.get(&a.ino) {
                    match hard_link(first, &local) {
                        Ok(()) => {
                            report.hard_links += 1;
                            t.advance(0);
                        }
                        Err(e) => report.errors.push(e),
                    }
                    continue;
                }
            }
            match t.get_entry(&p, &a, &local, &mut report).await {
                Ok(true) => {
                    match children(fs, a.ino).await {
                        Ok(kids) => {
                            for (name, ino, _) in kids.into_iter().rev() {
                                let here = local.join(std::ffi::OsStr::from_bytes(&name));
                                match fs.getattr(ino).await {
                                    Ok(ka) => stack.push((join(&p, &name), ka, here)),
                                    Err(e) => report.errors.push(fs_err(&join(&p, &name), e)),
                                }
                            }
                        }
                        Err(e) => report.errors.push(fs_err(&p, e)),
                    }
                    dirs_done.push((local, a));
                }
                Ok(false) => {
                    if a.kind == Kind::File && a.nlink > 1 {
                        links.insert(a.ino, local);
                    }
                }
                Err(e) => report.errors.push(e),
            }
        }
        for (local, a) in dirs_done.into_iter().rev() {
            if let Err(e) = restore_meta(&local, &a) {
                report.errors.push(e);
            }
        }
    }
    Ok(report)
}

/// Makes `local` a hard link of `first` (beside it, then renamed over it).
fn hard_link(first: &Path, local: &Path) -> Result<(), String> {
    let lerr = |e: std::io::Error| format!("{}: {e}", local.display());
    match std::fs::hard_link(first, local) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let name = local.file_name().unwrap_or_default().as_bytes();
            let tmp = local.with_file_name(std::ffi::OsStr::from_bytes(&temp_name(name, "get")));
            std::fs::hard_link(first, &tmp).map_err(lerr)?;
            std::fs::rename(&tmp, local).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                lerr(e)
            })
        }
        r => r.map_err(lerr),
    }
}

/// Bytes of the files below (and at) `a` (a file with several links counted
/// once), and, with `check`, the local paths the copy would replace: any
/// existing entry but a directory where a directory goes.
async fn walk_plan(
    fs: &Fs,
    a: &Attr,
    local: &Path,
    check: bool,
    seen: &mut HashSet<u64>,
    clashes: &mut Vec<PathBuf>,
) -> Result<u64, Errno> {
    let mut total = 0;
    // (entry, where it goes, whether its local directory exists: below one
    // that does not, nothing can clash)
    let mut stack = vec![(a.clone(), local.to_path_buf(), check)];
    while let Some((a, local, look)) = stack.pop() {
        let existing = if look {
            std::fs::symlink_metadata(&local).ok()
        } else {
            None
        };
        if let Some(m) = &existing {
            if !(m.is_dir() && a.kind == Kind::Dir) {
                clashes.push(local.clone());
            }
        }
        match a.kind {
            Kind::File if a.nlink <= 1 || seen.insert(a.ino) => total += a.size,
            Kind::Dir => {
                let look = existing.is_some();
                for (name, ino, _) in children(fs, a.ino).await? {
                    let here = local.join(std::ffi::OsStr::from_bytes(&name));
                    stack.push((fs.getattr(ino).await?, here, look));
                }
            }
            _ => {}
        }
    }
    Ok(total)
}

/// Sets the mode and times of directory `local` from `a`.
fn restore_meta(local: &Path, a: &Attr) -> Result<(), String> {
    let f = std::fs::File::open(local).map_err(|e| format!("{}: {e}", local.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(a.perm as u32))
        .map_err(|e| format!("{}: {e}", local.display()))?;
    f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(a.atime)
            .set_modified(a.mtime),
    )
    .map_err(|e| format!("{}: {e}", local.display()))
}

impl Transfer<'_> {
    /// Writes one entry; true for a directory, whose entries the caller walks.
    async fn get_entry(
        &self,
        path: &str,
        a: &Attr,
        local: &Path,
        report: &mut TransferReport,
    ) -> Result<bool, String> {
        let fs = self.fs;
        let lerr = |e: std::io::Error| format!("{}: {e}", local.display());
        match a.kind {
            Kind::Dir => {
                match std::fs::symlink_metadata(local) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(lerr(std::io::Error::from_raw_os_error(libc::EEXIST))),
                    Err(_) => {
                        std::fs::create_dir(local).map_err(lerr)?;
                        // Writable while its entries are written; the mode is set last.
                        std::fs::set_permissions(local, std::fs::Permissions::from_mode(0o700))
                            .map_err(lerr)?;
                        report.dirs += 1;
                    }
                }
                Ok(true)
            }
            Kind::Symlink => {
                let target = fs.readlink(a.ino).await.map_err(|e| fs_err(path, e))?;
                let target = std::ffi::OsStr::from_bytes(&target);
                match std::os::unix::fs::symlink(target, local) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Made beside it, then renamed over it.
                        let name = local.file_name().unwrap_or_default().as_bytes();
                        let tmp = local
                            .with_file_name(std::ffi::OsStr::from_bytes(&temp_name(name, "get")));
                        std::os::unix::fs::symlink(target, &tmp).map_err(lerr)?;
                        if let Err(e) = std::fs::rename(&tmp, local) {
                            let _ = std::fs::remove_file(&tmp);
                            return Err(lerr(e));
                        }
                    }
                    r => r.map_err(lerr)?,
                }
                report.symlinks += 1;
                Ok(false)
            }
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                make_special(a, local).map_err(lerr)?;
                report.specials += 1;
                Ok(false)
            }
            Kind::File => {
                let fh = fs
                    .open(a.ino, libc::O_RDONLY)
                    .await
                    .map_err(|e| fs_err(path, e))?;
                let copied = self.copy_out(fh, a, local, path).await;
                let _ = fs.release(fh).await;
                copied?;
                report.files += 1;
                report.bytes += a.size;
                Ok(false)
            }
        }
    }

    /// Writes file `fh` (attributes `a`) to `local`: into a new file beside it,
    /// with its mode and times, fsynced, then renamed over `local`. A failure
    /// leaves `local` as it was; a read-only `local` is replaced all the same.
    async fn copy_out(&self, fh: u64, a: &Attr, local: &Path, path: &str) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let lerr = |e: std::io::Error| format!("{}: {e}", local.display());
        let name = local
            .file_name()
            .ok_or_else(|| format!("{}: has no file name", local.display()))?;
        let (tmp, out) = loop {
            let tmp = local.with_file_name(std::ffi::OsStr::from_bytes(&temp_name(
                name.as_bytes(),
                "get",
            )));
            match std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
            {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                r => break (tmp, r.map_err(lerr)?),
            }
        };
        let written = async {
            // Data extents are written at their offsets; holes are skipped and
            // stay holes in the local file (set_len makes the tail one).
            const STEP: u64 = 1 << 20;
            let mut off = 0;
            while off < a.size {
                let Some(ext) = self
                    .fs
                    .data_extent(fh, off)
                    .await
                    .map_err(|e| fs_err(path, e))?
                else {
                    break;
                };
                self.advance(ext.start.saturating_sub(off));
                off = ext.start.max(off);
                while off < ext.end {
                    let data = self
                        .fs
                        .read(fh, off, STEP.min(ext.end - off) as u32)
                        .await
                        .map_err(|e| match (e, self.fs.thaw_note(a.ino)) {
                            // In an archive class: the read asked for its thaw.
                            (Errno::EAGAIN, Some(note)) => note,
                            (e, _) => fs_err(path, e),
                        })?;
                    if data.is_empty() {
                        return Err(format!(
                            "{}: ended at byte {off} of {}",
                            display(path),
                            a.size
                        ));
                    }
                    out.write_all_at(&data, off).map_err(lerr)?;
                    off += data.len() as u64;
                    self.advance(data.len() as u64);
                }
            }
            self.advance(a.size.saturating_sub(off));
            out.set_len(a.size).map_err(lerr)?;
            out.set_permissions(std::fs::Permissions::from_mode(a.perm as u32))
                .map_err(lerr)?;
            out.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(a.atime)
                    .set_modified(a.mtime),
            )
            .map_err(lerr)?;
            out.sync_all().map_err(lerr)?;
            std::fs::rename(&tmp, local).map_err(lerr)
        }
        .await;
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}
