//! Whole-file and whole-tree operations for front ends without a mount: `ls`,
//! `put`, `get`, `rm`, `mkdir` and `du`.
//!
//! They run over the filesystem core, so they behave the same whether the CLI
//! opened the volume itself or the mount daemon runs them for it (through the
//! control socket). Paths inside the volume are written `/dir/file` (the leading
//! slash is optional). Local files are read and written by the process running
//! the operation. Changes made while mounted are pushed out of the kernel's
//! caches, so the mount shows them at once.

use crate::format::{ChunkId, ChunkRef, Kind};
use crate::fs::{to_nanos, Attr, Caller, Errno, Fs, SetAttr, SetTime};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// Progress of a transfer: (bytes done, bytes in all).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// How well a file survives losing backends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// Every shard of every chunk is stored on a backend that answers.
    Full,
    /// Some chunk lacks `missing` of its shards (not stored, or on a backend that
    /// is down) but is still readable.
    Degraded { missing: usize },
    /// Some chunk has fewer than k shards reachable: unreadable until backends return.
    Unreadable { missing: usize },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListEntry {
    /// The name; when it is not valid UTF-8, with U+FFFD in place of the bad
    /// bytes, and the exact bytes in `name_hex`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
    pub kind: Kind,
    pub mode: u16,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub chunks: usize,
    pub redundancy: Redundancy,
    /// Symlink target (as `name`: lossy when not UTF-8, exact in `target_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Character and block devices: the device number (`st_rdev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

/// Bytes as a string for JSON: the string itself when valid UTF-8; else the
/// lossy string and the exact bytes in hex.
fn text_and_hex(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

/// The exact bytes of a JSON string with its `_hex` twin.
fn exact_bytes(text: &str, hex: Option<&String>) -> Vec<u8> {
    hex.and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

/// A name for the terminal, quoted like GNU `ls --quoting-style=shell-escape`
/// (its default on a terminal): shown as is when made only of letters, digits
/// and `%+,-./:=@_`; else in single quotes, with control characters, invisible
/// or direction-changing characters and bytes that are not UTF-8 written as
/// `$'\n'`, `$'\033'`, `$'\377'`. The result, pasted into a shell, is the exact
/// name: no two names look the same, and none moves the cursor or changes
/// colours.
pub fn shell_escape(name: &[u8]) -> String {
    fn plain(c: char) -> bool {
        c.is_ascii_alphanumeric() || "%+,-./:=@_".contains(c)
    }
    fn hidden(c: char) -> bool {
        c.is_control()
            || (!c.is_ascii() && c.is_whitespace())
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }
    let all_plain = name.utf8_chunks().all(|c| {
        c.invalid().is_empty()
            && c.valid()
                .chars()
                .all(|ch| plain(ch) || (!ch.is_ascii() && !hidden(ch)))
    });
    if !name.is_empty() && all_plain {
        return String::from_utf8_lossy(name).into_owned();
    }
    // Runs of printable characters in '...', runs of the others in $'...'.
    #[derive(PartialEq, Clone, Copy)]
    enum Quote {
        None,
        Single,
        Dollar,
    }
    fn switch(out: &mut String, now: &mut Quote, to: Quote) {
        if *now != to {
            if *now != Quote::None {
                out.push('\'');
            }
            match to {
                Quote::Single => out.push('\''),
                Quote::Dollar => out.push_str("$'"),
                Quote::None => {}
            }
            *now = to;
        }
    }
    fn escaped(out: &mut String, now: &mut Quote, bytes: &[u8]) {
        switch(out, now, Quote::Dollar);
        for b in bytes {
            match b {
                b'\n' => out.push_str("\\n"),
                b'\t' => out.push_str("\\t"),
                b'\r' => out.push_str("\\r"),
                _ => out.push_str(&format!("\\{b:03o}")),
            }
        }
    }
    let mut out = String::new();
    let mut quoted = Quote::None;
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if hidden(c) {
                let mut buf = [0u8; 4];
                escaped(&mut out, &mut quoted, c.encode_utf8(&mut buf).as_bytes());
            } else if c == '\'' {
                // Outside the quotes: \'
                switch(&mut out, &mut quoted, Quote::None);
                out.push_str("\\'");
            } else {
                switch(&mut out, &mut quoted, Quote::Single);
                out.push(c);
            }
        }
        if !chunk.invalid().is_empty() {
            escaped(&mut out, &mut quoted, chunk.invalid());
        }
    }
    switch(&mut out, &mut quoted, Quote::None);
    if out.is_empty() {
        out.push_str("''");
    }
    out
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferReport {
    /// Files stored or written.
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices (type and device number; no data).
    #[serde(default)]
    pub specials: u64,
    /// Files left alone because the destination already held the same content.
    pub unchanged: u64,
    pub unchanged_bytes: u64,
    /// Put: chunks uploaded now, and chunks the volume already held (deduplicated).
    pub chunks_uploaded: u64,
    pub chunks_deduplicated: u64,
    /// What could not be done, one line each; the rest was done.
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DuReport {
    pub path: String,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices.
    #[serde(default)]
    pub specials: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Distinct chunks the files use, their plaintext size, and what their shards
    /// take on the backends (all shards, headers included).
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub stored_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoveReport {
    pub files: u64,
    pub dirs: u64,
    pub errors: Vec<String>,
}

/// A volume path: its components, checked.
fn components(path: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(format!(
                "{path}: `..` is not allowed in volume paths; write the path from the volume's root"
            ));
        }
        out.push(c);
    }
    Ok(out)
}

fn display(path: &str) -> String {
    format!("/{}", components(path).unwrap_or_default().join("/"))
}

fn fs_err(path: &str, e: Errno) -> String {
    let what = match e {
        Errno::ENOENT => "no such file or directory in the volume".to_string(),
        Errno::ENOTDIR => "not a directory".to_string(),
        Errno::EISDIR => "is a directory".to_string(),
        Errno::EEXIST => "already exists".to_string(),
        Errno::ENOTEMPTY => "directory not empty (use -r to remove it with its contents)".into(),
        Errno::EROFS => "the volume is mounted read-only".to_string(),
        Errno::EIO => {
            "input/output error: too few backends answer (see `cloudraid status`)".to_string()
        }
        e => std::io::Error::from_raw_os_error(e.0).to_string(),
    };
    format!("{}: {what}", display(path))
}

/// Attributes of the inode at `path`.
pub async fn resolve(fs: &Fs, path: &str) -> Result<Attr, String> {
    let mut attr = fs
        .getattr(crate::index::ROOT_INO)
        .await
        .map_err(|e| fs_err("/", e))?;
    for c in components(path)? {
        if attr.kind != Kind::Dir {
            return Err(fs_err(path, Errno::ENOTDIR));
        }
        attr = fs
            .lookup(attr.ino, c.as_bytes())
            .await
            .map_err(|e| fs_err(path, e))?;
    }
    Ok(attr)
}

/// The directory holding `path` and the last component's name.
async fn resolve_parent(fs: &Fs, path: &str) -> Result<(Attr, String), String> {
    let comps = components(path)?;
    let Some((name, dir)) = comps.split_last() else {
        return Err("/ is the volume's root; name something inside it".into());
    };
    let parent = resolve(fs, &dir.join("/")).await?;
    if parent.kind != Kind::Dir {
        return Err(fs_err(&dir.join("/"), Errno::ENOTDIR));
    }
    Ok((parent, name.to_string()))
}

/// A volume path for messages (names that are not UTF-8 shown lossily).
fn join(dir: &str, name: &[u8]) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        String::from_utf8_lossy(name)
    )
}

/// Every entry of directory `ino` but `.` and `..`. Names are bytes, as stored:
/// not every name is UTF-8.
async fn children(fs: &Fs, ino: u64) -> Result<Vec<(Vec<u8>, u64, Kind)>, Errno> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let batch = fs.readdir(ino, offset, 512).await?;
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        for e in batch {
            if e.name != b"." && e.name != b".." {
                out.push((e.name, e.ino, e.kind));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// How many shards of the worst chunk of `ino` are missing or on backends down now.
fn redundancy(fs: &Fs, ino: u64) -> Result<(usize, Redundancy), Errno> {
    let vol = fs.volume();
    let down: HashSet<u16> = vol.down_slots().into_iter().map(|i| i as u16).collect();
    let chunks = fs.file_chunks(ino)?;
    let mut worst = 0;
    let mut m = vol.layout.m;
    let mut seen = HashSet::new();
    for c in &chunks {
        let ChunkRef::Data { id, .. } = c else {
            continue;
        };
        if !seen.insert(*id) {
            continue;
        }
        let Some(rec) = fs.index().chunk(id)? else {
            continue;
        };
        m = rec.m as usize;
        let recorded: HashSet<u8> = fs
            .index()
            .degraded(id)?
            .map(|d| d.missing.into_iter().collect())
            .unwrap_or_default();
        let missing = rec
            .placement
            .iter()
            .enumerate()
            .filter(|(i, slot)| recorded.contains(&(*i as u8)) || down.contains(slot))
            .count();
        worst = worst.max(missing);
    }
    let r = match worst {
        0 => Redundancy::Full,
        n if n <= m => Redundancy::Degraded { missing: n },
        n => Redundancy::Unreadable { missing: n },
    };
    Ok((chunks.len(), r))
}

async fn entry(fs: &Fs, name: &[u8], attr: &Attr) -> Result<ListEntry, Errno> {
    let (chunks, redundancy) = if attr.kind == Kind::File {
        redundancy(fs, attr.ino)?
    } else {
        (0, Redundancy::Full)
    };
    let (target, target_hex) = if attr.kind == Kind::Symlink {
        let (t, hex) = text_and_hex(&fs.readlink(attr.ino).await?);
        (Some(t), hex)
    } else {
        (None, None)
    };
    // What is stored: an open file's uncommitted changes are not, yet.
    let stored = match attr.kind {
        Kind::File => fs.index().inode(attr.ino)?,
        _ => None,
    };
    let (size, mtime) = stored.map_or((attr.size, attr.mtime), |r| {
        (r.size, crate::fs::from_nanos(r.mtime))
    });
    let (name, name_hex) = text_and_hex(name);
    Ok(ListEntry {
        name,
        name_hex,
        kind: attr.kind,
        mode: attr.perm,
        size,
        mtime: mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        chunks,
        redundancy,
        target,
        rdev: matches!(attr.kind, Kind::CharDevice | Kind::BlockDevice).then_some(attr.rdev),
        target_hex,
    })
}

/// `ls`: the entries of directory `path`, or the one entry of a file.
pub async fn list(fs: &Fs, path: &str) -> Result<Vec<ListEntry>, String> {
    let attr = resolve(fs, path).await?;
    let err = |e| fs_err(path, e);
    if attr.kind != Kind::Dir {
        let name = components(path)?.last().copied().unwrap_or("/");
        return Ok(vec![entry(fs, name.as_bytes(), &attr)
            .await
            .map_err(err)?]);
    }
    let mut out = Vec::new();
    for (name, ino, _) in children(fs, attr.ino).await.map_err(err)? {
        let a = match fs.getattr(ino).await {
            Ok(a) => a,
            Err(Errno::ENOENT) => continue, // removed meanwhile
            Err(e) => return Err(err(e)),
        };
        out.push(entry(fs, &name, &a).await.map_err(err)?);
    }
    Ok(out)
}

/// Renders `ls` entries as a table.
pub fn render_list(entries: &[ListEntry]) -> String {
    let mut out = format!(
        "{:<10} {:>12} {:<16} {:>6}  {:<24} {}\n",
        "MODE", "SIZE", "MODIFIED", "CHUNKS", "REDUNDANCY", "NAME"
    );
    for e in entries {
        let mut mode = String::from(e.kind.letter());
        // setuid, setgid and sticky show in the execute column, as with ls -l.
        for (shift, special, letter) in [(6u16, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
            let bits = (e.mode >> shift) & 7;
            mode.push(if bits & 4 != 0 { 'r' } else { '-' });
            mode.push(if bits & 2 != 0 { 'w' } else { '-' });
            mode.push(match (bits & 1 != 0, e.mode & special != 0) {
                (true, false) => 'x',
                (false, false) => '-',
                (true, true) => letter,
                (false, true) => letter.to_ascii_uppercase(),
            });
        }
        let redundancy = match (&e.kind, &e.redundancy) {
            (Kind::File, Redundancy::Full) => "full".to_string(),
            (Kind::File, Redundancy::Degraded { missing }) => {
                format!("degraded ({missing} shard{} missing)", plural(*missing))
            }
            (Kind::File, Redundancy::Unreadable { missing }) => {
                format!("UNREADABLE ({missing} missing)")
            }
            _ => "-".to_string(),
        };
        // Escaped: a name never reaches the terminal raw (escape sequences,
        // newlines splitting a row).
        let shown = shell_escape(&exact_bytes(&e.name, e.name_hex.as_ref()));
        let name = match &e.target {
            Some(t) => format!(
                "{shown} -> {}",
                shell_escape(&exact_bytes(t, e.target_hex.as_ref()))
            ),
            None if e.kind == Kind::Dir => format!("{shown}/"),
            None => shown,
        };
        let chunks = if e.kind == Kind::File {
            e.chunks.to_string()
        } else {
            "-".into()
        };
        // Devices show their major and minor numbers where the size goes, as ls does.
        let size = match e.rdev {
            Some(rdev) => format!("{}, {}", libc::major(rdev), libc::minor(rdev)),
            None => e.size.to_string(),
        };
        out.push_str(&format!(
            "{mode:<10} {size:>12} {:<16} {chunks:>6}  {redundancy:<24} {name}\n",
            format_time(e.mtime),
        ));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

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

/// A name for a file being written, unique in this process and not too long:
/// `.NAME.cloudraid-WHAT.PID.N`.
fn temp_name(name: &[u8], what: &str) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tail = format!(".cloudraid-{what}.{}.{n}", std::process::id());
    let mut t = Vec::with_capacity(name.len() + tail.len() + 1);
    if name.len() + tail.len() < crate::fs::NAME_MAX {
        t.push(b'.');
        t.extend_from_slice(name);
    }
    t.extend_from_slice(tail.as_bytes());
    t
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

struct Transfer<'a> {
    fs: &'a Fs,
    owner: Caller,
    total: u64,
    done: AtomicU64,
    progress: ProgressFn<'a>,
}

impl Transfer<'_> {
    fn advance(&self, n: u64) {
        let d = self.done.fetch_add(n, Ordering::Relaxed) + n;
        (self.progress)(d, self.total);
    }

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
    async fn put_entry(
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
        // What was opened is what gets stored; its size and time are checked
        // again at the end, so a file changed meanwhile is not stored torn.
        let file = std::fs::File::open(src).map_err(|e| format!("{shown}: {e}"))?;
        let reader = || file.try_clone().map_err(|e| format!("{shown}: {e}"));
        let md = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
        if !md.is_file() {
            return Err(format!("{shown}: replaced while being read; put it again"));
        }
        let size = md.len();
        if let Some(a) = &existing {
            if a.kind == Kind::Dir {
                return Err(err(Errno::EISDIR));
            }
            if a.kind == Kind::File && fs.same_content(a.ino, reader()?, size).await.map_err(err)? {
                report.unchanged += 1;
                report.unchanged_bytes += size;
                self.advance(size);
                return Ok(None);
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
        let reused = AtomicU64::new(0);
        let stored = async {
            fs.import(
                a.ino,
                reader()?,
                size,
                to_nanos(md.modified().unwrap_or(UNIX_EPOCH)),
                &|n, fresh| {
                    if fresh { &uploaded } else { &reused }.fetch_add(1, Ordering::Relaxed);
                    self.advance(n);
                },
            )
            .await
            .map_err(err)?;
            let now = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
            if now.len() != size || now.modified().ok() != md.modified().ok() {
                return Err(format!(
                    "{shown}: changed while being stored, so it was not stored; put it again once it is still"
                ));
            }
            fs.setattr(a.ino, times_of(&md)).await.map_err(err)?;
            fs.rename_as(parent, &tmp, parent, name, 0, self.owner)
                .await
                .map_err(err)
        }
        .await;
        if stored.is_err() {
            let _ = fs.unlink(parent, &tmp).await;
        }
        stored?;
        fs.forget_name(parent, name).await;
        report.files += 1;
        report.bytes += size;
        report.chunks_uploaded += uploaded.into_inner();
        report.chunks_deduplicated += reused.into_inner();
        Ok(None)
    }
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

/// The access and modification times of a local file, to set in the volume.
fn times_of(md: &std::fs::Metadata) -> SetAttr {
    SetAttr {
        atime: md.accessed().ok().map(SetTime::At),
        mtime: md.modified().ok().map(SetTime::At),
        ..Default::default()
    }
}

/// `get`: copies files, directories and symlinks from the volume to `dest` on
/// the local filesystem, restoring modes and times.
pub async fn get(
    fs: &Fs,
    paths: &[String],
    dest: &Path,
    progress: ProgressFn<'_>,
) -> Result<TransferReport, String> {
    if paths.is_empty() {
        return Err("nothing to get".into());
    }
    let mut plan = Vec::new();
    let mut total = 0;
    for p in paths {
        let a = resolve(fs, p).await?;
        total += tree_size(fs, &a).await.map_err(|e| fs_err(p, e))?;
        plan.push((p.clone(), a));
    }
    let dest_is_dir = std::fs::metadata(dest).map(|m| m.is_dir()).unwrap_or(false);
    let mut jobs = Vec::new();
    if dest_is_dir || paths.len() > 1 {
        if !dest_is_dir {
            std::fs::create_dir(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
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
    let t = Transfer {
        fs,
        owner: Caller::default(),
        total,
        done: AtomicU64::new(0),
        progress,
    };
    let mut report = TransferReport::default();
    for (p, a, local) in jobs {
        let mut stack = vec![(p, a, local)];
        let mut dirs_done = Vec::new();
        while let Some((p, a, local)) = stack.pop() {
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
                Ok(false) => {}
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

async fn tree_size(fs: &Fs, a: &Attr) -> Result<u64, Errno> {
    let mut total = 0;
    let mut stack = vec![a.clone()];
    while let Some(a) = stack.pop() {
        match a.kind {
            Kind::File => total += a.size,
            Kind::Dir => {
                for (_, ino, _) in children(fs, a.ino).await? {
                    stack.push(fs.getattr(ino).await?);
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
                        .map_err(|e| fs_err(path, e))?;
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

/// `rm`: removes files and symlinks, and directories with `recursive`, as
/// `owner` (in sticky directories, only what `owner` may remove).
pub async fn remove(
    fs: &Fs,
    paths: &[String],
    recursive: bool,
    owner: Caller,
) -> Result<RemoveReport, String> {
    let mut report = RemoveReport::default();
    for p in paths {
        if let Err(e) = remove_one(fs, p, recursive, owner, &mut report).await {
            report.errors.push(e);
        }
    }
    Ok(report)
}

async fn remove_one(
    fs: &Fs,
    path: &str,
    recursive: bool,
    owner: Caller,
    report: &mut RemoveReport,
) -> Result<(), String> {
    let (parent, name) = resolve_parent(fs, path).await?;
    let a = fs
        .lookup(parent.ino, name.as_bytes())
        .await
        .map_err(|e| fs_err(path, e))?;
    if a.kind != Kind::Dir {
        fs.unlink_as(parent.ino, name.as_bytes(), owner)
            .await
            .map_err(|e| fs_err(path, e))?;
        fs.forget_name(parent.ino, name.as_bytes()).await;
        report.files += 1;
        return Ok(());
    }
    if !recursive {
        return Err(format!(
            "{}: is a directory (use -r to remove it with its contents)",
            display(path)
        ));
    }
    // Post-order walk: (dir inode, its path, entries visited?).
    let mut stack = vec![(
        parent.ino,
        name.into_bytes(),
        a.ino,
        path.to_string(),
        false,
    )];
    while let Some((pino, pname, ino, p, visited)) = stack.pop() {
        if visited {
            fs.rmdir_as(pino, &pname, owner)
                .await
                .map_err(|e| fs_err(&p, e))?;
            fs.forget_name(pino, &pname).await;
            report.dirs += 1;
            continue;
        }
        stack.push((pino, pname, ino, p.clone(), true));
        for (cname, cino, kind) in children(fs, ino).await.map_err(|e| fs_err(&p, e))? {
            if kind == Kind::Dir {
                stack.push((ino, cname.clone(), cino, join(&p, &cname), false));
            } else {
                fs.unlink_as(ino, &cname, owner)
                    .await
                    .map_err(|e| fs_err(&join(&p, &cname), e))?;
                fs.forget_name(ino, &cname).await;
                report.files += 1;
            }
        }
    }
    Ok(())
}

/// What `mkdir` did: directories created, and the paths it could not create.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MkdirReport {
    pub created: u64,
    pub errors: Vec<String>,
}

/// `mkdir`: creates directories; with `parents`, missing parents too, and an
/// existing directory is not an error. A path that fails does not stop the others.
pub async fn mkdir(
    fs: &Fs,
    paths: &[String],
    parents: bool,
    owner: Caller,
) -> Result<MkdirReport, String> {
    let mut report = MkdirReport::default();
    for p in paths {
        if let Err(e) = mkdir_one(fs, p, parents, owner, &mut report.created).await {
            report.errors.push(e);
        }
    }
    Ok(report)
}

async fn mkdir_one(
    fs: &Fs,
    p: &str,
    parents: bool,
    owner: Caller,
    made: &mut u64,
) -> Result<(), String> {
    let comps = components(p)?;
    if comps.is_empty() {
        return Err("/ exists: it is the volume's root".into());
    }
    let mut dir = resolve(fs, "/").await?;
    for (i, c) in comps.iter().enumerate() {
        let here = comps[..=i].join("/");
        let last = i + 1 == comps.len();
        match fs.lookup(dir.ino, c.as_bytes()).await {
            Ok(a) if a.kind == Kind::Dir && (parents || !last) => dir = a,
            Ok(_) if last => return Err(fs_err(&here, Errno::EEXIST)),
            Ok(_) => return Err(fs_err(&here, Errno::ENOTDIR)),
            Err(Errno::ENOENT) if parents || last => {
                let a = fs
                    .mkdir(dir.ino, c.as_bytes(), 0o755, owner)
                    .await
                    .map_err(|e| fs_err(&here, e))?;
                fs.forget_name(dir.ino, c.as_bytes()).await;
                *made += 1;
                dir = a;
            }
            Err(e) => {
                return Err(format!(
                    "{} (use -p to create missing parents)",
                    fs_err(&here, e)
                ))
            }
        }
    }
    Ok(())
}

/// `du`: what the tree under `path` holds, and what its distinct chunks take
/// on the backends.
pub async fn du(fs: &Fs, path: &str) -> Result<DuReport, String> {
    let a = resolve(fs, path).await?;
    let mut r = DuReport {
        path: display(path),
        ..Default::default()
    };
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut stack = vec![a];
    let err = |e| fs_err(path, e);
    while let Some(a) = stack.pop() {
        match a.kind {
            Kind::Dir => {
                r.dirs += 1;
                for (_, ino, _) in children(fs, a.ino).await.map_err(err)? {
                    match fs.getattr(ino).await {
                        Ok(c) => stack.push(c),
                        Err(Errno::ENOENT) => {}
                        Err(e) => return Err(err(e)),
                    }
                }
            }
            Kind::Symlink => r.symlinks += 1,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => r.specials += 1,
            Kind::File => {
                r.files += 1;
                r.bytes += a.size;
                for c in fs.file_chunks(a.ino).map_err(err)? {
                    if let ChunkRef::Data { id, .. } = c {
                        if seen.insert(id) {
                            if let Some(rec) = fs.index().chunk(&id).map_err(|e| err(e.into()))? {
                                r.chunks += 1;
                                r.chunk_bytes += rec.len as u64;
                                r.stored_bytes +=
                                    rec.shard_size as u64 * (rec.k as u64 + rec.m as u64);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(r)
}

pub fn render_du(r: &DuReport) -> String {
    use crate::config::human;
    let specials = match r.specials {
        0 => String::new(),
        n => format!(", {n} special files (FIFOs, sockets, devices)"),
    };
    format!(
        "{}: {} in {} files, {} directories, {} symlinks{specials}\nstored as {} distinct chunks ({}) taking {} on the backends\n",
        r.path,
        human(r.bytes),
        r.files,
        r.dirs,
        r.symlinks,
        r.chunks,
        human(r.chunk_bytes),
        human(r.stored_bytes)
    )
}

/// The caller of the CLI itself.
pub fn current_caller() -> Caller {
    // SAFETY: getuid and getgid cannot fail.
    unsafe {
        Caller {
            uid: libc::getuid(),
            gid: libc::getgid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_show_types_special_bits_and_device_numbers() {
        let e = |name: &str, kind, mode, rdev| ListEntry {
            name: name.into(),
            name_hex: None,
            kind,
            mode,
            size: 0,
            mtime: 0,
            chunks: 0,
            redundancy: Redundancy::Full,
            target: None,
            target_hex: None,
            rdev,
        };
        let table = render_list(&[
            e("tmp", Kind::Dir, 0o1777, None),
            e("suid", Kind::File, 0o4754, None),
            e("sgid", Kind::File, 0o2640, None),
            e("fifo", Kind::Fifo, 0o640, None),
            e("sock", Kind::Socket, 0o755, None),
            e("null", Kind::CharDevice, 0o666, Some(libc::makedev(1, 3))),
            e("sda", Kind::BlockDevice, 0o660, Some(libc::makedev(8, 0))),
        ]);
        let rows: Vec<(&str, &str)> = table
            .lines()
            .skip(1)
            .map(|l| (l.split_whitespace().next().unwrap(), l))
            .collect();
        let modes: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            modes,
            [
                "drwxrwxrwt",
                "-rwsr-xr--",
                "-rw-r-S---",
                "prw-r-----",
                "srwxr-xr-x",
                "crw-rw-rw-",
                "brw-rw----"
            ]
        );
        assert!(rows[5].1.contains(" 1, 3 "), "{table}");
        assert!(rows[6].1.contains(" 8, 0 "), "{table}");
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06");
    }

    #[test]
    fn names_are_escaped_for_the_terminal_like_gnu_ls() {
        assert_eq!(
            shell_escape(b"report-2024_v1.2.pdf"),
            "report-2024_v1.2.pdf"
        );
        assert_eq!(shell_escape("résumé.txt".as_bytes()), "résumé.txt");
        assert_eq!(shell_escape(b"a b"), "'a b'");
        assert_eq!(shell_escape(b"a\nb"), "'a'$'\\n''b'");
        assert_eq!(shell_escape(b"\x1b[31mred"), "$'\\033''[31mred'");
        assert_eq!(shell_escape(b"it's"), "'it'\\''s'");
        assert_eq!(shell_escape(b"bad\xff\xfe"), "'bad'$'\\377\\376'");
        assert_eq!(
            shell_escape("x\u{202e}y".as_bytes()),
            "'x'$'\\342\\200\\256''y'"
        );
        assert_eq!(shell_escape(b"~home"), "'~home'");
        // Injective: names that differ never print the same.
        let names: [&[u8]; 8] = [
            b"a\xff",
            b"a\xfe",
            "a\u{fffd}".as_bytes(),
            b"a?",
            b"a\n",
            b"a\\n",
            b"a'",
            b"a\x07",
        ];
        let shown: std::collections::HashSet<String> =
            names.iter().map(|n| shell_escape(n)).collect();
        assert_eq!(shown.len(), names.len(), "{shown:?}");
        assert!(shown.iter().all(|s| !s.chars().any(char::is_control)));
    }

    #[test]
    fn volume_paths_refuse_parent_components() {
        assert_eq!(components("/a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert!(components("a/../b").is_err());
        assert_eq!(display("a/b/"), "/a/b");
    }
}
